"""Templates owned by Meta, pure parts: reading Meta's template items, what a re-sync changes,
what each template webhook does, the ingestor's reading of template webhooks, and the Graph
template list's paging (over httpx.MockTransport)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from common.vocabulary import TemplateCategory, TemplateParameterFormat, TemplateStatus
from dispatch_service.domain.meta_templates import (
    StoredTemplate,
    TemplateField,
    TemplateItemError,
    TemplateWebhook,
    parse_template,
    registry_variables,
    template_changes,
    template_effect,
)
from dispatch_service.providers.meta_templates import MetaTemplateCatalog, TemplateCatalogError
from webhook_service.normalise import TemplateUpdate, normalise

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
NAMED: dict[str, Any] = {
    "id": "1689556908129832",
    "name": "event_invitation_v2",
    "language": "en_US",
    "status": "APPROVED",
    "category": "MARKETING",
    "parameter_format": "NAMED",
    "quality_score": {"score": "GREEN", "date": 1780000000},
    "components": [
        {"type": "HEADER", "format": "IMAGE", "example": {"header_handle": ["4::aW1h"]}},
        {
            "type": "BODY",
            "text": "Hi {{guest_name}}, {{event_name}} on {{event_date}}, {{guest_name}}",
        },
        {"type": "FOOTER", "text": "Reply STOP"},
        {
            "type": "BUTTONS",
            "buttons": [
                {"type": "quick_reply", "text": "Yes"},
                {"type": "URL", "text": "Details", "url": "https://e.example/e/{{1}}", "x": 1},
            ],
        },
    ],
}


def stored(**fields: Any) -> StoredTemplate:
    values: dict[str, Any] = {
        "meta_template_id": "1",
        "category": "MARKETING",
        "status": "APPROVED",
        "quality": None,
        "parameter_format": "positional",
        "components": [{"type": "BODY", "text": "Hi {{1}} on {{2}}"}],
        "variables": ["guest_name", "event_date"],
        "deleted": False,
        "source": "meta",
    }
    return StoredTemplate(**(values | fields))


def webhook(field: TemplateField = TemplateField.STATUS, **values: Any) -> TemplateWebhook:
    base: dict[str, Any] = {
        "waba_id": "1",
        "field": field,
        "meta_template_id": "1",
        "name": "invite",
        "language": "en_US",
        "at": 1,
    }
    return TemplateWebhook(**(base | values))


# --- reading Meta's items -----------------------------------------------------------------------


def test_a_named_template_keeps_its_components_and_parameter_names() -> None:
    got = parse_template(NAMED)
    assert got.meta_template_id == "1689556908129832"
    assert got.status is TemplateStatus.APPROVED
    assert got.category is TemplateCategory.MARKETING
    assert got.quality == "GREEN"
    assert got.parameter_format is TemplateParameterFormat.NAMED
    assert got.body_variables == ("guest_name", "event_name", "event_date")  # once each
    assert got.components[0] == {
        "type": "HEADER",
        "format": "IMAGE",
        "example": {"header_handle": ["4::aW1h"]},
    }
    assert got.components[3]["buttons"] == [
        {"type": "QUICK_REPLY", "text": "Yes"},
        {"type": "URL", "text": "Details", "url": "https://e.example/e/{{1}}"},
    ]


def test_a_positional_template_counts_its_highest_variable() -> None:
    got = parse_template(
        {
            "id": 7,
            "name": "invite",
            "language": "en-US",
            "status": "REINSTATED",
            "category": "utility",
            "components": [{"type": "BODY", "text": "{{2}} then {{1}} and {{3}}"}],
        }
    )
    assert got.language == "en_US"
    assert got.status is TemplateStatus.APPROVED
    assert got.parameter_format is TemplateParameterFormat.POSITIONAL
    assert got.body_variables == ("1", "2", "3")
    assert got.quality is None
    assert registry_variables(got, ["a", "b", "c"]) == ["a", "b", "c"]  # names kept
    assert registry_variables(got, ["a", "b"]) == ["1", "2", "3"]  # count changed: unnamed


@pytest.mark.parametrize(
    ("meta", "ours"),
    [
        ("IN_APPEAL", TemplateStatus.REJECTED),
        ("PENDING_DELETION", TemplateStatus.DISABLED),
        ("LIMIT_EXCEEDED", TemplateStatus.PENDING),
        ("FLAGGED", TemplateStatus.APPROVED),
        ("PAUSED", TemplateStatus.PAUSED),
    ],
)
def test_metas_other_statuses_map_to_the_closest_sendable_or_not(
    meta: str, ours: TemplateStatus
) -> None:
    assert parse_template(NAMED | {"status": meta}).status is ours


@pytest.mark.parametrize(
    ("item", "problem"),
    [
        ({"name": "x", "language": "en"}, "no id"),
        (NAMED | {"category": "PROMO"}, "unknown category"),
        (NAMED | {"status": "WHATEVER"}, "unknown status"),
        (NAMED | {"parameter_format": "MIXED"}, "unknown parameter_format"),
        (NAMED | {"components": [{"text": "no type"}]}, "without a type"),
        ({"id": "1", "language": "en"}, "without a name"),
    ],
)
def test_unreadable_items_say_why(item: dict[str, Any], problem: str) -> None:
    with pytest.raises(TemplateItemError, match=problem):
        parse_template(item)


def test_a_resync_names_exactly_the_fields_that_changed() -> None:
    definition = parse_template(NAMED)
    same = StoredTemplate(
        meta_template_id=definition.meta_template_id,
        category="MARKETING",
        status="APPROVED",
        quality="GREEN",
        parameter_format="named",
        components=[dict(c) for c in definition.components],
        variables=list(definition.body_variables),
        deleted=False,
        source="meta",
    )
    assert template_changes(same, definition, definition.body_variables) == []
    moved = StoredTemplate(**(same.__dict__ | {"status": "PAUSED", "deleted": True}))
    assert template_changes(moved, definition, definition.body_variables) == ["status", "deleted"]
    manual = StoredTemplate(**(same.__dict__ | {"source": "manual", "meta_template_id": None}))
    assert template_changes(manual, definition, definition.body_variables) == [
        "meta_template_id",
        "source",
    ]


# --- webhooks -----------------------------------------------------------------------------------


@pytest.mark.parametrize("event", ["PAUSED", "DISABLED", "REJECTED"])
def test_halting_statuses_pause_runs_with_a_readable_reason(event: str) -> None:
    effect = template_effect(
        stored(), "invite", "en_US", webhook(event=event, reason="SCAM", detail="FIRST_PAUSE")
    )
    assert effect.values == {"status": event, "status_reason": "SCAM; FIRST_PAUSE"}
    assert effect.pause_reason == f"template invite (en_US) is {event} on Meta: SCAM; FIRST_PAUSE"


@pytest.mark.parametrize("event", ["APPROVED", "REINSTATED"])
def test_approval_pauses_nothing(event: str) -> None:
    effect = template_effect(stored(status="PAUSED"), "invite", "en_US", webhook(event=event))
    assert effect.values == {"status": "APPROVED", "status_reason": None}
    assert effect.pause_reason is None


def test_unknown_events_and_scores_change_nothing() -> None:
    assert template_effect(stored(), "i", "en", webhook(event="SOMETHING_NEW")).values == {}
    quality = webhook(TemplateField.QUALITY, new_quality="PURPLE")
    assert template_effect(stored(), "i", "en", quality).values == {}
    red = webhook(TemplateField.QUALITY, new_quality="red")
    assert template_effect(stored(), "i", "en", red).values == {"quality": "RED"}


def test_category_changes_impending_then_done() -> None:
    impending = webhook(
        TemplateField.CATEGORY, correct_category="UTILITY", new_category="MARKETING"
    )
    assert template_effect(stored(), "i", "en", impending).values == {"pending_category": "UTILITY"}
    done = webhook(TemplateField.CATEGORY, previous_category="MARKETING", new_category="UTILITY")
    assert template_effect(stored(), "i", "en", done).values == {
        "category": "UTILITY",
        "previous_category": "MARKETING",
        "pending_category": None,
    }


def test_a_components_update_rewrites_text_and_renames_only_when_the_count_changes() -> None:
    same_count = webhook(TemplateField.COMPONENTS, body_text="Hello {{1}}, see you {{2}}")
    assert template_effect(stored(), "i", "en", same_count).values == {
        "components": [{"type": "BODY", "text": "Hello {{1}}, see you {{2}}"}]
    }
    more = webhook(
        TemplateField.COMPONENTS,
        body_text="{{1}} {{2}} {{3}}",
        header_text="Invitation",
        buttons=({"type": "URL", "text": "Go", "url": "https://x/{{1}}", "phone_number": ""},),
    )
    assert template_effect(stored(), "i", "en", more).values == {
        "components": [
            {"type": "HEADER", "text": "Invitation", "format": "TEXT"},
            {"type": "BODY", "text": "{{1}} {{2}} {{3}}"},
            {
                "type": "BUTTONS",
                "buttons": [{"type": "URL", "text": "Go", "url": "https://x/{{1}}"}],
            },
        ],
        "variables": ["1", "2", "3"],
    }


def test_the_ingestor_reads_a_template_status_webhook() -> None:
    got = normalise((CORPUS / "template_status_update.json").read_bytes())
    assert got.flag is None
    assert got.phone_number_ids == ()
    assert got.update_count == 1
    assert got.template_updates == (
        TemplateUpdate(
            waba_id="102290129340398",
            field="message_template_status_update",
            meta_template_id="1689556908129832",
            name="wedding_invite",
            language="en_US",
            timestamp=1750030400,
            values={
                "event": "PAUSED",
                "reason": "NONE",
                "detail": "FIRST_PAUSE: Paused for low quality",
            },
        ),
    )


def _waba_body(field: str, value: dict[str, Any], time: int | None = 1780050000) -> bytes:
    entry: dict[str, Any] = {"id": "102290129340398", "changes": [{"field": field, "value": value}]}
    if time is not None:
        entry["time"] = time
    return json.dumps({"object": "whatsapp_business_account", "entry": [entry]}).encode()


IDS = {
    "message_template_id": 42,
    "message_template_name": "invite",
    "message_template_language": "en-US",
}


def test_the_ingestor_reads_quality_category_and_components_webhooks() -> None:
    quality = normalise(
        _waba_body(
            "message_template_status_update",  # the older copy's label for a quality update
            IDS | {"previous_quality_score": "GREEN", "new_quality_score": "RED"},
        )
    )
    (update,) = quality.template_updates
    assert (update.field, update.language, update.values) == (
        "message_template_quality_update",
        "en_US",
        {"new_quality": "RED"},
    )
    category = normalise(
        _waba_body(
            "template_category_update",
            IDS | {"previous_category": "UTILITY", "new_category": "MARKETING"},
        )
    )
    assert category.template_updates[0].values == {
        "previous_category": "UTILITY",
        "new_category": "MARKETING",
    }
    components = normalise(
        _waba_body(
            "message_template_components_update",
            IDS
            | {
                "message_template_element": "Hi {{1}}",
                "message_template_footer": "Bye",
                "message_template_buttons": [
                    {
                        "message_template_button_type": "URL",
                        "message_template_button_text": "Go",
                        "message_template_button_url": "https://x/{{1}}",
                    }
                ],
            },
        )
    )
    (update,) = components.template_updates
    assert update.values == {"body_text": "Hi {{1}}", "footer_text": "Bye"}
    assert update.buttons == (
        {"type": "URL", "text": "Go", "url": "https://x/{{1}}", "phone_number": ""},
    )


def test_a_template_webhook_without_entry_time_is_flagged() -> None:
    got = normalise(_waba_body("message_template_status_update", IDS | {"event": "X"}, None))
    assert got.flag is not None
    assert "time" in got.problem


# --- the Graph template list ----------------------------------------------------------------------


def _pages(pages: list[dict[str, Any]], seen: list[httpx.Request]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=pages[len(seen) - 1])

    return httpx.MockTransport(handle)


async def test_the_catalog_follows_next_until_it_is_absent() -> None:
    seen: list[httpx.Request] = []
    pages = [
        {
            "data": [{"id": "1"}],
            "paging": {"next": "https://graph.test/v21.0/9/message_templates?after=A"},
        },
        {"data": [{"id": "2"}, "not an object"], "paging": {"cursors": {"after": "B"}}},
    ]
    async with httpx.AsyncClient(transport=_pages(pages, seen)) as client:
        catalog = MetaTemplateCatalog(
            client, base_url="https://graph.test", api_version="v21.0", access_token="tok"
        )
        items = await catalog.list_templates("9")
    assert [i["id"] for i in items] == ["1", "2"]
    assert seen[0].url.path == "/v21.0/9/message_templates"
    assert seen[0].url.params["limit"] == "100"
    assert "quality_score" in seen[0].url.params["fields"]
    assert str(seen[1].url) == "https://graph.test/v21.0/9/message_templates?after=A"
    assert seen[1].headers["Authorization"] == "Bearer tok"


async def test_the_catalog_follows_the_after_cursor_of_a_full_page() -> None:
    seen: list[httpx.Request] = []
    pages = [
        {"data": [{"id": "1"}, {"id": "2"}], "paging": {"cursors": {"after": "C2"}}},
        {"data": [{"id": "3"}], "paging": {"cursors": {"after": "C3"}}},
    ]
    async with httpx.AsyncClient(transport=_pages(pages, seen)) as client:
        catalog = MetaTemplateCatalog(
            client, base_url="https://g", api_version="v21.0", access_token="t", page_size=2
        )
        items = await catalog.list_templates("9")
    assert [i["id"] for i in items] == ["1", "2", "3"]
    assert seen[1].url.params["after"] == "C2"
    assert len(seen) == 2  # a short page ends the list


async def test_a_refusal_is_reported_without_the_token() -> None:
    def refuse(_: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": {"message": "(#100) Invalid WABA", "code": 100}})

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as client:
        catalog = MetaTemplateCatalog(
            client, base_url="https://g", api_version="v21.0", access_token="secret-token"
        )
        with pytest.raises(TemplateCatalogError) as error:
            await catalog.list_templates("9")
    assert str(error.value) == "Meta answered HTTP 400 to the template list: (#100) Invalid WABA"
    assert "secret-token" not in str(error.value)


async def test_a_list_that_never_ends_is_cut_off() -> None:
    def forever(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"data": [], "paging": {"next": str(request.url)}})

    async with httpx.AsyncClient(transport=httpx.MockTransport(forever)) as client:
        catalog = MetaTemplateCatalog(
            client, base_url="https://g", api_version="v21.0", access_token="t"
        )
        with pytest.raises(TemplateCatalogError, match="did not end"):
            await catalog.list_templates("9")

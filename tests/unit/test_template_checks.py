"""PrecheckSend's template rules (pure): what refuses a precheck, what is only shown."""

from __future__ import annotations

from typing import Any

import pytest

from dispatch_service.domain.template_checks import TemplateFacts, check_template


def facts(**fields: Any) -> TemplateFacts:
    values: dict[str, Any] = {
        "name": "invite",
        "language": "en_US",
        "status": "APPROVED",
        "category": "MARKETING",
        "previous_category": None,
        "pending_category": None,
        "quality": "GREEN",
        "source": "meta",
        "parameter_format": "positional",
        "components": [{"type": "BODY", "text": "Hi {{1}}"}],
        "variables": ["guest_name"],
        "deleted": False,
    }
    return TemplateFacts(**(values | fields))


def test_a_template_the_run_can_send_passes_without_notes() -> None:
    check = check_template(facts(), "positional")
    assert (check.violations, check.notes) == ([], [])


@pytest.mark.parametrize(
    ("component", "field"),
    [
        ({"type": "HEADER", "format": "location"}, "event.coordinates"),
        ({"type": "HEADER", "format": "TEXT", "text": "For {{1}}"}, "template.header"),
        (
            {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY"}, {"type": "COPY_CODE"}]},
            "template.buttons[1]",
        ),
    ],
)
def test_components_needing_a_parameter_are_refused(component: dict[str, Any], field: str) -> None:
    check = check_template(facts(components=[component]), "positional")
    assert [v.field for v in check.violations] == [field]


@pytest.mark.parametrize(
    "component",
    [
        {"type": "HEADER", "format": "TEXT", "text": "You're invited"},
        {"type": "FOOTER", "text": "Reply STOP"},
        {"type": "BUTTONS", "buttons": [{"type": "URL", "url": "https://x/fixed"}]},
        {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY"}, {"type": "PHONE_NUMBER"}]},
        {"type": "BUTTONS", "buttons": [{"type": "URL", "url": "https://x/{{1}}"}]},
        {"type": "HEADER", "format": "IMAGE"},
    ],
)
def test_components_without_parameters_pass(component: dict[str, Any]) -> None:
    assert check_template(facts(components=[component]), "positional").violations == []


def test_a_location_header_needs_the_events_coordinates() -> None:
    located = facts(components=[{"type": "HEADER", "format": "LOCATION"}])
    assert [v.field for v in check_template(located, "positional").violations] == [
        "event.coordinates"
    ]
    placed = facts(
        components=[{"type": "HEADER", "format": "LOCATION"}], event_has_coordinates=True
    )
    assert check_template(placed, "positional").violations == []


def test_a_media_header_is_a_note_for_start_run() -> None:
    check = check_template(facts(components=[{"type": "HEADER", "format": "VIDEO"}]), "named")
    assert check.violations == []
    assert check.notes == [
        "the template has a VIDEO header: StartRun needs its header_media "
        "(invites send --header-video URL)"
    ]


def test_a_synced_template_sends_in_its_own_parameter_format() -> None:
    named = facts(parameter_format="named")
    assert check_template(named, "positional").violations == []  # its send plan says named
    bare = facts(parameter_format="named", components=[])
    assert [v.field for v in check_template(bare, "positional").violations] == [
        "template.parameter_format"
    ]


def test_notes_show_category_quality_status_source_and_unknown_variables() -> None:
    check = check_template(
        facts(
            previous_category="UTILITY",
            pending_category="UTILITY",
            quality="RED",
            status="PAUSED",
            source="manual",
            variables=["guest_name", "1"],
        ),
        "positional",
    )
    assert check.notes == [
        "Meta changed the category from UTILITY to MARKETING (pricing and opt-in rules follow "
        "the new one)",
        "Meta announced it will change the category from MARKETING to UTILITY",
        "quality is RED: Meta may pause the template (132015)",
        "the template is PAUSED: StartRun refuses it until it is APPROVED",
        "registered by hand: not checked against Meta (run invites templates sync)",
        "variables this service cannot fill: 1 (StartRun refuses them)",
    ]


def test_a_deleted_template_is_refused() -> None:
    check = check_template(facts(deleted=True), "positional")
    assert [v.field for v in check.violations] == ["template"]

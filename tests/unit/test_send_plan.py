"""Send plans (pure): what a run freezes at StartRun and each message's components."""

from __future__ import annotations

import uuid
from typing import Any

from dispatch_service.domain.send_plan import (
    HeaderMedia,
    Venue,
    build_send_plan,
    plan_components,
)
from dispatch_service.providers.base import TemplateSend
from dispatch_service.providers.meta import MetaCloudProvider

VENUE = Venue("Garden party", "Rose Garden", "Rua das Flores 1", 38.72, -9.14)
NOWHERE = Venue("Garden party", "", "", None, None)
MESSAGE = uuid.UUID("8f3c2a00-0000-4000-8000-000000000001")
BUTTONS = {
    "type": "BUTTONS",
    "buttons": [
        {"type": "QUICK_REPLY", "text": "Yes"},
        {"type": "QUICK_REPLY", "text": "No"},
        {"type": "URL", "text": "RSVP", "url": "https://e.example/r/{{1}}"},
        {"type": "URL", "text": "Map", "url": "https://maps.example/fixed"},
    ],
}


def components(header: dict[str, Any]) -> list[dict[str, Any]]:
    return [header, {"type": "BODY", "text": "Hi {{guest_name}}"}, BUTTONS]


def test_a_location_invitation_with_buttons() -> None:
    plan, problems = build_send_plan(
        components({"type": "HEADER", "format": "LOCATION"}), "named", VENUE, None
    )
    assert problems == []
    assert plan_components(plan, MESSAGE, ["Jane"], ["guest_name"]) == [
        {
            "type": "header",
            "parameters": [
                {
                    "type": "location",
                    "location": {
                        "latitude": "38.72",
                        "longitude": "-9.14",
                        "name": "Rose Garden",
                        "address": "Rua das Flores 1",
                    },
                }
            ],
        },
        {
            "type": "body",
            "parameters": [{"type": "text", "text": "Jane", "parameter_name": "guest_name"}],
        },
        {
            "type": "button",
            "sub_type": "quick_reply",
            "index": "0",
            "parameters": [{"type": "payload", "payload": f"{MESSAGE}:0"}],
        },
        {
            "type": "button",
            "sub_type": "quick_reply",
            "index": "1",
            "parameters": [{"type": "payload", "payload": f"{MESSAGE}:1"}],
        },
        {
            "type": "button",
            "sub_type": "url",
            "index": "2",
            "parameters": [{"type": "text", "text": MESSAGE.hex}],
        },
    ]


def test_media_by_id_and_a_documents_filename() -> None:
    media = HeaderMedia(kind="document", media_id="1234", filename="Invitation.pdf")
    plan, problems = build_send_plan(
        components({"type": "HEADER", "format": "DOCUMENT"}), "positional", NOWHERE, media
    )
    assert problems == []
    assert plan["header"] == {
        "type": "document",
        "document": {"id": "1234", "filename": "Invitation.pdf"},
    }
    body = plan_components(plan, MESSAGE, ["Jane"], ["guest_name"])[1]
    assert body == {"type": "body", "parameters": [{"type": "text", "text": "Jane"}]}


def test_what_a_plan_cannot_give_is_named() -> None:
    def fields(
        header: dict[str, Any], media: HeaderMedia | None, venue: Venue = VENUE
    ) -> list[str]:
        return [v.field for v in build_send_plan(components(header), "named", venue, media)[1]]

    image = {"type": "HEADER", "format": "IMAGE"}
    assert fields(image, None) == ["header_media"]
    assert fields(image, HeaderMedia("video", link="https://x/v.mp4")) == ["header_media.type"]
    assert fields({"type": "HEADER", "format": "LOCATION"}, None, NOWHERE) == ["event.coordinates"]
    assert fields({"type": "HEADER", "format": "TEXT", "text": "{{1}}"}, None) == [
        "template.header"
    ]
    text_header = {"type": "HEADER", "format": "TEXT", "text": "Hello"}
    assert fields(text_header, HeaderMedia("image", link="https://x/a.jpg")) == ["header_media"]
    bad = HeaderMedia("gif", link="http://x", media_id="y", filename="f")
    assert set(fields(image, bad)) >= {
        "header_media.type",
        "header_media",
        "header_media.link",
        "header_media.media_id",
        "header_media.filename",
    }


def test_a_template_without_components_sends_the_body_only() -> None:
    assert build_send_plan([], "positional", VENUE, None) == ({}, [])
    provider = MetaCloudProvider.__new__(MetaCloudProvider)
    provider._named = False
    send = TemplateSend(MESSAGE, "1", "+14155550101", "t", "en", ("Jane",))
    assert provider.request_body(send)["template"]["components"] == [
        {"type": "body", "parameters": [{"type": "text", "text": "Jane"}]}
    ]
    planned = TemplateSend(
        MESSAGE,
        "1",
        "+14155550101",
        "t",
        "en",
        ("Jane",),
        ("guest_name",),
        send_plan={"parameter_format": "named", "buttons": []},
    )
    assert provider.request_body(planned)["template"]["components"] == [
        {
            "type": "body",
            "parameters": [{"type": "text", "text": "Jane", "parameter_name": "guest_name"}],
        }
    ]

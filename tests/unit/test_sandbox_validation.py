"""Send request validation: what Meta rejects, with which code."""

import json
from typing import Any

import pytest

from sandbox.errors import Rejected
from sandbox.validation import TemplateSend, parse_template_send


def request(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "16505551234",
        "type": "template",
        "template": {
            "name": "event_invitation",
            "language": {"code": "en_US"},
            "components": [
                {
                    "type": "body",
                    "parameters": [
                        {"type": "text", "text": "Jane"},
                        {"type": "text", "text": "Sat 12 Oct, 19:00"},
                    ],
                }
            ],
        },
        "biz_opaque_callback_data": "invitation:8f3c2a",
    }
    body.update(overrides)
    return body


def rejection(raw: bytes) -> tuple[int, str]:
    with pytest.raises(Rejected) as caught:
        parse_template_send(raw)
    return caught.value.error.code, caught.value.error.details


def encoded(body: Any) -> bytes:
    return json.dumps(body).encode()


def test_reference_request_parses_into_its_parts() -> None:
    send = parse_template_send(encoded(request(to="+1 (650) 555-1234")))

    assert send == TemplateSend(
        to="+1 (650) 555-1234",
        wa_id="16505551234",
        template_name="event_invitation",
        language="en_US",
        header_parameters=(),
        body_parameters=("Jane", "Sat 12 Oct, 19:00"),
        callback_data="invitation:8f3c2a",
        body_parameter_names=(None, None),  # sent positionally
    )


def test_named_and_non_text_parameters_are_counted() -> None:
    body = request()
    body["template"]["components"] = [
        {"type": "header", "parameters": [{"type": "image", "image": {"link": "https://x/y.png"}}]},
        {
            "type": "body",
            "parameters": [{"type": "text", "text": "Madhav", "parameter_name": "name"}],
        },
        {"type": "button", "sub_type": "quick_reply", "index": "0", "parameters": []},
    ]

    send = parse_template_send(encoded(body))

    assert send.body_parameters == ("Madhav",)
    assert len(send.header_parameters) == 1
    assert json.loads(send.header_parameters[0])["type"] == "image"


@pytest.mark.parametrize("raw", [b"{not json", b"", b"\xff\xfe", b"[1, 2]", b'"text"'])
def test_malformed_json_is_code_100(raw: bytes) -> None:
    assert rejection(raw)[0] == 100


@pytest.mark.parametrize(
    ("body", "code", "mentions"),
    [
        (
            {k: v for k, v in request().items() if k != "messaging_product"},
            100,
            "messaging_product",
        ),
        (request(messaging_product="sms"), 100, "messaging_product"),
        ({k: v for k, v in request().items() if k != "to"}, 131008, "to"),
        (request(to="not-a-number"), 100, "to"),
        (request(to="123"), 100, "to"),
        (request(type="carrier_pigeon"), 100, "type"),
        (request(type="text"), 131051, "template"),
        ({k: v for k, v in request().items() if k != "template"}, 131008, "template"),
        (request(template={"language": {"code": "en_US"}}), 131008, "template['name']"),
        (request(template={"name": "x"}), 131008, "template['language']"),
        (request(template={"name": "x", "language": {}}), 131008, "['code']"),
        (request(template={"name": "x", "language": {"code": 5}}), 100, "['code']"),
        (request(recipient_type="group"), 100, "recipient_type"),
        (request(biz_opaque_callback_data=42), 100, "biz_opaque_callback_data"),
        (request(biz_opaque_callback_data="x" * 513), 100, "biz_opaque_callback_data"),
    ],
)
def test_invalid_requests_get_metas_code_and_name_the_field(
    body: dict[str, Any], code: int, mentions: str
) -> None:
    got_code, details = rejection(encoded(body))

    assert got_code == code
    assert mentions in details


def test_empty_text_parameter_is_missing_value() -> None:
    body = request()
    body["template"]["components"][0]["parameters"][1]["text"] = "  "

    code, details = rejection(encoded(body))

    assert code == 131008
    assert "['parameters'][1]" in details


def test_component_of_unknown_type_is_rejected() -> None:
    body = request()
    body["template"]["components"] = [{"type": "sidebar", "parameters": []}]

    assert rejection(encoded(body))[0] == 100

"""Payload builders produce exactly the shapes of reference §1, §2.1 and §3.3."""

import hashlib
import hmac
import json
from typing import Any

from sandbox.errors import error_response_body, graph_error
from sandbox.payloads import (
    FieldChange,
    StatusEvent,
    build_payload,
    encode,
    inbound_text_change,
    send_response,
    sign,
    status_object,
    template_status_change,
    user_preferences_change,
)
from sandbox.service import derived_user_id

WAMID = "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA="
META = {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"}
WABA = "102290129340398"


def event(status: str, timestamp: int, **overrides: Any) -> StatusEvent:
    fields: dict[str, Any] = {
        "wamid": WAMID,
        "status": status,
        "timestamp": timestamp,
        "recipient_id": "16505551234",
        "phone_number_id": "106540352242922",
        "callback_data": "invitation:8f3c2a",
        "category": "marketing",
        "billable": status == "sent",
        "conversation_id": "72b14d6bd5407799e66f64d1b338e567",
        "conversation_expires": 1750116480,
    }
    return StatusEvent(**{**fields, **overrides})


def payload(*items: StatusEvent | FieldChange, shape: str = "v24", **packing: int) -> Any:
    limits = {"statuses_per_change": 1000, "changes_per_entry": 10} | packing
    return build_payload(
        items,
        waba_id=WABA,
        display_phone_number="15550783881",
        shape=shape,  # type: ignore[arg-type]
        **limits,
    )


def envelope(field: str, value: dict[str, Any]) -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": WABA, "changes": [{"field": field, "value": value}]}],
    }


def test_send_response_shape() -> None:
    assert send_response("+16505551234", "16505551234", "wamid.X") == {
        "messaging_product": "whatsapp",
        "contacts": [{"input": "+16505551234", "wa_id": "16505551234"}],
        "messages": [{"id": "wamid.X", "message_status": "accepted"}],
    }


def test_error_body_shape_of_reference_2_1() -> None:
    body = error_response_body(graph_error(130429), "Az8or2yhqkZfEZ-_4Qn_Bam")

    assert body == {
        "error": {
            "message": "(#130429) Rate limit hit",
            "type": "OAuthException",
            "code": 130429,
            "error_data": {
                "messaging_product": "whatsapp",
                "details": "Cloud API message throughput has been reached.",
            },
            "fbtrace_id": "Az8or2yhqkZfEZ-_4Qn_Bam",
        }
    }


def test_v23_sent_matches_reference_example_a() -> None:
    expected = {
        "id": WAMID,
        "status": "sent",
        "timestamp": "1750030073",
        "recipient_id": "16505551234",
        "biz_opaque_callback_data": "invitation:8f3c2a",
        "conversation": {
            "id": "72b14d6bd5407799e66f64d1b338e567",
            "expiration_timestamp": "1750116480",
            "origin": {"type": "marketing"},
        },
        "pricing": {
            "billable": True,
            "pricing_model": "PMP",
            "type": "regular",
            "category": "marketing",
        },
    }

    built = status_object(event("sent", 1750030073), "v23")

    assert json.dumps(built) == json.dumps(expected)  # same keys, same order


def test_v24_sent_has_pricing_and_no_conversation() -> None:
    built = status_object(event("sent", 1750030073), "v24")

    assert "conversation" not in built
    assert built["pricing"]["pricing_model"] == "PMP"


def test_v24_delivered_matches_reference_example_b() -> None:
    built = payload(event("delivered", 1750030075, billable=True))

    assert built == envelope(
        "messages",
        {
            "messaging_product": "whatsapp",
            "metadata": META,
            "statuses": [
                {
                    "id": WAMID,
                    "status": "delivered",
                    "timestamp": "1750030075",
                    "recipient_id": "16505551234",
                    "biz_opaque_callback_data": "invitation:8f3c2a",
                }
            ],
        },
    )


def test_v23_first_of_delivered_or_read_carries_conversation_without_expiry() -> None:
    built = status_object(event("read", 1750030190, billable=True), "v23")

    assert built["conversation"] == {
        "id": "72b14d6bd5407799e66f64d1b338e567",
        "origin": {"type": "marketing"},
    }
    assert built["pricing"]["category"] == "marketing"
    assert "conversation" not in status_object(event("read", 1750030190), "v23")


def test_failed_matches_reference_example_d() -> None:
    failed = event(
        "failed",
        1751142888,
        wamid="wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI0QUQ2MjA4NEYyRkExNjMyREUA",
        callback_data=None,
        error=graph_error(131049),
    )

    for shape in ("v24", "v23"):
        assert status_object(failed, shape) == {
            "id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI0QUQ2MjA4NEYyRkExNjMyREUA",
            "status": "failed",
            "timestamp": "1751142888",
            "recipient_id": "16505551234",
            "errors": [
                {
                    "code": 131049,
                    "title": "This message was not delivered to maintain healthy ecosystem "
                    "engagement.",
                    "message": "This message was not delivered to maintain healthy ecosystem "
                    "engagement.",
                    "error_data": {
                        "details": "In order to maintain a healthy ecosystem engagement, the "
                        "message failed to be delivered."
                    },
                    "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
                }
            ],
        }


def test_user_preferences_matches_reference_example_g() -> None:
    change = user_preferences_change(
        display_phone_number="15550783881",
        phone_number_id="106540352242922",
        wa_id="16505551234",
        value="stop",
        timestamp=1731705721,
    )

    assert payload(change) == envelope(
        "user_preferences",
        {
            "messaging_product": "whatsapp",
            "metadata": META,
            "contacts": [{"wa_id": "16505551234"}],
            "user_preferences": [
                {
                    "wa_id": "16505551234",
                    "detail": "User requested to stop marketing messages",
                    "category": "marketing_messages",
                    "value": "stop",
                    "timestamp": 1731705721,
                }
            ],
        },
    )


def test_inbound_text_matches_reference_example_f() -> None:
    change = inbound_text_change(
        display_phone_number="15550783881",
        phone_number_id="106540352242922",
        wa_id="16505551234",
        profile_name="Sheena Nelson",
        message_id="wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=",
        text="STOP",
        timestamp=1749416383,
    )

    assert payload(change) == envelope(
        "messages",
        {
            "messaging_product": "whatsapp",
            "metadata": META,
            "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}],
            "messages": [
                {
                    "from": "16505551234",
                    "id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=",
                    "timestamp": "1749416383",
                    "type": "text",
                    "text": {"body": "STOP"},
                }
            ],
        },
    )


def test_template_status_update_has_its_own_timed_entry() -> None:
    change = template_status_change(
        template_id=1_000_000_000_000_042,
        name="event_invitation",
        language="en_US",
        category="MARKETING",
        event="PAUSED",
        reason="NONE",
        timestamp=1750000000,
    )

    built = payload(event("sent", 1750030073), change)

    assert built["entry"][1] == {
        "id": WABA,
        "time": 1750000000,
        "changes": [
            {
                "field": "message_template_status_update",
                "value": {
                    "event": "PAUSED",
                    "message_template_id": 1_000_000_000_000_042,
                    "message_template_name": "event_invitation",
                    "message_template_language": "en_US",
                    "reason": "NONE",
                    "message_template_category": "MARKETING",
                },
            }
        ],
    }
    assert built["entry"][0]["changes"][0]["value"]["statuses"][0]["status"] == "sent"


def test_batch_splits_by_phone_number_id_then_change_and_entry_limits() -> None:
    items = [
        event("sent", 1, wamid=f"wamid.{n}", phone_number_id="111" if n < 5 else "222")
        for n in range(7)
    ]

    built = payload(*items, statuses_per_change=2, changes_per_entry=2)

    changes = [change for entry in built["entry"] for change in entry["changes"]]
    assert [len(entry["changes"]) for entry in built["entry"]] == [2, 2]
    assert [
        (c["value"]["metadata"]["phone_number_id"], len(c["value"]["statuses"])) for c in changes
    ] == [("111", 2), ("111", 2), ("111", 1), ("222", 2)]
    order = [s["id"] for c in changes for s in c["value"]["statuses"]]
    assert order == [f"wamid.{n}" for n in range(7)]


def test_encoding_is_compact_with_escaped_unicode_and_signature_is_hmac_of_those_bytes() -> None:
    body = encode({"text": "äöå"})

    assert body == b'{"text":"\\u00e4\\u00f6\\u00e5"}'
    expected = hmac.new(b"test-app-secret", body, hashlib.sha256).hexdigest()
    assert sign(body, "test-app-secret") == f"sha256={expected}"


# --- v26 (Graph API v26.0): people by phone, by user id, in groups ------------------------------

BSUID = "US.13491208655302741918"


def test_v26_delivered_to_a_phone_has_contacts_and_the_2025_pricing_block() -> None:
    delivered = event("delivered", 1780030073, billable=True, user_id=BSUID, profile_name="Pablo")
    value = payload(delivered, shape="v26")["entry"][0]["changes"][0]["value"]
    assert value["contacts"] == [
        {"profile": {"name": "Pablo"}, "wa_id": "16505551234", "user_id": BSUID}
    ]
    (status,) = value["statuses"]
    assert status["recipient_id"] == "16505551234"
    assert "recipient_user_id" not in status  # only when the message was sent to a user id
    assert status["pricing"] == {"pricing_model": "PMP", "type": "regular", "category": "marketing"}
    assert "conversation" not in status


def test_v26_user_id_only_names_nobody_by_phone() -> None:
    read = event("read", 1780030081, user_id=BSUID, recipients="user_id_only")
    value = payload(read, shape="v26")["entry"][0]["changes"][0]["value"]
    assert value["contacts"] == [{"profile": {"name": "WhatsApp User"}, "user_id": BSUID}]
    (status,) = value["statuses"]
    assert status["recipient_user_id"] == BSUID
    assert "16505551234" not in json.dumps(value)


def test_v26_group_statuses_name_the_participant_and_sent_has_no_contacts() -> None:
    common = {"user_id": BSUID, "recipients": "group", "group_id": "Y2FwaV9ncm91cDox"}
    sent = payload(event("sent", 1, **common), shape="v26")["entry"][0]["changes"][0]["value"]
    read = payload(event("read", 2, **common), shape="v26")["entry"][0]["changes"][0]["value"]
    assert "contacts" not in sent
    assert sent["statuses"][0]["pricing"]["category"] == "group_marketing"
    assert read["statuses"][0] == {
        "id": WAMID,
        "status": "read",
        "timestamp": "2",
        "recipient_id": "Y2FwaV9ncm91cDox",
        "recipient_type": "group",
        "recipient_participant_id": "16505551234",
        "recipient_participant_user_id": BSUID,
        "biz_opaque_callback_data": "invitation:8f3c2a",
    }
    assert read["contacts"][0]["user_id"] == BSUID


def test_v26_failed_never_carries_contacts() -> None:
    failed = event("failed", 3, user_id=BSUID, error=graph_error(131026))
    value = payload(failed, shape="v26")["entry"][0]["changes"][0]["value"]
    assert "contacts" not in value
    assert value["statuses"][0]["errors"][0]["href"].startswith("https://developers.facebook.com/")


def test_inbound_text_without_the_phone_has_from_user_id_only() -> None:
    change = inbound_text_change(
        display_phone_number="15550783881",
        phone_number_id="106540352242922",
        wa_id="16505551234",
        profile_name="Sheena",
        message_id="wamid.IN",
        text="STOP",
        timestamp=1780031000,
        user_id=BSUID,
        phone_shared=False,
    )
    assert change.value["contacts"] == [{"profile": {"name": "Sheena"}, "user_id": BSUID}]
    assert change.value["messages"][0] == {
        "from_user_id": BSUID,
        "id": "wamid.IN",
        "timestamp": "1780031000",
        "type": "text",
        "text": {"body": "STOP"},
    }


def test_user_preferences_by_user_id_only() -> None:
    change = user_preferences_change(
        display_phone_number="15550783881",
        phone_number_id="106540352242922",
        wa_id="16505551234",
        value="stop",
        timestamp=1780033000,
        user_id=BSUID,
        phone_shared=False,
    )
    (item,) = change.value["user_preferences"]
    assert "wa_id" not in item
    assert item["user_id"] == BSUID
    assert change.value["contacts"] == [{"user_id": BSUID}]


def test_derived_user_ids_are_stable_per_waba_and_shaped_like_metas() -> None:
    first = derived_user_id("16505551234", "102290129340398")
    assert first == derived_user_id("16505551234", "102290129340398")
    assert first != derived_user_id("16505551234", "999")
    assert first.startswith("US.")
    assert len(first.split(".")[1]) == 20
    assert derived_user_id("5511999990001", "1").startswith("BR.")


def test_an_expired_token_is_190_with_subcode_and_no_prefix() -> None:
    body = error_response_body(graph_error(190), "Az8or2yhqkZfEZ-_4Qn_Bam")
    assert list(body["error"]) == ["message", "type", "code", "error_subcode", "fbtrace_id"]
    assert body["error"]["error_subcode"] == 463
    assert body["error"]["message"].startswith("Error validating access token: Session has expired")

"""The normaliser over the payload corpus in tests/fixtures/webhooks (from Meta's shapes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from common.vocabulary import ReceiptFlag
from webhook_service.normalise import (
    InboundText,
    Normalised,
    Preference,
    Pricing,
    ProviderError,
    Status,
    normalise,
)

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
SENDER = "106540352242922"
WAMID = "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA="


def load(name: str) -> Normalised:
    return normalise((CORPUS / name).read_bytes())


def test_sent_with_conversation_and_pricing() -> None:
    got = load("sent_v23_conversation_pricing.json")
    assert got.flag is None
    assert got.phone_number_ids == (SENDER,)
    assert got.statuses == (
        Status(
            SENDER,
            WAMID,
            "sent",
            1750030073,
            recipient_id="16505551234",
            callback_data="0b5e1f8e-5a56-4c59-9d0e-2f1a3c4b5d6e",
            pricing=Pricing(
                billable=True, category="marketing", pricing_model="PMP", type="regular"
            ),
        ),
    )


def test_a_status_without_a_usable_pricing_block_has_none() -> None:
    body = json.loads((CORPUS / "sent_v23_conversation_pricing.json").read_bytes())
    status = body["entry"][0]["changes"][0]["value"]["statuses"][0]
    for broken in ("not an object", {"type": "regular"}, {"category": 7}):
        status["pricing"] = broken
        assert normalise(json.dumps(body).encode()).statuses[0].pricing is None
    status["pricing"] = {"category": "authentication-international"}
    assert normalise(json.dumps(body).encode()).statuses[0].pricing == Pricing(
        billable=False, category="authentication-international", pricing_model="", type=""
    )


def test_delivered_v24_and_read() -> None:
    delivered = load("delivered_v24.json").statuses
    read = load("read.json").statuses
    assert [(s.status, s.timestamp) for s in delivered + read] == [
        ("delivered", 1750030075),
        ("read", 1750030190),
    ]
    assert read[0].callback_data == ""


def test_failed_status_keeps_code_title_and_details() -> None:
    (status,) = load("failed_with_errors.json").statuses
    assert status.status == "failed"
    assert status.errors == (
        ProviderError(
            131049,
            "This message was not delivered to maintain healthy ecosystem engagement.",
            "In order to maintain a healthy ecosystem engagement, the message failed to be "
            "delivered.",
        ),
    )


def test_a_batch_keeps_every_status_in_order() -> None:
    got = load("batch_statuses_out_of_order.json")
    assert [(s.provider_message_id, s.status) for s in got.statuses] == [
        ("wamid.AAA1", "read"),
        ("wamid.AAA2", "sent"),
        ("wamid.AAA3", "failed"),
    ]
    assert got.statuses[2].errors[0].code == 131026


def test_batches_across_entries_and_changes_and_senders() -> None:
    got = load("batch_across_entries_and_changes.json")
    assert [(s.phone_number_id, s.provider_message_id, s.status) for s in got.statuses] == [
        (SENDER, "wamid.BBB1", "sent"),
        (SENDER, "wamid.BBB2", "delivered"),
        (SENDER, "wamid.BBB1", "delivered"),
        ("106540352242923", "wamid.BBB3", "read"),
    ]
    assert got.statuses[1].timestamp == 1750030301  # an integer timestamp is accepted too
    assert got.phone_number_ids == (SENDER, "106540352242923")


def test_inbound_text_is_kept_and_other_inbound_types_are_not() -> None:
    got = load("inbound_text_stop_and_button.json")
    assert got.flag is None
    assert got.statuses == ()
    assert got.inbound_texts == (
        InboundText(
            SENDER,
            "16505551234",
            "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=",
            "STOP",
            1749416383,
        ),
    )


def test_user_preferences_stop_and_resume() -> None:
    stop = load("user_preferences_stop.json")
    resume = load("user_preferences_resume.json")
    assert stop.preferences == (
        Preference(SENDER, "16505551234", "marketing_messages", "stop", 1731705721),
    )
    assert resume.preferences[0].value == "resume"


def test_the_older_system_preference_shape() -> None:
    got = load("system_user_preference_changed.json")
    assert got.preferences == (
        Preference(SENDER, "16505551234", "marketing_messages", "stop", 1731705721),
    )
    assert got.inbound_texts == ()


@pytest.mark.parametrize(
    "name",
    ["template_status_update.json", "value_level_error.json", "account_update_only.json"],
)
def test_known_shapes_without_updates(name: str) -> None:
    got = load(name)
    assert got.flag is None
    assert got.update_count == 0


def test_value_level_errors_are_read() -> None:
    assert load("value_level_error.json").value_errors[0].code == 130429


def test_unknown_fields_and_statuses_pass_through() -> None:
    got = load("played_and_unknown_fields.json")
    assert [(s.provider_message_id, s.status) for s in got.statuses] == [
        ("wamid.VOICE1", "played"),
        ("wamid.VOICE2", "delivered"),  # case-normalised
    ]


def test_escaped_unicode_is_decoded() -> None:
    got = load("unicode_escaped_inbound.json")
    assert [t.text for t in got.inbound_texts] == [
        "Arr\u00eat \U0001f6d1",
        "Vi ses p\u00e5 br\u00f6llopet! \u2764\ufe0f",
    ]


@pytest.mark.parametrize(
    ("body", "flag"),
    [
        ((CORPUS / "truncated.json").read_bytes(), ReceiptFlag.INVALID_JSON),
        (b"\xff\xfe not utf-8 {", ReceiptFlag.INVALID_JSON),
        (b"hello", ReceiptFlag.INVALID_JSON),
        ((CORPUS / "not_whatsapp_object.json").read_bytes(), ReceiptFlag.UNKNOWN_SHAPE),
        ((CORPUS / "status_without_id.json").read_bytes(), ReceiptFlag.UNKNOWN_SHAPE),
        ((CORPUS / "bad_timestamp.json").read_bytes(), ReceiptFlag.UNKNOWN_SHAPE),
        ((CORPUS / "unsubscribed_field_only.json").read_bytes(), ReceiptFlag.UNKNOWN_SHAPE),
        (b"[]", ReceiptFlag.UNKNOWN_SHAPE),
        (b'{"object":"whatsapp_business_account","entry":[]}', ReceiptFlag.UNKNOWN_SHAPE),
        (b'{"object":"whatsapp_business_account"}', ReceiptFlag.UNKNOWN_SHAPE),
        (b"[" * 100_000, ReceiptFlag.UNKNOWN_SHAPE),
    ],
)
def test_unreadable_bodies_are_flagged_never_raised(body: bytes, flag: ReceiptFlag) -> None:
    got = normalise(body)
    assert got.flag is flag
    assert got.update_count == 0


def test_a_messages_change_without_metadata_is_an_unknown_shape() -> None:
    payload = json.loads((CORPUS / "read.json").read_bytes())
    del payload["entry"][0]["changes"][0]["value"]["metadata"]
    assert normalise(json.dumps(payload).encode()).flag is ReceiptFlag.UNKNOWN_SHAPE


def test_more_updates_than_any_meta_batch_is_an_unknown_shape() -> None:
    items = [
        {"id": f"wamid.{n}", "status": "sent", "timestamp": "1750030073"} for n in range(5_001)
    ]
    value = {"metadata": {"phone_number_id": SENDER}, "statuses": items}
    payload = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": value}]}],
    }
    got = normalise(json.dumps(payload).encode())
    assert got.flag is ReceiptFlag.UNKNOWN_SHAPE
    assert got.update_count == 0

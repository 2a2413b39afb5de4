"""The normaliser over the payload corpus in tests/fixtures/webhooks (from Meta's shapes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from common.vocabulary import ReceiptFlag
from webhook_service.normalise import (
    IGNORED_FIELDS,
    Contact,
    InboundText,
    MessagingLimitUpdate,
    Normalised,
    Note,
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
    ["value_level_error.json", "account_update_only.json"],
)
def test_known_shapes_without_updates_are_ignored_not_failed(name: str) -> None:
    got = load(name)
    assert got.flag is ReceiptFlag.IGNORED
    assert not got.whole_body_flagged
    assert got.update_count == 0
    assert got.unreadable == ()
    assert len(got.ignored) == 1


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


def test_a_messages_change_without_metadata_is_unreadable_as_one_item() -> None:
    payload = json.loads((CORPUS / "read.json").read_bytes())
    del payload["entry"][0]["changes"][0]["value"]["metadata"]
    got = normalise(json.dumps(payload).encode())
    assert got.flag is ReceiptFlag.UNREADABLE_ITEMS
    assert got.update_count == 0
    (note,) = got.unreadable
    assert note.path == "entry[0].changes[0]"
    assert "metadata" in note.reason


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


# --- one unreadable item never costs the others ------------------------------------------------


def test_a_status_without_id_costs_only_itself() -> None:
    got = load("status_without_id.json")
    assert got.flag is ReceiptFlag.UNREADABLE_ITEMS
    assert [s.provider_message_id for s in got.statuses] == ["wamid.OK1"]
    assert got.unreadable == (
        Note(
            "entry[0].changes[0].value.statuses[1]",
            "unreadable",
            "entry[0].changes[0].value.statuses[1].id is missing or not a string",
        ),
    )


def test_a_bad_timestamp_costs_only_its_item() -> None:
    got = load("bad_timestamp.json")
    assert got.flag is ReceiptFlag.UNREADABLE_ITEMS
    assert all("timestamp" in n.reason for n in got.unreadable)


def test_a_mixed_body_applies_every_readable_item_and_names_the_rest() -> None:
    got = load("mixed_read_and_unreadable_items.json")
    assert got.flag is ReceiptFlag.UNREADABLE_ITEMS
    assert not got.whole_body_flagged
    assert [(s.provider_message_id, s.status) for s in got.statuses] == [("wamid.MIX1", "read")]
    assert got.inbound_texts == (
        InboundText(
            SENDER, "", "wamid.MIX5", "STOP", 1780037003, from_user_id="US.13491208655302741918"
        ),
    )
    assert [n.path for n in got.unreadable] == [
        "entry[0].changes[0].value.statuses[1]",
        "entry[0].changes[0].value.statuses[2]",
        "entry[0].changes[1].value.messages[0]",
        "entry[0].changes[2]",
    ]
    assert "neither from nor from_user_id" in got.unreadable[2].reason
    assert "unrecognised change field" in got.unreadable[3].reason
    assert got.problem.startswith("entry[0].changes[0].value.statuses[1]:")
    assert got.problem.endswith("(+3 more)")


def test_an_unrecognised_field_beside_a_known_one_is_an_unreadable_item() -> None:
    body = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "1",
                "changes": [
                    {"field": "account_update", "value": {"event": "VERIFIED_ACCOUNT"}},
                    {"field": "brand_new_2027_field", "value": {}},
                ],
            },
            "not an entry",
        ],
    }
    got = normalise(json.dumps(body).encode())
    assert got.flag is ReceiptFlag.UNREADABLE_ITEMS
    assert [n.path for n in got.unreadable] == ["entry[0].changes[1]", "entry[1]"]
    assert [n.path for n in got.ignored] == ["entry[0].changes[0]"]


# --- people known by phone, by user id, or both ----------------------------------------------


def test_delivered_to_a_phone_carries_the_users_ids_from_contacts() -> None:
    (status,) = load("delivered_with_contacts_and_parent.json").statuses
    assert status.recipient_id == "16505551234"
    assert status.recipient_user_id == ""  # only set when the message was sent to a user id
    assert status.contacts == (
        Contact(
            "16505551234",
            "US.13491208655302741918",
            "US.ENT.11815799212886844830",
            "@pablom",
        ),
    )


def test_a_user_id_only_status_is_read() -> None:
    got = load("delivered_user_id_only.json")
    assert got.flag is None
    (status,) = got.statuses
    assert status.recipient_id == ""
    assert status.recipient_user_id == "US.13491208655302741918"
    assert status.recipient_parent_user_id == "US.ENT.11815799212886844830"
    assert status.contacts == (Contact(user_id="US.13491208655302741918", username="@pablom"),)


@pytest.mark.parametrize(
    "key", ["recipient_parent_user_id", "parent_recipient_user_id", "parent_user_id"]
)
def test_every_spelling_of_the_parent_user_id_is_read(key: str) -> None:
    item = {"id": "wamid.P", "status": "read", "timestamp": "1780030081", key: "US.ENT.1"}
    value = {"metadata": {"phone_number_id": SENDER}, "statuses": [item]}
    body = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": value}]}],
    }
    (status,) = normalise(json.dumps(body).encode()).statuses
    assert status.recipient_parent_user_id == "US.ENT.1"


def test_a_131050_with_only_a_user_id_keeps_it() -> None:
    (status,) = load("failed_131050_user_id_only.json").statuses
    assert (status.status, status.recipient_id, status.recipient_user_id) == (
        "failed",
        "",
        "US.13491208655302741918",
    )
    assert status.errors[0].code == 131050
    assert status.contacts == ()  # Meta sends no contacts with failed statuses


def test_a_user_id_only_inbound_stop_is_read() -> None:
    got = load("inbound_text_user_id_only_stop.json")
    assert got.flag is None
    assert got.inbound_texts == (
        InboundText(
            SENDER,
            "",
            "wamid.HBgLAAA3",
            "STOP",
            1780031000,
            from_user_id="US.13491208655302741918",
            username="@sheena",
        ),
    )


def test_an_inbound_text_with_phone_and_user_ids() -> None:
    (text,) = load("inbound_text_phone_and_user_id.json").inbound_texts
    assert (text.from_wa_id, text.from_user_id, text.from_parent_user_id, text.username) == (
        "16505551234",
        "US.13491208655302741918",
        "US.ENT.11815799212886844830",
        "@sheena",
    )


def test_group_statuses_carry_participants_and_their_contacts() -> None:
    got = load("group_statuses.json")
    assert got.flag is None
    read, delivered = got.statuses
    assert (read.recipient_type, read.recipient_id) == (
        "group",
        "Y2FwaV9ncm91cDoxNzA1NTU1MDEzOToxMjAz",
    )
    assert (read.participant_id, read.participant_user_id) == (
        "5511999990001",
        "BR.1502576394655843",
    )
    assert read.contacts == (Contact("5511999990001", "BR.1502576394655843"),)
    assert (delivered.participant_id, delivered.participant_user_id) == ("", "BR.1502576394655844")
    assert delivered.contacts == (Contact(user_id="BR.1502576394655844"),)


def test_a_user_id_only_marketing_stop_is_read() -> None:
    assert load("user_preferences_user_id_only.json").preferences == (
        Preference(
            SENDER,
            "",
            "marketing_messages",
            "stop",
            1780033000,
            user_id="US.13491208655302741918",
            parent_user_id="US.ENT.11815799212886844830",
        ),
    )


# --- known changes that carry nothing for us are ignored, never unknown_shape ------------------


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("calls_connect.json", "calls:"),
        ("smb_message_echoes.json", "smb_message_echoes:"),
        ("system_user_changed_user_id.json", "user_changed_user_id"),
    ],
)
def test_calls_echoes_and_notifications_are_ignored(name: str, reason: str) -> None:
    got = load(name)
    assert got.flag is ReceiptFlag.IGNORED
    assert got.update_count == 0
    (note,) = got.notes
    assert note.kind == "ignored"
    assert reason in note.reason


def test_other_inbound_types_are_ignored_beside_a_text() -> None:
    got = load("inbound_text_stop_and_button.json")
    assert got.flag is None
    assert [(n.path, n.kind) for n in got.notes] == [
        ("entry[0].changes[0].value.messages[1]", "ignored"),
        ("entry[0].changes[0].value.messages[2]", "ignored"),
    ]


@pytest.mark.parametrize("field", sorted(IGNORED_FIELDS))
def test_every_documented_field_alone_is_ignored(field: str) -> None:
    body = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "time": 1780030000, "changes": [{"field": field, "value": {}}]}],
    }
    got = normalise(json.dumps(body).encode())
    assert got.flag is ReceiptFlag.IGNORED


def test_messaging_limit_announcements_are_read_as_meta_writes_them() -> None:
    capability = load("business_capability_update.json")
    assert capability.flag is None
    assert capability.limit_updates == (
        MessagingLimitUpdate(
            "102290129340398", "business_capability_update", 1750030400, "2000", ""
        ),
    )
    quality = load("phone_number_quality_update.json")
    assert quality.limit_updates == (
        MessagingLimitUpdate(
            "102290129340398",
            "phone_number_quality_update",
            1750034000,
            "TIER_10K",
            "THROUGHPUT_UPGRADE",
        ),
    )
    assert quality.update_count == 1
    onboarding = load("phone_number_quality_update_onboarding.json")  # no limit: nothing for us
    assert (onboarding.flag, onboarding.limit_updates) == (ReceiptFlag.IGNORED, ())

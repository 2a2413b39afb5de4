"""ApplyStatus accepts people known by phone, by Meta user id, or both (issue 11).

The mapping keeps every user id the ingestor forwards, refuses an opt-out signal naming nobody,
and the opt-outs collected from a batch carry the user id (phone-less ones included).
"""

from __future__ import annotations

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from common.generated.invites.v1 import dispatch_pb2 as pb
from common.vocabulary import ApplyOutcome, DnmSource
from dispatch_service.domain.identities import ProviderContact
from dispatch_service.errors import InvalidArgument
from dispatch_service.grpc_api.status_mapping import to_command
from dispatch_service.persistence.status import StatusApplication
from dispatch_service.use_cases.apply_status import collect_opt_outs

AT = Timestamp(seconds=1_780_030_081)
BSUID = "US.13491208655302741918"
PARENT = "US.ENT.11815799212886844830"
FAILED_131050 = [pb.ProviderError(code=131050, title="stopped", details="")]


def _failed(**fields: object) -> pb.StatusUpdate:
    return pb.StatusUpdate(
        phone_number_id="pn",
        provider_message_id="wamid.1",
        status="failed",
        provider_timestamp=AT,
        errors=FAILED_131050,
        **fields,  # type: ignore[arg-type]
    )


def test_status_user_ids_and_contacts_reach_the_domain() -> None:
    request = pb.ApplyStatusRequest(
        statuses=[
            pb.StatusUpdate(
                phone_number_id="pn",
                provider_message_id="wamid.1",
                status="delivered",
                provider_timestamp=AT,
                recipient_id="16505551234",
                recipient_user_id=BSUID,
                recipient_parent_user_id=PARENT,
                contacts=[
                    pb.ProviderContact(wa_id="16505551234", user_id=BSUID, username="@p"),
                    pb.ProviderContact(),  # names nobody: dropped
                ],
            )
        ]
    )
    (status,) = to_command(request).statuses
    assert (status.recipient_id, status.recipient_user_id, status.recipient_parent_user_id) == (
        "16505551234",
        BSUID,
        PARENT,
    )
    assert status.contacts == (ProviderContact("16505551234", BSUID, "", "@p"),)


def test_user_id_only_stop_and_preference_are_accepted() -> None:
    request = pb.ApplyStatusRequest(
        preferences=[
            pb.PreferenceUpdate(
                phone_number_id="pn",
                user_id=BSUID,
                category="marketing_messages",
                value="stop",
                provider_timestamp=AT,
            )
        ],
        inbound_texts=[
            pb.InboundText(
                phone_number_id="pn", from_user_id=BSUID, text="STOP", provider_timestamp=AT
            )
        ],
    )
    command = to_command(request)
    assert command.preferences[0].user_id == BSUID
    assert command.preferences[0].wa_id == ""
    assert command.inbound_texts[0].from_user_id == BSUID
    opt_outs = collect_opt_outs(command, [])
    assert [(o.source, o.phone_e164, o.user_id) for o in opt_outs] == [
        (DnmSource.USER_PREFERENCES_STOP, "", BSUID),
        (DnmSource.INBOUND_STOP_KEYWORD, "", BSUID),
    ]


def test_a_signal_naming_nobody_is_refused() -> None:
    request = pb.ApplyStatusRequest(
        inbound_texts=[pb.InboundText(phone_number_id="pn", text="STOP", provider_timestamp=AT)]
    )
    with pytest.raises(InvalidArgument) as refused:
        to_command(request)
    assert "inbound_texts[0]" in str(refused.value.violations)


def test_a_131050_by_user_id_blocks_the_matched_phone_with_the_user_id() -> None:
    command = to_command(pb.ApplyStatusRequest(statuses=[_failed(recipient_user_id=BSUID)]))
    applied = StatusApplication(ApplyOutcome.APPLIED, message_phone="+16505551234")
    (opt_out,) = collect_opt_outs(command, [applied])
    assert (opt_out.phone_e164, opt_out.user_id) == ("+16505551234", BSUID)


def test_a_131050_by_user_id_for_no_known_message_keeps_the_user_id() -> None:
    command = to_command(pb.ApplyStatusRequest(statuses=[_failed(recipient_user_id=BSUID)]))
    (opt_out,) = collect_opt_outs(command, [StatusApplication(ApplyOutcome.ORPHANED)])
    assert (opt_out.phone_e164, opt_out.user_id) == ("", BSUID)


def test_a_group_131050_blocks_the_participant_never_the_group_id() -> None:
    command = to_command(
        pb.ApplyStatusRequest(
            statuses=[
                _failed(
                    recipient_id="120363025246125486",  # a group id that looks like digits
                    recipient_type="group",
                    participant_id="5511999990001",
                    participant_user_id="BR.1502576394655843",
                )
            ]
        )
    )
    (opt_out,) = collect_opt_outs(command, [StatusApplication(ApplyOutcome.ORPHANED)])
    assert (opt_out.phone_e164, opt_out.user_id) == ("+5511999990001", "BR.1502576394655843")


def test_a_status_names_its_provider_and_an_unknown_one_is_refused() -> None:
    # Empty is Meta (ingestors older than the field); anything else must be a provider we know.
    statuses = [_failed(), _failed(provider="twilio"), _failed(provider="telegram")]
    with pytest.raises(InvalidArgument) as refused:
        to_command(pb.ApplyStatusRequest(statuses=statuses))
    assert [v.field for v in refused.value.violations] == ["statuses[2].provider"]
    command = to_command(pb.ApplyStatusRequest(statuses=statuses[:2]))
    assert [s.provider.value for s in command.statuses] == ["meta", "twilio"]

"""Reads a new user missed (issue 17): every page of a precheck, the import runs of a workspace,
and removed Do-Not-Message entries, through the real servicers."""

from __future__ import annotations

import grpc

from common.generated.invites.v1 import admin_pb2 as pb
from common.generated.invites.v1 import dispatch_pb2 as dpb
from common.generated.invites.v1 import types_pb2 as types
from tests.integration.admin_support import import_csv, new_workspace, rpc_error
from tests.integration.conftest import ApiClient
from tests.integration.dispatch_support import seed_world

PHONES = [f"+1415555{n:04d}" for n in range(7)]


async def test_every_recipient_of_a_precheck_can_be_read_page_by_page(
    grpc_api: ApiClient, database_url: str
) -> None:
    world = seed_world(database_url, [*PHONES, None])
    md = grpc_api.md(str(world.admin))
    precheck = await grpc_api.dispatch.PrecheckSend(
        dpb.PrecheckSendRequest(
            event_id=str(world.event_id), template_id=str(world.template_id), page_size=3
        ),
        metadata=md,
    )
    assert len(precheck.recipients) == 3
    seen: list[dpb.PrecheckRecipient] = []
    request = dpb.ListPrecheckRecipientsRequest(precheck_id=precheck.precheck_id, page_size=3)
    for _ in range(10):
        page = await grpc_api.dispatch.ListPrecheckRecipients(
            request, metadata=grpc_api.md(str(world.viewer))
        )
        seen += page.recipients
        if not page.next_page_token:
            break
        request.page_token = page.next_page_token
    assert len(seen) == 8
    assert list(seen[:3]) == list(precheck.recipients)  # the same order as PrecheckSend's page
    assert sorted(r.phone_e164 for r in seen if r.phone_e164) == PHONES
    blocked = await grpc_api.dispatch.ListPrecheckRecipients(
        dpb.ListPrecheckRecipientsRequest(precheck_id=precheck.precheck_id, eligible=False),
        metadata=md,
    )
    assert [r.reason for r in blocked.recipients] == [types.REJECTION_REASON_NO_PHONE]

    other = seed_world(database_url, PHONES[:1])
    error = await rpc_error(
        grpc_api.dispatch.ListPrecheckRecipients(
            dpb.ListPrecheckRecipientsRequest(precheck_id=precheck.precheck_id),
            metadata=grpc_api.md(str(other.parent_admin)),
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    assert "precheck" in (error.details() or "")


async def test_import_runs_are_listed_newest_first_and_per_workspace(grpc_api: ApiClient) -> None:
    created = await new_workspace(grpc_api)
    admin = created.admin.member_id
    first = await import_csv(grpc_api, admin, "name,phone\nAnn,+12025550101\n", key="one")
    second = await import_csv(grpc_api, admin, "name;phone\nBob;+12025550102\n", key="two")
    ids = []
    token = ""
    for _ in range(5):
        page = await grpc_api.admin.ListImportRuns(
            pb.ListImportRunsRequest(page_size=1, page_token=token), metadata=grpc_api.md(admin)
        )
        ids += [r.import_run_id for r in page.import_runs]
        token = page.next_page_token
        if not token:
            break
    assert ids == [second.import_run.import_run_id, first.import_run.import_run_id]

    elsewhere = await new_workspace(grpc_api)
    theirs = await grpc_api.admin.ListImportRuns(
        pb.ListImportRunsRequest(), metadata=grpc_api.md(elsewhere.admin.member_id)
    )
    assert list(theirs.import_runs) == []


async def test_removed_do_not_message_entries_can_be_seen(grpc_api: ApiClient) -> None:
    created = await new_workspace(grpc_api)
    md = grpc_api.md(created.admin.member_id)
    await grpc_api.admin.AddDoNotMessage(
        pb.AddDoNotMessageRequest(phone="+12025550199", reason="asked"), metadata=md
    )
    await grpc_api.admin.AddDoNotMessage(
        pb.AddDoNotMessageRequest(phone="+12025550198", reason="asked too"), metadata=md
    )
    await grpc_api.admin.RemoveDoNotMessage(
        pb.RemoveDoNotMessageRequest(phone="+12025550199", reason="consent given again"),
        metadata=md,
    )
    active = await grpc_api.admin.ListDoNotMessage(pb.ListDoNotMessageRequest(), metadata=md)
    assert [e.phone_e164 for e in active.entries] == ["+12025550198"]
    history = await grpc_api.admin.ListDoNotMessage(
        pb.ListDoNotMessageRequest(include_removed=True), metadata=md
    )
    by_phone = {e.phone_e164: e for e in history.entries}
    assert set(by_phone) == {"+12025550199", "+12025550198"}
    removed = by_phone["+12025550199"]
    assert removed.removal_reason == "consent given again"
    assert removed.removed_by == created.admin.member_id
    assert removed.HasField("removed_at")
    assert not by_phone["+12025550198"].HasField("removed_at")

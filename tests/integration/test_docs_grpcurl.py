"""Every grpcurl line of README.md and docs/ runs, as written, with a real grpcurl against the real
server (in-process, with reflection and health): the docs' requests parse, name real methods and
fields, and get answers. Placeholders (EVENT, RUN, ...) are replaced by ids seeded here."""

from __future__ import annotations

import pytest

from common.generated.invites.v1 import admin_pb2
from common.generated.invites.v1 import dispatch_pb2 as pb
from tests.grpcurl_support import ROOT, Documented, documented_grpcurl, run_documented
from tests.integration.conftest import BACKEND_TOKEN, ApiClient
from tests.integration.dispatch_support import seed_world
from tests.integration.factories import Seeder

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Calls the docs show although the seeded state answers them with a refusal; the line itself is
# right (grpcurl parsed it and the server answered with this status).
EXPECTED_REFUSALS = {
    "invites.v1.DispatchService/ResumeRun": "FailedPrecondition",  # the run is not paused
    "invites.v1.DispatchService/CancelRun": "FailedPrecondition",  # the run is already final
    # guests.md and operations.md both register the demo template: the second one finds it
    "invites.v1.AdminService/RegisterTemplate": "AlreadyExists",
    # the test server has no Meta (or sandbox) to read templates from: META_NOT_CONFIGURED
    "invites.v1.AdminService/SyncTemplates": "FailedPrecondition",
    # a follow never ends by itself: the documented line stops it with -max-time
    "invites.v1.DispatchService/WatchChanges": "DeadlineExceeded",
}
GRPCURL_STATUS_EXIT = 64  # grpcurl exits 64 + the status code when the server refused the call


def documented() -> list[Documented]:
    return [command for doc in DOCS for command in documented_grpcurl(doc)]


def test_the_docs_have_grpcurl_lines_and_every_call_shows_defaults() -> None:
    commands = documented()
    assert len(commands) > 40
    calls = [c for c in commands if "/" in c.method]
    missing = [c.command for c in calls if "-emit-defaults" not in c.command]
    assert missing == [], "grpcurl hides zero values and false without -emit-defaults"


async def test_every_documented_grpcurl_line_runs(grpc_api: ApiClient, database_url: str) -> None:
    world = seed_world(database_url, ["+14155550100", "+14155550101", None])
    with Seeder(database_url) as seed:
        removable = seed.member(world.workspace_id, "viewer")
    parent = str(world.parent_admin)
    md = grpc_api.md(parent)
    precheck = await grpc_api.dispatch.PrecheckSend(
        pb.PrecheckSendRequest(event_id=str(world.event_id), template_id=str(world.template_id)),
        metadata=md,
    )
    started = await grpc_api.dispatch.StartRun(
        pb.StartRunRequest(precheck_id=precheck.precheck_id, idempotency_key="docs-run"),
        metadata=md,
    )
    await grpc_api.dispatch.CancelRun(pb.CancelRunRequest(run_id=started.run.run_id), metadata=md)
    imported = await grpc_api.admin.UpsertGuests(
        admin_pb2.UpsertGuestsRequest(
            idempotency_key="docs-import",
            source=admin_pb2.IMPORT_SOURCE_MANUAL,
            rows=[admin_pb2.GuestRow(name="Kim Lee", phone="+1 202 555 0111")],
        ),
        metadata=md,
    )
    units = await grpc_api.admin.ListGuestUnits(admin_pb2.ListGuestUnitsRequest(), metadata=md)
    fresh = await grpc_api.dispatch.PrecheckSend(
        pb.PrecheckSendRequest(event_id=str(world.event_id), template_id=str(world.template_id)),
        metadata=md,
    )
    another = await grpc_api.dispatch.PrecheckSend(
        pb.PrecheckSendRequest(event_id=str(world.event_id), template_id=str(world.template_id)),
        metadata=md,
    )
    placeholders = {
        "EVENT": str(world.event_id),
        "TEMPLATE": str(world.template_id),
        "PRECHECK": fresh.precheck_id,
        "OTHER_PRECHECK": another.precheck_id,
        "RUN": started.run.run_id,
        "MEMBER": str(removable),
        "UNIT": units.guest_units[0].guest_unit_id,
        "IMPORT": imported.import_run.import_run_id,
    }
    environment = {
        "TOKEN": BACKEND_TOKEN,
        "ACTOR": parent,
        "INVITES_TOKEN": BACKEND_TOKEN,
        "INVITES_ACTOR": parent,
        "HOME": str(ROOT),
    }
    failures = []
    for command in documented():
        ran = await run_documented(command, grpc_api.target, environment, placeholders)
        expected = EXPECTED_REFUSALS.get(command.method)
        refused_as_expected = (
            expected is not None and ran.code > GRPCURL_STATUS_EXIT and expected in ran.stderr
        )
        if ran.code != 0 and not refused_as_expected:
            failures.append(f"{command.doc}: {command.command}\n  -> {ran.code} {ran.stderr}")
    assert failures == [], "\n".join(failures)


@pytest.mark.parametrize("method", ["grpc.health.v1.Health/List"])
async def test_health_list_answers_every_service(grpc_api: ApiClient, method: str) -> None:
    command = Documented("test", (), f"grpcurl -plaintext -emit-defaults 127.0.0.1:50051 {method}")
    ran = await run_documented(command, grpc_api.target, {}, {})
    assert ran.code == 0, ran.stderr
    assert '"invites.v1.DispatchService"' in ran.stdout
    assert '"invites.v1.AdminService"' in ran.stdout

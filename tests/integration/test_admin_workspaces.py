"""Workspaces and memberships through the real AdminService: roles from the database, audits."""

from __future__ import annotations

import uuid

import grpc

from common.generated.invites.v1 import admin_pb2 as pb
from common.generated.invites.v1 import types_pb2
from tests.integration.admin_support import (
    ADMIN,
    PARENT_ADMIN,
    VIEWER,
    audit_actions,
    field_violations,
    new_member,
    new_workspace,
    rows,
    rpc_error,
    scalar,
)
from tests.integration.conftest import PHONE_NUMBER_ID, ApiClient


async def test_create_workspace_needs_no_actor_and_makes_a_parent_admin(
    grpc_api: ApiClient,
) -> None:
    reply = await grpc_api.admin.CreateWorkspace(
        pb.CreateWorkspaceRequest(
            name=" Smith wedding ", default_region="gb", admin_display_name="Sam"
        ),
        metadata=grpc_api.md(),
    )
    workspace, admin = reply.workspace, reply.admin
    assert (workspace.name, workspace.default_region) == ("Smith wedding", "GB")
    assert workspace.sender_phone_number_id == PHONE_NUMBER_ID  # the service's default
    assert (admin.role, admin.display_name) == (types_pb2.ROLE_PARENT_ADMIN, "Sam")
    assert admin.workspace_id == workspace.workspace_id
    stored = await rows(
        grpc_api.sessions,
        "SELECT role, active FROM membership WHERE id = :id",
        id=uuid.UUID(admin.member_id),
    )
    assert [tuple(r) for r in stored] == [("parent_admin", True)]
    assert await audit_actions(grpc_api.sessions, workspace.workspace_id) == ["workspace.create"]


async def test_explicit_sender_number_is_kept(grpc_api: ApiClient) -> None:
    reply = await grpc_api.admin.CreateWorkspace(
        pb.CreateWorkspaceRequest(
            name="W", default_region="US", admin_display_name="A", sender_phone_number_id="42"
        ),
        metadata=grpc_api.md(),
    )
    assert reply.workspace.sender_phone_number_id == "42"


async def test_bad_workspace_requests_name_every_field_and_create_nothing(
    grpc_api: ApiClient,
) -> None:
    error = await rpc_error(
        grpc_api.admin.CreateWorkspace(
            pb.CreateWorkspaceRequest(
                name="", default_region="XX", sender_phone_number_id="abc", admin_display_name=""
            ),
            metadata=grpc_api.md(),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    fields = {v.split(":")[0] for v in field_violations(error)}
    assert fields == {"name", "default_region", "sender_phone_number_id", "admin_display_name"}
    assert await scalar(grpc_api.sessions, "SELECT count(*) FROM workspace") == 0


async def test_wrong_token_is_unauthenticated(grpc_api: ApiClient) -> None:
    await rpc_error(
        grpc_api.admin.CreateWorkspace(
            pb.CreateWorkspaceRequest(name="W", default_region="US", admin_display_name="A"),
            metadata=grpc_api.md(token="nope"),
        ),
        grpc.StatusCode.UNAUTHENTICATED,
    )


async def test_calls_without_an_actor_or_with_an_unknown_one_are_unauthenticated(
    grpc_api: ApiClient,
) -> None:
    for metadata in (grpc_api.md(), grpc_api.md(str(uuid.uuid4())), grpc_api.md("not-an-id")):
        await rpc_error(
            grpc_api.admin.ListMembers(pb.ListMembersRequest(), metadata=metadata),
            grpc.StatusCode.UNAUTHENTICATED,
        )


async def test_parent_admin_manages_members_and_every_change_is_audited(
    grpc_api: ApiClient,
) -> None:
    created = await new_workspace(grpc_api)
    boss = created.admin.member_id
    helper = await new_member(grpc_api, boss, ADMIN, "Helper")
    viewer = await new_member(grpc_api, boss, VIEWER, "Viewer")
    listed = await grpc_api.admin.ListMembers(pb.ListMembersRequest(), metadata=grpc_api.md(viewer))
    assert [(x.display_name, x.role) for x in listed.members] == [
        ("Org", PARENT_ADMIN),
        ("Helper", ADMIN),
        ("Viewer", VIEWER),
    ]
    await grpc_api.admin.RemoveMember(
        pb.RemoveMemberRequest(member_id=helper), metadata=grpc_api.md(boss)
    )
    # A removed member is no actor any more: roles are read from the database on every call.
    await rpc_error(
        grpc_api.admin.ListMembers(pb.ListMembersRequest(), metadata=grpc_api.md(helper)),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    removed = await rows(
        grpc_api.sessions,
        "SELECT active, removed_at IS NOT NULL AS stamped FROM membership WHERE id = :id",
        id=uuid.UUID(helper),
    )
    assert [tuple(r) for r in removed] == [(False, True)]
    assert await audit_actions(grpc_api.sessions, created.workspace.workspace_id) == [
        "workspace.create",
        "member.add",
        "member.add",
        "member.remove",
    ]


async def test_only_parent_admins_change_memberships(grpc_api: ApiClient) -> None:
    created = await new_workspace(grpc_api)
    boss = created.admin.member_id
    admin = await new_member(grpc_api, boss, ADMIN)
    viewer = await new_member(grpc_api, boss, VIEWER)
    for actor in (admin, viewer):
        await rpc_error(
            grpc_api.admin.AddMember(
                pb.AddMemberRequest(display_name="X", role=ADMIN), metadata=grpc_api.md(actor)
            ),
            grpc.StatusCode.PERMISSION_DENIED,
        )
        await rpc_error(
            grpc_api.admin.RemoveMember(
                pb.RemoveMemberRequest(member_id=boss), metadata=grpc_api.md(actor)
            ),
            grpc.StatusCode.PERMISSION_DENIED,
        )
    count = "SELECT count(*) FROM membership WHERE active"
    assert await scalar(grpc_api.sessions, count) == 3


async def test_member_requests_are_validated(grpc_api: ApiClient) -> None:
    boss = (await new_workspace(grpc_api)).admin.member_id
    error = await rpc_error(
        grpc_api.admin.AddMember(pb.AddMemberRequest(display_name=""), metadata=grpc_api.md(boss)),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert {v.split(":")[0] for v in field_violations(error)} == {"display_name", "role"}
    await rpc_error(
        grpc_api.admin.RemoveMember(
            pb.RemoveMemberRequest(member_id="nope"), metadata=grpc_api.md(boss)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )


async def test_members_of_another_workspace_are_not_found(grpc_api: ApiClient) -> None:
    mine = (await new_workspace(grpc_api)).admin.member_id
    theirs = await new_workspace(grpc_api, name="Other")
    other_helper = await new_member(grpc_api, theirs.admin.member_id, ADMIN)
    await rpc_error(
        grpc_api.admin.RemoveMember(
            pb.RemoveMemberRequest(member_id=other_helper), metadata=grpc_api.md(mine)
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    listed = await grpc_api.admin.ListMembers(pb.ListMembersRequest(), metadata=grpc_api.md(mine))
    assert [x.member_id for x in listed.members] == [mine]


async def test_the_last_parent_admin_cannot_be_removed(grpc_api: ApiClient) -> None:
    boss = (await new_workspace(grpc_api)).admin.member_id
    await rpc_error(
        grpc_api.admin.RemoveMember(
            pb.RemoveMemberRequest(member_id=boss), metadata=grpc_api.md(boss)
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    second = await new_member(grpc_api, boss, PARENT_ADMIN, "Second")
    await grpc_api.admin.RemoveMember(
        pb.RemoveMemberRequest(member_id=boss), metadata=grpc_api.md(second)
    )
    await rpc_error(
        grpc_api.admin.RemoveMember(
            pb.RemoveMemberRequest(member_id=boss), metadata=grpc_api.md(second)
        ),
        grpc.StatusCode.NOT_FOUND,  # already removed
    )

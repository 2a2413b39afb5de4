"""Console sign-in keys through the real AdminService: issued for the acting member, stored only
as a SHA-256 digest, resolved to the membership as stored now, refused once it is removed."""

from __future__ import annotations

import hashlib

import grpc

from common.generated.invites.v1 import admin_pb2 as pb
from common.generated.invites.v1 import types_pb2 as types
from tests.integration.admin_support import new_member, new_workspace, rows, rpc_error
from tests.integration.conftest import ApiClient


async def test_a_key_signs_in_as_its_member_and_only_its_digest_is_stored(
    grpc_api: ApiClient,
) -> None:
    created = await new_workspace(grpc_api)
    parent = created.admin.member_id
    viewer = await new_member(grpc_api, parent, types.ROLE_VIEWER)
    issued = await grpc_api.admin.IssueConsoleKey(
        pb.IssueConsoleKeyRequest(), metadata=grpc_api.md(viewer)
    )
    key = issued.console_key
    assert key.startswith("ick_")
    assert len(key) > 40
    assert issued.member.member_id == viewer

    resolved = await grpc_api.admin.ResolveConsoleKey(
        pb.ResolveConsoleKeyRequest(console_key=key), metadata=grpc_api.md()
    )
    assert resolved.member.member_id == viewer
    assert resolved.member.role == types.ROLE_VIEWER
    assert resolved.workspace.workspace_id == created.workspace.workspace_id

    stored = await rows(grpc_api.sessions, "SELECT key_sha256 FROM console_key")
    assert [bytes(r[0]) for r in stored] == [hashlib.sha256(key.encode()).digest()]
    dumped = await rows(grpc_api.sessions, "SELECT row_to_json(console_key)::text FROM console_key")
    assert key not in dumped[0][0]

    # a removed member's keys stop working at once
    await grpc_api.admin.RemoveMember(
        pb.RemoveMemberRequest(member_id=viewer), metadata=grpc_api.md(parent)
    )
    await rpc_error(
        grpc_api.admin.ResolveConsoleKey(
            pb.ResolveConsoleKeyRequest(console_key=key), metadata=grpc_api.md()
        ),
        grpc.StatusCode.UNAUTHENTICATED,
    )


async def test_unknown_keys_and_missing_credentials_are_refused(grpc_api: ApiClient) -> None:
    await rpc_error(
        grpc_api.admin.ResolveConsoleKey(
            pb.ResolveConsoleKeyRequest(console_key="ick_guessed"), metadata=grpc_api.md()
        ),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    await rpc_error(
        grpc_api.admin.ResolveConsoleKey(
            pb.ResolveConsoleKeyRequest(console_key="ick_guessed"),
            metadata=grpc_api.md(token="not-a-backend-token"),
        ),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    await rpc_error(
        grpc_api.admin.IssueConsoleKey(pb.IssueConsoleKeyRequest(), metadata=grpc_api.md()),
        grpc.StatusCode.UNAUTHENTICATED,
    )

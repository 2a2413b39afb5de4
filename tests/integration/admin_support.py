"""Helpers for AdminService tests over real channels (see conftest.grpc_api)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc import aio
from grpc_status import rpc_status
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.generated.invites.v1 import admin_pb2 as pb
from common.generated.invites.v1 import types_pb2
from tests.integration.conftest import ApiClient


async def new_workspace(
    api: ApiClient, region: str = "US", name: str = "Wedding"
) -> pb.CreateWorkspaceResponse:
    """A workspace and its first parent_admin."""
    reply: pb.CreateWorkspaceResponse = await api.admin.CreateWorkspace(
        pb.CreateWorkspaceRequest(name=name, default_region=region, admin_display_name="Org"),
        metadata=api.md(),
    )
    return reply


async def new_member(
    api: ApiClient, parent_admin: str, role: types_pb2.Role.ValueType, name: str = "Helper"
) -> str:
    """A member with `role` added by `parent_admin`; returns its member id."""
    reply = await api.admin.AddMember(
        pb.AddMemberRequest(display_name=name, role=role), metadata=api.md(parent_admin)
    )
    return str(reply.member.member_id)


VIEWER = types_pb2.ROLE_VIEWER
ADMIN = types_pb2.ROLE_ADMIN
PARENT_ADMIN = types_pb2.ROLE_PARENT_ADMIN


async def _requests(
    data: bytes, key: str, chunk: int, source: pb.ImportSource.ValueType
) -> AsyncIterator[pb.ImportGuestsRequest]:
    yield pb.ImportGuestsRequest(
        header=pb.ImportHeader(idempotency_key=key, source=source, file_name="guests.csv")
    )
    for start in range(0, len(data), chunk):
        yield pb.ImportGuestsRequest(chunk=data[start : start + chunk])


async def import_csv(
    api: ApiClient,
    actor: str,
    data: str | bytes,
    key: str | None = None,
    chunk: int = 7,
    source: pb.ImportSource.ValueType = pb.IMPORT_SOURCE_CSV,
) -> pb.ImportGuestsResponse:
    """Stream `data` to ImportGuests in small chunks (so chunk boundaries get exercised)."""
    raw = data.encode() if isinstance(data, str) else data
    reply: pb.ImportGuestsResponse = await api.admin.ImportGuests(
        _requests(raw, key or uuid.uuid4().hex, chunk, source), metadata=api.md(actor)
    )
    return reply


async def rpc_error(call: Awaitable[Any], code: grpc.StatusCode) -> aio.AioRpcError:
    """Await a call that must fail with `code`; returns the error."""
    with pytest.raises(aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == code, caught.value.details()
    return caught.value


def field_violations(error: aio.AioRpcError) -> list[str]:
    """The BadRequest field violations of an error, as "field: description"."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    found: list[str] = []
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found += [f"{v.field}: {v.description}" for v in bad.field_violations]
    return found


async def scalar(sessions: async_sessionmaker[AsyncSession], sql: str, **params: Any) -> Any:
    """One value from a SQL query on the test database."""
    async with sessions() as session:
        return (await session.execute(text(sql), params)).scalar()


async def rows(sessions: async_sessionmaker[AsyncSession], sql: str, **params: Any) -> list[Any]:
    """All rows of a SQL query on the test database."""
    async with sessions() as session:
        return list((await session.execute(text(sql), params)).all())


async def audit_actions(sessions: async_sessionmaker[AsyncSession], workspace_id: str) -> list[str]:
    """The workspace's audit actions, oldest first."""
    found = await rows(
        sessions,
        "SELECT action FROM audit_entry WHERE workspace_id = :ws ORDER BY id",
        ws=uuid.UUID(workspace_id),
    )
    return [r.action for r in found]

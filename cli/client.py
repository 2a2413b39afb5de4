"""The CLI's gRPC client: connection settings, one channel, deadlines, and error decoding.

Connection settings come from flags or the environment: INVITES_TARGET (default
127.0.0.1:50051), INVITES_TOKEN (a backend bearer token), INVITES_ACTOR (a membership id),
INVITES_TLS_CA_FILE (PEM CA bundle: use TLS). Commands never see grpc errors: `call` turns them
into `ServerError`.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from google.rpc import error_details_pb2
from grpc import aio
from grpc_status import rpc_status

from common.generated.invites.v1 import admin_pb2_grpc, dispatch_pb2_grpc

DEFAULT_TARGET = "127.0.0.1:50051"
DEFAULT_DEADLINE_SECONDS = 30.0

Reply = TypeVar("Reply")


class ConfigurationError(Exception):
    """A connection setting is missing or wrong; the message names the variable (exit 2)."""


class ServerError(Exception):
    """The server refused or failed a call: its status code name, message and field violations."""

    def __init__(self, code: str, message: str, violations: list[str]) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.violations = violations


def readable_file_or_empty(path: str) -> str:
    """An argparse type: `path` unchanged when empty or a readable file, else a usage error."""
    if path and not os.access(path, os.R_OK):
        raise argparse.ArgumentTypeError(f"cannot read {path!r}")
    return path


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """--target, --token, --actor and --tls-ca-file, defaulting to the environment."""
    group = parser.add_argument_group("connection (flags override the environment)")
    group.add_argument("--target", default=os.environ.get("INVITES_TARGET", DEFAULT_TARGET))
    group.add_argument("--token", default=os.environ.get("INVITES_TOKEN", ""))
    group.add_argument("--actor", default=os.environ.get("INVITES_ACTOR", ""))
    # Checked while parsing (argparse applies `type` to the environment default too), so a
    # wrong path is a usage error rather than a traceback when the channel opens.
    group.add_argument(
        "--tls-ca-file",
        type=readable_file_or_empty,
        default=os.environ.get("INVITES_TLS_CA_FILE", ""),
    )


def check_credentials(args: argparse.Namespace) -> None:
    """The token is always required, the actor unless the command runs without one (`bootstrap`
    sets `needs_actor=False`): a missing one is a ConfigurationError naming its variable, not a
    round trip ending in the server's UNAUTHENTICATED."""
    if not args.token:
        raise ConfigurationError("INVITES_TOKEN: is required (a backend bearer token; or --token)")
    if getattr(args, "needs_actor", True) and not args.actor:
        raise ConfigurationError("INVITES_ACTOR: is required (your membership id; or --actor)")


@dataclass
class Client:
    """One channel to the dispatch service with the caller's credentials."""

    channel: aio.Channel
    token: str
    actor: str

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Client:
        """Open a channel from the parsed connection arguments (checked first)."""
        check_credentials(args)
        if args.tls_ca_file:
            with open(args.tls_ca_file, "rb") as ca:
                channel = aio.secure_channel(args.target, grpc.ssl_channel_credentials(ca.read()))
        else:
            channel = aio.insecure_channel(args.target)
        return cls(channel=channel, token=args.token, actor=args.actor)

    @classmethod
    def connect(cls, target: str, token: str, actor: str = "") -> Client:
        """An insecure channel to `target` (local use: `invites up`, the demo, tests)."""
        return cls(channel=aio.insecure_channel(target), token=token, actor=actor)

    @property
    def dispatch(self) -> dispatch_pb2_grpc.DispatchServiceAsyncStub:
        """The DispatchService stub."""
        return dispatch_pb2_grpc.DispatchServiceStub(self.channel)

    @property
    def admin(self) -> admin_pb2_grpc.AdminServiceAsyncStub:
        """The AdminService stub."""
        return admin_pb2_grpc.AdminServiceStub(self.channel)

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """Credential metadata for every call."""
        items = [("authorization", f"Bearer {self.token}")]
        if self.actor:
            items.append(("x-actor-id", self.actor))
        return tuple(items)

    async def call(
        self,
        method: Callable[..., Awaitable[Reply]],
        request: Any,
        deadline: float = DEFAULT_DEADLINE_SECONDS,
    ) -> Reply:
        """A unary call with a deadline; gRPC errors become ServerError."""
        try:
            return await method(request, metadata=self.metadata(), timeout=deadline)
        except aio.AioRpcError as error:
            raise decode_error(error) from None

    async def stream(
        self, method: Callable[..., Any], request: Any, deadline: float | None = None
    ) -> AsyncIterator[Any]:
        """A server-streaming call; gRPC errors become ServerError."""
        try:
            async for item in method(request, metadata=self.metadata(), timeout=deadline):
                yield item
        except aio.AioRpcError as error:
            raise decode_error(error) from None

    async def close(self) -> None:
        """Close the channel."""
        await self.channel.close(None)


def decode_error(error: aio.AioRpcError) -> ServerError:
    """The one place gRPC errors are decoded (status code, message, BadRequest violations)."""
    violations: list[str] = []
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad_request = error_details_pb2.BadRequest()
                detail.Unpack(bad_request)
                violations += [f"{v.field}: {v.description}" for v in bad_request.field_violations]
    return ServerError(error.code().name, error.details() or "", violations)

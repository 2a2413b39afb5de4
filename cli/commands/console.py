"""`invites console` (run the operator console) and `invites console-key` (issue a sign-in key).

invites console-key                  # a key for INVITES_ACTOR's membership, shown once
invites console                      # serve on CONSOLE_LISTEN (default 127.0.0.1:8070)
"""

from __future__ import annotations

import argparse
from typing import Any

from cli.client import Client
from cli.commands.admin_support import add_command, console
from cli.output import enum_name, print_json
from common.generated.invites.v1 import admin_pb2 as pb
from common.generated.invites.v1 import types_pb2

DEFAULT_CONSOLE_LISTEN = "127.0.0.1:8070"


def register(commands: Any) -> None:
    """Add `console` and `console-key`."""
    serve = commands.add_parser(
        "console",
        help="run the operator console (a web page; CONSOLE_LISTEN, default 127.0.0.1:8070)",
    )
    serve.set_defaults(handler=run_console)
    key = add_command(
        commands,
        "console-key",
        "issue a console sign-in key for your membership (INVITES_ACTOR); shown once",
        run_console_key,
    )
    key.add_argument("--json", action="store_true", help="print JSON")


def run_console(args: argparse.Namespace) -> int:
    """Serve the console until Ctrl-C (settings from the environment, like the services)."""
    from console_service.__main__ import main as console_main

    console_main()
    return 0


async def issue_console_key(client: Client) -> pb.IssueConsoleKeyResponse:
    """IssueConsoleKey for the client's actor."""
    return await client.call(client.admin.IssueConsoleKey, pb.IssueConsoleKeyRequest())


async def run_console_key(client: Client, args: argparse.Namespace) -> int:
    """`invites console-key`."""
    reply = await issue_console_key(client)
    if args.json:
        print_json(reply)
        return 0
    role = enum_name(types_pb2.Role, reply.member.role)
    console.print(f"console key for {reply.member.display_name} ({role}), shown once:")
    console.print(f"  {reply.console_key}", markup=False)
    return 0


def print_console_access(listen: str, target: str, token: str, actor_id: str | None) -> None:
    """`invites up`'s lines about the console: its address and, for the demo's parent admin, a
    fresh sign-in key (a failure to issue one is said, never fatal)."""
    import asyncio

    from cli.client import ServerError

    console.print(f"\noperator console (web)  http://{listen}/")
    if not actor_id:
        console.print("  sign in with a key from: .venv/bin/invites console-key")
        return

    async def issue() -> str:
        client = Client.connect(target, token, actor_id)
        try:
            return (await issue_console_key(client)).console_key
        finally:
            await client.close()

    try:
        key = asyncio.run(issue())
    except ServerError as error:
        console.print(f"  could not issue a console key: {error}")
        return
    console.print("  sign in with this key (the demo's parent admin; shown once;")
    console.print("  more: .venv/bin/invites console-key):")
    console.print(f"  {key}", markup=False)

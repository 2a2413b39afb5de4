"""The `invites` command: operators' entry point to the stack and to the gRPC API.

Exit codes: 0 success; 1 a local stack command (up, migrate) failed; 2 usage or configuration
error; 3 the server refused or failed the call; 4 a run ended with failures; 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from cli.client import ServerError

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_SERVER = 3
EXIT_RUN_FAILURES = 4
EXIT_INTERRUPTED = 130

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every command module's subcommands."""
    from cli.commands import (
        changes,
        demo,
        dnm,
        events,
        guests,
        runs,
        stack,
        templates,
        workspace,
    )

    parser = argparse.ArgumentParser(prog="invites", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (stack, workspace, guests, events, templates, dnm, runs, changes, demo):
        module.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse, dispatch to the chosen command and map failures to exit codes."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["sandbox"]:
        # The sandbox owns its flags (argparse cannot pass options through a subcommand).
        from sandbox.main import main as sandbox_main

        return sandbox_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except ServerError as error:
        print(f"error: {error.code}: {error.message}", file=sys.stderr)
        for violation in error.violations:
            print(f"  {violation}", file=sys.stderr)
        return EXIT_SERVER
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())

"""The `invites` command: operators' entry point to the stack and to the gRPC API.

Exit codes: 0 success; 1 a local stack command (up, migrate, console) failed; 2 usage or
configuration error; 3 the server refused or failed the call; 4 a watched run ended with failures
or is paused; 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from cli.client import ConfigurationError, ServerError
from cli.exit_codes import EXIT_INTERRUPTED, EXIT_OK, EXIT_RUN_FAILURES, EXIT_SERVER, EXIT_USAGE

__all__ = ["EXIT_INTERRUPTED", "EXIT_OK", "EXIT_RUN_FAILURES", "EXIT_SERVER", "EXIT_USAGE", "main"]

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every command module's subcommands."""
    from cli.commands import (
        changes,
        console,
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
    for module in (stack, workspace, guests, events, templates, dnm, runs, changes, demo, console):
        module.register(commands)
    _remember_parsers(parser)
    return parser


def _remember_parsers(parser: argparse.ArgumentParser) -> None:
    """Give every subcommand's namespace its own parser, for usage errors of that subcommand."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                sub.set_defaults(usage_parser=sub)
                _remember_parsers(sub)


def main(argv: list[str] | None = None) -> int:
    """Parse, dispatch to the chosen command and map failures to exit codes."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["sandbox"]:
        # The sandbox owns its flags (argparse cannot pass options through a subcommand).
        from sandbox.main import main as sandbox_main

        return sandbox_main(argv[1:])
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:
        # the subcommand's own usage, not the top-level one
        usage: argparse.ArgumentParser = getattr(args, "usage_parser", parser)
        usage.error(f"unrecognized arguments: {' '.join(extras)}")
    handler: Handler = args.handler
    try:
        code = handler(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the try, not at interpreter exit
        return code
    except ConfigurationError as error:
        print(f"configuration error:\n  {error}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        # the reader went away (`invites guests list --json | head -1`): stop quietly; point
        # stdout at /dev/null so the interpreter's final flush does not raise again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except ServerError as error:
        print(f"error: {error.code}: {error.message}", file=sys.stderr)
        for violation in error.violations:
            print(f"  {violation}", file=sys.stderr)
        return EXIT_SERVER
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())

"""Command line: ``python -m sandbox`` (and ``invites sandbox``, which calls :func:`main`)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from common.runtime import tune_garbage_collection, use_event_loop
from sandbox.app import SANDBOX, create_app
from sandbox.config import SandboxSettings
from sandbox.scenario import ScenarioError

log = logging.getLogger("sandbox")


def build_parser() -> argparse.ArgumentParser:
    """Flags override the matching ``SANDBOX_*`` variables. Secrets are environment-only, so
    they never show up in a process listing."""
    parser = argparse.ArgumentParser(
        prog="sandbox",
        description="Local stand-in for the Meta WhatsApp Cloud API (template sends + webhooks).",
        epilog="Secrets: set SANDBOX_ACCESS_TOKEN and SANDBOX_APP_SECRET in the environment.",
    )
    parser.add_argument("--listen", help="host:port (SANDBOX_LISTEN, default 127.0.0.1:8090)")
    parser.add_argument("--scenario", type=Path, help="scenario .json/.toml (SANDBOX_SCENARIO)")
    parser.add_argument("--callback-url", help="webhook URL (SANDBOX_CALLBACK_URL)")
    parser.add_argument(
        "--phone-number-id", help="only accept this id in send URLs (SANDBOX_PHONE_NUMBER_ID)"
    )
    parser.add_argument("--seed", type=int, help="seed random behaviour (SANDBOX_SEED)")
    parser.add_argument(
        "--control",
        action=argparse.BooleanOptionalAction,
        default=None,
        dest="control_enabled",
        help="mount the /_sandbox control API (SANDBOX_CONTROL_ENABLED)",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    parser.add_argument("--access-log", action="store_true", help="log every request")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the sandbox until SIGINT/SIGTERM. Returns the process exit code (2: bad config)."""
    args = build_parser().parse_args(argv)
    overrides: dict[str, Any] = {
        key: value
        for key, value in vars(args).items()
        if key not in ("log_level", "access_log") and value is not None
    }
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    # httpx logs every request at INFO: thousands of lines a second under benchmark load.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        settings = SandboxSettings(**overrides)
        app = create_app(settings)
    except ValidationError as exc:
        print(f"sandbox: invalid configuration:\n{describe(exc)}", file=sys.stderr)
        return 2
    except ScenarioError as exc:
        print(f"sandbox: {exc}", file=sys.stderr)
        return 2
    if not app[SANDBOX].scenario.templates:
        log.warning(
            "no templates registered: every send gets 132001 until a scenario "
            "(SANDBOX_SCENARIO=demo) or POST /_sandbox/templates registers one"
        )
    tune_garbage_collection()
    use_event_loop(settings.event_loop)
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        access_log=logging.getLogger("aiohttp.access") if args.access_log else None,
        print=lambda _: log.info(
            "sandbox on http://%s (control API %s, webhooks %s)",
            settings.listen,
            "on" if settings.control_enabled else "off",
            settings.callback_url or "off",
        ),
        shutdown_timeout=5.0,
    )
    return 0


def describe(exc: ValidationError) -> str:
    """One line per problem, named by environment variable, never echoing values (secrets)."""
    lines = []
    for error in exc.errors(include_input=False, include_url=False):
        field = str(error["loc"][0]) if error["loc"] else "?"
        lines.append(f"  SANDBOX_{field.upper()}: {error['msg']}")
    return "\n".join(lines)

"""`invites up`, `invites migrate` and `invites sandbox`: running the stack on one machine."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cli.commands.console import DEFAULT_CONSOLE_LISTEN, print_console_access
from cli.commands.demo import (
    Demo,
    add_state_dir_argument,
    register_sandbox_template,
    seed_demo,
)
from cli.output import make_console

console = make_console(stderr=True)

SANDBOX_LISTEN = "127.0.0.1:8090"
STARTUP_TIMEOUT_SECONDS = 30.0
CHILD_STOP_SECONDS = 10.0
"""How long the children get to stop before SIGKILL (the embedded Postgres stops after them:
`invites up` is gone within 15 s of a stop signal)."""
# Credentials `up` generates when they are not set; stable across restarts (kept in the state dir).
GENERATED = (
    "DISPATCH_BACKEND_TOKENS",
    "DISPATCH_INGESTOR_TOKEN",
    "WHATSAPP_ACCESS_TOKEN",
    "WHATSAPP_APP_SECRET",
    "WHATSAPP_VERIFY_TOKEN",
)
LOCAL_PHONE_NUMBER_ID = "100000000000001"
LOCAL_WABA_ID = "102290129340398"
"""The sandbox's WhatsApp Business Account id (its default SANDBOX_WABA_ID)."""
DEMO_SCENARIO = Path(__file__).resolve().parents[2] / "sandbox" / "scenarios" / "demo.json"


def register(commands: Any) -> None:
    """Add the stack commands to the `invites` parser."""
    up = commands.add_parser("up", help="run the whole stack locally (embedded Postgres + sandbox)")
    add_state_dir_argument(up, "where the embedded Postgres and generated local credentials live")
    up.add_argument("--no-sandbox", action="store_true", help="do not start the Meta sandbox")
    up.set_defaults(handler=run_up)

    migrate = commands.add_parser("migrate", help="apply database migrations (DATABASE_URL)")
    migrate.set_defaults(handler=run_migrate)

    # `invites sandbox ...` is routed to sandbox.main by cli.main; listed here for --help.
    commands.add_parser("sandbox", help="run the local Meta Cloud API sandbox (see sandbox --help)")


def run_migrate(args: argparse.Namespace) -> int:
    """Apply migrations to DATABASE_URL (exit 2 when it is missing or wrong, 1 when unreachable
    or when a migration's check of existing rows fails)."""
    # alembic and sqlalchemy load slowly: only when used
    from sqlalchemy.exc import IntegrityError, OperationalError

    from common.db.migrate import upgrade
    from common.settings import sqlalchemy_url

    url = os.environ.get("DATABASE_URL")
    if not url:
        console.print("configuration error:\n  DATABASE_URL: is required")
        return 2
    try:
        sqlalchemy_url(url)
    except ValueError as error:
        console.print(f"configuration error:\n  DATABASE_URL: {error}")
        return 2
    try:
        upgrade(url)
    except OperationalError as error:
        # The driver's own message (it names host and port, never the password), no traceback.
        console.print(f"error: could not apply migrations: {error.orig or error}", markup=False)
        return 1
    except IntegrityError as error:
        # A migration that checks existing rows (0028) found some it cannot accept: Postgres
        # names the constraint and the table; what ran before it stays applied.
        console.print(
            f"error: a migration found rows it cannot accept: {error.orig or error}\n"
            "fix those rows and run `invites migrate` again (docs/operations.md §2)",
            markup=False,
        )
        return 1
    console.print("migrations applied")
    return 0


def local_credentials(
    state_dir: Path, names: tuple[str, ...] = GENERATED
) -> tuple[dict[str, str], list[str]]:
    """Values for unset credentials (generated once, kept in state_dir) and their names."""
    stored_path = state_dir / "local-credentials.env"
    stored: dict[str, str] = {}
    if stored_path.exists():
        for line in stored_path.read_text().splitlines():
            key, _, value = line.partition("=")
            stored[key] = value
    values: dict[str, str] = {}
    generated: list[str] = []
    for name in names:
        if os.environ.get(name):
            continue
        values[name] = stored.get(name) or f"local-{secrets.token_urlsafe(18)}"
        generated.append(name)
    stored.update(values)
    stored_path.write_text("".join(f"{k}={v}\n" for k, v in stored.items()))
    stored_path.chmod(0o600)
    return values, generated


def stack_environment(state_dir: Path, with_sandbox: bool) -> tuple[dict[str, str], list[str]]:
    """The environment the services run with: what is set, plus generated local values."""
    from common.db.embedded import ensure_database, start_embedded_postgres

    env = dict(os.environ)
    if not env.get("DATABASE_URL"):
        console.print(f"starting embedded Postgres in {state_dir / 'pgdata'} ...")
        with STOP.deferred():  # started and registered for its stop at exit, or not at all
            server_url = start_embedded_postgres(state_dir / "pgdata")
        env["DATABASE_URL"] = ensure_database(server_url, "invites")
    # With the sandbox, Twilio is played locally too (a generated auth token); without it, Twilio
    # is only configured when TWILIO_AUTH_TOKEN and its URLs are set (docs/operations.md).
    names = (*GENERATED, "TWILIO_AUTH_TOKEN") if with_sandbox else GENERATED
    values, generated = local_credentials(state_dir, names)
    env.update(values)
    env.setdefault("DISPATCH_LISTEN", "127.0.0.1:50051")
    env.setdefault("DISPATCH_TARGET", env["DISPATCH_LISTEN"])
    env.setdefault("WEBHOOK_LISTEN", "127.0.0.1:8080")
    env.setdefault("CONSOLE_LISTEN", DEFAULT_CONSOLE_LISTEN)
    env.setdefault("WHATSAPP_PHONE_NUMBER_ID", LOCAL_PHONE_NUMBER_ID)
    if with_sandbox:
        env.setdefault("SANDBOX_LISTEN", SANDBOX_LISTEN)
        env.setdefault("WHATSAPP_API_BASE_URL", f"http://{env['SANDBOX_LISTEN']}")
        env.setdefault("SANDBOX_ACCESS_TOKEN", env["WHATSAPP_ACCESS_TOKEN"])
        env.setdefault("SANDBOX_APP_SECRET", env["WHATSAPP_APP_SECRET"].split(",")[0])
        env.setdefault("SANDBOX_PHONE_NUMBER_ID", env["WHATSAPP_PHONE_NUMBER_ID"])
        env.setdefault("SANDBOX_WABA_ID", LOCAL_WABA_ID)
        env.setdefault("WHATSAPP_WABA_ID", env["SANDBOX_WABA_ID"])
        env.setdefault("SANDBOX_CALLBACK_URL", f"http://{env['WEBHOOK_LISTEN']}/webhooks/whatsapp")
        env.setdefault("SANDBOX_CONTROL_ENABLED", "true")
        env.setdefault("SANDBOX_SCENARIO", str(DEMO_SCENARIO))
        twilio_callback = f"http://{env['WEBHOOK_LISTEN']}/webhooks/twilio"
        env.setdefault("TWILIO_API_BASE_URL", f"http://{env['SANDBOX_LISTEN']}")
        env.setdefault("TWILIO_STATUS_CALLBACK_URL", twilio_callback)
        env.setdefault("TWILIO_WEBHOOK_URL", twilio_callback)
        env.setdefault("SANDBOX_TWILIO_AUTH_TOKEN", env["TWILIO_AUTH_TOKEN"].split(",")[0])
    return env, generated


@contextmanager
def processes(specs: list[tuple[str, list[str]]], env: dict[str, str]) -> Iterator[dict[str, Any]]:
    """Start each (name, argv) child; on exit SIGTERM them all and wait (SIGKILL after a grace)."""
    children: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, argv in specs:
            with STOP.deferred():  # a child is either started and recorded, or not started
                children[name] = subprocess.Popen([sys.executable, *argv], env=env)
        yield children
    finally:
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + CHILD_STOP_SECONDS
        for child in children.values():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()


def wait_for_dispatch(target: str, timeout: float = STARTUP_TIMEOUT_SECONDS) -> bool:
    """Poll the dispatch service's health check until SERVING or the timeout."""
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return True
            except grpc.RpcError:
                pass
            time.sleep(0.3)
    return False


def shown_token(env: dict[str, str], generated: list[str]) -> str:
    """The backend token as the printed commands show it (inside double quotes): the value when
    `invites up` generated it, else the shell expansion of the first one the operator gave, which
    never prints it."""
    if "DISPATCH_BACKEND_TOKENS" in generated:
        return env["DISPATCH_BACKEND_TOKENS"].split(",")[0]
    return "${DISPATCH_BACKEND_TOKENS%%,*}"


def print_next_steps(env: dict[str, str], generated: list[str], with_sandbox: bool) -> None:
    """Where everything listens, the generated credentials, and what to try next."""
    target = env["DISPATCH_LISTEN"]
    console.print("\n[bold green]invite dispatch is up[/]")
    console.print(f"  dispatch (gRPC)   {target}")
    console.print(f"  webhook ingestor  http://{env['WEBHOOK_LISTEN']}/webhooks/whatsapp")
    if env.get("TWILIO_WEBHOOK_URL"):
        console.print(f"  Twilio callbacks  {env['TWILIO_WEBHOOK_URL']}")
    if with_sandbox:
        console.print(f"  Meta sandbox      {env['WHATSAPP_API_BASE_URL']}")
    if generated:
        console.print("\ngenerated local credentials (set these variables to use your own):")
        for name in generated:
            console.print(f"  {name}={env[name]}")
    token = shown_token(env, generated)
    console.print("\ntry:")
    console.print(f"  grpcurl -plaintext {target} list")
    console.print(f"  grpcurl -plaintext -emit-defaults {target} grpc.health.v1.Health/Check")
    console.print(
        f'  grpcurl -plaintext -H "authorization: Bearer {token}" {target} '
        "describe invites.v1.DispatchService"
    )
    console.print("\nCtrl-C stops everything.")


def seed_demo_stack(env: dict[str, str], state_dir: Path) -> Demo | None:
    """Seed the demo workspace through the API; a failure is reported, not fatal."""
    token = env["DISPATCH_BACKEND_TOKENS"].split(",")[0]
    try:
        register_sandbox_template(env["WHATSAPP_API_BASE_URL"])
        demo = asyncio.run(seed_demo(env["DISPATCH_LISTEN"], token, state_dir))
        if env.get("SANDBOX_TWILIO_AUTH_TOKEN"):
            asyncio.run(seed_demo(env["DISPATCH_LISTEN"], token, state_dir, "twilio"))
        return demo
    except Exception as error:  # the stack is still useful without the demo data
        console.print(f"[yellow]could not seed the demo workspace: {error}[/]")
        return None


def print_demo(demo: Demo, token: str) -> None:
    """The demo workspace's ids and the commands that use them (`token`: as shown_token)."""
    console.print("\ndemo workspace (seeded idempotently):")
    console.print(f"  workspace  {demo.workspace_id}")
    console.print(f"  actor      {demo.actor_id}   (parent_admin; INVITES_ACTOR)")
    console.print(f"  event      {demo.event_id}")
    console.print(f"  template   {demo.template_id}")
    console.print("\nin a second terminal:")
    console.print(
        f'  export INVITES_TARGET={demo.target} INVITES_TOKEN="{token}" '
        f"INVITES_ACTOR={demo.actor_id}"
    )
    console.print("  .venv/bin/invites demo")
    console.print("  .venv/bin/invites demo --provider twilio   (the sandbox plays Twilio)")
    console.print(
        f'  grpcurl -plaintext -emit-defaults -H "authorization: Bearer {token}" '
        f"-H 'x-actor-id: {demo.actor_id}' "
        f'-d \'{{"event_id": "{demo.event_id}", "template_id": "{demo.template_id}"}}\' '
        f"{demo.target} invites.v1.DispatchService/PrecheckSend"
    )
    console.print("  .venv/bin/invites watch RUN_ID   (the run id `invites demo` prints)")


class StopRequested(BaseException):
    """SIGTERM, SIGINT or SIGHUP asked `invites up` to stop (raised from the signal handler, so
    it interrupts whatever start-up step is running; BaseException, so no `except Exception`
    swallows it)."""


class _StopSignals:
    """`invites up`'s signal handling, self-contained: SIGTERM, SIGINT and SIGHUP all stop the
    stack, whatever dispositions the parent left (a background job inherits SIGINT ignored;
    a handler replaces that). The first signal raises StopRequested in the main thread, except
    inside `deferred()` sections (starting a child), where it is raised when the section ends;
    later signals are ignored, so the clean-up (children stopped, then the embedded Postgres
    at exit) runs to its end."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

    def __init__(self) -> None:
        self.requested: int | None = None
        self._deferring = 0
        self._pending = False

    def install(self) -> None:
        """Take over the stop signals."""
        for signum in self.SIGNALS:
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested is not None:
            return  # already stopping
        self.requested = signum
        if self._deferring:
            self._pending = True
            return
        raise StopRequested(signum)

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """A section the stop request must not cut in two."""
        self._deferring += 1
        try:
            yield
        finally:
            self._deferring -= 1
            if not self._deferring and self._pending:
                self._pending = False
                raise StopRequested(self.requested)


STOP = _StopSignals()


def run_up(args: argparse.Namespace) -> int:
    """Run migrations and every service until Ctrl-C, SIGTERM or SIGHUP (exit 0 then)."""
    STOP.install()
    try:
        return _run_up(args)
    except StopRequested as stop:
        name = signal.Signals(stop.args[0]).name if stop.args else "a signal"
        console.print(f"{name}: stopped")
        return 0


def _run_up(args: argparse.Namespace) -> int:
    state_dir: Path = args.state_dir
    state_dir.mkdir(parents=True, exist_ok=True)
    with_sandbox = not args.no_sandbox and not os.environ.get("WHATSAPP_API_BASE_URL")
    from common.db.migrate import upgrade

    env, generated = stack_environment(state_dir, with_sandbox)
    upgrade(env["DATABASE_URL"])
    specs = [
        ("dispatch", ["-m", "dispatch_service"]),
        ("dispatcher", ["-m", "dispatch_service.dispatcher"]),
        ("webhook", ["-m", "webhook_service"]),
        ("console", ["-m", "console_service"]),
    ]
    if with_sandbox:
        specs.insert(0, ("sandbox", ["-m", "sandbox"]))
    with processes(specs, env) as children:
        if not wait_for_dispatch(env["DISPATCH_LISTEN"]):
            console.print("[red]the dispatch service did not become healthy; see its log above[/]")
            return 1
        demo = seed_demo_stack(env, state_dir) if with_sandbox else None
        print_next_steps(env, generated, with_sandbox)
        if demo is not None:
            print_demo(demo, shown_token(env, generated))
        print_console_access(
            env["CONSOLE_LISTEN"],
            env["DISPATCH_LISTEN"],
            env["DISPATCH_BACKEND_TOKENS"].split(",")[0],
            demo.actor_id if demo is not None else None,
        )
        while True:
            exited = [name for name, child in children.items() if child.poll() is not None]
            if exited:
                console.print(f"[red]{', '.join(exited)} exited; stopping the stack[/]")
                return 1
            time.sleep(0.5)

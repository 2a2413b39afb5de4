"""End-to-end fixtures: real service processes on free loopback ports, on the test database.

* `stack_env`: the environment every process of one test shares (database, ports, fake credentials).
* `start_service(name, module, env=None)`: start `python -m module`; stopped (SIGTERM, then SIGKILL)
  at teardown. Its output goes to a log file (`ServiceProcess.log()`), shown when a test fails.
* `dispatch_process`: a dispatch service that already answers SERVING.
* `webhook_process`: an ingestor (next to `dispatch_process`) that already answers /healthz.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

# Obviously fake credentials: tests never use real-looking secrets.
BACKEND_TOKEN = "test-backend-token"
INGESTOR_TOKEN = "test-ingestor-token"
ACCESS_TOKEN = "test-access-token"
APP_SECRET = "test-app-secret"
VERIFY_TOKEN = "test-verify-token"
PHONE_NUMBER_ID = "100000000000001"
STARTUP_SECONDS = 20.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServiceProcess:
    """A running service process and where its log goes."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str]

    def log(self) -> str:
        """Everything the process wrote so far."""
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Send `sig` and wait for the exit code (SIGKILL when it does not stop in time)."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return int(self.process.returncode)

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, as in a crash."""
        self.stop(signal.SIGKILL)


@pytest.fixture
def stack_env(database_url: str) -> dict[str, str]:
    """Environment for one test's processes: fresh database, free ports, fake credentials."""
    dispatch = f"127.0.0.1:{free_port()}"
    webhook = f"127.0.0.1:{free_port()}"
    sandbox = f"127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISPATCH_", "WHATSAPP_"))}
    env.update(
        DATABASE_URL=database_url,
        DISPATCH_LISTEN=dispatch,
        DISPATCH_TARGET=dispatch,
        DISPATCH_METRICS_LISTEN="",
        DISPATCH_GRACE_SECONDS="5",
        DISPATCH_BACKEND_TOKENS=BACKEND_TOKEN,
        DISPATCH_INGESTOR_TOKEN=INGESTOR_TOKEN,
        WEBHOOK_LISTEN=webhook,
        WHATSAPP_API_BASE_URL=f"http://{sandbox}",
        WHATSAPP_ACCESS_TOKEN=ACCESS_TOKEN,
        WHATSAPP_APP_SECRET=APP_SECRET,
        WHATSAPP_VERIFY_TOKEN=VERIFY_TOKEN,
        WHATSAPP_PHONE_NUMBER_ID=PHONE_NUMBER_ID,
        SANDBOX_LISTEN=sandbox,
        SANDBOX_ACCESS_TOKEN=ACCESS_TOKEN,
        SANDBOX_APP_SECRET=APP_SECRET,
        SANDBOX_PHONE_NUMBER_ID=PHONE_NUMBER_ID,
        SANDBOX_CALLBACK_URL=f"http://{webhook}/webhooks/whatsapp",
        SANDBOX_CONTROL_ENABLED="true",
        LOG_LEVEL="INFO",
    )
    return env


StartService = Callable[..., ServiceProcess]


@pytest.fixture
def start_service(
    tmp_path: Path, stack_env: dict[str, str], request: pytest.FixtureRequest
) -> Iterator[StartService]:
    """Factory starting `python -m <module>` with `stack_env` (plus overrides)."""
    started: list[ServiceProcess] = []

    def start(name: str, module: str, **overrides: str) -> ServiceProcess:
        env = {**stack_env, **overrides}
        log_path = tmp_path / f"{name}-{len(started)}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", module], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        service = ServiceProcess(name, process, log_path, env)
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for service in started:
            print(f"\n----- {service.name} log -----\n{service.log()[-4000:]}")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    """Keep each phase's report on the test item so fixtures can show logs of failed tests."""
    report = yield
    setattr(item, f"rep_{report.when}", report)  # type: ignore[attr-defined]
    return report


def health_status(target: str, service: str = "", timeout: float = 1.0) -> int | None:
    """The health status of `service` at `target`, or None when it does not answer."""
    with grpc.insecure_channel(target) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError:
            return None
    return int(reply.status)


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `predicate` until true, or fail the test naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def wait_for_serving(
    service: ServiceProcess, timeout: float = STARTUP_SECONDS, listen_key: str = "DISPATCH_LISTEN"
) -> None:
    """Wait until the gRPC health service at service.env[listen_key] answers SERVING (the
    dispatch API by default; DISPATCHER_HEALTH_LISTEN for a send worker)."""
    target = service.env[listen_key]

    def serving() -> bool:
        if service.process.poll() is not None:
            pytest.fail(f"{service.name} exited early:\n{service.log()[-3000:]}")
        return health_status(target) == health_pb2.HealthCheckResponse.SERVING

    wait_until(serving, timeout, f"{service.name} to answer SERVING")


def wait_for_http(service: ServiceProcess, url: str, timeout: float = STARTUP_SECONDS) -> None:
    """Wait until GET `url` answers 200."""

    def answers() -> bool:
        if service.process.poll() is not None:
            pytest.fail(f"{service.name} exited early:\n{service.log()[-3000:]}")
        try:
            return bool(httpx.get(url, timeout=1.0).status_code == 200)
        except httpx.HTTPError:
            return False

    wait_until(answers, timeout, f"{service.name} at {url}")


@pytest.fixture
def dispatch_process(start_service: StartService) -> ServiceProcess:
    """A dispatch service process answering SERVING."""
    service = start_service("dispatch", "dispatch_service")
    wait_for_serving(service)
    return service


@pytest.fixture
def webhook_process(
    start_service: StartService, dispatch_process: ServiceProcess
) -> ServiceProcess:
    """An ingestor process next to `dispatch_process`, answering /healthz."""
    service = start_service("webhook", "webhook_service")
    wait_for_http(service, f"http://{service.env['WEBHOOK_LISTEN']}/healthz")
    return service


@dataclass
class CliResult:
    """What one `invites` command did."""

    code: int
    stdout: str
    stderr: str


InvitesCli = Callable[..., CliResult]


@pytest.fixture
def invites_cli(dispatch_process: ServiceProcess) -> InvitesCli:
    """Run the real `invites` CLI (a subprocess) against `dispatch_process`.

    `invites_cli("members", "list", actor=member_id)` sets INVITES_TARGET and INVITES_TOKEN (the
    backend token) and, when given, INVITES_ACTOR; extra environment via `env={...}`. Returns the
    exit code and output; fails the test when it takes longer than `timeout` seconds.
    """

    def run(
        *args: str,
        actor: str = "",
        env: dict[str, str] | None = None,
        timeout: float = 60.0,
        cwd: Path | None = None,
    ) -> CliResult:
        variables = {
            **dispatch_process.env,
            "INVITES_TARGET": dispatch_process.env["DISPATCH_LISTEN"],
            "INVITES_TOKEN": BACKEND_TOKEN,
            "INVITES_ACTOR": actor,
            "COLUMNS": "200",  # wide tables: ids are never wrapped
            **(env or {}),
        }
        done = subprocess.run(
            [sys.executable, "-m", "cli.main", *args],
            env=variables,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
            check=False,
        )
        return CliResult(done.returncode, done.stdout, done.stderr)

    return run

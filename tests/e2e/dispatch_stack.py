"""The send path as real processes: the sandbox (Meta), dispatch replicas and the ingestor, on
this test's database, plus small sync clients for the gRPC API and the sandbox's control API.

    stack = DispatchStack(start_service, stack_env, tmp_path)
    stack.start_sandbox(scenario)
    a = stack.start_dispatch("a", DISPATCH_RATE_PER_SECOND="200")   # API + embedded worker
    api = stack.start_dispatch("api", DISPATCHER_ENABLED="false")   # or an API-only replica
    w = stack.start_worker("w1", DISPATCH_RATE_PER_SECOND="200")     # and separate workers
    stack.start_webhook()
    run_id = stack.precheck_and_start(world)
    stack.wait_for_run(world, run_id, "completed")
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx

from common.generated.invites.v1 import dispatch_pb2 as pb
from common.generated.invites.v1 import dispatch_pb2_grpc as pb_grpc
from common.generated.invites.v1 import types_pb2 as types
from sandbox.ledger import read_all
from tests.e2e.conftest import (
    BACKEND_TOKEN,
    ServiceProcess,
    StartService,
    free_port,
    wait_for_http,
    wait_for_serving,
)
from tests.integration.dispatch_support import World
from tests.integration.factories import Seeder

TEMPLATE = {"name": "event_invitation", "language": "en_US", "body_params": 2}
FAST_WEBHOOKS = {
    "sent": {"ms": 20, "jitter_ms": 30},
    "delivered": {"ms": 100, "jitter_ms": 200},
    "read": {"ms": 300, "jitter_ms": 500},
    "failed": {"ms": 50, "jitter_ms": 50},
    "delivered_share": 1.0,
}


def scenario(**fields: Any) -> dict[str, Any]:
    """A sandbox scenario with the test template and quick webhooks, plus `fields`."""
    return {"templates": [TEMPLATE], "webhooks": FAST_WEBHOOKS, **fields}


@dataclass
class DispatchStack:
    """Starts and talks to the processes of one test."""

    start_service: StartService
    env: dict[str, str]
    tmp_path: Path
    dispatchers: dict[str, ServiceProcess] = field(default_factory=dict)
    workers: dict[str, ServiceProcess] = field(default_factory=dict)
    webhook: ServiceProcess | None = None

    @property
    def sandbox_url(self) -> str:
        """The sandbox's base URL."""
        return f"http://{self.env['SANDBOX_LISTEN']}"

    def start_sandbox(self, scene: dict[str, Any]) -> ServiceProcess:
        """The sandbox process with `scene`, answering /healthz."""
        path = self.tmp_path / "scenario.json"
        path.write_text(json.dumps(scene))
        sandbox = self.start_service("sandbox", "sandbox", SANDBOX_SCENARIO=str(path))
        wait_for_http(sandbox, f"{self.sandbox_url}/healthz")
        return sandbox

    def start_dispatch(self, name: str, **overrides: str) -> ServiceProcess:
        """A dispatch API replica answering SERVING, with the send worker embedded unless
        DISPATCHER_ENABLED=false is given (started again with its last settings when `name`
        ran before)."""
        previous = self.dispatchers.get(name)
        listen = previous.env["DISPATCH_LISTEN"] if previous else f"127.0.0.1:{free_port()}"
        settings = {
            "DISPATCH_LISTEN": listen,
            "DISPATCHER_ENABLED": "true",
            "DISPATCHER_POLL_SECONDS": "0.05",
            **overrides,
        }
        if previous is not None:
            settings = {**previous.env, **settings}
        service = self.start_service(f"dispatch-{name}", "dispatch_service", **settings)
        self.dispatchers[name] = service
        wait_for_serving(service)
        return service

    def start_worker(self, name: str, **overrides: str) -> ServiceProcess:
        """A send worker process (`python -m dispatch_service.dispatcher`) answering SERVING on
        its health port (started again with its last settings when `name` ran before)."""
        previous = self.workers.get(name)
        health = (
            previous.env["DISPATCHER_HEALTH_LISTEN"] if previous else f"127.0.0.1:{free_port()}"
        )
        settings = {
            "DISPATCHER_HEALTH_LISTEN": health,
            "DISPATCHER_METRICS_LISTEN": "",
            "DISPATCHER_POLL_SECONDS": "0.05",
            **overrides,
        }
        if previous is not None:
            settings = {**previous.env, **settings}
        service = self.start_service(f"worker-{name}", "dispatch_service.dispatcher", **settings)
        self.workers[name] = service
        wait_for_serving(service, listen_key="DISPATCHER_HEALTH_LISTEN")
        return service

    def start_webhook(self, dispatch_target: str) -> ServiceProcess:
        """The ingestor, forwarding to `dispatch_target`."""
        webhook = self.start_service("webhook", "webhook_service", DISPATCH_TARGET=dispatch_target)
        wait_for_http(webhook, f"http://{self.env['WEBHOOK_LISTEN']}/healthz")
        self.webhook = webhook
        return webhook

    def stub(self, target: str | None = None) -> tuple[grpc.Channel, pb_grpc.DispatchServiceStub]:
        """A channel and DispatchService stub (to the first replica unless told)."""
        target = target or next(iter(self.dispatchers.values())).env["DISPATCH_LISTEN"]
        channel = grpc.insecure_channel(target)
        return channel, pb_grpc.DispatchServiceStub(channel)

    @staticmethod
    def md(actor: object) -> tuple[tuple[str, str], ...]:
        """Call metadata for `actor`."""
        return (("authorization", f"Bearer {BACKEND_TOKEN}"), ("x-actor-id", str(actor)))

    def precheck_and_start(self, world: World, key: str = "run-1") -> str:
        """PrecheckSend + StartRun through the API; returns the run id."""
        return self.start(world, self.precheck(world), key).run.run_id

    def precheck(self, world: World) -> str:
        """PrecheckSend through the API; returns the precheck id."""
        channel, stub = self.stub()
        with channel:
            reply = stub.PrecheckSend(
                pb.PrecheckSendRequest(
                    event_id=str(world.event_id), template_id=str(world.template_id)
                ),
                metadata=self.md(world.admin),
                timeout=30,
            )
        return str(reply.precheck_id)

    def start(self, world: World, precheck_id: str, key: str = "run-1") -> pb.StartRunResponse:
        """StartRun through the API (the same key again replays it)."""
        channel, stub = self.stub()
        with channel:
            reply: pb.StartRunResponse = stub.StartRun(
                pb.StartRunRequest(precheck_id=precheck_id, idempotency_key=key),
                metadata=self.md(world.parent_admin),
                timeout=30,
            )
        return reply

    def status(self, world: World, run_id: str) -> pb.RunStatus:
        """GetRunStatus through the API."""
        channel, stub = self.stub()
        with channel:
            reply = stub.GetRunStatus(
                pb.GetRunStatusRequest(run_id=run_id), metadata=self.md(world.viewer), timeout=10
            )
        return reply.status

    def wait_for_run(
        self, world: World, run_id: str, state: int, timeout: float = 60.0
    ) -> pb.RunStatus:
        """Poll GetRunStatus until the run is in `state` (a RUN_STATE_* value)."""
        deadline = time.monotonic() + timeout
        status = self.status(world, run_id)
        while status.run.state != state:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"run still {types.RunState.Name(status.run.state)} after {timeout}s: {status}"
                )
            time.sleep(0.2)
            status = self.status(world, run_id)
        return status

    def wait_for_counts(
        self, world: World, run_id: str, done: Callable[[dict[str, int]], bool], timeout: float = 30
    ) -> dict[str, int]:
        """Poll the run's counts by state until `done(counts)`."""
        deadline = time.monotonic() + timeout
        counts = counts_by_state(self.status(world, run_id))
        while not done(counts):
            if time.monotonic() > deadline:
                raise AssertionError(f"counts never got there: {counts}")
            time.sleep(0.2)
            counts = counts_by_state(self.status(world, run_id))
        return counts

    def control(self, method: str, path: str, body: Any = None) -> Any:
        """Call the sandbox's control API."""
        response = httpx.request(
            method, f"{self.sandbox_url}/_sandbox/{path}", json=body, timeout=10
        )
        response.raise_for_status()
        return response.json()

    def settle_webhooks(self, database_url: str, timeout: float = 30.0) -> None:
        """Wait until the sandbox has no webhook left to post (scheduled, held for redelivery
        or in flight) and the ingestor's receipts are all applied: after this, the database
        has heard everything the provider will say. Without an ingestor there is nothing to
        wait for (the sandbox keeps redelivering to nobody)."""
        if self.webhook is None:
            return
        deadline = time.monotonic() + timeout
        while True:
            webhooks = self.control("GET", "stats")["webhooks"]
            waiting = webhooks["scheduled"] + webhooks["held"] + webhooks["posts_in_flight"]
            with Seeder(database_url) as seed:
                pending = seed.rows("SELECT count(*) FROM webhook_receipt WHERE state = 'pending'")
            if waiting == 0 and pending[0][0] == 0:
                return
            if time.monotonic() > deadline:
                with Seeder(database_url) as seed:
                    stuck = seed.rows(
                        "SELECT attempts, last_error, now() - received_at, flag, provider"
                        " FROM webhook_receipt WHERE state = 'pending' ORDER BY received_at"
                        " LIMIT 5"
                    )
                raise AssertionError(
                    f"webhooks unsettled: {webhooks}, receipts {pending}; the oldest pending"
                    f" (attempts, last error, age, flag, provider): {stuck}"
                )
            time.sleep(0.2)

    def ledger(self) -> list[dict[str, Any]]:
        """Every accepted send, in order."""
        return read_all(lambda path: self.control("GET", path))


def counts_by_state(status: pb.RunStatus) -> dict[str, int]:
    """{"sent": 3, ...} for the non-zero states of a RunStatus."""
    return {
        types.MessageState.Name(c.state).removeprefix("MESSAGE_STATE_").lower(): c.count
        for c in status.by_state
        if c.count
    }

"""WEBHOOK_PROCESSES=2: two ingestor processes serve one port under a supervisor. Every POST is
stored whichever process takes it, /metrics counts them all whichever process answers, SIGTERM
stops all of them cleanly, and one dying stops the other (the service manager restarts the
whole)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
from pathlib import Path

import httpx

from bench.processes import child_pids
from tests.e2e.conftest import (
    APP_SECRET,
    ServiceProcess,
    StartService,
    wait_for_http,
    wait_until,
)
from tests.integration.factories import Seeder

POSTS = 40


def stored_posts(base: str) -> float:
    """invites_webhook_posts_total{verdict="stored"} as /metrics reports it."""
    for line in httpx.get(f"{base}/metrics", timeout=5).text.splitlines():
        if line.startswith('invites_webhook_posts_total{verdict="stored"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def start_two(start_service: StartService) -> tuple[ServiceProcess, str]:
    service = start_service("webhook", "webhook_service", WEBHOOK_PROCESSES="2")
    base = f"http://{service.env['WEBHOOK_LISTEN']}"
    wait_for_http(service, f"{base}/healthz")
    wait_until(lambda: len(child_pids(service.process.pid)) == 2, 10, "two ingestor processes")
    return service, base


def test_two_processes_on_one_port_store_every_post_and_count_them_together(
    database_url: str, start_service: StartService, dispatch_process: ServiceProcess
) -> None:
    service, base = start_two(start_service)
    for n in range(POSTS):
        body = json.dumps({"object": "whatsapp_business_account", "entry": [], "n": n}).encode()
        signature = hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
        with httpx.Client() as client:  # a connection each: the kernel spreads them
            reply = client.post(
                f"{base}/webhooks/whatsapp",
                content=body,
                headers={
                    "Content-Type": "application/json",
                    "X-Hub-Signature-256": f"sha256={signature}",
                },
            )
        assert reply.status_code == 200
    with Seeder(database_url) as seed:
        assert seed.scalar("SELECT count(*) FROM webhook_receipt") == POSTS
    for _ in range(6):  # whichever process takes the scrape, it counts both
        assert stored_posts(base) == POSTS

    pids = child_pids(service.process.pid)
    assert service.stop(signal.SIGTERM) == 0
    wait_until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in pids), 10, "both gone")


def test_one_process_dying_stops_the_other_and_the_supervisor_fails(
    start_service: StartService, dispatch_process: ServiceProcess
) -> None:
    service, _ = start_two(start_service)
    first, second = child_pids(service.process.pid)
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: service.process.poll() is not None, 20, "the supervisor to exit")
    assert service.process.returncode not in (None, 0)
    wait_until(lambda: not Path(f"/proc/{second}").exists(), 10, "the other ingestor to stop")

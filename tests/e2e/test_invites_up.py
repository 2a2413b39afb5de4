"""`invites up` runs the whole stack on an embedded Postgres with no set-up, and stops cleanly."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
from grpc_health.v1 import health_pb2

from tests.e2e.conftest import free_port, health_status, wait_until


def test_up_serves_everything_on_an_embedded_postgres_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    dispatch, webhook, sandbox, console, worker = (f"127.0.0.1:{free_port()}" for _ in range(5))
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(
            (
                "DATABASE_URL",
                "DISPATCH_",
                "WHATSAPP_",
                "SANDBOX_",
                "WEBHOOK_",
                "TWILIO_",
                "CONSOLE_",
            )
        )
    }
    env.update(
        DISPATCH_LISTEN=dispatch,
        DISPATCH_METRICS_LISTEN="",
        DISPATCHER_HEALTH_LISTEN=worker,
        DISPATCHER_METRICS_LISTEN="",
        WEBHOOK_LISTEN=webhook,
        SANDBOX_LISTEN=sandbox,
        CONSOLE_LISTEN=console,
        WHATSAPP_VERIFY_TOKEN="given-verify-token",
    )
    with (tmp_path / "up.log").open("w") as log:
        up = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "up", "--state-dir", str(tmp_path / "state")],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    try:
        wait_until(
            lambda: "Ctrl-C stops everything" in (tmp_path / "up.log").read_text(),
            90,
            "invites up to report the stack is up",
        )
        assert health_status(dispatch) == health_pb2.HealthCheckResponse.SERVING
        assert health_status(worker) == health_pb2.HealthCheckResponse.SERVING  # the send worker
        assert httpx.get(f"http://{webhook}/readyz").status_code == 200
        assert httpx.get(f"http://{sandbox}/healthz").status_code == 200
        handshake = httpx.get(
            f"http://{webhook}/webhooks/whatsapp",
            params={
                "hub.mode": "subscribe",
                "hub.verify_token": "given-verify-token",
                "hub.challenge": "42",
            },
        )
        assert handshake.text == "42"
        output = (tmp_path / "up.log").read_text()
        # Generated credentials are printed; ones we were given never are.
        assert "DISPATCH_BACKEND_TOKENS=local-" in output
        assert "given-verify-token" not in output
        assert (tmp_path / "state" / "pgdata" / "PG_VERSION").exists()
        run_id = check_the_demo(tmp_path, env)
        check_the_console(output, console, run_id)
        check_the_twilio_demo(tmp_path, env)
        assert "TWILIO_AUTH_TOKEN=local-" in output  # generated for the sandbox's Twilio side
    finally:
        up.send_signal(signal.SIGINT)
        code = up.wait(timeout=60)
    assert code == 0, (tmp_path / "up.log").read_text()[-3000:]
    assert health_status(dispatch, timeout=0.5) is None


def invites(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def check_the_demo(tmp_path: Path, env: dict[str, str]) -> str:
    """`invites demo` on the seeded workspace reaches a final summary; reads parse as JSON."""
    state = str(tmp_path / "state")
    demo = invites(tmp_path, env, "demo", "--state-dir", state, "--settle", "3")
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert demo.stdout.count("demo run summary") == 1  # one summary, after the receipts
    assert ": completed" not in demo.stdout  # (the watch's own table is not printed too)
    assert "blocked: do_not_message" in demo.stdout
    run_id = re.search(r"run (\S+) started", demo.stdout)
    assert run_id is not None
    seeded = json.loads((tmp_path / "state" / "demo.json").read_text())
    connection = {
        **env,
        "INVITES_TARGET": seeded["target"],
        "INVITES_TOKEN": seeded["token"],
        "INVITES_ACTOR": seeded["actor_id"],
    }
    status = invites(tmp_path, connection, "status", run_id.group(1), "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["status"]["run"]["state"] == "RUN_STATE_COMPLETED"
    missing = invites(tmp_path, connection, "status", "not-a-run-id")
    assert missing.returncode == 3
    assert "INVALID_ARGUMENT" in missing.stderr
    return run_id.group(1)


def check_the_console(output: str, console: str, run_id: str) -> None:
    """`up` printed the console's address and a key; signing in with it shows the demo run."""
    assert f"http://{console}/" in output
    key = re.search(r"^\s*(ick_\S+)\s*$", output, re.MULTILINE)
    assert key is not None, output
    with httpx.Client(base_url=f"http://{console}") as browser:
        assert browser.get("/").status_code == 303  # no session: to the sign-in page
        signed_in = browser.post("/signin", data={"console_key": key.group(1)})
        assert signed_in.status_code == 303
        runs = browser.get("/")
        assert runs.status_code == 200
        assert run_id in runs.text
        funnel = browser.get(f"/runs/{run_id}")
        assert "completed" in funnel.text


def check_the_twilio_demo(tmp_path: Path, env: dict[str, str]) -> None:
    """`invites demo --provider twilio`: the same run through the sandbox playing Twilio; its
    messages carry Twilio SIDs and their statuses came back through POST /webhooks/twilio."""
    state = str(tmp_path / "state")
    demo = invites(
        tmp_path, env, "demo", "--provider", "twilio", "--state-dir", state, "--settle", "3"
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "demo run summary" in demo.stdout
    assert "blocked: do_not_message" in demo.stdout
    assert "failed: error 63024" in demo.stdout  # the scenario's 131026, as Twilio says it
    run_id = re.search(r"run (\S+) started", demo.stdout)
    assert run_id is not None
    seeded = json.loads((tmp_path / "state" / "demo-twilio.json").read_text())
    connection = {
        **env,
        "INVITES_TARGET": seeded["target"],
        "INVITES_TOKEN": seeded["token"],
        "INVITES_ACTOR": seeded["actor_id"],
    }
    listed = invites(tmp_path, connection, "messages", run_id.group(1), "--json")
    assert listed.returncode == 0, listed.stderr
    messages = [json.loads(line) for line in listed.stdout.splitlines() if line.strip()]
    sids = [m.get("provider_message_id", "") for m in messages]
    assert any(sid.startswith("SM") for sid in sids)
    assert not any(sid.startswith("wamid.") for sid in sids)
    states = {m["state"] for m in messages}
    assert states & {"MESSAGE_STATE_DELIVERED", "MESSAGE_STATE_READ"}, states

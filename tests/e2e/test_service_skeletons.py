"""The services really serve: health, reflection, credentials, the handshake, graceful stop (the
dispatch API, the send worker and the ingestor)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import httpx
import pytest
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from common.generated.invites.v1 import dispatch_pb2, dispatch_pb2_grpc
from tests.e2e.conftest import (
    BACKEND_TOKEN,
    INGESTOR_TOKEN,
    VERIFY_TOKEN,
    ServiceProcess,
    StartService,
    free_port,
    health_status,
    wait_until,
)


def test_reflection_lists_the_invites_services_and_their_rpcs(
    dispatch_process: ServiceProcess,
) -> None:
    # grpc's own reflection client, not ours: what grpcurl sees.
    with grpc.insecure_channel(dispatch_process.env["DISPATCH_LISTEN"]) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = set(database.get_services())
        pool = descriptor_pool.DescriptorPool(database)
        dispatch = pool.FindServiceByName("invites.v1.DispatchService")
        methods = {m.name for m in dispatch.methods}
    assert {"invites.v1.DispatchService", "invites.v1.AdminService", "grpc.health.v1.Health"} <= (
        services
    )
    assert {
        "PrecheckSend",
        "StartRun",
        "GetRunStatus",
        "ApplyStatus",
        "ListRunMessages",
        "CancelRun",
        "ResumeRun",
        "WatchRun",
    } <= methods


def test_health_is_serving_for_the_server_and_each_service(
    dispatch_process: ServiceProcess,
) -> None:
    target = dispatch_process.env["DISPATCH_LISTEN"]
    serving = health_pb2.HealthCheckResponse.SERVING
    assert health_status(target) == serving
    assert health_status(target, "invites.v1.DispatchService") == serving
    assert health_status(target, "invites.v1.AdminService") == serving


def _precheck(channel: grpc.Channel, token: str | None) -> grpc.RpcError:
    stub = dispatch_pb2_grpc.DispatchServiceStub(channel)
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    with pytest.raises(grpc.RpcError) as caught:
        stub.PrecheckSend(dispatch_pb2.PrecheckSendRequest(), metadata=metadata, timeout=5)
    return caught.value


def test_calls_without_the_right_credential_are_refused(dispatch_process: ServiceProcess) -> None:
    with grpc.insecure_channel(dispatch_process.env["DISPATCH_LISTEN"]) as channel:
        assert _precheck(channel, None).code() == grpc.StatusCode.UNAUTHENTICATED
        assert _precheck(channel, "wrong-token").code() == grpc.StatusCode.UNAUTHENTICATED
        # The ingestor's credential is for ApplyStatus only.
        assert _precheck(channel, INGESTOR_TOKEN).code() == grpc.StatusCode.PERMISSION_DENIED
        stub = dispatch_pb2_grpc.DispatchServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.ApplyStatus(
                dispatch_pb2.ApplyStatusRequest(),
                metadata=(("authorization", f"Bearer {BACKEND_TOKEN}"),),
                timeout=5,
            )
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_sigterm_flips_health_to_not_serving_then_exits_cleanly(
    dispatch_process: ServiceProcess,
) -> None:
    target = dispatch_process.env["DISPATCH_LISTEN"]
    with grpc.insecure_channel(target) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service=""), timeout=20
        )
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        dispatch_process.process.send_signal(signal.SIGTERM)
        assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
    assert dispatch_process.process.wait(timeout=15) == 0
    assert "shutting down" in dispatch_process.log()


def test_the_send_worker_needs_no_api_credential_serves_health_and_stops_cleanly(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    api_only = ("DISPATCH_BACKEND_TOKENS", "DISPATCH_INGESTOR_TOKEN", "WHATSAPP_PHONE_NUMBER_ID")
    health = f"127.0.0.1:{free_port()}"
    env = {k: v for k, v in stack_env.items() if k not in api_only}
    env.update(DISPATCHER_HEALTH_LISTEN=health, DISPATCHER_METRICS_LISTEN="", DISPATCHER_NICE="7")
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "dispatch_service.dispatcher"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        serving = health_pb2.HealthCheckResponse.SERVING
        wait_until(lambda: health_status(health) == serving, 30, "the worker to answer SERVING")
        assert health_status(health, "invites.v1.Dispatcher") == serving
        # DISPATCHER_NICE: the worker lowers its own priority to it.
        ours = os.getpriority(os.PRIO_PROCESS, 0)
        assert os.getpriority(os.PRIO_PROCESS, process.pid) == max(ours, 7)
        with grpc.insecure_channel(health) as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(service=""), timeout=20
            )
            assert next(watch).status == serving
            process.send_signal(signal.SIGTERM)
            assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
        assert process.wait(timeout=25) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = log.read_text()
    assert "shutting down" in output
    assert "stopped" in output


def test_webhook_verification_handshake(webhook_process: ServiceProcess) -> None:
    url = f"http://{webhook_process.env['WEBHOOK_LISTEN']}/webhooks/whatsapp"
    ok = httpx.get(
        url,
        params={
            "hub.mode": "subscribe",
            "hub.verify_token": VERIFY_TOKEN,
            "hub.challenge": "1158201444.x",
        },
    )
    assert (ok.status_code, ok.text) == (200, "1158201444.x")
    for params in (
        {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"},
        {"hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"},
        {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN},
    ):
        assert httpx.get(url, params=params).status_code == 403


def test_readyz_follows_the_dispatch_service(
    webhook_process: ServiceProcess, dispatch_process: ServiceProcess
) -> None:
    base = f"http://{webhook_process.env['WEBHOOK_LISTEN']}"
    assert httpx.get(f"{base}/healthz").status_code == 200
    assert httpx.get(f"{base}/readyz").status_code == 200
    dispatch_process.stop()
    wait_until(lambda: httpx.get(f"{base}/readyz").status_code == 503, 10, "readyz to answer 503")
    assert httpx.get(f"{base}/healthz").status_code == 200


@pytest.mark.parametrize(
    ("module", "missing", "how"),
    [
        ("dispatch_service", "WHATSAPP_ACCESS_TOKEN", "unset"),
        ("dispatch_service", "DISPATCH_INGESTOR_TOKEN", "empty"),
        ("dispatch_service", "DISPATCH_BACKEND_TOKENS", "placeholder"),
        ("dispatch_service.dispatcher", "WHATSAPP_ACCESS_TOKEN", "unset"),
        ("webhook_service", "WHATSAPP_APP_SECRET", "unset"),
        ("webhook_service", "WHATSAPP_VERIFY_TOKEN", "placeholder"),
    ],
)
def test_start_up_without_a_secret_fails_naming_it_and_printing_no_secret(
    stack_env: dict[str, str], module: str, missing: str, how: str
) -> None:
    env = dict(stack_env)
    if how == "unset":
        del env[missing]
    else:
        env[missing] = "" if how == "empty" else "changeme"
    result = subprocess.run(
        [sys.executable, "-m", module], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode != 0
    assert missing in result.stderr
    output = result.stdout + result.stderr
    for name in ("DISPATCH_BACKEND_TOKENS", "DISPATCH_INGESTOR_TOKEN", "WHATSAPP_APP_SECRET"):
        if env.get(name):
            assert env[name] not in output


def test_unknown_start_up_values_are_refused_clearly(
    stack_env: dict[str, str], start_service: StartService
) -> None:
    env = {**stack_env, "WHATSAPP_API_VERSION": "21"}
    result = subprocess.run(
        [sys.executable, "-m", "dispatch_service"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "WHATSAPP_API_VERSION" in result.stderr

"""The forwarder's fresh path: while one ApplyStatus call is out, small receipts wait for it to
end and then go together in one call; a full batch does not wait."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from grpc import aio

from webhook_service.forwarder import Forwarder
from webhook_service.inbox import Receipt
from webhook_service.settings import WebhookSettings

SETTINGS: dict[str, Any] = {
    "database_url": "postgresql://u@h/db",
    "dispatch_ingestor_token": "ingestor-token-1",
    "whatsapp_app_secret": "app-secret-1",
    "whatsapp_verify_token": "verify-1",
    "webhook_forward_batch_receipts": 10,
    "webhook_forward_linger_seconds": 0.001,
}


def receipt() -> Receipt:
    return Receipt(uuid.uuid4(), b"{}", datetime.now(UTC))


class Calls:
    """Stands in for Forwarder._forward_fresh: records each call's receipts; a call ends when
    the test releases it."""

    def __init__(self) -> None:
        self.batches: list[list[Receipt]] = []
        self.release = asyncio.Event()

    async def __call__(self, receipts: list[Receipt]) -> None:
        self.batches.append(receipts)
        await self.release.wait()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0.005)


@pytest.fixture
async def forwarding(monkeypatch: pytest.MonkeyPatch) -> Any:
    channel = aio.insecure_channel("127.0.0.1:9")  # never called: _forward_fresh is replaced
    forwarder = Forwarder(WebhookSettings(**SETTINGS), None, channel)  # type: ignore[arg-type]
    forwarder._catching_up = False
    calls = Calls()
    monkeypatch.setattr(forwarder, "_forward_fresh", calls)
    loop = asyncio.create_task(forwarder._forward_loop())
    yield forwarder, calls
    calls.release.set()
    loop.cancel()
    with pytest.raises(asyncio.CancelledError):
        await loop
    await channel.close(None)


async def test_small_receipts_wait_for_the_call_out_then_go_together(forwarding: Any) -> None:
    forwarder, calls = forwarding
    first = receipt()
    forwarder.submit(first)
    await settle()
    assert calls.batches == [[first]]

    waiting = [receipt() for _ in range(3)]
    for item in waiting:
        forwarder.submit(item)
        await settle()
    assert len(calls.batches) == 1  # the second slot is free, but they wait for the call

    calls.release.set()
    await settle()
    assert calls.batches == [[first], waiting]


async def test_a_full_batch_goes_while_a_call_is_out(forwarding: Any) -> None:
    forwarder, calls = forwarding
    forwarder.submit(receipt())
    await settle()
    full = [receipt() for _ in range(10)]
    for item in full:
        forwarder.submit(item)
    await settle()
    assert calls.batches[1:] == [full]

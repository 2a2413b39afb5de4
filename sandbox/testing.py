"""Helpers for tests that need the sandbox in-process: a real server on a free port, and a
webhook endpoint that records what the sandbox POSTs.

    async with serve_recorder() as hooks, serve(settings(callback_url=hooks.url)) as sandbox:
        ...  # send to sandbox.send_url(...), then await hooks.wait_for_statuses(3)
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiohttp import web

from sandbox.app import SANDBOX, create_app
from sandbox.config import SandboxSettings
from sandbox.scenario import Scenario
from sandbox.service import SandboxService

TEST_ACCESS_TOKEN = "test-access-token"
TEST_APP_SECRET = "test-app-secret"


def local_settings(**overrides: Any) -> SandboxSettings:
    """Settings for an in-process sandbox: a free port, control API on, obviously fake secrets."""
    values: dict[str, Any] = {
        "access_token": TEST_ACCESS_TOKEN,
        "app_secret": TEST_APP_SECRET,
        "listen": "127.0.0.1:0",
        "control_enabled": True,
    }
    return SandboxSettings(**(values | overrides))


def template_message(
    to: str = "16505551234",
    *,
    callback_data: str | None = None,
    name: str = "event_invitation",
    language: str = "en_US",
    body_parameters: Iterable[str] = ("Jane", "Sat 12 Oct, 19:00"),
) -> dict[str, Any]:
    """A template send body as reference §1 shows it."""
    body: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "template",
        "template": {
            "name": name,
            "language": {"code": language},
            "components": [
                {
                    "type": "body",
                    "parameters": [{"type": "text", "text": text} for text in body_parameters],
                }
            ],
        },
    }
    if callback_data is not None:
        body["biz_opaque_callback_data"] = callback_data
    return body


@dataclass(frozen=True, slots=True)
class RunningSandbox:
    """A sandbox serving on ``base_url``."""

    base_url: str
    service: SandboxService

    def send_url(self, phone_number_id: str = "106540352242922", version: str = "v26.0") -> str:
        """The Graph send URL for ``phone_number_id``."""
        return f"{self.base_url}/{version}/{phone_number_id}/messages"


@asynccontextmanager
async def serve(
    settings: SandboxSettings,
    *,
    scenario: Scenario | None = None,
    http_client: httpx.AsyncClient | None = None,
) -> AsyncIterator[RunningSandbox]:
    """Run the sandbox on ``settings.listen`` (port 0 picks a free port) until the block ends."""
    app = create_app(settings, scenario=scenario, http_client=http_client)
    async with _running(app, settings.host, settings.port) as base_url:
        yield RunningSandbox(base_url, app[SANDBOX])


@dataclass(frozen=True, slots=True)
class ReceivedPost:
    """One webhook POST as it arrived."""

    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        """The parsed body."""
        return json.loads(self.body)

    def statuses(self) -> list[dict[str, Any]]:
        """Every ``statuses[]`` item, across entries and changes, in payload order."""
        return [
            status
            for entry in self.json()["entry"]
            for change in entry["changes"]
            for status in change["value"].get("statuses", [])
        ]


@dataclass
class WebhookRecorder:
    """Records POSTs; answers them with ``answers`` in turn (then 200 forever)."""

    answers: list[int] = field(default_factory=list)
    posts: list[ReceivedPost] = field(default_factory=list)
    attempts: int = 0
    url: str = ""
    _changed: asyncio.Event = field(default_factory=asyncio.Event, init=False, repr=False)

    async def handle(self, request: web.Request) -> web.Response:
        """The webhook endpoint."""
        body = await request.read()
        self.attempts += 1
        status = self.answers.pop(0) if self.answers else 200
        self.posts.append(ReceivedPost(body, dict(request.headers)))
        self._changed.set()
        return web.Response(status=status)

    def statuses(self) -> list[dict[str, Any]]:
        """Every status received so far, in arrival order."""
        return [status for post in self.posts for status in post.statuses()]

    async def wait_for_posts(self, count: int, seconds: float = 5.0) -> list[ReceivedPost]:
        """Wait until ``count`` POSTs (acknowledged or not) arrived."""
        await self._wait(lambda: len(self.posts) >= count, seconds)
        return self.posts

    async def wait_for_statuses(self, count: int, seconds: float = 5.0) -> list[dict[str, Any]]:
        """Wait until ``count`` statuses arrived in POSTs."""
        await self._wait(lambda: len(self.statuses()) >= count, seconds)
        return self.statuses()

    async def _wait(self, done: Callable[[], bool], seconds: float) -> None:
        async with asyncio.timeout(seconds):
            while not done():
                self._changed.clear()
                await self._changed.wait()


@asynccontextmanager
async def serve_recorder(answers: Iterable[int] = ()) -> AsyncIterator[WebhookRecorder]:
    """Run a :class:`WebhookRecorder` on a free port of 127.0.0.1."""
    recorder = WebhookRecorder(answers=list(answers))
    app = web.Application()
    app.router.add_post("/webhooks/whatsapp", recorder.handle)
    async with _running(app, "127.0.0.1", 0) as base_url:
        recorder.url = f"{base_url}/webhooks/whatsapp"
        yield recorder


@asynccontextmanager
async def _running(app: web.Application, host: str, port: int) -> AsyncIterator[str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_port = runner.addresses[0][1]
        yield f"http://{host}:{bound_port}"
    finally:
        await runner.cleanup()

"""The console under test: sandbox, dispatch service, ingestor and console as real processes on
loopback, a seeded workspace, console keys issued through the API, and headless Chromium.

Chromium is Debian's (`apt-get install chromium`; `.ci/run` installs it when missing), driven by
Playwright without any downloaded browser. When it truly cannot be found the browser tests skip
with that reason; they never pass silently.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from common.generated.invites.v1 import admin_pb2, admin_pb2_grpc
from tests.e2e.conftest import BACKEND_TOKEN, ServiceProcess, free_port, wait_for_http
from tests.e2e.dispatch_stack import DispatchStack
from tests.integration.dispatch_support import World

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu"]


def chromium_path() -> str | None:
    """Debian's chromium binary, if installed."""
    for candidate in CHROMIUM_CANDIDATES:
        if Path(candidate).is_file():
            return candidate
    return shutil.which("chromium")


@dataclass
class ConsoleStack:
    """The processes of one console test and how to reach them."""

    stack: DispatchStack
    console: ServiceProcess
    world: World

    @property
    def url(self) -> str:
        """The console's base URL."""
        return f"http://{self.console.env['CONSOLE_LISTEN']}"

    def console_key(self, member: object) -> str:
        """A console key for `member`, issued through AdminService like `invites console-key`."""
        target = next(iter(self.stack.dispatchers.values())).env["DISPATCH_LISTEN"]
        with grpc.insecure_channel(target) as channel:
            reply = admin_pb2_grpc.AdminServiceStub(channel).IssueConsoleKey(
                admin_pb2.IssueConsoleKeyRequest(), metadata=self.stack.md(member), timeout=10
            )
        return str(reply.console_key)


def start_console(stack: DispatchStack, world: World) -> ConsoleStack:
    """A console process next to the stack's first dispatch replica, answering /healthz."""
    target = next(iter(stack.dispatchers.values())).env["DISPATCH_LISTEN"]
    listen = f"127.0.0.1:{free_port()}"
    console = stack.start_service(
        "console",
        "console_service",
        CONSOLE_LISTEN=listen,
        DISPATCH_TARGET=target,
        DISPATCH_BACKEND_TOKENS=BACKEND_TOKEN,
    )
    wait_for_http(console, f"http://{listen}/healthz")
    return ConsoleStack(stack, console, world)


@contextmanager
def chromium() -> Iterator[Any]:
    """Headless Debian Chromium driven by Playwright (skips, saying why, when it is missing)."""
    executable = chromium_path()
    if executable is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium; .ci/run does it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def sign_in(page: Any, console: ConsoleStack, key: str) -> None:
    """Sign in through the form and land on the runs page."""
    page.goto(f"{console.url}/signin")
    page.fill("input[name=console_key]", key)
    page.click("button:has-text('sign in')")
    page.wait_for_url(f"{console.url}/")

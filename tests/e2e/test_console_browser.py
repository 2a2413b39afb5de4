"""The operator console in a real browser (headless Chromium) against real processes: sign-in,
a run's funnel reaching its final numbers live, the message filter, resuming a paused run, and
refusal without a session."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from common.generated.invites.v1 import types_pb2 as types
from tests.e2e.conftest import StartService
from tests.e2e.console_support import ConsoleStack, chromium, sign_in, start_console
from tests.e2e.dispatch_stack import FAST_WEBHOOKS, DispatchStack, scenario
from tests.integration.dispatch_support import seed_world
from tests.integration.factories import Seeder

PHONES = [f"+1415555{n:04d}" for n in range(12)]
REJECTED = PHONES[3]
ALL_READ = {**FAST_WEBHOOKS, "read_share": 1.0, "read_without_delivered_share": 0.0}


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium for one test."""
    with chromium() as launched:
        yield launched


def console_for(
    database_url: str,
    start_service: StartService,
    stack_env: dict[str, str],
    tmp_path: Path,
    scene: dict[str, Any],
    phones: Sequence[str | None],
) -> ConsoleStack:
    stack = DispatchStack(start_service, stack_env, tmp_path)
    stack.start_sandbox(scene)
    dispatch = stack.start_dispatch("a", DISPATCH_RATE_PER_SECOND="20")
    stack.start_webhook(dispatch.env["DISPATCH_LISTEN"])
    world = seed_world(database_url, phones)
    return start_console(stack, world)


def count(page: Any, key: str) -> str:
    return str(page.text_content(f"[data-count='{key}']")).strip()


def test_every_page_refuses_without_a_session(
    database_url: str,
    start_service: StartService,
    stack_env: dict[str, str],
    tmp_path: Path,
    browser,
) -> None:
    console = console_for(database_url, start_service, stack_env, tmp_path, scenario(), PHONES[:2])
    run_id = console.stack.precheck_and_start(console.world)
    page = browser.new_page()
    for path in ("/", f"/runs/{run_id}", f"/runs/{run_id}/messages"):
        page.goto(f"{console.url}{path}")
        assert page.url == f"{console.url}/signin"
        assert run_id not in page.content()
    status = httpx.get(f"{console.url}/runs/{run_id}/status.json", follow_redirects=False)
    assert status.status_code == 401
    for action in ("resume", "cancel"):
        posted = httpx.post(f"{console.url}/runs/{run_id}/{action}", data={"csrf": "x"})
        assert posted.status_code == 401
    assert console.stack.status(console.world, run_id).run.state != types.RUN_STATE_CANCELLED

    page.fill("input[name=console_key]", "ick_not-a-real-key")
    page.click("button:has-text('sign in')")
    assert "not valid" in str(page.text_content("#error"))
    assert page.context.cookies() == []


def test_sign_in_shows_a_live_funnel_reaching_its_final_numbers_and_filters_messages(
    database_url: str,
    start_service: StartService,
    stack_env: dict[str, str],
    tmp_path: Path,
    browser,
) -> None:
    scene = scenario(webhooks=ALL_READ, faults=[{"code": 131051, "recipients": [REJECTED]}])
    console = console_for(database_url, start_service, stack_env, tmp_path, scene, [*PHONES, None])
    key = console.console_key(console.world.viewer)
    page = browser.new_page()
    sign_in(page, console, key)
    cookie = next(c for c in page.context.cookies() if c["name"] == "console_session")
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"

    run_id = console.stack.precheck_and_start(console.world)
    page.goto(f"{console.url}/")
    page.click(f"a[href='/runs/{run_id}']")
    page.wait_for_url(f"{console.url}/runs/{run_id}")
    assert count(page, "queued") == "13"
    # the page follows the run by itself (no reload by the test) until the last read receipt
    expect(page.locator("[data-count='read']")).to_have_text("11", timeout=60_000)
    assert page.text_content("#run-state") == "completed"
    final = {
        k: count(page, k) for k in ("queued", "sent", "delivered", "read", "failed", "blocked")
    }
    assert final == {
        "queued": "13",
        "sent": "11",
        "delivered": "11",
        "read": "11",
        "failed": "1",
        "blocked": "1",
    }
    failed_row = str(page.text_content("#failed"))
    assert "131051" in failed_row
    blocked = str(page.text_content("#blocked"))
    assert "no_phone" in blocked

    # the message filter: by state, by error code, by phone
    page.goto(f"{console.url}/runs/{run_id}/messages")
    page.select_option("select[name=state]", "failed")
    page.click("button:has-text('filter')")
    rows = page.locator("#messages tr").all_text_contents()[1:]
    assert len(rows) == 1
    assert REJECTED in rows[0]
    assert "131051" in rows[0]
    page.goto(f"{console.url}/runs/{run_id}/messages?error_code=131051")
    assert len(page.locator("#messages tr").all_text_contents()) == 2
    page.goto(f"{console.url}/runs/{run_id}/messages")
    page.fill("input[name=q]", PHONES[7].removeprefix("+1"))
    page.click("button:has-text('filter')")
    rows = page.locator("#messages tr").all_text_contents()[1:]
    assert len(rows) == 1
    assert PHONES[7] in rows[0]
    # ... and by household name (part of it, any case)
    with Seeder(database_url) as seed:
        ((household,),) = seed.rows(
            "SELECT u.name FROM guest_unit u JOIN person p ON p.id = u.contact_person_id"
            " WHERE p.phone_e164 = %s",
            PHONES[9],
        )
    page.goto(f"{console.url}/runs/{run_id}/messages")
    page.fill("input[name=q]", household.upper())
    page.click("button:has-text('filter')")
    rows = page.locator("#messages tr").all_text_contents()[1:]
    assert len(rows) == 1
    assert PHONES[9] in rows[0]
    assert household in rows[0]
    page.goto(f"{console.url}/runs/{run_id}/messages?state=read")
    assert len(page.locator("#messages tr").all_text_contents()) == 12

    # a viewer is offered no resume/cancel, and the page escapes what it shows
    page.goto(f"{console.url}/runs/{run_id}/messages?q=%3Cscript%3Ealert(1)%3C/script%3E")
    assert "<script>alert(1)</script>" not in page.content()
    assert page.input_value("input[name=q]") == "<script>alert(1)</script>"


def test_a_paused_run_shows_why_and_a_parent_admin_resumes_it(
    database_url: str,
    start_service: StartService,
    stack_env: dict[str, str],
    tmp_path: Path,
    browser,
) -> None:
    scene = scenario(webhooks=ALL_READ, account={"error_code": 190, "after_sends": 4})
    console = console_for(database_url, start_service, stack_env, tmp_path, scene, PHONES)
    run_id = console.stack.precheck_and_start(console.world)
    console.stack.wait_for_run(console.world, run_id, types.RUN_STATE_PAUSED)

    viewer = browser.new_page()
    sign_in(viewer, console, console.console_key(console.world.viewer))
    viewer.goto(f"{console.url}/runs/{run_id}")
    assert "190" in str(viewer.text_content("#pause-reason"))
    assert viewer.locator("#resume").count() == 0

    admin = browser.new_context().new_page()
    sign_in(admin, console, console.console_key(console.world.parent_admin))
    admin.goto(f"{console.url}/runs/{run_id}")
    assert admin.text_content("#run-state") == "paused"
    assert "190" in str(admin.text_content("#pause-reason"))

    # a forged resume without the CSRF token is refused, and the run stays paused
    forged = admin.request.post(f"{console.url}/runs/{run_id}/resume", form={"csrf": "forged"})
    assert forged.status == 403
    assert console.stack.status(console.world, run_id).run.state == types.RUN_STATE_PAUSED

    console.stack.control("PATCH", "scenario", {"account": {"error_code": None}})
    admin.click("#resume")
    admin.wait_for_url(f"{console.url}/runs/{run_id}")
    expect(admin.locator("#run-state")).to_have_text("completed", timeout=60_000)
    expect(admin.locator("[data-count='read']")).to_have_text("12", timeout=60_000)
    assert console.stack.status(console.world, run_id).run.state == types.RUN_STATE_COMPLETED


@pytest.mark.parametrize("role", ["viewer"])
def test_a_viewer_cannot_resume_even_with_its_own_csrf_token(
    database_url: str,
    start_service: StartService,
    stack_env: dict[str, str],
    tmp_path: Path,
    browser,
    role: str,
) -> None:
    scene = scenario(account={"error_code": 190, "after_sends": 1})
    console = console_for(database_url, start_service, stack_env, tmp_path, scene, PHONES[:3])
    run_id = console.stack.precheck_and_start(console.world)
    console.stack.wait_for_run(console.world, run_id, types.RUN_STATE_PAUSED)
    page = browser.new_page()
    sign_in(page, console, console.console_key(getattr(console.world, role)))
    csrf = page.get_attribute("input[name=csrf]", "value")
    reply = page.request.post(f"{console.url}/runs/{run_id}/resume", form={"csrf": str(csrf)})
    assert reply.ok  # redirected to the run page, which says why
    page.goto(reply.url)
    assert "resume refused" in str(page.text_content("#notice"))
    assert console.stack.status(console.world, run_id).run.state == types.RUN_STATE_PAUSED


def test_a_parent_admin_cancels_a_paused_run_from_its_page(
    database_url: str,
    start_service: StartService,
    stack_env: dict[str, str],
    tmp_path: Path,
    browser,
) -> None:
    scene = scenario(account={"error_code": 190, "after_sends": 1})
    console = console_for(database_url, start_service, stack_env, tmp_path, scene, PHONES[:4])
    run_id = console.stack.precheck_and_start(console.world)
    console.stack.wait_for_run(console.world, run_id, types.RUN_STATE_PAUSED)
    page = browser.new_page()
    sign_in(page, console, console.console_key(console.world.parent_admin))
    page.goto(f"{console.url}/runs/{run_id}")
    page.click("#cancel")
    page.wait_for_url(f"{console.url}/runs/{run_id}")
    expect(page.locator("#run-state")).to_have_text("cancelled")
    assert page.locator("#resume").count() == 0
    status = console.stack.status(console.world, run_id)
    assert status.run.state == types.RUN_STATE_CANCELLED

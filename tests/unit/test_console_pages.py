"""The console's pages (pure rendering): every value escaped, the funnel's arithmetic, and which
actions a role is offered."""

from __future__ import annotations

from common.generated.invites.v1 import dispatch_pb2 as pb
from common.generated.invites.v1 import types_pb2 as types
from console_service import pages
from console_service.html import Html, escape, render

EVIL = "<script>alert('x')</script>\"'&"


def viewer(role: str = "parent_admin") -> pages.Viewer:
    return pages.Viewer(display_name=EVIL, role=role, workspace_name=EVIL, csrf_token="tok")


def status(state: types.RunState.ValueType = types.RUN_STATE_PAUSED) -> pb.RunStatus:
    return pb.RunStatus(
        run=pb.Run(run_id="r-1", event_id="e-1", state=state, pause_reason=EVIL),
        total_count=10,
        by_state=[
            types.StateCount(state=types.MESSAGE_STATE_SENT, count=2),
            types.StateCount(state=types.MESSAGE_STATE_DELIVERED, count=3),
            types.StateCount(state=types.MESSAGE_STATE_READ, count=1),
            types.StateCount(state=types.MESSAGE_STATE_FAILED, count=1),
            types.StateCount(state=types.MESSAGE_STATE_BLOCKED, count=2),
            types.StateCount(state=types.MESSAGE_STATE_QUEUED, count=1),
        ],
        failed_by_error_code=[types.ErrorCodeCount(error_code=131026, count=1)],
    )


def test_render_escapes_values_but_keeps_markup() -> None:
    out = render("<p>{}</p>{}", EVIL, Html("<b>ok</b>"))
    assert "<script>" not in out
    assert "&lt;script&gt;" in out
    assert "&#x27;" in out
    assert "<b>ok</b>" in out
    assert escape(Html("<i>")) == "<i>"


def test_the_funnel_counts_each_stage_with_the_later_ones() -> None:
    assert pages.funnel(status()) == {
        "queued": 10,
        "sent": 6,
        "delivered": 4,
        "read": 1,
        "failed": 1,
        "blocked": 2,
        "cancelled": 0,
        "waiting": 1,
    }


def test_messages_not_created_yet_are_waiting() -> None:
    creating = status()
    creating.total_count, creating.uncreated_count = 14, 4
    assert pages.funnel(creating)["queued"] == 14
    assert pages.funnel(creating)["waiting"] == 5


def test_a_run_page_escapes_everything_and_offers_actions_by_role() -> None:
    page = pages.run_page(viewer(), status(), {131026: EVIL}, EVIL, EVIL)
    assert "<script>alert" not in page
    assert page.count("&lt;script&gt;") >= 4  # reason, event, title, notice, names
    assert "id='resume'" in page
    assert "value='tok'" in page
    assert page.count("<script") == 1
    assert '<script nonce="">' in page
    with_nonce = pages.run_page(viewer(), status(), {}, "e", "", nonce="n0nce")
    assert '<script nonce="n0nce">' in with_nonce
    as_viewer = pages.run_page(viewer("viewer"), status(), {}, "e", "")
    assert "id='resume'" not in as_viewer
    assert "id='cancel'" not in as_viewer


def test_a_messages_page_escapes_households_and_the_query() -> None:
    message = pb.RunMessage(
        message_id="m", guest_unit_id="u-1", phone_e164="+1415", state=types.MESSAGE_STATE_FAILED
    )
    page = pages.messages_page(
        viewer(), "r-1", pages.MessageFilter(query=EVIL), [message], {"u-1": EVIL}, False
    )
    assert "<script>alert" not in page
    assert "&lt;script&gt;" in page

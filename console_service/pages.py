"""The console's pages (pure rendering: data in, escaped HTML out).

No JavaScript build step: plain server-rendered HTML, one small inline script on a run's page that
polls its JSON status and updates the funnel (text set with textContent, never as markup).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

from common.generated.invites.v1 import dispatch_pb2 as pb
from common.generated.invites.v1 import types_pb2 as types
from console_service.html import Html, join, render

STYLE = Html("""
body{font-family:system-ui,sans-serif;margin:0;color:#222}
header{background:#1f3a5f;color:#fff;padding:.6em 1em;display:flex;gap:1em;align-items:center}
header a{color:#fff} header form{margin-left:auto} main{padding:1em;max-width:70em}
table{border-collapse:collapse}
td,th{border-bottom:1px solid #ddd;padding:.3em .6em;text-align:left}
.bar{background:#e5e9f0;width:30em;height:1.1em} .bar>div{background:#4a7ab5;height:100%}
.paused{background:#fff3cd;padding:.6em;border:1px solid #e0c36b} .error{color:#a40000}
.n{text-align:right;font-variant-numeric:tabular-nums}
""")
FINAL_RUN_STATES = (types.RUN_STATE_COMPLETED, types.RUN_STATE_CANCELLED)
MESSAGE_STATES = [
    n.removeprefix("MESSAGE_STATE_").lower()
    for n in types.MessageState.keys()  # noqa: SIM118 - a proto enum wrapper
    if not n.endswith("UNSPECIFIED")
]


def state_name(value: int) -> str:
    """`MESSAGE_STATE_DELIVERED` -> `delivered`."""
    return (
        types.MessageState.Name(types.MessageState.ValueType(value))
        .removeprefix("MESSAGE_STATE_")
        .lower()
    )


def run_state_name(value: int) -> str:
    """`RUN_STATE_PAUSED` -> `paused`."""
    return types.RunState.Name(types.RunState.ValueType(value)).removeprefix("RUN_STATE_").lower()


def reason_name(value: int) -> str:
    """`REJECTION_REASON_DO_NOT_MESSAGE` -> `do_not_message`."""
    return (
        types.RejectionReason.Name(types.RejectionReason.ValueType(value))
        .removeprefix("REJECTION_REASON_")
        .lower()
    )


@dataclass(frozen=True)
class Viewer:
    """Who is signed in (for the header and which actions to offer)."""

    display_name: str
    role: str
    workspace_name: str
    csrf_token: str

    @property
    def may_act_on_runs(self) -> bool:
        """Resume and cancel are offered to parent admins (the service checks again)."""
        return self.role == "parent_admin"


def page(title: str, body: Html, viewer: Viewer | None = None) -> Html:
    """A whole document."""
    if viewer is None:
        header = render("<header><strong>invite dispatch console</strong></header>")
    else:
        header = render(
            "<header><strong>invite dispatch console</strong><a href='/'>runs</a>"
            "<span>{} &middot; {} ({})</span>"
            "<form method='post' action='/signout'><input type='hidden' name='csrf' value='{}'>"
            "<button>sign out</button></form></header>",
            viewer.workspace_name,
            viewer.display_name,
            viewer.role,
            viewer.csrf_token,
        )
    return render(
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{}</title>"
        "<style>{}</style></head><body>{}<main>{}</main></body></html>",
        title,
        STYLE,
        header,
        body,
    )


def signin_page(error: str = "") -> Html:
    """The sign-in form."""
    message = render("<p class='error' id='error'>{}</p>", error) if error else Html("")
    body = render(
        "<h1>Sign in</h1>{}"
        "<p>Sign in with a console key: <code>.venv/bin/invites console-key</code> issues one "
        "for your membership (<code>make up</code> prints one for the demo's parent admin).</p>"
        "<form method='post' action='/signin'><label>console key "
        "<input name='console_key' type='password' autocomplete='off' size='60' autofocus>"
        "</label> <button>sign in</button></form>",
        message,
    )
    return page("sign in", body)


@dataclass(frozen=True)
class RunRow:
    """One run in the runs list."""

    event_name: str
    status: pb.RunStatus


def runs_page(viewer: Viewer, rows: Sequence[RunRow]) -> Html:
    """The workspace's runs with state and progress."""
    lines = [
        render(
            "<tr><td><a href='/runs/{}'>{}</a></td><td>{}</td><td>{}</td>"
            "<td class='n'>{}/{}</td><td class='n'>{}%</td><td>{}</td></tr>",
            r.status.run.run_id,
            r.status.run.run_id[:8],
            r.event_name,
            run_state_name(r.status.run.state),
            r.status.final_count,
            r.status.total_count,
            round(r.status.progress * 100),
            r.status.run.created_at.ToDatetime().strftime("%Y-%m-%d %H:%M:%SZ"),
        )
        for r in rows
    ]
    table = (
        render(
            "<table id='runs'><tr><th>run</th><th>event</th><th>state</th><th>final</th>"
            "<th>progress</th><th>created</th></tr>{}</table>",
            join(lines),
        )
        if lines
        else Html("<p>No runs yet: <code>.venv/bin/invites demo</code> starts one.</p>")
    )
    return page("runs", render("<h1>Runs</h1>{}", table), viewer)


def funnel(status: pb.RunStatus) -> dict[str, int]:
    """queued (every message of the run), sent, delivered, read: each includes the later ones."""
    counts = {state_name(c.state): int(c.count) for c in status.by_state}
    read = counts.get("read", 0)
    delivered = counts.get("delivered", 0) + read
    sent = counts.get("sent", 0) + delivered
    return {
        "queued": int(status.total_count),
        "sent": sent,
        "delivered": delivered,
        "read": read,
        "failed": counts.get("failed", 0),
        "blocked": counts.get("blocked", 0),
        "cancelled": counts.get("cancelled", 0),
        # Messages StartRun has not created yet wait too (uncreated_count: in no state).
        "waiting": counts.get("queued", 0) + counts.get("sending", 0) + int(status.uncreated_count),
    }


def status_json(status: pb.RunStatus, titles: dict[int, str]) -> dict[str, object]:
    """What the run page's script polls."""
    return {
        "state": run_state_name(status.run.state),
        "final": status.run.state in FINAL_RUN_STATES,
        "pause_reason": status.run.pause_reason,
        "funnel": funnel(status),
        "failed_by_code": {
            str(c.error_code): {"count": int(c.count), "title": titles.get(c.error_code, "")}
            for c in status.failed_by_error_code
        },
        "blocked_by_reason": {
            reason_name(r.reason): int(r.count) for r in status.blocked_by_reason
        },
    }


def _bar(key: str, count: int, total: int) -> Html:
    width = round(100 * count / total) if total else 0
    return render(
        "<tr><th>{}</th><td class='n' data-count='{}'>{}</td>"
        "<td><div class='bar'><div data-bar='{}' style='width:{}%'></div></div></td></tr>",
        key,
        key,
        count,
        key,
        width,
    )


RUN_SCRIPT = Html("""
<script nonce="NONCE">
(function () {
  // Follows the run: its numbers every second while it moves, and for two minutes after it is
  // final (delivery and read receipts keep coming). A change of state reloads the page once, so
  // the pause reason and the actions offered match the run.
  const url = document.body.dataset.statusUrl;
  const stateCell = document.getElementById("run-state");
  let afterFinal = 0;
  async function poll() {
    let data;
    try { data = await (await fetch(url, {credentials: "same-origin"})).json(); }
    catch (e) { setTimeout(poll, 2000); return; }
    if (!data.funnel) return;  // signed out
    const total = data.funnel.queued || 0;
    for (const [key, value] of Object.entries(data.funnel)) {
      const cell = document.querySelector("[data-count='" + key + "']");
      if (cell) cell.textContent = String(value);
      const bar = document.querySelector("[data-bar='" + key + "']");
      if (bar) bar.style.width = (total ? Math.round(100 * value / total) : 0) + "%";
    }
    if (stateCell.dataset.initial !== data.state) { location.reload(); return; }
    if (data.final && ++afterFinal > 120) return;
    if (data.state === "paused") return;
    setTimeout(poll, 1000);
  }
  setTimeout(poll, 1000);
})();
</script>
""")


def run_page(
    viewer: Viewer,
    status: pb.RunStatus,
    titles: dict[int, str],
    event_name: str,
    notice: str,
    nonce: str = "",
) -> Html:
    """One run: its funnel, failures by code, blocked by reason, pause reason and actions.

    The page's one script carries `nonce`: the Content-Security-Policy runs no other script.
    """
    run = status.run
    counts = funnel(status)
    total = counts["queued"]
    bars = join(
        _bar(k, counts[k], total)
        for k in ("queued", "sent", "delivered", "read", "failed", "blocked", "cancelled")
    )
    failed = join(
        render(
            "<tr><td><a href='/runs/{}/messages?{}'>{}</a></td><td>{}</td>"
            "<td class='n'>{}</td></tr>",
            run.run_id,
            urlencode({"state": "failed", "error_code": c.error_code}),
            c.error_code,
            titles.get(c.error_code, ""),
            c.count,
        )
        for c in status.failed_by_error_code
    )
    failed_reasons = join(
        render("<tr><td>{}</td><td class='n'>{}</td></tr>", reason_name(r.reason), r.count)
        for r in status.failed_by_reason
    )
    blocked = join(
        render("<tr><td>{}</td><td class='n'>{}</td></tr>", reason_name(r.reason), r.count)
        for r in status.blocked_by_reason
    )
    paused = Html("")
    if run.state == types.RUN_STATE_PAUSED:
        actions = Html("")
        if viewer.may_act_on_runs:
            actions = render(
                "<form method='post' action='/runs/{}/resume' style='display:inline'>"
                "<input type='hidden' name='csrf' value='{}'><button id='resume'>resume</button>"
                "</form> <form method='post' action='/runs/{}/cancel' style='display:inline'>"
                "<input type='hidden' name='csrf' value='{}'><button id='cancel'>cancel</button>"
                "</form>",
                run.run_id,
                viewer.csrf_token,
                run.run_id,
                viewer.csrf_token,
            )
        paused = render(
            "<div class='paused'><strong>paused</strong>: <span id='pause-reason'>{}</span> {}"
            "</div>",
            run.pause_reason or "no reason given",
            actions,
        )
    elif run.state not in FINAL_RUN_STATES and viewer.may_act_on_runs:
        paused = render(
            "<form method='post' action='/runs/{}/cancel'><input type='hidden' name='csrf' "
            "value='{}'><button id='cancel'>cancel this run</button></form>",
            run.run_id,
            viewer.csrf_token,
        )
    note = render("<p class='error' id='notice'>{}</p>", notice) if notice else Html("")
    body = render(
        "<h1>Run {}</h1>{}<p>event {} &middot; state <strong id='run-state' data-initial='{}'>"
        "{}</strong> &middot; <a href='/runs/{}/messages'>messages</a></p>{}"
        "<h2>Funnel</h2><table id='funnel'>{}</table>"
        "<h2>Failed by error code</h2><table id='failed'><tr><th>code</th><th>title</th>"
        "<th>count</th></tr>{}</table><table id='failed-reasons'>{}</table>"
        "<h2>Blocked by reason</h2><table id='blocked'>{}</table>{}",
        run.run_id,
        note,
        event_name,
        run_state_name(run.state),
        run_state_name(run.state),
        run.run_id,
        paused,
        bars,
        failed,
        failed_reasons,
        blocked,
        Html(RUN_SCRIPT.replace('nonce="NONCE"', str(render('nonce="{}"', nonce)), 1)),
    )
    document = page(f"run {run.run_id[:8]}", body, viewer)
    return Html(
        document.replace(
            "<body>", str(render("<body data-status-url='/runs/{}/status.json'>", run.run_id)), 1
        )
    )


@dataclass(frozen=True)
class MessageFilter:
    """The message page's query."""

    state: str = ""
    error_code: int | None = None
    query: str = ""
    page: int = 1

    def query_string(self, **changes: object) -> str:
        """This filter as a query string, with `changes`."""
        values: dict[str, object] = {
            "state": self.state,
            "error_code": "" if self.error_code is None else self.error_code,
            "q": self.query,
            "page": self.page,
        }
        values.update(changes)
        return urlencode({k: v for k, v in values.items() if v not in ("", None)})


def messages_page(
    viewer: Viewer,
    run_id: str,
    flt: MessageFilter,
    rows: Sequence[pb.RunMessage],
    households: dict[str, str],
    has_next: bool,
) -> Html:
    """A run's messages, filtered and paged."""
    options = join(
        render(
            "<option value='{}'{}>{}</option>", s, Html(" selected") if s == flt.state else "", s
        )
        for s in ["", *MESSAGE_STATES]
    )
    form = render(
        "<form method='get' id='filter'><label>state <select name='state'>{}</select></label> "
        "<label>error code <input name='error_code' size='8' value='{}'></label> "
        "<label>phone or household <input name='q' value='{}'></label> "
        "<button>filter</button></form>",
        options,
        "" if flt.error_code is None else flt.error_code,
        flt.query,
    )
    lines = join(
        render(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class='n'>{}</td></tr>",
            m.phone_e164 or "-",
            households.get(m.guest_unit_id, m.guest_unit_id[:8]),
            state_name(m.state),
            reason_name(m.reason) if m.reason else "",
            f"{m.error_code} {m.error_title}" if m.error_code else "",
            m.attempt_count,
        )
        for m in rows
    )
    nav = []
    if flt.page > 1:
        nav.append(
            render("<a id='prev' href='?{}'>previous</a>", flt.query_string(page=flt.page - 1))
        )
    if has_next:
        nav.append(render("<a id='next' href='?{}'>next</a>", flt.query_string(page=flt.page + 1)))
    body = render(
        "<h1>Messages of run <a href='/runs/{}'>{}</a></h1>{}"
        "<table id='messages'><tr><th>phone</th><th>household</th><th>state</th><th>reason</th>"
        "<th>error</th><th>attempts</th></tr>{}</table><p>page {} {}</p>",
        run_id,
        run_id[:8],
        form,
        lines,
        flt.page,
        join(nav),
    )
    return page("messages", body, viewer)


def error_page(viewer: Viewer | None, title: str, message: str) -> Html:
    """A refusal or failure, said plainly."""
    return page(title, render("<h1>{}</h1><p class='error'>{}</p>", title, message), viewer)

"""The console's aiohttp application (composition root): sessions, CSRF, and the page handlers.

Access: every page needs a signed-in member. Sign-in exchanges a console key (issued by
`invites console-key`) for its membership through AdminService.ResolveConsoleKey; the session
(a random id in an HttpOnly, SameSite=Strict cookie) keeps only that membership id, and every
gRPC call sends it as `x-actor-id`, so the dispatch service reads the member's role from the
database on every call like for any backend. POST actions need the session's CSRF token and,
when the browser sends one, an Origin of this console.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import grpc
from aiohttp import web
from grpc import aio

from common.generated.invites.v1 import admin_pb2, admin_pb2_grpc, dispatch_pb2_grpc
from common.generated.invites.v1 import dispatch_pb2 as pb
from common.generated.invites.v1 import types_pb2 as types
from common.settings import split_secrets
from console_service import pages
from console_service.settings import ConsoleSettings

log = logging.getLogger(__name__)

COOKIE = "console_session"
CALL_SECONDS = 15.0
PAGE_SIZE = 50
SCAN_LIMIT = 20_000  # most messages a search or error-code filter looks through
RUNS_SHOWN = 100
ROLE_NAMES = {
    types.ROLE_PARENT_ADMIN: "parent_admin",
    types.ROLE_ADMIN: "admin",
    types.ROLE_VIEWER: "viewer",
}


@dataclass
class Session:
    """A signed-in member (kept in memory; a restart signs everyone out)."""

    member_id: str
    viewer: pages.Viewer
    expires: float


@dataclass
class Console:
    """The app's state: one channel to the dispatch service and the live sessions."""

    settings: ConsoleSettings
    channel: aio.Channel
    token: str
    sessions: dict[str, Session] = field(default_factory=dict)

    @property
    def dispatch(self) -> dispatch_pb2_grpc.DispatchServiceAsyncStub:
        """The DispatchService stub."""
        return dispatch_pb2_grpc.DispatchServiceStub(self.channel)

    @property
    def admin(self) -> admin_pb2_grpc.AdminServiceAsyncStub:
        """The AdminService stub."""
        return admin_pb2_grpc.AdminServiceStub(self.channel)

    def metadata(self, member_id: str = "") -> tuple[tuple[str, str], ...]:
        """Credentials of a call on behalf of `member_id`."""
        items = [("authorization", f"Bearer {self.token}")]
        if member_id:
            items.append(("x-actor-id", member_id))
        return tuple(items)

    def session_of(self, request: web.Request) -> Session | None:
        """The request's live session, if any."""
        session = self.sessions.get(request.cookies.get(COOKIE, ""))
        if session is None or session.expires < time.monotonic():
            return None
        return session


CONSOLE = web.AppKey("console", Console)
Handler = Callable[[web.Request, Session], Awaitable[web.StreamResponse]]


def _html(body: str, status: int = 200, nonce: str = "") -> web.Response:
    """A page with a strict Content-Security-Policy: scripts run only with this response's
    nonce (never an inline script an injected value could smuggle in)."""
    scripts = f"'nonce-{nonce}'" if nonce else "'none'"
    return web.Response(
        text=body,
        status=status,
        content_type="text/html",
        headers={
            "Content-Security-Policy": f"default-src 'self'; script-src {scripts}; "
            "style-src 'unsafe-inline'; frame-ancestors 'none'; form-action 'self'; "
            "base-uri 'none'",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin",
            "Cache-Control": "no-store",
        },
    )


def signed_in(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Refuse without a session (pages: to the sign-in form; JSON: 401); map gRPC errors."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        console = request.app[CONSOLE]
        session = console.session_of(request)
        if session is None:
            if request.path.endswith(".json") or request.method != "GET":
                return web.json_response({"error": "sign in first"}, status=401)
            raise web.HTTPSeeOther("/signin")
        try:
            return await handler(request, session)
        except aio.AioRpcError as error:
            code = error.code()
            if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                if code == grpc.StatusCode.UNAUTHENTICATED:
                    console.sessions.pop(request.cookies.get(COOKIE, ""), None)
                return _html(
                    pages.error_page(session.viewer, "refused", error.details() or code.name),
                    status=403,
                )
            if code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                return _html(
                    pages.error_page(session.viewer, "not found", error.details() or ""), 404
                )
            log.warning("dispatch call failed: %s %s", code.name, error.details())
            return _html(
                pages.error_page(session.viewer, "the dispatch service failed", code.name), 502
            )

    return wrapped


def check_csrf(request: web.Request, session: Session, form: Any) -> None:
    """403 unless the form carries the session's token and any Origin is this console."""
    origin = request.headers.get("Origin")
    if origin is not None and origin != f"{request.scheme}://{request.host}":
        raise web.HTTPForbidden(text="cross-site request refused")
    token = str(form.get("csrf", ""))
    if not hmac.compare_digest(token.encode(), session.viewer.csrf_token.encode()):
        raise web.HTTPForbidden(text="missing or wrong CSRF token")


# --- sign-in ---------------------------------------------------------------------------------


async def signin_form(request: web.Request) -> web.StreamResponse:
    """GET /signin."""
    return _html(pages.signin_page())


async def signin(request: web.Request) -> web.StreamResponse:
    """POST /signin: resolve the key, open a session, set the cookie."""
    console = request.app[CONSOLE]
    origin = request.headers.get("Origin")
    if origin is not None and origin != f"{request.scheme}://{request.host}":
        raise web.HTTPForbidden(text="cross-site request refused")
    form = await request.post()
    key = str(form.get("console_key", "")).strip()
    if not key:
        return _html(pages.signin_page("enter a console key"), status=400)
    try:
        reply = await console.admin.ResolveConsoleKey(
            admin_pb2.ResolveConsoleKeyRequest(console_key=key),
            metadata=console.metadata(),
            timeout=CALL_SECONDS,
        )
    except aio.AioRpcError as error:
        if error.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.INVALID_ARGUMENT):
            return _html(pages.signin_page("that console key is not valid"), status=401)
        log.warning("sign-in failed: %s", error.code().name)
        return _html(pages.signin_page("the dispatch service did not answer"), status=502)
    now = time.monotonic()
    for stale in [k for k, v in console.sessions.items() if v.expires < now]:
        del console.sessions[stale]  # expired sign-ins are dropped as new ones come
    session_id = secrets.token_urlsafe(32)
    console.sessions[session_id] = Session(
        member_id=reply.member.member_id,
        viewer=pages.Viewer(
            display_name=reply.member.display_name,
            role=ROLE_NAMES.get(reply.member.role, "viewer"),
            workspace_name=reply.workspace.name,
            csrf_token=secrets.token_urlsafe(32),
        ),
        expires=time.monotonic() + console.settings.console_session_seconds,
    )
    response = web.HTTPSeeOther("/")
    response.set_cookie(
        COOKIE,
        session_id,
        httponly=True,
        samesite="Strict",
        path="/",
        max_age=int(console.settings.console_session_seconds),
        secure=request.secure,
    )
    raise response


@signed_in
async def signout(request: web.Request, session: Session) -> web.StreamResponse:
    """POST /signout."""
    check_csrf(request, session, await request.post())
    request.app[CONSOLE].sessions.pop(request.cookies.get(COOKIE, ""), None)
    response = web.HTTPSeeOther("/signin")
    response.del_cookie(COOKIE, path="/")
    raise response


# --- pages -----------------------------------------------------------------------------------


@signed_in
async def runs(request: web.Request, session: Session) -> web.StreamResponse:
    """GET /: the workspace's runs, newest first, with state and progress."""
    console = request.app[CONSOLE]
    md = console.metadata(session.member_id)
    events = await console.admin.ListEvents(
        admin_pb2.ListEventsRequest(), metadata=md, timeout=CALL_SECONDS
    )
    found: list[tuple[str, pb.Run]] = []
    for event in events.events:
        reply = await console.dispatch.GetEventInvitations(
            pb.GetEventInvitationsRequest(event_id=event.event_id, page_size=1),
            metadata=md,
            timeout=CALL_SECONDS,
        )
        found += [(event.name, run) for run in reply.runs]
    found.sort(key=lambda item: item[1].created_at.ToNanoseconds(), reverse=True)
    rows = []
    for event_name, run in found[:RUNS_SHOWN]:
        status = await console.dispatch.GetRunStatus(
            pb.GetRunStatusRequest(run_id=run.run_id), metadata=md, timeout=CALL_SECONDS
        )
        rows.append(pages.RunRow(event_name, status.status))
    return _html(pages.runs_page(session.viewer, rows))


async def _error_titles(console: Console, md: Any, run_id: str) -> dict[int, str]:
    """Meta's title of each error code among the run's failed messages (first pages only)."""
    titles: dict[int, str] = {}
    reply = await console.dispatch.ListRunMessages(
        pb.ListRunMessagesRequest(
            run_id=run_id, states=[types.MESSAGE_STATE_FAILED], page_size=1000
        ),
        metadata=md,
        timeout=CALL_SECONDS,
    )
    for message in reply.messages:
        if message.error_code and message.error_title:
            titles.setdefault(message.error_code, message.error_title)
    return titles


async def _status(console: Console, md: Any, run_id: str) -> pb.RunStatus:
    reply = await console.dispatch.GetRunStatus(
        pb.GetRunStatusRequest(run_id=run_id), metadata=md, timeout=CALL_SECONDS
    )
    return reply.status


@signed_in
async def run(request: web.Request, session: Session) -> web.StreamResponse:
    """GET /runs/{run_id}: the funnel, failures, blocks, pause reason and actions."""
    console = request.app[CONSOLE]
    md = console.metadata(session.member_id)
    run_id = request.match_info["run_id"]
    status = await _status(console, md, run_id)
    events = await console.admin.ListEvents(
        admin_pb2.ListEventsRequest(), metadata=md, timeout=CALL_SECONDS
    )
    event_name = next(
        (e.name for e in events.events if e.event_id == status.run.event_id), status.run.event_id
    )
    titles = await _error_titles(console, md, run_id)
    notice = request.query.get("notice", "")
    nonce = secrets.token_urlsafe(16)
    return _html(
        pages.run_page(session.viewer, status, titles, event_name, notice, nonce), nonce=nonce
    )


@signed_in
async def run_status(request: web.Request, session: Session) -> web.StreamResponse:
    """GET /runs/{run_id}/status.json: what the run page polls."""
    console = request.app[CONSOLE]
    md = console.metadata(session.member_id)
    run_id = request.match_info["run_id"]
    status = await _status(console, md, run_id)
    titles = await _error_titles(console, md, run_id) if status.failed_by_error_code else {}
    return web.json_response(
        pages.status_json(status, titles), headers={"Cache-Control": "no-store"}
    )


def _filter(query: Any) -> pages.MessageFilter:
    state = str(query.get("state", ""))
    if state and state not in pages.MESSAGE_STATES:
        raise web.HTTPBadRequest(text=f"unknown state {state!r}")
    raw_code = str(query.get("error_code", "")).strip()
    if raw_code and not raw_code.isdigit():
        raise web.HTTPBadRequest(text="error_code must be a number")
    raw_page = str(query.get("page", "1"))
    page = int(raw_page) if raw_page.isdigit() and int(raw_page) > 0 else 1
    return pages.MessageFilter(
        state=state,
        error_code=int(raw_code) if raw_code else None,
        query=str(query.get("q", "")).strip()[:100],
        page=page,
    )


async def _households(console: Console, md: Any) -> dict[str, str]:
    """guest unit id -> household name (every page, bounded)."""
    names: dict[str, str] = {}
    token = ""
    while len(names) < SCAN_LIMIT:
        reply = await console.admin.ListGuestUnits(
            admin_pb2.ListGuestUnitsRequest(page_size=1000, page_token=token),
            metadata=md,
            timeout=CALL_SECONDS,
        )
        names.update({u.guest_unit_id: u.name for u in reply.guest_units})
        token = reply.next_page_token
        if not token:
            break
    return names


def _matches(message: pb.RunMessage, flt: pages.MessageFilter, households: dict[str, str]) -> bool:
    if flt.error_code is not None and message.error_code != flt.error_code:
        return False
    if not flt.query:
        return True
    needle = flt.query.casefold()
    digits = "".join(c for c in needle if c.isdigit())
    if digits and digits == needle.lstrip("+").replace(" ", "") and digits in message.phone_e164:
        return True
    household = households.get(message.guest_unit_id, "")
    return needle in household.casefold() or needle == message.guest_unit_id


@signed_in
async def messages(request: web.Request, session: Session) -> web.StreamResponse:
    """GET /runs/{run_id}/messages?state=&error_code=&q=&page=: filtered, searched, paged."""
    console = request.app[CONSOLE]
    md = console.metadata(session.member_id)
    run_id = request.match_info["run_id"]
    flt = _filter(request.query)
    households = await _households(console, md)
    states = [types.MessageState.Value(f"MESSAGE_STATE_{flt.state.upper()}")] if flt.state else []
    wanted_from = (flt.page - 1) * PAGE_SIZE
    wanted_to = wanted_from + PAGE_SIZE + 1  # one more: is there a next page?
    kept: list[pb.RunMessage] = []
    token = ""
    scanned = 0
    while len(kept) < wanted_to and scanned < SCAN_LIMIT:
        reply = await console.dispatch.ListRunMessages(
            pb.ListRunMessagesRequest(
                run_id=run_id, states=states, page_size=1000, page_token=token
            ),
            metadata=md,
            timeout=CALL_SECONDS,
        )
        scanned += len(reply.messages)
        kept += [m for m in reply.messages if _matches(m, flt, households)]
        token = reply.next_page_token
        if not token:
            break
    rows = kept[wanted_from:wanted_to]
    has_next = len(rows) > PAGE_SIZE
    return _html(
        pages.messages_page(session.viewer, run_id, flt, rows[:PAGE_SIZE], households, has_next)
    )


async def _run_action(request: web.Request, session: Session, action: str) -> web.StreamResponse:
    console = request.app[CONSOLE]
    check_csrf(request, session, await request.post())
    run_id = request.match_info["run_id"]
    md = console.metadata(session.member_id)
    notice = ""
    try:
        if action == "resume":
            await console.dispatch.ResumeRun(
                pb.ResumeRunRequest(run_id=run_id), metadata=md, timeout=CALL_SECONDS
            )
        else:
            await console.dispatch.CancelRun(
                pb.CancelRunRequest(run_id=run_id), metadata=md, timeout=CALL_SECONDS
            )
    except aio.AioRpcError as error:
        if error.code() in (
            grpc.StatusCode.PERMISSION_DENIED,
            grpc.StatusCode.FAILED_PRECONDITION,
        ):
            notice = f"{action} refused: {error.details()}"
        else:
            raise
    location = f"/runs/{run_id}"
    if notice:
        location += "?" + urlencode({"notice": notice})
    raise web.HTTPSeeOther(location)


@signed_in
async def resume(request: web.Request, session: Session) -> web.StreamResponse:
    """POST /runs/{run_id}/resume."""
    return await _run_action(request, session, "resume")


@signed_in
async def cancel(request: web.Request, session: Session) -> web.StreamResponse:
    """POST /runs/{run_id}/cancel."""
    return await _run_action(request, session, "cancel")


async def healthz(request: web.Request) -> web.StreamResponse:
    """GET /healthz: the process answers."""
    return web.Response(text="ok")


def create_app(settings: ConsoleSettings) -> web.Application:
    """The console application; its channel opens on start-up and closes on shutdown."""
    app = web.Application(client_max_size=64 * 1024)

    async def lifecycle(app: web.Application) -> Any:
        if settings.dispatch_tls_ca_file:
            ca = Path(settings.dispatch_tls_ca_file).read_bytes()  # noqa: ASYNC240 - once at start
            credentials = grpc.ssl_channel_credentials(ca)
            channel = aio.secure_channel(settings.dispatch_target, credentials)
        else:
            channel = aio.insecure_channel(settings.dispatch_target)
        token = split_secrets(settings.dispatch_backend_tokens)[0]
        app[CONSOLE] = Console(settings=settings, channel=channel, token=token)
        yield
        await channel.close(None)

    app.cleanup_ctx.append(lifecycle)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/signin", signin_form)
    app.router.add_post("/signin", signin)
    app.router.add_post("/signout", signout)
    app.router.add_get("/", runs)
    app.router.add_get("/runs/{run_id}", run)
    app.router.add_get("/runs/{run_id}/status.json", run_status)
    app.router.add_get("/runs/{run_id}/messages", messages)
    app.router.add_post("/runs/{run_id}/resume", resume)
    app.router.add_post("/runs/{run_id}/cancel", cancel)
    return app

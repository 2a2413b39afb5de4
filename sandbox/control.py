"""The control API under ``/_sandbox/``: ledger, stats, reset, scenario, templates, webhooks.

Mounted only when ``SANDBOX_CONTROL_ENABLED`` is true, and never under the Graph path. Bodies
are JSON; an empty body means "all defaults". Errors are ``{"error": ...}`` with HTTP 400/404.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sandbox.errors import graph_error
from sandbox.scenario import Scenario, Share, TemplateSpec
from sandbox.service import NotFound, SandboxService

PREFIX = "/_sandbox"
_Body = TypeVar("_Body", bound=BaseModel)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class FlushRequest(_Request):
    """``POST /_sandbox/webhooks/flush``."""

    shuffle: bool = False
    duplicate_share: Share = 0.0
    batch_size: int | None = Field(None, ge=1, le=1000)
    include_scheduled: bool = False
    """Also release events whose delay has not passed yet."""
    wait: bool = True
    """Answer only once every POST was acknowledged or given up on."""


class UserPreferencesRequest(_Request):
    """``POST /_sandbox/events/user-preferences``."""

    wa_id: str = Field(min_length=1)
    value: Literal["stop", "resume"] = "stop"
    phone_number_id: str | None = None
    user_id: str | None = None
    """The user id to report; default: the one the sandbox reports for this phone."""
    phone_shared: bool | None = None
    """False: no ``wa_id`` (user id only); default: the scenario's ``webhooks.recipients``."""


class InboundTextRequest(_Request):
    """``POST /_sandbox/events/inbound-text``."""

    wa_id: str = Field(min_length=1, alias="from")
    text: str = "STOP"
    profile_name: str = "Sandbox User"
    phone_number_id: str | None = None
    user_id: str | None = None
    """The user id to report; default: the one the sandbox reports for this phone."""
    phone_shared: bool | None = None
    """False: no ``from`` (``from_user_id`` only); default: the scenario's recipients mode."""


class CallRequest(_Request):
    """``POST /_sandbox/events/call``."""

    wa_id: str = Field(min_length=1, alias="from")
    event: Literal["connect", "terminate"] = "connect"
    phone_number_id: str | None = None


class EchoRequest(_Request):
    """``POST /_sandbox/events/echo``."""

    wa_id: str = Field(min_length=1, alias="to")
    text: str = "See you there!"
    phone_number_id: str | None = None


class TemplateStatusRequest(_Request):
    """``POST /_sandbox/events/template-status``."""

    name: str
    language: str
    event: str = Field(min_length=1)
    reason: str = "NONE"


class TemplateQualityRequest(_Request):
    """``POST /_sandbox/events/template-quality``."""

    name: str
    language: str
    score: Literal["GREEN", "YELLOW", "RED", "UNKNOWN"]


class TemplateCategoryRequest(_Request):
    """``POST /_sandbox/events/template-category``."""

    name: str
    language: str
    category: Literal["MARKETING", "UTILITY", "AUTHENTICATION"]


class StatusRequest(_Request):
    """``POST /_sandbox/events/status``."""

    wamid: str
    status: str = Field(min_length=1)
    error_code: int | None = None
    """With ``status: failed``: the error in ``errors[]``."""


class ControlRoutes:
    """Translates control requests to :class:`SandboxService` calls."""

    def __init__(self, service: SandboxService) -> None:
        self._service = service

    def routes(self) -> list[web.RouteDef]:
        """The route table."""
        return [
            web.get(f"{PREFIX}/ledger", self.ledger),
            web.get(f"{PREFIX}/stats", self.stats),
            web.get(f"{PREFIX}/recipients", self.recipients),
            web.post(f"{PREFIX}/reset", self.reset),
            web.get(f"{PREFIX}/scenario", self.get_scenario),
            web.put(f"{PREFIX}/scenario", self.put_scenario),
            web.patch(f"{PREFIX}/scenario", self.patch_scenario),
            web.get(f"{PREFIX}/templates", self.templates),
            web.post(f"{PREFIX}/templates", self.register_template),
            web.post(f"{PREFIX}/webhooks/flush", self.flush),
            web.post(f"{PREFIX}/events/user-preferences", self.user_preferences),
            web.post(f"{PREFIX}/events/inbound-text", self.inbound_text),
            web.post(f"{PREFIX}/events/template-status", self.template_status),
            web.post(f"{PREFIX}/events/call", self.call),
            web.post(f"{PREFIX}/events/echo", self.echo),
            web.post(f"{PREFIX}/events/template-quality", self.template_quality),
            web.post(f"{PREFIX}/events/template-category", self.template_category),
            web.post(f"{PREFIX}/events/status", self.status),
        ]

    async def ledger(self, request: web.Request) -> web.Response:
        """Accepted sends: ``?after=<seq>&limit=<n>&to=<number>``."""
        try:
            after = int(request.query.get("after", "0"))
            limit = int(request.query.get("limit", "1000"))
        except ValueError:
            return _error(400, "after and limit must be integers")
        to = request.query.get("to")
        wa_id = "".join(char for char in to if char.isdigit()) if to else None
        ledger = self._service.ledger
        page = ledger.page(after=max(after, 0), limit=max(limit, 0), wa_id=wa_id)
        return web.json_response(
            {
                "total": len(ledger.entries),
                "entries": [entry.to_json() for entry in page],
                "next_after": page[-1].seq if page else None,
            }
        )

    async def stats(self, _: web.Request) -> web.Response:
        """Totals, sends per second and the busiest second, webhook counters."""
        return web.json_response(self._service.stats())

    async def recipients(self, _: web.Request) -> web.Response:
        """Accepted sends per recipient ``wa_id``."""
        return web.json_response(dict(self._service.ledger.per_recipient))

    async def reset(self, _: web.Request) -> web.Response:
        """Forget sends and pending webhooks; the scenario and templates stay."""
        await self._service.reset()
        return web.json_response({"reset": True})

    async def get_scenario(self, _: web.Request) -> web.Response:
        """The scenario in force."""
        return _scenario_response(self._service.scenario)

    async def put_scenario(self, request: web.Request) -> web.Response:
        """Replace the scenario."""
        data = await _json_object(request)
        return self._use(lambda: Scenario.model_validate(data))

    async def patch_scenario(self, request: web.Request) -> web.Response:
        """Deep-merge into the scenario, e.g. ``{"account": {"error_code": 368}}``."""
        data = await _json_object(request)
        return self._use(lambda: self._service.scenario.patched(data))

    async def templates(self, _: web.Request) -> web.Response:
        """Registered templates."""
        scenario = self._service.scenario
        return web.json_response([t.model_dump(mode="json") for t in scenario.templates])

    async def register_template(self, request: web.Request) -> web.Response:
        """Register (or replace) one template translation."""
        template = _parse(TemplateSpec, await _json_object(request))
        self._service.register_template(template)
        return web.json_response(template.model_dump(mode="json"), status=201)

    async def flush(self, request: web.Request) -> web.Response:
        """Release held webhooks, with shuffling, duplicates and batch size as asked."""
        options = _parse(FlushRequest, await _json_object(request))
        result = await self._service.webhooks.flush(**options.model_dump())
        return web.json_response(result)

    async def user_preferences(self, request: web.Request) -> web.Response:
        """Emit a ``user_preferences`` stop (or resume) webhook."""
        body = _parse(UserPreferencesRequest, await _json_object(request))
        return _accepted(
            lambda: self._service.emit_user_preferences(
                body.wa_id,
                body.value,
                body.phone_number_id,
                user_id=body.user_id,
                phone_shared=body.phone_shared,
            )
        )

    async def inbound_text(self, request: web.Request) -> web.Response:
        """Emit an inbound text message webhook (default text ``STOP``)."""
        body = _parse(InboundTextRequest, await _json_object(request))
        return _accepted(
            lambda: self._service.emit_inbound_text(
                body.wa_id,
                body.text,
                body.profile_name,
                body.phone_number_id,
                user_id=body.user_id,
                phone_shared=body.phone_shared,
            )
        )

    async def call(self, request: web.Request) -> web.Response:
        """Emit a ``calls`` webhook (a user calls the business number, or hangs up)."""
        body = _parse(CallRequest, await _json_object(request))
        return _accepted(
            lambda: self._service.emit_call(body.wa_id, body.event, body.phone_number_id)
        )

    async def echo(self, request: web.Request) -> web.Response:
        """Emit an ``smb_message_echoes`` webhook (the business wrote from the Business app)."""
        body = _parse(EchoRequest, await _json_object(request))
        return _accepted(
            lambda: self._service.emit_echo(body.wa_id, body.text, body.phone_number_id)
        )

    async def template_status(self, request: web.Request) -> web.Response:
        """Emit a ``message_template_status_update`` (and apply it to the template)."""
        body = _parse(TemplateStatusRequest, await _json_object(request))
        return _accepted(
            lambda: self._service.emit_template_status(
                body.name, body.language, body.event, body.reason
            )
        )

    async def template_quality(self, request: web.Request) -> web.Response:
        """Emit a ``message_template_quality_update`` (and record the score)."""
        body = _parse(TemplateQualityRequest, await _json_object(request))
        return _accepted(
            lambda: self._service.emit_template_quality(body.name, body.language, body.score)
        )

    async def template_category(self, request: web.Request) -> web.Response:
        """Emit a completed ``template_category_update`` (and recategorise the template)."""
        body = _parse(TemplateCategoryRequest, await _json_object(request))
        return _accepted(
            lambda: self._service.emit_template_category(body.name, body.language, body.category)
        )

    async def status(self, request: web.Request) -> web.Response:
        """Emit one more status webhook for an accepted message."""
        body = _parse(StatusRequest, await _json_object(request))
        error = graph_error(body.error_code) if body.error_code is not None else None
        return _accepted(lambda: self._service.emit_status(body.wamid, body.status, error))

    def _use(self, build: Callable[[], Scenario]) -> web.Response:
        try:
            scenario = build()
        except ValidationError as exc:
            raise _invalid(exc) from None
        self._service.use_scenario(scenario)
        return _scenario_response(scenario)


async def _json_object(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise _bad_request("body is not valid JSON") from None
    if not isinstance(data, dict):
        raise _bad_request("body must be a JSON object")
    return data


def _parse(model: type[_Body], data: dict[str, Any]) -> _Body:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _invalid(exc) from None


def _invalid(exc: ValidationError) -> web.HTTPBadRequest:
    problems = [
        {"loc": [str(part) for part in error["loc"]], "msg": error["msg"]} for error in exc.errors()
    ]
    return _bad_request("invalid request", problems=problems)


def _bad_request(message: str, **extra: Any) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(
        text=json.dumps({"error": message, **extra}), content_type="application/json"
    )


def _accepted(emit: Callable[[], bool]) -> web.Response:
    try:
        scheduled = emit()
    except NotFound as exc:
        return _error(404, str(exc))
    return web.json_response({"scheduled": scheduled}, status=202)


def _scenario_response(scenario: Scenario) -> web.Response:
    return web.json_response(scenario.model_dump(mode="json"))


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)

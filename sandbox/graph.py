"""The Graph API routes: ``POST /{version}/{phone_number_id}/messages``, the account's
templates and the phone number's fields."""

from __future__ import annotations

import asyncio

from aiohttp import web

from sandbox.service import SandboxService

GRAPH_SEND_PATH = r"/{version:v\d+\.\d+}/{phone_number_id:\d+}/messages"
GRAPH_TEMPLATES_PATH = r"/{version:v\d+\.\d+}/{waba_id:\d+}/message_templates"
GRAPH_PHONE_PATH = r"/{version:v\d+\.\d+}/{phone_number_id:\d+}"


class GraphRoutes:
    """Translates HTTP to :meth:`SandboxService.submit_send` and back."""

    def __init__(self, service: SandboxService) -> None:
        self._service = service

    def routes(self) -> list[web.RouteDef]:
        """The route table."""
        return [
            web.post(GRAPH_SEND_PATH, self.send_message),
            web.get(GRAPH_TEMPLATES_PATH, self.message_templates),
            web.get(GRAPH_PHONE_PATH, self.phone_number),
        ]

    async def phone_number(self, request: web.Request) -> web.Response:
        """The phone number's fields asked for (its messaging limit tier)."""
        status, body = self._service.phone_number(
            request.match_info["phone_number_id"],
            request.headers.get("Authorization"),
            request.query.get("fields", ""),
        )
        return web.Response(status=status, body=body, content_type="application/json")

    async def message_templates(self, request: web.Request) -> web.Response:
        """One page of the account's templates, with ``paging.next`` while more follow."""
        status, body = self._service.list_templates(
            request.match_info["waba_id"],
            request.headers.get("Authorization"),
            request.query.get("limit"),
            request.query.get("after"),
            lambda after: str(request.url.update_query(after=after)),
        )
        return web.Response(status=status, body=body, content_type="application/json")

    async def send_message(self, request: web.Request) -> web.StreamResponse:
        """Answer a template send the way Meta would under the current scenario."""
        outcome = self._service.submit_send(
            request.match_info["phone_number_id"],
            request.headers.get("Authorization"),
            await request.read(),
        )
        if outcome.latency:
            await asyncio.sleep(outcome.latency)
        if outcome.reply == "drop":
            # The send is in the ledger and its webhooks are scheduled; the client only sees
            # the connection close, as when Meta accepted a request whose reply was lost.
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=outcome.status)
        if outcome.reply == "delay":
            await asyncio.sleep(outcome.reply_delay)
        return web.Response(
            status=outcome.status, body=outcome.body, content_type="application/json"
        )

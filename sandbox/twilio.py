"""The sandbox playing Twilio: the Messages API and signed, form-encoded status callbacks.

`POST /2010-04-01/Accounts/{AccountSid}/Messages.json` (form-encoded, HTTP basic auth with the
account SID and SANDBOX_TWILIO_AUTH_TOKEN) goes through the same scenario as a Graph send (the
same templates, faults, throughput cap, latency and ambiguous replies) and into the same
ledger, with the Twilio message SID (`SM` + 32 hex) where a Graph send has its wamid and our
message id (the StatusCallback's `m` parameter) as callback data. Answers are Twilio's: 201
with the Message resource, or an error body `{"code", "message", "more_info", "status"}`; the
scenario's Meta error codes are translated to the Twilio codes that mean the same (TWILIO_CODES).

A template is addressed by its Content SID, which the sandbox derives from the template's name
and language (:func:`content_sid`), so a test or the demo can register the same SID.

Status callbacks follow the scenario's webhook timeline (sent, delivered, read, failed; with its
duplicates and reordering), one form POST per status to the message's StatusCallback URL,
signed as Twilio signs them (X-Twilio-Signature over the URL and the sorted form parameters,
HMAC-SHA1 with the auth token, base64). A failed status is `undelivered` with `ErrorCode`. A
POST that does not get a 2xx is retried with the scenario's retry settings.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

import httpx
from aiohttp import web

from sandbox.errors import GraphError, Rejected
from sandbox.ledger import LedgerEntry
from sandbox.scenario import plan_statuses
from sandbox.validation import TemplateSend
from sandbox.webhooks import redelivery_waits

log = logging.getLogger(__name__)

MESSAGES_PATH = r"/2010-04-01/Accounts/{account_sid:AC[0-9a-fA-F]{32}}/Messages.json"

TWILIO_CODES: dict[int, tuple[int, int, str]] = {
    # Meta code: (Twilio code, HTTP status, message)
    190: (20003, 401, "Authenticate"),
    100: (21211, 400, "Invalid 'To' Phone Number"),
    131026: (63024, 400, "Invalid message recipient"),
    131050: (21610, 400, "Attempt to send to unsubscribed recipient"),
    131049: (63049, 400, "Meta chose not to deliver this WhatsApp marketing message"),
    130429: (63018, 429, "Rate limit exceeded for Channel"),
    131056: (63018, 429, "Rate limit exceeded for Channel"),
    80007: (20429, 429, "Too Many Requests"),
    4: (20429, 429, "Too Many Requests"),
    132000: (63028, 400, "Number of parameters provided does not match the template"),
    132001: (21655, 400, "The ContentSid is Invalid"),
    131047: (63016, 400, "Failed to send freeform message outside the 24 hour window"),
    130472: (63032, 400, "User's number is part of an experiment"),
}
UNKNOWN_ERROR = (30008, 400, "Unknown error")


def content_sid(template_name: str, language: str) -> str:
    """The Content SID the sandbox gives a template (stable: derived from name and language)."""
    digest = hashlib.sha256(f"{template_name}:{language}".encode()).hexdigest()
    return "HX" + digest[:32]


def twilio_error(error: GraphError) -> tuple[int, int, str]:
    """(Twilio code, HTTP status, message) for a scenario error."""
    if error.http_status >= 500:
        return 20500, error.http_status, "Internal Server Error"
    return TWILIO_CODES.get(error.code, UNKNOWN_ERROR)


def error_body(code: int, status: int, message: str) -> bytes:
    """Twilio's REST error JSON."""
    return json.dumps(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        }
    ).encode()


def sign(token: str, url: str, form: dict[str, str]) -> str:
    """X-Twilio-Signature: base64(HMAC-SHA1(token, url + sorted name+value pairs))."""
    signed = url + "".join(name + form[name] for name in sorted(form))
    return base64.b64encode(
        hmac.new(token.encode(), signed.encode(), hashlib.sha1).digest()
    ).decode()


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    body: bytes
    latency: float
    reply: str = "respond"
    reply_delay: float = 0.0


class TwilioSide:
    """The Twilio half of a sandbox: shares the service's scenario, decider, rng and ledger."""

    def __init__(
        self, service: Any, auth_token: str, client_timeout: float = 5.0, concurrency: int = 8
    ) -> None:
        self._service = service
        self._token = auth_token
        self._timeout = client_timeout
        self._concurrency = concurrency
        self._slots = asyncio.Semaphore(concurrency)
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.callbacks_acknowledged = 0
        self.callbacks_failed = 0

    def routes(self) -> list[web.RouteDef]:
        """The route table."""
        return [web.post(MESSAGES_PATH, self.create_message)]

    async def start(self) -> None:
        """Open the callback client."""
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(self._timeout),
            limits=httpx.Limits(
                max_connections=self._concurrency, max_keepalive_connections=self._concurrency
            ),
        )

    async def stop(self) -> None:
        """Cancel scheduled callbacks and close the client."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    # --- the Messages API --------------------------------------------------------------------

    async def create_message(self, request: web.Request) -> web.StreamResponse:
        """Answer a Messages API create the way Twilio would under the current scenario."""
        reply = self.submit(
            request.match_info["account_sid"],
            request.headers.get("Authorization"),
            await request.read(),
        )
        if reply.latency:
            await asyncio.sleep(reply.latency)
        if reply.reply == "drop":
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=reply.status)
        if reply.reply == "delay":
            await asyncio.sleep(reply.reply_delay)
        return web.Response(status=reply.status, body=reply.body, content_type="application/json")

    def _authorized(self, account_sid: str, authorization: str | None) -> bool:
        scheme, _, encoded = (authorization or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return hmac.compare_digest(user.encode(), account_sid.encode()) & hmac.compare_digest(
            password.encode(), self._token.encode()
        )

    def submit(self, account_sid: str, authorization: str | None, raw: bytes) -> _Reply:
        """Handle one create-message request."""
        service = self._service
        latency = service.scenario.latency.draw(service.rng)
        if not self._authorized(account_sid, authorization):
            return _Reply(401, error_body(20003, 401, "Authenticate"), latency)
        form = dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
        to = form.get("To", "")
        sender = form.get("MessagingServiceSid") or form.get("From", "")
        digits = to.removeprefix("whatsapp:").lstrip("+")
        if not to.startswith("whatsapp:+") or not digits.isdigit():
            return _Reply(
                400, error_body(21211, 400, f"The 'To' number {to} is not valid."), latency
            )
        if not sender:
            return _Reply(
                400, error_body(21603, 400, "A 'From' phone number is required."), latency
            )
        template = next(
            (
                t
                for t in service.scenario.templates
                if content_sid(t.name, t.language) == form.get("ContentSid")
            ),
            None,
        )
        if template is None:
            return _Reply(400, error_body(21655, 400, "The ContentSid is Invalid"), latency)
        try:
            variables = json.loads(form.get("ContentVariables") or "{}")
            body = tuple(str(variables[k]) for k in sorted(variables, key=int))
        except (ValueError, TypeError, KeyError):
            return _Reply(400, error_body(21656, 400, "The ContentVariables are invalid"), latency)
        callback_url = form.get("StatusCallback", "")
        message_ids = parse_qs(urlsplit(callback_url).query).get("m")
        message_id = message_ids[0] if message_ids else None
        send = TemplateSend(
            to=digits,
            wa_id=digits,
            template_name=template.name,
            language=template.language,
            header_parameters=(),
            body_parameters=body,
            callback_data=message_id,
        )
        now = time.monotonic()
        try:
            account_error = service.decider.account_error()
            if account_error is not None:
                raise Rejected(account_error)
            decision = service.decider.decide(send, sender, now)
        except Rejected as rejected:
            service.ledger.rejected[rejected.error.code] += 1
            code, status, message = twilio_error(rejected.error)
            return _Reply(status, error_body(code, status, message), latency)
        sid = "SM" + uuid.uuid4().hex
        entry = LedgerEntry(
            seq=service.ledger.next_seq(),
            wamid=sid,
            phone_number_id=sender,
            to=digits,
            wa_id=digits,
            template=template.name,
            language=template.language,
            category=decision.template.category.lower(),
            parameters=body,
            header_parameters=(),
            callback_data=message_id,
            accepted_at=time.time(),
            monotonic=now,
            reply="ok" if decision.ambiguous is None else decision.ambiguous,
            async_error_code=decision.async_error.code if decision.async_error else None,
        )
        service.ledger.record(entry)
        if callback_url:
            self._schedule(entry, account_sid, form, callback_url, decision.async_error)
        if decision.ambiguous == "server_error":
            return _Reply(500, error_body(20500, 500, "Internal Server Error"), latency)
        resource = json.dumps(
            {
                "sid": sid,
                "account_sid": account_sid,
                "to": to,
                "from": form.get("From"),
                "messaging_service_sid": form.get("MessagingServiceSid"),
                "status": "accepted" if form.get("MessagingServiceSid") else "queued",
                "api_version": "2010-04-01",
                "error_code": None,
                "error_message": None,
                "uri": f"/2010-04-01/Accounts/{account_sid}/Messages/{sid}.json",
            }
        ).encode()
        if decision.ambiguous is None:
            return _Reply(201, resource, latency)
        return _Reply(201, resource, latency, decision.ambiguous, decision.reply_delay)

    # --- status callbacks --------------------------------------------------------------------

    def _schedule(
        self,
        entry: LedgerEntry,
        account_sid: str,
        request: dict[str, str],
        url: str,
        async_error: GraphError | None,
    ) -> None:
        config = self._service.scenario.webhooks
        for planned in plan_statuses(config, self._service.rng, async_error):
            status = "undelivered" if planned.status == "failed" else planned.status
            form = {
                "MessageSid": entry.wamid,
                "SmsSid": entry.wamid,
                "MessageStatus": status,
                "SmsStatus": status,
                "AccountSid": account_sid,
                "From": request.get("From") or "whatsapp:+15550783881",
                "To": request["To"],
                "ApiVersion": "2010-04-01",
                "ChannelPrefix": "whatsapp",
                "ChannelToAddress": "+" + entry.wa_id,
            }
            if request.get("MessagingServiceSid"):
                form["MessagingServiceSid"] = request["MessagingServiceSid"]
            if status in ("delivered", "read", "undelivered"):
                form["EventType"] = status.upper()
            if planned.error is not None:
                code, _, message = twilio_error(planned.error)
                form["ErrorCode"] = str(code)
                form["ErrorMessage"] = message
            task = asyncio.get_running_loop().create_task(
                self._deliver(url, form, planned.arrives_after, config.retry)
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _deliver(self, url: str, form: dict[str, str], delay: float, retry: Any) -> None:
        await asyncio.sleep(delay)
        headers = {"X-Twilio-Signature": sign(self._token, url, form)}
        waits = redelivery_waits(retry)
        while True:
            try:
                assert self._client is not None
                async with self._slots:  # at most `concurrency` callbacks in flight
                    response = await self._client.post(url, data=form, headers=headers)
                if 200 <= response.status_code < 300:
                    self.callbacks_acknowledged += 1
                    return
            except httpx.HTTPError:
                pass
            self.callbacks_failed += 1
            wait = next(waits, None)
            if wait is None:
                return
            await asyncio.sleep(wait)

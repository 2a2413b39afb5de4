"""The Meta WhatsApp Cloud API adapter (its HTTP call and transport errors: providers/http_call.py).

`POST {base}/{version}/{phone_number_id}/messages` with a template body (reference §1):
`to` is the E.164 number without '+', the template's body parameters are text parameters in
template order, and `biz_opaque_callback_data` is our message id. The reply is classified with
dispatch_service.domain.retry:

* 2xx with `messages[0].id`: accepted (wamid, `contacts[0].wa_id`, `message_status` kept);
* 2xx we cannot read: ambiguous (Meta may well have accepted it);
* 5xx: ambiguous, whatever the body says;
* other statuses: by `error.code` (reference §2.3);
* connect errors and pool timeouts: transient (the request never left this process);
* read/write timeouts, dropped connections and other transport errors: ambiguous;
* the send window (`not_after`) passed before the request was written: NotSent.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Literal

import httpx
import orjson

from dispatch_service.domain.retry import CodeRule, RetryClass, classify_http_error
from dispatch_service.domain.send_plan import plan_components
from dispatch_service.providers.aiohttp_transport import (
    AiohttpTransport,
)
from dispatch_service.providers.base import Accepted, Failed, SendOutcome, TemplateSend
from dispatch_service.providers.http_call import ProviderClient, post_in_window

log = logging.getLogger(__name__)

ParameterFormat = Literal["positional", "named"]


def build_http_client(
    *,
    timeout_seconds: float,
    connect_timeout_seconds: float,
    max_connections: int,
    transport: httpx.AsyncBaseTransport | None = None,
) -> ProviderClient:
    """The process's one AsyncClient for provider calls, with explicit timeouts and limits,
    over the aiohttp-backed transport (see providers.aiohttp_transport) unless one is given."""
    # httpx logs every request at INFO: a line per message at 1,000 messages/s is noise.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    limits = httpx.Limits(
        max_connections=max_connections,
        max_keepalive_connections=max_connections,
        keepalive_expiry=30.0,
    )
    return ProviderClient(
        timeout=httpx.Timeout(timeout_seconds, connect=connect_timeout_seconds),
        limits=limits,
        transport=transport or AiohttpTransport(limits),
    )


class MetaCloudProvider:
    """Sends template messages through the Meta WhatsApp Cloud API."""

    name = "meta"

    def __init__(
        self,
        client: ProviderClient,
        *,
        base_url: str,
        api_version: str,
        access_token: str,
        parameter_format: ParameterFormat = "positional",
    ) -> None:
        self._client = client
        self._base = f"{base_url.rstrip('/')}/{api_version}"
        self._headers = {
            "Authorization": f"Bearer {access_token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        self._named = parameter_format == "named"
        self._urls: dict[str, httpx.URL] = {}
        """Each sender's messages endpoint, parsed once (httpx parses a str URL on every call:
        5% of a send worker's CPU at 1,000 messages/s)."""

    def request_body(self, send: TemplateSend) -> dict[str, Any]:
        """The JSON body of a template send (reference §1); a run with a send plan (a template
        synced from Meta) sends its header, parameter format and buttons too (§2.3)."""
        if send.send_plan:
            return self._body(
                send,
                plan_components(
                    send.send_plan,
                    send.message_id,
                    send.body_parameters,
                    send.body_parameter_names,
                ),
            )
        names = send.body_parameter_names
        parameters: list[dict[str, str]] = []
        for index, text in enumerate(send.body_parameters):
            parameter = {"type": "text", "text": text}
            if self._named and index < len(names):
                parameter["parameter_name"] = names[index]
            parameters.append(parameter)
        components = [{"type": "body", "parameters": parameters}] if parameters else []
        return self._body(send, components)

    @staticmethod
    def _body(send: TemplateSend, components: list[dict[str, Any]]) -> dict[str, Any]:
        template: dict[str, Any] = {"name": send.template_name, "language": {"code": send.language}}
        if components:
            template["components"] = components
        return {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": send.to_e164.lstrip("+"),
            "type": "template",
            "template": template,
            "biz_opaque_callback_data": str(send.message_id),
        }

    async def send_template(
        self, send: TemplateSend, *, not_after: float | None = None
    ) -> SendOutcome:
        """Send one template message and classify what came back (never raises for I/O)."""
        url = self._urls.get(send.sender_id)
        if url is None:
            url = self._urls[send.sender_id] = httpx.URL(f"{self._base}/{send.sender_id}/messages")
        return await post_in_window(
            self._client,
            url,
            parse_response,
            not_after=not_after,
            content=orjson.dumps(self.request_body(send)),
            headers=self._headers,
        )


def parse_response(status: int, body: bytes) -> SendOutcome:
    """Classify one Graph API answer (see the module docstring)."""
    payload = _json(body)
    if 200 <= status < 300:
        return _accepted(payload) or Failed(
            retry_class=RetryClass.AMBIGUOUS,
            error_code=None,
            error_title=f"HTTP {status} without a message id",
            error_details="the provider answered success but the body had no messages[0].id",
            http_status=status,
        )
    error = payload.get("error") if isinstance(payload, dict) else None
    error = error if isinstance(error, dict) else {}
    code = error.get("code") if isinstance(error.get("code"), int) else None
    rule: CodeRule = classify_http_error(status, code)
    error_data = error.get("error_data")
    details = error_data.get("details") if isinstance(error_data, dict) else None
    return Failed(
        retry_class=rule.retry_class,
        error_code=code,
        error_title=_title(error.get("message"), code) or rule.meaning,
        error_details=str(details) if details else rule.meaning,
        lowers_rate=rule.lowers_rate,
        adds_do_not_message=rule.adds_do_not_message,
        http_status=status,
    )


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _accepted(payload: Any) -> Accepted | None:
    if not isinstance(payload, dict):
        return None
    messages = payload.get("messages")
    if not (isinstance(messages, list) and messages and isinstance(messages[0], dict)):
        return None
    wamid = messages[0].get("id")
    if not isinstance(wamid, str) or not wamid:
        return None
    contacts = payload.get("contacts")
    wa_id = None
    if isinstance(contacts, list) and contacts and isinstance(contacts[0], dict):
        value = contacts[0].get("wa_id")
        wa_id = value if isinstance(value, str) else None
    status = messages[0].get("message_status")
    return Accepted(
        provider_message_id=wamid,
        recipient_id=wa_id,
        message_status=status if isinstance(status, str) else "accepted",
    )


def _title(message: Any, code: int | None) -> str:
    """Meta's message is "(#code) title": keep the title."""
    if not isinstance(message, str):
        return ""
    prefix = f"(#{code}) "
    return message[len(prefix) :] if code is not None and message.startswith(prefix) else message

"""The Twilio Programmable Messaging adapter (WhatsApp senders reached through Twilio).

`POST {base}/2010-04-01/Accounts/{AccountSid}/Messages.json`, form-encoded, HTTP basic auth
(account SID, auth token), reference meta-2026-and-twilio §6.1:

* `To` is `whatsapp:+E164`; the sender is `From` (`whatsapp:+E164`) or `MessagingServiceSid`
  (`MG…`), whichever the workspace is configured with;
* `ContentSid` is the template's Twilio Content SID (`HX…`) and `ContentVariables` a JSON object
  with sequential numeric keys ("1", "2", …) in the template's variable order;
* `StatusCallback` is the ingestor's public Twilio URL with our message id as the `m` query
  parameter. Twilio signs the whole URL, so the id comes back authenticated, and a status that
  beats our own write of the SID can still be matched (as `biz_opaque_callback_data` on Meta).

The answer is classified exactly as the Meta adapter's is, with the one error table
(dispatch_service.domain.retry): 201 with a `sid` is accepted; 2xx without one and any 5xx are
ambiguous; other statuses by Twilio's numeric `code`; connect errors are transient; read/write
timeouts and dropped connections are ambiguous (never re-sent).
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx

from dispatch_service.domain.retry import CodeRule, RetryClass, classify_http_error
from dispatch_service.providers.base import Accepted, Failed, SendOutcome, TemplateSend
from dispatch_service.providers.http_call import ProviderClient, post_in_window

MESSAGES_PATH = "/2010-04-01/Accounts/{account_sid}/Messages.json"
CALLBACK_MESSAGE_PARAM = "m"
"""The StatusCallback query parameter carrying our message id."""


@dataclass(frozen=True)
class TwilioRoute:
    """How one send goes out through Twilio: the account, the sender and the Content SID."""

    account_sid: str
    sender: str
    """`whatsapp:+E164` (sent as From) or a Messaging Service SID `MG…`."""
    content_sid: str


def status_callback_url(base: str, message_id: uuid.UUID) -> str:
    """The StatusCallback URL for one message: `base` with `m=<message id>` added to its query."""
    parts = urlsplit(base)
    extra = urlencode({CALLBACK_MESSAGE_PARAM: str(message_id)})
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


class TwilioProvider:
    """Sends template messages through Twilio's Messages API."""

    name = "twilio"

    def __init__(
        self,
        client: ProviderClient,
        *,
        base_url: str,
        auth_token: str,
        status_callback_url: str,
    ) -> None:
        self._client = client
        self._base = base_url.rstrip("/")
        self._token = auth_token
        self._callback = status_callback_url

    def request_form(self, send: TemplateSend, route: TwilioRoute) -> dict[str, str]:
        """The form fields of a template send (reference §6.1)."""
        form = {
            "To": f"whatsapp:{send.to_e164}",
            "ContentSid": route.content_sid,
            "ContentVariables": json.dumps(
                {str(n): value for n, value in enumerate(send.body_parameters, start=1)},
                ensure_ascii=False,
                separators=(",", ":"),
            ),
            "StatusCallback": status_callback_url(self._callback, send.message_id),
        }
        if route.sender.startswith("MG"):
            form["MessagingServiceSid"] = route.sender
        else:
            form["From"] = route.sender
        return form

    async def send_template_via(
        self, send: TemplateSend, route: TwilioRoute, *, not_after: float | None = None
    ) -> SendOutcome:
        """Send one template message and classify what came back (never raises for I/O). The
        request is written only before `not_after` (monotonic clock), else NotSent."""
        url = self._base + MESSAGES_PATH.format(account_sid=route.account_sid)
        credentials = base64.b64encode(f"{route.account_sid}:{self._token}".encode()).decode()
        return await post_in_window(
            self._client,
            httpx.URL(url),
            parse_response,
            not_after=not_after,
            content=urlencode(self.request_form(send, route)).encode(),
            headers={
                "Authorization": f"Basic {credentials}",
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/json",
            },
        )


def parse_response(status: int, body: bytes) -> SendOutcome:
    """Classify one Messages API answer (see the module docstring)."""
    payload = _json(body)
    if 200 <= status < 300:
        sid = payload.get("sid") if isinstance(payload, dict) else None
        if isinstance(sid, str) and sid:
            message_status = payload.get("status")
            return Accepted(
                provider_message_id=sid,
                recipient_id=None,
                message_status=message_status if isinstance(message_status, str) else "queued",
            )
        return Failed(
            retry_class=RetryClass.AMBIGUOUS,
            error_code=None,
            error_title=f"HTTP {status} without a message sid",
            error_details="the provider answered success but the body had no sid",
            http_status=status,
        )
    error = payload if isinstance(payload, dict) else {}
    raw_code = error.get("code")
    code = raw_code if isinstance(raw_code, int) and not isinstance(raw_code, bool) else None
    rule: CodeRule = classify_http_error(status, code)
    message = error.get("message")
    more_info = error.get("more_info")
    return Failed(
        retry_class=rule.retry_class,
        error_code=code,
        error_title=message if isinstance(message, str) and message else rule.meaning,
        error_details=more_info if isinstance(more_info, str) and more_info else rule.meaning,
        lowers_rate=rule.lowers_rate,
        adds_do_not_message=rule.adds_do_not_message,
        http_status=status,
    )


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None

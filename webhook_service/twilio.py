"""Twilio callbacks (`POST /webhooks/twilio`, routed in app.py): X-Twilio-Signature and
form normalisation.

**Signature** (reference meta-2026-and-twilio §6.4, as twilio-python's RequestValidator does it):
the string signed is the full URL Twilio called (the configured public URL plus the query string
of the request) followed by each distinct form parameter name in sorted order, each with its
de-duplicated, sorted values (`name + value`, no separators); the signature is the base64 of
HMAC-SHA1 with the auth token as key. Twilio's own signing is inconsistent about the port, so
the URL is checked both without a port and with the scheme's default one (either matches).
Several auth tokens may be configured (rotation): every token and both URL forms are computed
and compared in constant time, whatever the result.

**Receipts.** A verified callback is stored before Twilio gets its 200, like a Meta body, with
provider `twilio` and a body of two lines: the URL that was verified, then the raw form body
(neither can hold a raw newline). It keeps everything needed to check the signature again, and
our message id, which travels in the StatusCallback URL (`m=`), not in the form.

**Normalisation** (pure). A status callback (`MessageStatus`, else `SmsStatus`) becomes one
:class:`~webhook_service.normalise.Status`: `sending`/`sent` are `sent`; `delivered` and `read`
as such; `undelivered`/`failed` are `failed` with `ErrorCode`; `queued`, `accepted`,
`scheduled` and anything else pass through under their own name, which ApplyStatus records
and otherwise ignores. Twilio callbacks carry no timestamp: the receipt's arrival time is used.
The sender is the `MessagingServiceSid` when there is one, else `From` (inbound: `To`), as
Twilio writes it (`whatsapp:+…`), which is how a Twilio workspace's sender is stored. An
inbound message (`SmsStatus=received`, or a `Body` without a status) becomes an
:class:`~webhook_service.normalise.InboundText`; Twilio's `OptOutType=STOP` (Advanced Opt-Out)
is read as the stop keyword itself, so both go through ApplyStatus's stop-keyword path.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Sequence
from datetime import datetime
from urllib.parse import parse_qs, parse_qsl, urlsplit, urlunsplit

from common.vocabulary import ReceiptFlag
from webhook_service.normalise import InboundText, Normalised, ProviderError, Status, storable

TWILIO_WEBHOOK_PATH = "/webhooks/twilio"
SIGNATURE_HEADER = "X-Twilio-Signature"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
CALLBACK_MESSAGE_PARAM = "m"
"""The StatusCallback query parameter the dispatcher puts our message id in."""

Params = list[tuple[str, str]]

STATUS_MAP = {
    "sending": "sent",
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "undelivered": "failed",
    "failed": "failed",
}
"""Twilio message statuses that move our lifecycle, and the status they mean there."""


# --- signature ----------------------------------------------------------------------------------


def signed_string(url: str, params: Iterable[tuple[str, str]]) -> str:
    """The string Twilio signs: the URL, then `name + value` for each sorted distinct name and
    each of its sorted distinct values."""
    values: dict[str, set[str]] = {}
    for name, value in params:
        values.setdefault(name, set()).add(value)
    return url + "".join(name + value for name in sorted(values) for value in sorted(values[name]))


def signature(token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """base64(HMAC-SHA1(token, signed string)): the X-Twilio-Signature of a form POST."""
    mac = hmac.new(token.encode(), signed_string(url, params).encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


def url_forms(url: str) -> tuple[str, str]:
    """The URL without any port and with one (the scheme's default when it had none), as
    Twilio's helper library checks both."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    userinfo = parts.netloc.rpartition("@")[0]
    prefix = f"{userinfo}@" if userinfo else ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    without = urlunsplit((parts.scheme, prefix + host, parts.path, parts.query, parts.fragment))
    with_port = urlunsplit(
        (parts.scheme, f"{prefix}{host}:{port}", parts.path, parts.query, parts.fragment)
    )
    return without, with_port


def matches(
    url: str, params: Sequence[tuple[str, str]], presented: str, tokens: Sequence[str]
) -> bool:
    """Whether `presented` is the signature of (url, params) under any token, with or without
    the port; every candidate is computed and compared in constant time."""
    given = presented.strip().encode()
    results = [
        hmac.compare_digest(signature(token, form, params).encode(), given)
        for token in tokens
        for form in url_forms(url)
    ]
    return any(results)


def request_url(public_url: str, query_string: str) -> str:
    """The URL Twilio called: the configured public URL plus the request's query string."""
    return f"{public_url}?{query_string}" if query_string else public_url


def parse_form(body: bytes) -> Params | None:
    """The form's (name, value) pairs in order, or None when the body is not a UTF-8 form."""
    try:
        return parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        return None


# --- receipts -----------------------------------------------------------------------------------


def receipt_body(url: str, form: bytes) -> bytes:
    """What a Twilio receipt stores: the verified URL, a newline, the raw form body."""
    return url.encode() + b"\n" + form


def split_receipt(body: bytes) -> tuple[str, bytes]:
    """The (URL, raw form) of a stored Twilio receipt body."""
    url, _, form = body.partition(b"\n")
    return url.decode("utf-8", "replace"), form


# --- normalisation ------------------------------------------------------------------------------


def _first(params: dict[str, list[str]], *names: str) -> str:
    for name in names:
        for value in params.get(name, ()):
            if value.strip():
                return value.strip()
    return ""


def _digits(address: str) -> str:
    """'whatsapp:+15551234567' -> '15551234567' (Meta's wa_id form)."""
    return address.removeprefix("whatsapp:").strip().lstrip("+")


def normalise_twilio(body: bytes, received_at: datetime) -> Normalised:
    """Read a stored Twilio receipt; never raises."""
    url, form = split_receipt(body)
    pairs = parse_form(form)
    if pairs is None:
        return Normalised(flag=ReceiptFlag.UNKNOWN_SHAPE, problem="not a UTF-8 form body")
    params: dict[str, list[str]] = {}
    for name, value in pairs:
        params.setdefault(storable(name), []).append(storable(value))
    query = parse_qs(urlsplit(url).query)
    callback = (query.get(CALLBACK_MESSAGE_PARAM) or [""])[0]
    at = max(1, int(received_at.timestamp()))
    sid = _first(params, "MessageSid", "SmsSid")
    status = _first(params, "MessageStatus", "SmsStatus").lower()
    service = _first(params, "MessagingServiceSid")
    if status == "received" or (not status and "Body" in params):
        sender = service or _first(params, "To")
        if not sender or not _first(params, "From"):
            return Normalised(flag=ReceiptFlag.UNKNOWN_SHAPE, problem="inbound without To/From")
        text = params.get("Body", [""])[0]
        if _first(params, "OptOutType").upper() == "STOP":
            text = "STOP"  # Twilio recognised an opt-out keyword (Advanced Opt-Out)
        inbound = InboundText(
            phone_number_id=sender,
            from_wa_id=_digits(_first(params, "From")),
            message_id=sid,
            text=text,
            timestamp=at,
        )
        return Normalised(phone_number_ids=(sender,), inbound_texts=(inbound,))
    if not sid or not status:
        return Normalised(
            flag=ReceiptFlag.UNKNOWN_SHAPE, problem="no MessageSid/MessageStatus in the form"
        )
    sender = service or _first(params, "From")
    if not sender:
        return Normalised(flag=ReceiptFlag.UNKNOWN_SHAPE, problem="status without From")
    errors: tuple[ProviderError, ...] = ()
    code = _first(params, "ErrorCode")
    if code:
        if not code.isdigit():
            return Normalised(flag=ReceiptFlag.UNKNOWN_SHAPE, problem="ErrorCode is not a number")
        message = _first(params, "ErrorMessage")
        errors = (ProviderError(code=int(code), title=message, details=message),)
    update = Status(
        phone_number_id=sender,
        provider_message_id=sid,
        status=STATUS_MAP.get(status, status),
        timestamp=at,
        recipient_id=_digits(_first(params, "To")),
        callback_data=callback,
        errors=errors,
    )
    return Normalised(phone_number_ids=(sender,), statuses=(update,))

"""Graph API errors as Meta returns them (reference §2).

One catalogue maps an error code to its title, the HTTP status the sandbox answers with and
whether Meta reports it synchronously (in the send response) or asynchronously (as a ``failed``
status webhook). Everything else in the sandbox builds errors through :func:`graph_error`, so a
code always looks the same wherever it appears.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Delivery = Literal["sync", "async"]

ERROR_CODES_HREF = "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"
"""``errors[].href`` in webhooks: an absolute URL, as Meta sends it."""
GRAPH_LEVEL_CODES = frozenset({0, 190})
"""Graph authentication errors: their ``message`` is the plain text (no ``(#code)`` prefix, which
only Cloud API errors carry), they have an ``error_subcode`` and no ``error_data``."""


@dataclass(frozen=True, slots=True)
class CatalogueEntry:
    """What the sandbox knows about one Meta error code."""

    title: str
    http_status: int
    details: str
    delivery: Delivery = "sync"
    subcode: int | None = None


# HTTP statuses follow the older transcription of Meta's table (S-ERR-OLD) except for the
# throttling codes, which real integrations observe as HTTP 400: clients must classify by
# `error.code`, and answering 400 makes a client that classifies by HTTP status fail early.
CATALOGUE: dict[int, CatalogueEntry] = {
    0: CatalogueEntry("AuthException", 401, "Unable to authenticate the app user."),
    2: CatalogueEntry("Service temporarily unavailable", 503, "Temporary downtime or overload."),
    4: CatalogueEntry(
        "Application request limit reached", 400, "The app reached its API call rate limit."
    ),
    100: CatalogueEntry("Invalid parameter", 400, "Invalid parameter."),
    190: CatalogueEntry(
        "Access token has expired",
        401,
        "Error validating access token: Session has expired on Friday, 04-Dec-26 09:00:00 PST. "
        "The current time is Friday, 04-Dec-26 10:00:00 PST.",
        subcode=463,
    ),
    368: CatalogueEntry(
        "Temporarily blocked for policies violations",
        403,
        "The WhatsApp Business Account is restricted for violating a policy.",
    ),
    130429: CatalogueEntry("Rate limit hit", 400, "Cloud API message throughput has been reached."),
    131000: CatalogueEntry(
        "Something went wrong", 500, "Message failed to send due to an unknown error."
    ),
    131008: CatalogueEntry(
        "Required parameter is missing", 400, "A required parameter is missing."
    ),
    131009: CatalogueEntry("Parameter value is not valid", 400, "A parameter value is not valid."),
    131016: CatalogueEntry(
        "Service unavailable", 503, "A service is temporarily unavailable. Please try again."
    ),
    131026: CatalogueEntry("Message undeliverable", 400, "Message Undeliverable.", "async"),
    131047: CatalogueEntry(
        "Re-engagement message",
        400,
        "Message failed to send because more than 24 hours have passed since the customer "
        "last replied to this number.",
    ),
    131048: CatalogueEntry(
        "Spam rate limit hit",
        400,
        "Message failed to send because there are restrictions on how many messages can be "
        "sent from this phone number.",
    ),
    131049: CatalogueEntry(
        "This message was not delivered to maintain healthy ecosystem engagement.",
        400,
        "In order to maintain a healthy ecosystem engagement, the message failed to be delivered.",
        "async",
    ),
    131050: CatalogueEntry(
        "Unable to deliver the message. This recipient has chosen to stop receiving marketing "
        "messages on WhatsApp from your business.",
        400,
        "The user has stopped marketing messages from this business.",
    ),
    131051: CatalogueEntry("Unsupported message type", 400, "Message type is not supported."),
    131056: CatalogueEntry(
        "(Business Account, Consumer Account) pair rate limit hit",
        400,
        "Message failed to send because there were too many messages sent from this phone "
        "number to the same phone number in a short period of time.",
    ),
    131057: CatalogueEntry(
        "Account in maintenance mode", 400, "Business Account is in maintenance mode."
    ),
    132000: CatalogueEntry(
        "Number of parameters does not match the expected number of params",
        400,
        "The number of variable parameter values does not match the template.",
    ),
    132001: CatalogueEntry(
        "Template name does not exist in the translation",
        400,
        "The template does not exist in the specified language or is not approved.",
    ),
    132005: CatalogueEntry("Translated text too long", 400, "Translated text is too long."),
    132007: CatalogueEntry(
        "Format character policy violated", 400, "Template content violates a WhatsApp policy."
    ),
    132012: CatalogueEntry(
        "Parameter format does not match format in the created template",
        400,
        "Variable parameter values formatted incorrectly.",
    ),
    132015: CatalogueEntry("Template is Paused", 400, "Template is paused due to low quality."),
    132016: CatalogueEntry(
        "Template is Disabled", 400, "Template has been paused too many times and is disabled."
    ),
    133010: CatalogueEntry(
        "Account not registered", 400, "Phone number not registered on the WhatsApp platform."
    ),
}


@dataclass(frozen=True, slots=True)
class GraphError:
    """A Graph API error as a value: carried by decisions, rendered by transports."""

    code: int
    title: str
    details: str
    http_status: int
    subcode: int | None = None
    """``error_subcode`` (Graph errors such as 190/463 expired, 100/33 unknown object)."""
    error_type: str = "OAuthException"


class Rejected(Exception):
    """A send the sandbox refuses synchronously, the way Meta would."""

    def __init__(self, error: GraphError) -> None:
        super().__init__(f"(#{error.code}) {error.title}: {error.details}")
        self.error = error


def graph_error(
    code: int,
    details: str | None = None,
    *,
    title: str | None = None,
    http_status: int | None = None,
    subcode: int | None = None,
    error_type: str = "OAuthException",
    catalogue_subcode: bool = True,
) -> GraphError:
    """Build the error for ``code``, filling whatever is not given from the catalogue
    (``catalogue_subcode=False`` leaves the subcode out unless given)."""
    known = CATALOGUE.get(code)
    if subcode is None and catalogue_subcode and known is not None:
        subcode = known.subcode
    return GraphError(
        code=code,
        title=title or (known.title if known else "Unknown error"),
        details=details or (known.details if known else "Unknown error."),
        http_status=http_status or (known.http_status if known else 400),
        subcode=subcode,
        error_type=error_type,
    )


def default_delivery(code: int) -> Delivery:
    """How Meta usually reports ``code``: in the send response or as a ``failed`` webhook."""
    known = CATALOGUE.get(code)
    return known.delivery if known else "sync"


def error_response_body(error: GraphError, fbtrace_id: str) -> dict[str, Any]:
    """The synchronous Graph error JSON, in Meta's shapes (WCA §2.1), keys in Meta's order.

    Cloud API errors: ``message`` is ``(#code) title``, with ``error_data.details``. Graph-level
    errors (190 and other Graph failures such as an unknown object): ``message`` is the plain
    text Meta writes, with ``error_subcode``, and no ``error_data``."""
    body: dict[str, Any]
    if error.code in GRAPH_LEVEL_CODES or error.error_type != "OAuthException":
        body = {"message": error.details, "type": error.error_type, "code": error.code}
    else:
        body = {
            "message": f"(#{error.code}) {error.title}",
            "type": error.error_type,
            "code": error.code,
            "error_data": {"messaging_product": "whatsapp", "details": error.details},
        }
    if error.subcode is not None:
        body["error_subcode"] = error.subcode
    body["fbtrace_id"] = fbtrace_id
    return {"error": body}


def webhook_error(error: GraphError) -> dict[str, Any]:
    """An error object as it appears in ``statuses[].errors[]`` of a webhook (reference §2.1)."""
    return {
        "code": error.code,
        "title": error.title,
        "message": error.title,
        "error_data": {"details": error.details},
        "href": ERROR_CODES_HREF,
    }

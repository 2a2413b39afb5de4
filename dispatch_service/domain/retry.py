"""What to do after a provider call: retry classes, the Meta error-code table, and back-off (pure).

Every outcome of a send falls in one class:

    class               what happened                                what the dispatcher does
    ------------------  -------------------------------------------  ------------------------------
    accepted            the provider took the message                sent; store the wamid
    transient           rejected, safe to send again                 queued again after an
                                                                     exponential back-off with full
                                                                     jitter; failed
                                                                     (retries_exhausted) after
                                                                     max_attempts calls
    recipient_backoff   131056: too many messages to this recipient  queued again after 4^X s
                                                                     (X = calls so far - 1); other
                                                                     recipients are not held up
    terminal            rejected for this recipient for good         failed (provider_rejected) with
                                                                     code, title and details
    defer               131049: the recipient's marketing cap was    queued again, due after
                        reached (Meta: retry after 24 h at least)    `defer_seconds` (24 h), the
                                                                     hold reason recorded; failed
                                                                     (retries_exhausted) after
                                                                     max_attempts calls
    halt                account-, number- or template-level: every   the run pauses with the reason;
                        other message would fail the same way        the message goes back to queued
                                                                     (it was not sent)
    ambiguous           the request may have reached the provider    never re-sent: stays `sending`
                        (timeout after sending, connection lost,     until a webhook resolves it or
                        HTTP 5xx, unreadable 200)                    the reconciler fails it
                                                                     (outcome_unknown)

Classification is by `error.code`, never by HTTP status (reference §2.2), with one exception: an
HTTP 5xx is always ambiguous, whatever its body says, because Meta (and the sandbox) may answer
500 for a message it did accept. Unknown codes are terminal: re-sending something we do not
understand risks duplicates, and a human can start a new run.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from enum import StrEnum

from common.vocabulary import DnmSource


class RetryClass(StrEnum):
    """What a send outcome means for the message (see the module docstring)."""

    ACCEPTED = "accepted"
    TRANSIENT = "transient"
    RECIPIENT_BACKOFF = "recipient_backoff"
    TERMINAL = "terminal"
    DEFER = "defer"
    HALT = "halt"
    AMBIGUOUS = "ambiguous"


@dataclass(frozen=True)
class CodeRule:
    """How one provider error code (Meta's or Twilio's) is handled."""

    retry_class: RetryClass
    meaning: str
    lowers_rate: bool = False
    """130429: the sender's shared rate is lowered and backs off."""
    opt_out: DnmSource | None = None
    """131050 (Meta) and 21610 (Twilio): the recipient opted out; the phone joins Do-Not-Message
    with this source."""

    @property
    def adds_do_not_message(self) -> bool:
        """Whether the code means the recipient opted out."""
        return self.opt_out is not None


T, R, TERM, H = (
    RetryClass.TRANSIENT,
    RetryClass.RECIPIENT_BACKOFF,
    RetryClass.TERMINAL,
    RetryClass.HALT,
)

# Reference §2.3, decided where it hedges:
# * 1 ("invalid request or possible server error"): transient with the bounded attempts, since
#   Meta answered with an error object (the message was not accepted).
# * 131048 (spam rate limit): halt; retrying worsens the account's standing (reference ⚠).
# * 131049 (per-user marketing cap): deferred, not failed: Meta says wait at least 24 h (§5.2);
#   the run's deadline, when it has one, expires what is still waiting then. Meta mostly reports
#   it in a `failed` webhook after accepting the send: that defers the message the same way
#   (``provider_deferred``, domain/lifecycle.py).
# * 132000, 132001, 132007, 132015, 132016: the template as registered with Meta does not fit
#   this run (parameters, language, approval, quality); every other message would fail too, so
#   the run halts for a human (fix the template, then resume or cancel).
MARKETING_CAP_DEFER_SECONDS = 86_400.0
"""How long a message waits after Meta's per-user marketing cap by default (at least 24 h)."""

ERROR_CODES: dict[int, CodeRule] = {
    0: CodeRule(H, "unable to authenticate the app user (token expired or revoked)"),
    1: CodeRule(T, "invalid request or possible server error"),
    2: CodeRule(T, "temporary downtime or overload"),
    3: CodeRule(H, "capability or permission missing"),
    4: CodeRule(T, "app reached its API call rate limit"),
    10: CodeRule(H, "permission denied"),
    100: CodeRule(TERM, "invalid parameter"),
    190: CodeRule(H, "access token has expired"),
    368: CodeRule(H, "account restricted for a policy violation"),
    80007: CodeRule(T, "WABA reached its rate limit"),
    130403: CodeRule(TERM, "business has blocked this user"),
    130429: CodeRule(T, "Cloud API message throughput reached", lowers_rate=True),
    130472: CodeRule(TERM, "user is in a marketing-message experiment"),
    130497: CodeRule(TERM, "business may not message users in that country"),
    131000: CodeRule(T, "unknown error, try again"),
    131005: CodeRule(H, "access denied (permission missing)"),
    131008: CodeRule(TERM, "required parameter is missing"),
    131009: CodeRule(TERM, "parameter value is not valid"),
    131016: CodeRule(T, "a service is temporarily unavailable"),
    131021: CodeRule(TERM, "recipient cannot be the sender"),
    131026: CodeRule(TERM, "message undeliverable (not on WhatsApp, old client, ToS)"),
    131031: CodeRule(H, "business account locked"),
    131042: CodeRule(H, "payment method problem"),
    131047: CodeRule(TERM, "re-engagement window closed (free-form only)"),
    131048: CodeRule(H, "spam rate limit: check the number's quality"),
    131049: CodeRule(RetryClass.DEFER, "per-user marketing cap: not delivered (try after 24 h)"),
    131050: CodeRule(
        TERM,
        "user stopped marketing messages from this business",
        opt_out=DnmSource.PROVIDER_ERROR_131050,
    ),
    131051: CodeRule(TERM, "unsupported message type"),
    131053: CodeRule(TERM, "media upload failed"),
    131056: CodeRule(R, "(business, consumer) pair rate limit hit"),
    131057: CodeRule(T, "business account in maintenance mode"),
    131063: CodeRule(H, "marketing templates disabled for this configuration"),
    131064: CodeRule(H, "messaging limited for template classification violations"),
    132000: CodeRule(H, "template parameter count mismatch"),
    132001: CodeRule(H, "template missing in that language or not approved"),
    132005: CodeRule(TERM, "translated text too long"),
    132007: CodeRule(H, "template content violates a WhatsApp policy"),
    132012: CodeRule(TERM, "parameter values formatted incorrectly"),
    132015: CodeRule(H, "template paused for low quality"),
    132016: CodeRule(H, "template permanently disabled"),
    133010: CodeRule(H, "phone number not registered on the platform"),
    # Twilio (reference meta-2026-and-twilio §6.6). Its codes never collide with Meta's, so
    # both providers share this one table; the HTTP rule (5xx ambiguous) is the same.
    20003: CodeRule(H, "Twilio: authentication failed (account SID or auth token)"),
    20404: CodeRule(H, "Twilio: account or resource not found"),
    20429: CodeRule(T, "Twilio: too many concurrent requests", lowers_rate=True),
    21211: CodeRule(TERM, "Twilio: invalid 'To' phone number"),
    21408: CodeRule(TERM, "Twilio: region not enabled for this account"),
    21610: CodeRule(
        TERM,
        "Twilio: the recipient opted out of this sender (STOP)",
        opt_out=DnmSource.PROVIDER_ERROR_21610,
    ),
    21655: CodeRule(H, "Twilio: the ContentSid is invalid"),
    30008: CodeRule(TERM, "Twilio: unknown delivery error"),
    63003: CodeRule(TERM, "Twilio: channel could not find the To address"),
    # 63012: Twilio's mapping of WhatsApp's internal errors (500/1011/1014/1023): not sent.
    63012: CodeRule(T, "Twilio: channel internal error"),
    63014: CodeRule(TERM, "Twilio: blocked by the user (block or consent withdrawn)"),
    63016: CodeRule(TERM, "Twilio: free-form message outside the 24 h window (use ContentSid)"),
    63018: CodeRule(T, "Twilio: rate limit exceeded for this sender", lowers_rate=True),
    63021: CodeRule(TERM, "Twilio: invalid content (unsupported media, or over 1,024 characters)"),
    63024: CodeRule(TERM, "Twilio: invalid recipient (not on WhatsApp, old client, ToS)"),
    63028: CodeRule(H, "Twilio: ContentVariables do not match the template's placeholders"),
    63032: CodeRule(TERM, "Twilio: user is in a marketing-message experiment"),
}
# 63049 is Meta's 131049 seen through Twilio: whatever 131049 does, 63049 does.
ERROR_CODES[63049] = replace(
    ERROR_CODES[131049], meaning="Twilio: Meta declined a marketing message (per-user cap)"
)

_PERMISSION_RANGE = range(200, 300)
UNKNOWN_CODE = CodeRule(TERM, "unknown error code")


def classify_code(code: int) -> CodeRule:
    """The rule for a Meta error code (200-299 are permission errors: halt)."""
    if code in ERROR_CODES:
        return ERROR_CODES[code]
    if code in _PERMISSION_RANGE:
        return CodeRule(H, "permission error")
    return UNKNOWN_CODE


def classify_http_error(http_status: int, code: int | None) -> CodeRule:
    """The rule for a non-2xx answer: 5xx is ambiguous; otherwise by code when there is one."""
    if http_status >= 500:
        return CodeRule(RetryClass.AMBIGUOUS, f"HTTP {http_status}: the provider may have sent it")
    if code is not None:
        return classify_code(code)
    if http_status in (408, 429):
        return CodeRule(T, f"HTTP {http_status} without an error body")
    return CodeRule(TERM, f"HTTP {http_status} without an error body")


@dataclass(frozen=True)
class Backoff:
    """Exponential back-off with full jitter: uniform(0, min(cap, base * 2^(attempt-1)))."""

    base_seconds: float
    cap_seconds: float

    def delay(self, attempt: int, rng: random.Random) -> float:
        """The wait before the next call, after `attempt` calls (1-based) failed transiently."""
        ceiling = min(self.cap_seconds, self.base_seconds * 2 ** max(0, attempt - 1))
        return rng.uniform(0.0, ceiling)


def recipient_backoff_seconds(attempt: int) -> float:
    """Meta's rule for 131056: wait 4^X seconds, X = failures so far minus one (1, 4, 16, ...)."""
    return float(4 ** max(0, attempt - 1))


class NextStep(StrEnum):
    """What the dispatcher writes for a message after a failed call."""

    REQUEUE = "requeue"
    FAIL_RETRIES_EXHAUSTED = "fail_retries_exhausted"
    FAIL_REJECTED = "fail_rejected"
    DEFER = "defer"
    PAUSE_RUN = "pause_run"
    LEAVE_SENDING = "leave_sending"


@dataclass(frozen=True)
class Decision:
    """The next step for a message and, for a requeue, how long to wait."""

    step: NextStep
    delay_seconds: float = 0.0


def decide(
    retry_class: RetryClass,
    attempt: int,
    *,
    max_attempts: int,
    backoff: Backoff,
    rng: random.Random,
) -> Decision:
    """The next step after call number `attempt` (1-based) ended in `retry_class`."""
    if retry_class is RetryClass.ACCEPTED:
        raise ValueError("an accepted send needs no decision")
    if retry_class is RetryClass.AMBIGUOUS:
        return Decision(NextStep.LEAVE_SENDING)
    if retry_class is RetryClass.HALT:
        return Decision(NextStep.PAUSE_RUN)
    if retry_class is RetryClass.TERMINAL:
        return Decision(NextStep.FAIL_REJECTED)
    if attempt >= max_attempts:
        return Decision(NextStep.FAIL_RETRIES_EXHAUSTED)
    if retry_class is RetryClass.DEFER:
        return Decision(NextStep.DEFER)
    if retry_class is RetryClass.RECIPIENT_BACKOFF:
        return Decision(NextStep.REQUEUE, recipient_backoff_seconds(attempt))
    return Decision(NextStep.REQUEUE, backoff.delay(attempt, rng))

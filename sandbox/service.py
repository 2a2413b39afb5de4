"""The sandbox's use cases: a template send, and the control operations.

:class:`SandboxService` ties the pieces together: request validation, the scenario's decision,
the ledger, and the webhook timeline. It knows nothing about HTTP servers; the Graph and control
routes translate requests into calls on it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import os
import random
import string
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import phonenumbers

from sandbox.config import SandboxSettings
from sandbox.errors import GraphError, Rejected, error_response_body, graph_error
from sandbox.ledger import Ledger, LedgerEntry
from sandbox.payloads import (
    StatusEvent,
    WebhookItem,
    call_change,
    echo_change,
    encode,
    inbound_text_change,
    send_response,
    template_category_change,
    template_quality_change,
    template_status_change,
    user_preferences_change,
)
from sandbox.scenario import Accepted, Scenario, SendDecider, TemplateSpec, plan_statuses
from sandbox.validation import TemplateSend, parse_template_send
from sandbox.webhooks import WebhookSender

Reply = Literal["respond", "drop", "delay"]
CONVERSATION_WINDOW_SECONDS = 24 * 3600
_FBTRACE_ALPHABET = string.ascii_letters + string.digits + "-_"


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """How to answer one Graph send request."""

    status: int
    body: bytes
    latency: float
    """Seconds to wait before answering (the scenario's latency)."""
    reply: Reply = "respond"
    """``drop``: close the connection without answering; ``delay``: answer after ``reply_delay``."""
    reply_delay: float = 0.0


class NotFound(LookupError):
    """A control operation named a template or message the sandbox does not have."""


class SandboxService:
    """One sandbox: its scenario, ledger and webhooks."""

    def __init__(self, settings: SandboxSettings, scenario: Scenario) -> None:
        self.settings = settings
        self._token = settings.access_token.get_secret_value().encode()
        self._seed = settings.seed if settings.seed is not None else scenario.seed
        self.rng = random.Random(self._seed)
        self.decider = SendDecider(scenario, self.rng)
        self.ledger = Ledger()
        self.webhooks = WebhookSender(
            callback_url=settings.callback_url,
            app_secret=settings.app_secret.get_secret_value(),
            waba_id=settings.waba_id,
            display_phone_number=settings.display_phone_number,
            config=lambda: self.decider.scenario.webhooks,
            rng=self.rng,
            concurrency=settings.webhook_concurrency,
            max_pending=settings.max_pending_webhooks,
        )
        # wamids must stay unique across resets and restarts (the dispatcher stores them under a
        # unique constraint), so they come from a per-process salt and a counter, not the seed.
        self._wamid_salt = os.urandom(4).hex().upper()
        self._wamid_counter = itertools.count(1)

    @property
    def scenario(self) -> Scenario:
        """The scenario in force."""
        return self.decider.scenario

    # --- Graph -----------------------------------------------------------------------------

    def submit_send(
        self, phone_number_id: str, authorization: str | None, raw: bytes
    ) -> SendOutcome:
        """Handle ``POST /{version}/{phone_number_id}/messages`` with body ``raw``."""
        latency = self.scenario.latency.draw(self.rng)
        try:
            self._authorize(authorization)
            self._check_phone_number_id(phone_number_id)
            account_error = self.decider.account_error()
            if account_error is not None:
                raise Rejected(account_error)
            send = parse_template_send(raw)
            now = time.monotonic()  # one reading: the cap and the ledger must see the same time
            decision = self.decider.decide(send, phone_number_id, now)
        except Rejected as rejected:
            self.ledger.rejected[rejected.error.code] += 1
            return SendOutcome(
                rejected.error.http_status, self._error_body(rejected.error), latency
            )
        entry = self._record(send, phone_number_id, decision, now)
        self._schedule_statuses(entry, decision)
        if decision.ambiguous == "server_error":
            return SendOutcome(500, self._error_body(graph_error(131000)), latency)
        body = encode(send_response(send.to, entry.wa_id, entry.wamid))
        if decision.ambiguous is None:
            return SendOutcome(200, body, latency)
        return SendOutcome(200, body, latency, decision.ambiguous, decision.reply_delay)

    def list_templates(
        self,
        waba_id: str,
        authorization: str | None,
        limit: str | None,
        after: str | None,
        next_url: Callable[[str], str],
    ) -> tuple[int, bytes]:
        """Handle ``GET /{version}/{waba_id}/message_templates``: one page of the scenario's
        templates as Meta pages them (``limit``, default 25, at most 100; the ``after`` cursor;
        ``paging.next`` is ``next_url(after)`` while more pages follow)."""
        try:
            self._authorize(authorization)
            if waba_id != self.settings.waba_id:
                raise Rejected(
                    graph_error(
                        100,
                        f"Unsupported get request. Object with ID '{waba_id}' does not exist, "
                        "cannot be loaded due to missing permissions, or does not support "
                        "this operation.",
                        title="Unsupported get request",
                    )
                )
            size = _page_size(limit)
            start = _cursor_index(after) + 1 if after else 0
        except Rejected as rejected:
            return rejected.error.http_status, self._error_body(rejected.error)
        templates = self.scenario.templates
        page = templates[start : start + size]
        body: dict[str, Any] = {"data": [t.graph_item() for t in page]}
        if page:
            body["paging"] = {
                "cursors": {
                    "before": _cursor(start),
                    "after": _cursor(start + len(page) - 1),
                }
            }
        if start + len(page) < len(templates):
            body["paging"]["next"] = next_url(_cursor(start + len(page) - 1))
        return 200, encode(body)

    def phone_number(
        self, phone_number_id: str, authorization: str | None, fields: str
    ) -> tuple[int, bytes]:
        """Handle ``GET /{version}/{phone_number_id}?fields=...``: the id, and the portfolio's
        messaging limit as Meta writes it (``whatsapp_business_manager_messaging_limit``:
        ``TIER_250`` ... ``TIER_UNLIMITED``, from the scenario's ``limits.messaging_limit``)."""
        try:
            self._authorize(authorization)
        except Rejected as rejected:
            return rejected.error.http_status, self._error_body(rejected.error)
        body: dict[str, Any] = {"id": phone_number_id}
        asked = {f.strip() for f in fields.split(",")}
        if "whatsapp_business_manager_messaging_limit" in asked:
            body["whatsapp_business_manager_messaging_limit"] = tier_name(
                self.scenario.limits.messaging_limit
            )
        return 200, encode(body)

    def _authorize(self, authorization: str | None) -> None:
        scheme, _, token = (authorization or "").partition(" ")
        if not token:
            raise Rejected(
                graph_error(
                    190,
                    "An access token is required to request this resource.",
                    title="Invalid OAuth access token",
                    catalogue_subcode=False,
                )
            )
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), self._token):
            raise Rejected(
                graph_error(
                    190,
                    "Invalid OAuth access token - Cannot parse access token",
                    title="Invalid OAuth access token",
                    catalogue_subcode=False,
                )
            )

    def _check_phone_number_id(self, phone_number_id: str) -> None:
        expected = self.settings.phone_number_id
        if expected is not None and phone_number_id != expected:
            raise Rejected(
                graph_error(
                    100,
                    f"Unsupported post request. Object with ID '{phone_number_id}' does not exist, "
                    "cannot be loaded due to missing permissions, or does not support this "
                    "operation. Please read the Graph API documentation at "
                    "https://developers.facebook.com/docs/graph-api",
                    title="Unsupported post request",
                    subcode=33,
                    error_type="GraphMethodException",
                )
            )

    def _record(
        self, send: TemplateSend, phone_number_id: str, decision: Accepted, now: float
    ) -> LedgerEntry:
        wa_id = self.scenario.wa_ids.get(send.wa_id, send.wa_id)
        entry = LedgerEntry(
            seq=self.ledger.next_seq(),
            wamid=self._new_wamid(wa_id),
            phone_number_id=phone_number_id,
            to=send.to,
            wa_id=wa_id,
            template=send.template_name,
            language=send.language,
            category=decision.template.category.lower(),
            parameters=send.body_parameters,
            header_parameters=send.header_parameters,
            callback_data=send.callback_data,
            accepted_at=time.time(),
            monotonic=now,
            reply="ok" if decision.ambiguous is None else decision.ambiguous,
            async_error_code=decision.async_error.code if decision.async_error else None,
        )
        self.ledger.record(entry)
        return entry

    def _schedule_statuses(self, entry: LedgerEntry, decision: Accepted) -> None:
        if not self.webhooks.enabled:
            return
        for planned in plan_statuses(self.scenario.webhooks, self.rng, decision.async_error):
            event = self._status_event(
                entry,
                planned.status,
                int(entry.accepted_at + planned.happens_after),
                billable=planned.billable,
                error=planned.error,
            )
            self.webhooks.schedule(event, entry.monotonic + planned.arrives_after)

    def _status_event(
        self,
        entry: LedgerEntry,
        status: str,
        timestamp: int,
        *,
        billable: bool,
        error: GraphError | None,
    ) -> StatusEvent:
        conversation_id, expires = _conversation(entry)
        return StatusEvent(
            wamid=entry.wamid,
            status=status,
            timestamp=timestamp,
            recipient_id=entry.wa_id,
            phone_number_id=entry.phone_number_id,
            callback_data=entry.callback_data,
            category=entry.category,
            billable=billable,
            conversation_id=conversation_id,
            conversation_expires=expires,
            error=error,
            user_id=self.user_id_for(entry.wa_id),
            recipients=self.scenario.webhooks.recipients,
            group_id=_group_id(self.settings.display_phone_number, entry.phone_number_id),
            profile_name=_profile_name(entry.wa_id),
        )

    def user_id_for(self, wa_id: str) -> str:
        """The business-scoped user id Meta reports for ``wa_id``: the scenario's, or a stable
        one derived from the number and the WABA (``<region>.<20 digits>``, meta-2026 §1.1)."""
        digits = "".join(char for char in wa_id if char.isdigit())
        given = self.scenario.user_ids.get(digits)
        if given:
            return given
        return derived_user_id(digits, self.settings.waba_id)

    def _new_wamid(self, wa_id: str) -> str:
        # Shaped like Meta's: base64 of a length-prefixed number and an 18-character hex id.
        number = wa_id.encode()
        unique = f"{self._wamid_salt}{next(self._wamid_counter):010X}".encode()
        raw = b"\x1c\x18" + bytes([len(number)]) + number + b"\x15\x02\x00\x11\x18\x12"
        return "wamid." + base64.b64encode(raw + unique + b"\x00").decode()

    def _error_body(self, error: GraphError) -> bytes:
        fbtrace_id = "A" + "".join(self.rng.choices(_FBTRACE_ALPHABET, k=22))
        return encode(error_response_body(error, fbtrace_id))

    # --- control ---------------------------------------------------------------------------

    def use_scenario(self, scenario: Scenario) -> None:
        """Replace the scenario in force (state such as the ledger is kept). A scenario with a
        different seed restarts the random sequence from it, unless the settings fix the seed."""
        if self.settings.seed is None and scenario.seed != self.scenario.seed:
            self._seed = scenario.seed
            self.rng.seed(self._seed)
        self.decider.use(scenario)

    def register_template(self, template: TemplateSpec) -> None:
        """Add a template translation, or replace the one with the same name and language."""
        self.use_scenario(self.scenario.with_template(template))

    async def reset(self) -> None:
        """Forget every send and pending webhook and restart the random sequence."""
        self.ledger = Ledger()
        self.decider.reset()
        self.rng.seed(self._seed)
        await self.webhooks.reset()

    def stats(self) -> dict[str, Any]:
        """Ledger figures and webhook delivery counters."""
        return {**self.ledger.stats(), "webhooks": self.webhooks.snapshot()}

    def _phone_shared(self, phone_shared: bool | None) -> bool:
        """Whether inbound events show the user's phone: as asked, else not in the scenario's
        ``user_id_only`` mode."""
        if phone_shared is not None:
            return phone_shared
        return self.scenario.webhooks.recipients != "user_id_only"

    def emit_user_preferences(
        self,
        wa_id: str,
        value: Literal["stop", "resume"],
        phone_number_id: str | None,
        *,
        user_id: str | None = None,
        phone_shared: bool | None = None,
    ) -> bool:
        """Send a ``user_preferences`` webhook: the user stopped (or resumed) marketing."""
        return self._emit(
            user_preferences_change(
                display_phone_number=self.settings.display_phone_number,
                phone_number_id=self._phone_number_id(phone_number_id),
                wa_id=wa_id,
                value=value,
                timestamp=int(time.time()),
                user_id=user_id or self.user_id_for(wa_id),
                phone_shared=self._phone_shared(phone_shared),
            )
        )

    def emit_inbound_text(
        self,
        wa_id: str,
        text: str,
        profile_name: str,
        phone_number_id: str | None,
        *,
        user_id: str | None = None,
        phone_shared: bool | None = None,
    ) -> bool:
        """Send an inbound text message webhook (e.g. a user replying "STOP"); without the
        phone (``from``) when the phone is not shared: ``from_user_id`` only."""
        return self._emit(
            inbound_text_change(
                display_phone_number=self.settings.display_phone_number,
                phone_number_id=self._phone_number_id(phone_number_id),
                wa_id=wa_id,
                profile_name=profile_name,
                message_id=self._new_wamid(wa_id),
                text=text,
                timestamp=int(time.time()),
                user_id=user_id or self.user_id_for(wa_id),
                phone_shared=self._phone_shared(phone_shared),
            )
        )

    def emit_call(
        self, wa_id: str, event: Literal["connect", "terminate"], phone_number_id: str | None
    ) -> bool:
        """Send a ``calls`` webhook: the user calls the business number, or the call ends."""
        digits = "".join(char for char in wa_id if char.isdigit())
        call_id = "wacid." + base64.b64encode(f"sandbox-call:{digits}".encode()).decode()
        return self._emit(
            call_change(
                display_phone_number=self.settings.display_phone_number,
                phone_number_id=self._phone_number_id(phone_number_id),
                wa_id=digits,
                user_id=self.user_id_for(digits),
                profile_name=_profile_name(digits),
                call_id=call_id,
                event=event,
                timestamp=int(time.time()),
            )
        )

    def emit_echo(self, wa_id: str, text: str, phone_number_id: str | None) -> bool:
        """Send an ``smb_message_echoes`` webhook: the business wrote to the user from the
        WhatsApp Business app."""
        digits = "".join(char for char in wa_id if char.isdigit())
        return self._emit(
            echo_change(
                display_phone_number=self.settings.display_phone_number,
                phone_number_id=self._phone_number_id(phone_number_id),
                wa_id=digits,
                user_id=self.user_id_for(digits),
                profile_name=_profile_name(digits),
                message_id=self._new_wamid(digits),
                text=text,
                timestamp=int(time.time()),
            )
        )

    def emit_template_status(self, name: str, language: str, event: str, reason: str) -> bool:
        """Send a ``message_template_status_update``; an event that is also a template status
        (``PAUSED``, ``DISABLED``, ``APPROVED``…) changes how sends with the template fare."""
        template = next(
            (t for t in self.scenario.templates if (t.name, t.language) == (name, language)),
            None,
        )
        if template is None:
            raise NotFound(f"no template {name!r} in {language!r}")
        status = "APPROVED" if event == "REINSTATED" else event
        if status in ("APPROVED", "PENDING", "REJECTED", "PAUSED", "DISABLED"):
            self.register_template(template.model_copy(update={"status": status}))
        return self._emit(
            template_status_change(
                template_id=template.template_id,
                name=name,
                language=language,
                category=template.category,
                event=event,
                reason=reason,
                timestamp=int(time.time()),
            )
        )

    def _template(self, name: str, language: str) -> TemplateSpec:
        template = next(
            (t for t in self.scenario.templates if (t.name, t.language) == (name, language)),
            None,
        )
        if template is None:
            raise NotFound(f"no template {name!r} in {language!r}")
        return template

    def emit_template_quality(self, name: str, language: str, score: str) -> bool:
        """Send a ``message_template_quality_update`` and record the new score."""
        template = self._template(name, language)
        self.register_template(template.model_copy(update={"quality": score}))
        return self._emit(
            template_quality_change(
                template_id=template.template_id,
                name=name,
                language=language,
                previous=template.quality,
                new=score,
                timestamp=int(time.time()),
            )
        )

    def emit_template_category(self, name: str, language: str, category: str) -> bool:
        """Send a completed ``template_category_update`` and recategorise the template."""
        template = self._template(name, language)
        self.register_template(template.model_copy(update={"category": category}))
        return self._emit(
            template_category_change(
                template_id=template.template_id,
                name=name,
                language=language,
                previous=template.category,
                new=category,
                timestamp=int(time.time()),
            )
        )

    def emit_status(self, wamid: str, status: str, error: GraphError | None) -> bool:
        """Send one extra status webhook for an accepted message (late, unknown or conflicting
        statuses, for tests of the consumer's state machine)."""
        entry = self.ledger.by_wamid.get(wamid)
        if entry is None:
            raise NotFound(f"no accepted send with id {wamid!r}")
        return self._emit(
            self._status_event(entry, status, int(time.time()), billable=False, error=error)
        )

    def _emit(self, item: WebhookItem) -> bool:
        return self.webhooks.schedule(item, time.monotonic())

    def _phone_number_id(self, given: str | None) -> str:
        if given:
            return given
        if self.settings.phone_number_id:
            return self.settings.phone_number_id
        if self.ledger.entries:
            return self.ledger.entries[-1].phone_number_id
        raise NotFound("no phone_number_id given, configured, or used by a send yet")


def _cursor(index: int) -> str:
    """A Graph paging cursor (opaque to clients; here the base64 of a position)."""
    return base64.urlsafe_b64encode(f"tpl:{index}".encode()).decode().rstrip("=")


def _cursor_index(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, number = raw.partition(":")
        if prefix != "tpl" or not number.isdigit():
            raise ValueError(cursor)
        return int(number)
    except ValueError:
        raise Rejected(
            graph_error(100, "Invalid parameter: after is not a valid cursor", title="Invalid")
        ) from None


def _page_size(limit: str | None) -> int:
    if limit is None or limit == "":
        return 25
    if not limit.isdigit() or not 1 <= int(limit) <= 100:
        raise Rejected(graph_error(100, "Invalid parameter: limit must be 1 to 100"))
    return int(limit)


def _conversation(entry: LedgerEntry) -> tuple[str, int]:
    """The (v23-shape) conversation id and expiry of a message: one conversation per message."""
    conversation_id = hashlib.blake2b(entry.wamid.encode(), digest_size=16).hexdigest()
    return conversation_id, int(entry.accepted_at) + CONVERSATION_WINDOW_SECONDS


def derived_user_id(digits: str, waba_id: str) -> str:
    """A stable business-scoped user id for a phone: its region code, a period, 20 digits."""
    try:
        region = phonenumbers.region_code_for_number(phonenumbers.parse("+" + digits))
    except phonenumbers.NumberParseException:
        region = None
    if not region or region == "ZZ" or len(region) != 2:
        region = "US"
    digest = hashlib.blake2b(f"{waba_id}:{digits}".encode(), digest_size=8).digest()
    number = 10**19 + int.from_bytes(digest, "big") % (9 * 10**19)
    return f"{region}.{number}"


def _group_id(display_phone_number: str, phone_number_id: str) -> str:
    """The id of the sandbox's one group per business number (shaped like Meta's)."""
    raw = f"capi_group:{display_phone_number}:{phone_number_id[-4:]}"
    return base64.b64encode(raw.encode()).decode().rstrip("=")


def _profile_name(wa_id: str) -> str:
    return f"Guest {wa_id[-4:]}"


def tier_name(limit: int | None) -> str:
    """Meta's name for a messaging limit tier: TIER_250, TIER_2K, TIER_10K, TIER_100K,
    TIER_UNLIMITED (None); another number as TIER_<n>."""
    if limit is None:
        return "TIER_UNLIMITED"
    if limit >= 1000 and limit % 1000 == 0:
        return f"TIER_{limit // 1000}K"
    return f"TIER_{limit}"

"""What the sandbox is scripted to do, and the pure decisions that follow from it.

A :class:`Scenario` is loaded from a JSON (or TOML) file at start-up and can be replaced or
patched at run time through the control API. :class:`SendDecider` turns a validated send plus
the scenario into a decision (reject with a Graph error, or accept and how to answer), and
:func:`plan_statuses` decides which status webhooks an accepted message produces and when.
Nothing here does I/O except :func:`load_scenario`; time and randomness are passed in.
"""

from __future__ import annotations

import json
import random
import re
import tomllib
import zlib
from collections import defaultdict, deque
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sandbox.errors import Delivery, GraphError, Rejected, default_delivery, graph_error
from sandbox.validation import TemplateSend

Share = Annotated[float, Field(ge=0.0, le=1.0)]
TemplateStatus = Literal["APPROVED", "PENDING", "REJECTED", "PAUSED", "DISABLED"]
Ambiguity = Literal["drop", "delay", "server_error"]
TEMPLATE_ID_BASE = 1_000_000_000_000_000


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Delay(_Model):
    """A delay of ``ms`` milliseconds plus a uniformly random extra of up to ``jitter_ms``."""

    ms: float = Field(0.0, ge=0.0)
    jitter_ms: float = Field(0.0, ge=0.0)

    def draw(self, rng: random.Random) -> float:
        """One delay in seconds."""
        extra = rng.uniform(0.0, self.jitter_ms) if self.jitter_ms else 0.0
        return (self.ms + extra) / 1000.0


class TemplateSpec(_Model):
    """A message template as registered with Meta: one (name, language) translation."""

    name: str = Field(min_length=1)
    language: str = Field(min_length=1)
    body_params: int = Field(0, ge=0)
    header_params: int = Field(0, ge=0)
    category: Literal["MARKETING", "UTILITY", "AUTHENTICATION"] = "MARKETING"
    status: TemplateStatus = "APPROVED"
    parameter_format: Literal["positional", "named"] = "positional"
    quality: Literal["GREEN", "YELLOW", "RED", "UNKNOWN"] = "UNKNOWN"
    components: tuple[dict[str, Any], ...] = ()
    """Meta's component objects, served by ``GET /{waba-id}/message_templates``. Empty: a TEXT
    header with ``header_params`` variables (when any) and a body with ``body_params``."""

    @property
    def template_id(self) -> int:
        """A stable numeric id, as ``message_template_status_update`` webhooks carry."""
        return TEMPLATE_ID_BASE + zlib.crc32(f"{self.name}:{self.language}".encode())

    def graph_item(self) -> dict[str, Any]:
        """The template as ``GET /{waba-id}/message_templates`` lists it (id is a string)."""
        return {
            "id": str(self.template_id),
            "name": self.name,
            "language": self.language,
            "status": self.status,
            "category": self.category,
            "parameter_format": self.parameter_format.upper(),
            "quality_score": {"score": self.quality},
            "components": list(self.components) or self._default_components(),
        }

    def _default_components(self) -> list[dict[str, Any]]:
        components: list[dict[str, Any]] = []
        if self.header_params:
            variables = " ".join(f"{{{{{n}}}}}" for n in range(1, self.header_params + 1))
            components.append({"type": "HEADER", "format": "TEXT", "text": variables})
        body = " ".join(f"{{{{{n}}}}}" for n in range(1, self.body_params + 1))
        components.append({"type": "BODY", "text": f"You are invited. {body}".strip()})
        return components


class Throughput(_Model):
    """Meta's per-phone-number throughput cap (reference §6)."""

    max_per_second: int | None = Field(None, ge=1)
    """Accepted sends allowed per phone number id in any one-second window; null = no cap."""


class FaultRule(_Model):
    """One scripted misbehaviour; the first rule that fires decides the send."""

    code: int | None = None
    """Graph error code to answer (e.g. 131000, 131050, 131026)."""
    ambiguous: Ambiguity | None = None
    """Instead of an error: accept the send, then drop the connection, delay the reply, or
    answer HTTP 500 (131000) anyway."""
    delivery: Delivery | None = None
    """``sync`` (in the send response) or ``async`` (accepted, then a ``failed`` webhook).
    Defaults to how Meta reports the code (131026 and 131049 async, others sync)."""
    recipients: frozenset[str] = frozenset()
    """Only these numbers (any formatting; compared as digits). Empty = every recipient."""
    rate: Share = 1.0
    """Probability that the rule fires for a matching send."""
    times: int | None = Field(None, ge=1)
    """Fire at most this many times per recipient (e.g. fail twice, then succeed)."""
    http_status: int | None = Field(None, ge=400, le=599)
    title: str | None = None
    details: str | None = None
    delay_ms: float = Field(30_000.0, ge=0.0)
    """For ``ambiguous: delay``: how long the reply is held back."""

    @field_validator("recipients", mode="before")
    @classmethod
    def _digits_only(cls, value: Any) -> Any:
        if isinstance(value, list | tuple | set | frozenset):
            return frozenset(_digits(str(item)) for item in value)
        return value

    @model_validator(mode="after")
    def _one_effect(self) -> Self:
        if (self.code is None) == (self.ambiguous is None):
            raise ValueError("a fault rule needs exactly one of 'code' or 'ambiguous'")
        return self

    def error(self) -> GraphError:
        """The Graph error this rule answers with."""
        return graph_error(
            self.code if self.code is not None else 131000,
            self.details,
            title=self.title,
            http_status=self.http_status,
        )

    def effective_delivery(self) -> Delivery:
        """Sync or async, defaulting from the code."""
        return self.delivery or default_delivery(self.code or 0)


class Limits(_Model):
    """Meta's 2025-2026 limits (reference §5.1, §5.2), over a moving window of sandbox time."""

    messaging_limit: int | None = Field(None, ge=1)
    """Portfolio messaging limit: unique recipients per window across every phone number id
    (250, 2000, ... in production); a send to a new recipient beyond it fails. null = none."""
    messaging_limit_code: int = 131049
    """The error for a send beyond the portfolio limit. Meta documents no dedicated code (❓
    §5.1; Twilio says 63018); 131049 (not delivered, async) is what clients see most."""
    marketing_per_user: int | None = Field(None, ge=1)
    """Per-user marketing cap: MARKETING templates accepted per recipient per window; the
    next one fails with 131049. null = none."""
    delivery: Delivery = "async"
    """How both are answered: ``async`` (accepted, then a ``failed`` webhook, as Meta does)
    or ``sync`` (an error response)."""
    window_seconds: float = Field(86_400.0, gt=0)
    """The moving window (24 h at Meta; shorten it for demos)."""


class Account(_Model):
    """Account-level failure (token expired, WABA restricted) from a chosen moment on."""

    error_code: int | None = None
    """Code every request gets once active, e.g. 190 (HTTP 401) or 368 (HTTP 403)."""
    after_sends: int | None = Field(None, ge=0)
    """Become active once this many sends were accepted; null = active now (if a code is set)."""


class Batching(_Model):
    """How due webhook events are grouped into POSTs (Meta batches up to 1000 updates)."""

    max_statuses_per_post: int = Field(100, ge=1, le=1000)
    linger_ms: float = Field(10.0, ge=0.0)
    """Wait this long after the first event is due, so later ones can join its POST."""
    statuses_per_change: int = Field(1000, ge=1)
    """Split one phone number's statuses into several ``changes[]`` of at most this many."""
    changes_per_entry: int = Field(10, ge=1)
    """Split changes into several ``entry[]`` items of at most this many."""


class Retry(_Model):
    """Redelivery of a POST that did not get HTTP 200, as Meta does it: exponential back-off
    (each wait `multiplier` times the last, at most `max_interval_s`) for up to 7 days, on a
    time scale tests can compress (`time_scale` 0.001: 7 days in about 10 minutes)."""

    max_attempts: int | None = Field(None, ge=1)
    """Give up after this many attempts; null = only the time window bounds redelivery."""
    initial_ms: float = Field(500.0, ge=0.0)
    multiplier: float = Field(2.0, ge=1.0)
    max_interval_s: float = Field(3600.0, gt=0.0)
    """The longest wait between two attempts."""
    max_elapsed_s: float = Field(7 * 24 * 3600.0, ge=0.0)
    """Give up once this long has passed since the first attempt (Meta: 7 days)."""
    time_scale: float = Field(1.0, gt=0.0, le=1.0)
    """Every wait and the window are multiplied by this (1 = real time)."""


class Webhooks(_Model):
    """Which status webhooks a message produces, when, and how they are delivered."""

    shape: Literal["v26", "v24", "v23"] = "v26"
    """``v26`` (Graph API v26.0, the default): ``contacts`` (``wa_id``, ``user_id``) beside
    sent/delivered/read statuses, the 2025 ``pricing`` block (no ``billable``) on ``sent`` and the
    first of delivered/read, no ``conversation``; ``v24``: no contacts, ``pricing`` on ``sent``
    only; ``v23``: ``conversation`` and ``pricing`` on ``sent`` and the first of delivered/read."""
    recipients: Literal["phone", "user_id_only", "group"] = "phone"
    """How statuses name the recipient: ``phone`` (``recipient_id``, contacts with ``wa_id`` and
    ``user_id``); ``user_id_only`` (a user whose phone Meta withholds: ``recipient_user_id``,
    contacts with ``user_id`` only, and inbound events without ``from``); ``group`` (group
    statuses: ``recipient_type: group``, the group id, the participant's phone and user id)."""
    sent: Delay = Delay(ms=50.0, jitter_ms=50.0)
    """From acceptance to ``sent``."""
    delivered: Delay = Delay(ms=200.0, jitter_ms=300.0)
    """From ``sent`` to ``delivered``."""
    read: Delay = Delay(ms=1000.0, jitter_ms=2000.0)
    """From ``delivered`` to ``read``."""
    failed: Delay = Delay(ms=100.0, jitter_ms=100.0)
    """From acceptance (or from ``sent``, when one precedes it) to an async ``failed``."""
    delivered_share: Share = 0.95
    """Share of accepted messages that reach the phone."""
    read_share: Share = 0.6
    """Share of delivered messages that get read (read receipts on)."""
    read_without_delivered_share: Share = 0.1
    """Share of read messages whose ``delivered`` webhook never comes (chat was open)."""
    sent_before_failed_share: Share = 0.0
    """Share of async failures that are preceded by a ``sent``."""
    duplicate_share: Share = 0.0
    """Share of events delivered twice."""
    duplicate_delay: Delay = Delay(ms=0.0, jitter_ms=500.0)
    reorder_share: Share = 0.0
    """Share of messages whose events arrive in a shuffled order (timestamps stay true)."""
    hold: bool = False
    """Keep due events back until ``POST /_sandbox/webhooks/flush``."""
    batching: Batching = Batching()
    retry: Retry = Retry()


class Scenario(_Model):
    """Everything scriptable about the sandbox. Every field has a realistic default."""

    seed: int | None = None
    """Seed for every random decision; null = a fresh seed per start."""
    templates: tuple[TemplateSpec, ...] = ()
    latency: Delay = Delay()
    """Added before every Graph reply."""
    throughput: Throughput = Throughput()
    faults: tuple[FaultRule, ...] = ()
    limits: Limits = Limits()
    account: Account = Account()
    webhooks: Webhooks = Webhooks()
    wa_ids: dict[str, str] = {}
    """Recipient digits -> the ``wa_id`` Meta reports, for numbers where the two differ."""
    user_ids: dict[str, str] = {}
    """Recipient digits -> the business-scoped user id Meta reports; others get a stable one
    derived from the number (``<region>.<digits>``)."""

    @field_validator("wa_ids", "user_ids", mode="before")
    @classmethod
    def _digit_keys(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {_digits(str(key)): wa_id for key, wa_id in value.items()}
        return value

    @model_validator(mode="after")
    def _unique_templates(self) -> Self:
        keys = [(template.name, template.language) for template in self.templates]
        if len(keys) != len(set(keys)):
            raise ValueError("templates must be unique by (name, language)")
        return self

    def with_template(self, template: TemplateSpec) -> Scenario:
        """This scenario with ``template`` added, or replacing the same (name, language)."""
        kept = tuple(
            t for t in self.templates if (t.name, t.language) != (template.name, template.language)
        )
        return self.model_copy(update={"templates": (*kept, template)})

    def patched(self, patch: dict[str, Any]) -> Scenario:
        """Deep-merge ``patch`` into this scenario (objects merge, everything else replaces)."""
        return Scenario.model_validate(_deep_merge(self.model_dump(mode="json"), patch))


class ScenarioError(Exception):
    """A scenario file that cannot be read or does not validate."""


BUILTIN_SCENARIOS = Path(__file__).parent / "scenarios"


def load_scenario(path: Path) -> Scenario:
    """Read a scenario from a ``.json`` or ``.toml`` file; a bare name that is not a file names
    one shipped in ``sandbox/scenarios`` (``demo``, ``chaos``)."""
    builtin = BUILTIN_SCENARIOS / f"{path.name}.json"
    if not path.exists() and path == Path(path.name) and builtin.exists():
        path = builtin
    try:
        raw = path.read_bytes()
        data = tomllib.loads(raw.decode()) if path.suffix == ".toml" else json.loads(raw)
        return Scenario.model_validate(data)
    except (OSError, ValueError, ValidationError) as exc:
        raise ScenarioError(f"cannot load scenario {path}: {exc}") from exc


# --- decisions on a send -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Accepted:
    """The send is accepted (and recorded); how the sandbox answers it."""

    template: TemplateSpec
    async_error: GraphError | None = None
    ambiguous: Ambiguity | None = None
    reply_delay: float = 0.0


class ThroughputWindow:
    """Accepted sends in the last second, per phone number id."""

    def __init__(self) -> None:
        self._times: defaultdict[str, deque[float]] = defaultdict(deque)

    def count(self, phone_number_id: str, now: float) -> int:
        """Sends accepted in (now - 1 s, now]."""
        times = self._times[phone_number_id]
        while times and times[0] <= now - 1.0:
            times.popleft()
        return len(times)

    def record(self, phone_number_id: str, now: float) -> None:
        """Count one accepted send at ``now``."""
        self._times[phone_number_id].append(now)


class SendDecider:
    """Applies a scenario to validated sends. Holds the state the scenario needs: the throughput
    window, how often each fault fired per recipient, and how many sends were accepted."""

    def __init__(self, scenario: Scenario, rng: random.Random) -> None:
        self.rng = rng
        self.accepted = 0
        self._window = ThroughputWindow()
        self._fired: defaultdict[tuple[int, str], int] = defaultdict(int)
        self._recipients: dict[str, float] = {}
        """wa_id -> its last accepted send (the portfolio limit's window), oldest first."""
        self._marketing: defaultdict[str, deque[float]] = defaultdict(deque)
        """wa_id -> its accepted marketing sends in the window."""
        self.scenario = scenario
        self._templates = _template_index(scenario)

    def use(self, scenario: Scenario) -> None:
        """Switch to ``scenario``. How often each fault fired is kept unless the faults changed
        (counters are per rule index), so registering a template mid-test changes nothing else."""
        if scenario.faults != self.scenario.faults:
            self._fired.clear()
        self.scenario = scenario
        self._templates = _template_index(scenario)

    def reset(self) -> None:
        """Forget all sends (the scenario stays)."""
        self.accepted = 0
        self._window = ThroughputWindow()
        self._fired.clear()
        self._recipients.clear()
        self._marketing.clear()

    def account_error(self) -> GraphError | None:
        """The account-level error every request gets right now, if any."""
        account = self.scenario.account
        if account.error_code is None:
            return None
        if account.after_sends is not None and self.accepted < account.after_sends:
            return None
        return graph_error(account.error_code)

    def decide(self, send: TemplateSend, phone_number_id: str, now: float) -> Accepted:
        """Accept ``send`` or raise :class:`Rejected`; ``now`` is a monotonic time in seconds."""
        template = self._template(send)
        cap = self.scenario.throughput.max_per_second
        if cap is not None and self._window.count(phone_number_id, now) >= cap:
            raise Rejected(graph_error(130429))
        limited = self._limit_error(send, template, now)
        if limited is not None and self.scenario.limits.delivery == "sync":
            raise Rejected(limited)
        decision = (
            Accepted(template, async_error=limited)
            if limited is not None
            else self._apply_faults(send, template)
        )
        self._window.record(phone_number_id, now)
        self.accepted += 1
        if limited is None and decision.async_error is None:
            self._count_limits(send, template, now)
        return decision

    def _limit_error(
        self, send: TemplateSend, template: TemplateSpec, now: float
    ) -> GraphError | None:
        """The limit error this send hits, if any (portfolio first, then the per-user cap)."""
        limits = self.scenario.limits
        horizon = now - limits.window_seconds
        recipients = self._recipients  # oldest first: a send moves its recipient to the end
        while recipients:
            oldest, last = next(iter(recipients.items()))
            if last > horizon:
                break
            del recipients[oldest]
        if (
            limits.messaging_limit is not None
            and send.wa_id not in self._recipients
            and len(self._recipients) >= limits.messaging_limit
        ):
            return graph_error(limits.messaging_limit_code)
        if limits.marketing_per_user is not None and template.category == "MARKETING":
            sends = self._marketing[send.wa_id]
            while sends and sends[0] <= horizon:
                sends.popleft()
            if len(sends) >= limits.marketing_per_user:
                return graph_error(131049)
        return None

    def _count_limits(self, send: TemplateSend, template: TemplateSpec, now: float) -> None:
        self._recipients.pop(send.wa_id, None)
        self._recipients[send.wa_id] = now
        if template.category == "MARKETING":
            self._marketing[send.wa_id].append(now)

    def _template(self, send: TemplateSend) -> TemplateSpec:
        template = self._templates.get((send.template_name, send.language))
        if template is None or template.status in ("PENDING", "REJECTED"):
            raise Rejected(
                graph_error(
                    132001,
                    f"template name ({send.template_name}) does not exist in {send.language}",
                )
            )
        if template.status == "PAUSED":
            raise Rejected(graph_error(132015, f"Template {template.name} is paused."))
        if template.status == "DISABLED":
            raise Rejected(graph_error(132016, f"Template {template.name} is disabled."))
        if template.components:
            check_against_definition(send, template)
            return template
        for component, given, expected in (
            ("header", len(send.header_parameters), template.header_params),
            ("body", len(send.body_parameters), template.body_params),
        ):
            if given != expected:
                raise Rejected(
                    graph_error(
                        132000,
                        f"{component}: number of localizable_params ({given}) does not match "
                        f"the expected number of params ({expected})",
                    )
                )
        return template

    def _apply_faults(self, send: TemplateSend, template: TemplateSpec) -> Accepted:
        for index, rule in enumerate(self.scenario.faults):
            if not self._fires(index, rule, send.wa_id):
                continue
            if rule.ambiguous is not None:
                return Accepted(
                    template, ambiguous=rule.ambiguous, reply_delay=rule.delay_ms / 1000
                )
            if rule.effective_delivery() == "sync":
                raise Rejected(rule.error())
            return Accepted(template, async_error=rule.error())
        return Accepted(template)

    def _fires(self, index: int, rule: FaultRule, wa_id: str) -> bool:
        if rule.recipients and wa_id not in rule.recipients:
            return False
        key = (index, wa_id)
        if rule.times is not None and self._fired[key] >= rule.times:
            return False
        if rule.rate < 1.0 and self.rng.random() >= rule.rate:
            return False
        self._fired[key] += 1
        return True


# --- status webhook planning ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlannedStatus:
    """One status webhook for an accepted message, relative to the moment it was accepted."""

    status: str
    happens_after: float
    """Seconds after acceptance the status happened: its ``timestamp``."""
    arrives_after: float
    """Seconds after acceptance its POST goes out (later than ``happens_after`` if reordered)."""
    billable: bool = False
    """Carries ``conversation``/``pricing`` in the v23 shape (sent and first of delivered/read)."""
    error: GraphError | None = None


def plan_statuses(
    config: Webhooks, rng: random.Random, async_error: GraphError | None = None
) -> list[PlannedStatus]:
    """The webhooks one accepted message produces, in arrival order."""
    timeline = _true_timeline(config, rng, async_error)
    if len(timeline) > 1 and rng.random() < config.reorder_share:
        timeline = _reordered(timeline, rng)
    planned = list(timeline)
    for event in timeline:
        if rng.random() < config.duplicate_share:
            late = event.arrives_after + config.duplicate_delay.draw(rng)
            planned.append(replace(event, arrives_after=late))
    planned.sort(key=lambda event: event.arrives_after)  # stable: ties keep planned order
    return planned


def _true_timeline(
    config: Webhooks, rng: random.Random, async_error: GraphError | None
) -> list[PlannedStatus]:
    def at(status: str, when: float, billable: bool = False) -> PlannedStatus:
        return PlannedStatus(status, when, when, billable)

    if async_error is not None:
        events: list[PlannedStatus] = []
        when = 0.0
        if rng.random() < config.sent_before_failed_share:
            when = config.sent.draw(rng)
            events.append(at("sent", when, billable=True))
        when += config.failed.draw(rng)
        events.append(PlannedStatus("failed", when, when, error=async_error))
        return events
    sent = config.sent.draw(rng)
    events = [at("sent", sent, billable=True)]
    if rng.random() >= config.delivered_share:
        return events
    delivered = sent + config.delivered.draw(rng)
    if rng.random() >= config.read_share:
        return [*events, at("delivered", delivered, billable=True)]
    if rng.random() < config.read_without_delivered_share:
        # Chat open: delivered and read at the same moment, and only `read` is sent (§3.2).
        return [*events, at("read", delivered, billable=True)]
    read = delivered + config.read.draw(rng)
    return [*events, at("delivered", delivered, billable=True), at("read", read)]


def _reordered(timeline: list[PlannedStatus], rng: random.Random) -> list[PlannedStatus]:
    """Shuffle arrival order; an event never arrives before it happened, so events that now come
    after a later one are held back until that one has happened."""
    order = list(timeline)
    while order == timeline:
        rng.shuffle(order)
    arrived: list[PlannedStatus] = []
    clock = 0.0
    for event in order:
        clock = max(clock, event.happens_after)
        arrived.append(replace(event, arrives_after=clock))
    return arrived


MEDIA_HEADERS = frozenset({"IMAGE", "VIDEO", "DOCUMENT", "LOCATION"})
BODY_MAX_CHARACTERS = 1024
_NAMED = re.compile(r"\{\{\s*([a-z_][a-z0-9_]*)\s*\}\}")
_POSITIONAL = re.compile(r"\{\{\s*([0-9]+)\s*\}\}")


def check_against_definition(send: TemplateSend, template: TemplateSpec) -> None:
    """Validate a send against a template given with ``components``, as Meta does (reference
    meta-2026 §2.4): a header of the wrong type (or none) is 132012 ("expected IMAGE, received
    UNKNOWN"), as are named parameters for a positional template and the reverse; a wrong
    parameter count is 132000; a text parameter with a new line, a tab or more than four
    spaces in a row is 132018; a body longer than 1,024 characters once filled is 132005."""
    by_type = {str(c.get("type", "")).upper(): c for c in template.components}
    header = by_type.get("HEADER")
    expected = str(header.get("format") or "TEXT").upper() if header else None
    if expected in MEDIA_HEADERS:
        received = _header_type(send.header_parameters)
        if received != expected:
            raise Rejected(
                graph_error(
                    132012,
                    f"header: Format mismatch, expected {expected}, received {received}",
                    title="Parameter format does not match format in the created template",
                )
            )
    else:
        variables = len(_POSITIONAL.findall(str(header.get("text", "")))) if header else 0
        if len(send.header_parameters) != variables:
            raise Rejected(_count_error("header", len(send.header_parameters), variables))
    text = str(by_type.get("BODY", {}).get("text", ""))
    named = template.parameter_format == "named"
    names = [n for n in send.body_parameter_names if n is not None]
    if (named and len(names) != len(send.body_parameters)) or (not named and names):
        raise Rejected(
            graph_error(
                132012,
                "body: parameter_name is "
                + ("required by this named template" if named else "not used by this template"),
                title="Parameter format does not match format in the created template",
            )
        )
    wanted = (
        list(dict.fromkeys(_NAMED.findall(text)))
        if named
        else [str(n) for n in range(1, max(map(int, _POSITIONAL.findall(text)), default=0) + 1)]
    )
    if len(send.body_parameters) != len(wanted) or (named and set(names) != set(wanted)):
        raise Rejected(_count_error("body", len(send.body_parameters), len(wanted)))
    for value in (*send.header_parameters, *send.body_parameters):
        if "\n" in value or "\t" in value or "     " in value:
            raise Rejected(
                graph_error(
                    132018,
                    "Param text cannot have new-line/tab characters or more than 4 "
                    "consecutive spaces",
                )
            )
    values = dict(zip(names if named else wanted, send.body_parameters, strict=False))
    pattern = _NAMED if named else _POSITIONAL
    filled = pattern.sub(lambda m: values.get(m.group(1), ""), text)
    if len(filled) > BODY_MAX_CHARACTERS:
        raise Rejected(
            graph_error(132005, f"body: {len(filled)} characters once filled (at most 1024)")
        )


def _header_type(parameters: tuple[str, ...]) -> str:
    """The type of a media/location header parameter as sent, or UNKNOWN."""
    if len(parameters) != 1:
        return "UNKNOWN"
    try:
        parameter = json.loads(parameters[0])
    except ValueError:
        return "UNKNOWN"
    kind = parameter.get("type") if isinstance(parameter, dict) else None
    return kind.upper() if isinstance(kind, str) and kind in parameter else "UNKNOWN"


def _count_error(component: str, given: int, expected: int) -> GraphError:
    return graph_error(
        132000,
        f"{component}: number of localizable_params ({given}) does not match the expected "
        f"number of params ({expected})",
    )


def _template_index(scenario: Scenario) -> dict[tuple[str, str], TemplateSpec]:
    return {(template.name, template.language): template for template in scenario.templates}


def _deep_merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in patch.items():
        current = merged.get(key)
        if isinstance(current, dict) and isinstance(value, dict):
            merged[key] = _deep_merge(current, value)
        else:
            merged[key] = value
    return merged


def _digits(phone: str) -> str:
    return "".join(char for char in phone if char.isdigit())

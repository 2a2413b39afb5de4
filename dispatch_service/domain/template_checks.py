"""Whether a run can send a template as Meta holds it (pure; PrecheckSend's template step).

A run sends body text parameters (domain/template_variables) and, for a template synced from
Meta, what its send plan fills (domain/send_plan): the header media chosen at StartRun, a
LOCATION header from the event, named or positional parameters as the template says,
quick-reply payloads and a URL button's per-guest suffix. Meta refuses a send whose parameters
do not match the template (132000 count, 132012 format), so PrecheckSend refuses, before
anything is sent, a template that needs what the run cannot give:

    event.coordinates   a LOCATION header while the event has no latitude and longitude
    header              a TEXT header with a variable
    buttons             a COPY_CODE, FLOW or other button needing a parameter per recipient
    template_format     a hand-registered template has no components, so a NAMED one sent
                        while WHATSAPP_PARAMETER_FORMAT is positional cannot be told apart:
                        not checked (a synced template carries its own format)
    deleted             a template a sync no longer found on Meta

What it reports without refusing (shown at precheck): a media header (StartRun needs its
header_media), a category Meta changed (previous -> current) or announced, a YELLOW or RED
quality, a template that is not APPROVED (StartRun refuses it), a hand-registered template
(not checked against Meta), and variables this service cannot fill (StartRun refuses them).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dispatch_service.domain.template_variables import SOURCES_BY_NAME
from dispatch_service.errors import FieldViolation

VARIABLE = re.compile(r"\{\{\s*[^}]+\s*\}\}")
MEDIA_HEADERS = frozenset({"IMAGE", "VIDEO", "DOCUMENT"})
PARAMETER_BUTTONS = frozenset({"COPY_CODE", "FLOW", "OTP", "CATALOG", "MPM"})


@dataclass(frozen=True)
class TemplateFacts:
    """What PrecheckSend knows about the chosen template."""

    name: str
    language: str
    status: str
    category: str
    previous_category: str | None
    pending_category: str | None
    quality: str | None
    source: str
    parameter_format: str
    components: Sequence[Mapping[str, Any]]
    variables: Sequence[str]
    deleted: bool
    event_has_coordinates: bool = False


@dataclass(frozen=True)
class TemplateCheck:
    """The template step's verdict: violations refuse the precheck, notes are shown."""

    facts: TemplateFacts
    violations: list[FieldViolation] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def check_template(facts: TemplateFacts, service_parameter_format: str) -> TemplateCheck:
    """Violations and notes for sending `facts` with the service's parameter format."""
    check = TemplateCheck(facts)
    _violations(facts, service_parameter_format, check.violations)
    _notes(facts, check.notes)
    return check


def _violations(facts: TemplateFacts, service_format: str, out: list[FieldViolation]) -> None:
    label = f"{facts.name} ({facts.language})"
    if facts.deleted:
        out.append(FieldViolation("template", f"{label} was deleted on Meta; sync or pick another"))
    if facts.source == "meta" and not facts.components and facts.parameter_format != service_format:
        out.append(
            FieldViolation(
                "template.parameter_format",
                f"{label} takes {facts.parameter_format} parameters but this service sends "
                f"{service_format} ones (WHATSAPP_PARAMETER_FORMAT): Meta would answer 132012",
            )
        )
    for component in facts.components:
        kind = str(component.get("type", "")).upper()
        if kind == "HEADER":
            fmt = str(component.get("format") or "TEXT").upper()
            if fmt == "LOCATION" and not facts.event_has_coordinates:
                out.append(
                    FieldViolation(
                        "event.coordinates",
                        f"{label} has a LOCATION header: give the event a latitude and "
                        "longitude (invites events update EVENT --latitude .. --longitude ..)",
                    )
                )
            elif (
                fmt not in MEDIA_HEADERS
                and fmt != "LOCATION"
                and VARIABLE.search(str(component.get("text", "")))
            ):
                out.append(
                    FieldViolation(
                        "template.header",
                        f"{label} has a text header with a variable this service cannot fill "
                        "(Meta would answer 132000)",
                    )
                )
        elif kind == "BUTTONS":
            for index, button in enumerate(component.get("buttons") or []):
                if not isinstance(button, Mapping):
                    continue
                button_type = str(button.get("type", "")).upper()
                if button_type in PARAMETER_BUTTONS:
                    out.append(
                        FieldViolation(
                            f"template.buttons[{index}]",
                            f"{label}'s {button_type} button needs a parameter per recipient; "
                            "this service sends none (Meta would answer 132000)",
                        )
                    )


def _notes(facts: TemplateFacts, out: list[str]) -> None:
    for component in facts.components:
        fmt = str(component.get("format") or "").upper()
        if str(component.get("type", "")).upper() == "HEADER" and fmt in MEDIA_HEADERS:
            out.append(
                f"the template has {'an' if fmt == 'IMAGE' else 'a'} {fmt} header: StartRun needs "
                "its header_media "
                f"(invites send --header-{fmt.lower()} URL)"
            )
    if facts.previous_category and facts.previous_category != facts.category:
        out.append(
            f"Meta changed the category from {facts.previous_category} to {facts.category} "
            "(pricing and opt-in rules follow the new one)"
        )
    if facts.pending_category and facts.pending_category != facts.category:
        out.append(
            f"Meta announced it will change the category from {facts.category} to "
            f"{facts.pending_category}"
        )
    if facts.quality in ("YELLOW", "RED"):
        out.append(f"quality is {facts.quality}: Meta may pause the template (132015)")
    if facts.status != "APPROVED":
        out.append(f"the template is {facts.status}: StartRun refuses it until it is APPROVED")
    if facts.source == "manual":
        out.append("registered by hand: not checked against Meta (run invites templates sync)")
    unknown = [v for v in facts.variables if v.strip().casefold() not in SOURCES_BY_NAME]
    if unknown:
        out.append(
            f"variables this service cannot fill: {', '.join(unknown)} (StartRun refuses them)"
        )

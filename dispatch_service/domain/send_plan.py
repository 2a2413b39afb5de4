"""What a run sends beside body text: the header, the parameter format and the buttons (pure).

A run of a template synced from Meta (it has components) freezes a *send plan* at StartRun
(`invite_send_run.send_plan`), and every message is built from it (reference meta-2026 §2.3):

    header IMAGE, VIDEO, DOCUMENT   the run's one media, by link or media id (StartRun's
                                    header_media; a document may carry a filename)
    header LOCATION                 the event's coordinates, name (the location, else the event
                                    name) and address
    body                            text parameters, with parameter_name when the template is
                                    NAMED (whatever WHATSAPP_PARAMETER_FORMAT says)
    QUICK_REPLY button              payload "<message id>:<button index>", so a guest's tap can be
                                    matched to the invitation it answers
    URL button with {{1}}           the suffix is the message id without dashes (a per-guest
                                    RSVP token only this invitation carries)

A template without components (registered by hand) has an empty plan: body text parameters
only, formatted as WHATSAPP_PARAMETER_FORMAT says, as before. What the plan cannot fill (a text
header with a variable, COPY_CODE or FLOW buttons) is refused at StartRun, and earlier at
PrecheckSend (domain/template_checks).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dispatch_service.errors import FieldViolation

MEDIA_HEADERS = frozenset({"IMAGE", "VIDEO", "DOCUMENT"})
VARIABLE = re.compile(r"\{\{\s*[^}]+\s*\}\}")
MEDIA_ID = re.compile(r"^[0-9]{1,64}$")


@dataclass(frozen=True)
class HeaderMedia:
    """The run's one header media (StartRun's header_media)."""

    kind: str
    """image, video or document."""
    link: str = ""
    media_id: str = ""
    filename: str = ""


@dataclass(frozen=True)
class Venue:
    """The event facts a LOCATION header shows."""

    name: str
    location: str
    address: str
    latitude: float | None
    longitude: float | None


def media_violations(media: HeaderMedia | None) -> list[FieldViolation]:
    """StartRun's header_media, checked on its own."""
    if media is None:
        return []
    violations = []
    if media.kind not in ("image", "video", "document"):
        violations.append(FieldViolation("header_media.type", "must be image, video or document"))
    if bool(media.link) == bool(media.media_id):
        violations.append(FieldViolation("header_media", "give exactly one of link or media_id"))
    if media.link and not media.link.startswith("https://"):
        violations.append(FieldViolation("header_media.link", "must be an https:// URL"))
    if media.media_id and not MEDIA_ID.match(media.media_id):
        violations.append(FieldViolation("header_media.media_id", "must be a Meta media id"))
    if media.filename and media.kind != "document":
        violations.append(FieldViolation("header_media.filename", "only for a document"))
    return violations


def build_send_plan(
    components: Sequence[Mapping[str, Any]],
    parameter_format: str,
    venue: Venue,
    media: HeaderMedia | None,
) -> tuple[dict[str, Any], list[FieldViolation]]:
    """The run's send plan, and what stops it (a missing or mismatched media, an event without
    coordinates for a LOCATION header, parameters the run cannot fill)."""
    if not components:
        return {}, media_violations(media)
    plan: dict[str, Any] = {"parameter_format": parameter_format, "buttons": []}
    violations = media_violations(media)
    header_format = None
    for component in components:
        kind = str(component.get("type", "")).upper()
        if kind == "HEADER":
            header_format = str(component.get("format") or "TEXT").upper()
            header, problems = _header(header_format, component, venue, media)
            violations += problems
            if header is not None:
                plan["header"] = header
        elif kind == "BUTTONS":
            plan["buttons"], problems = _buttons(component.get("buttons") or [])
            violations += problems
    if media is not None and header_format not in MEDIA_HEADERS and not violations:
        violations.append(
            FieldViolation("header_media", "the template has no media header to put it in")
        )
    return plan, violations


def _header(
    fmt: str, component: Mapping[str, Any], venue: Venue, media: HeaderMedia | None
) -> tuple[dict[str, Any] | None, list[FieldViolation]]:
    if fmt in MEDIA_HEADERS:
        if media is None:
            return None, [
                FieldViolation(
                    "header_media",
                    f"the template has an {fmt} header: pass its media"
                    if fmt == "IMAGE"
                    else f"the template has a {fmt} header: pass its media",
                )
            ]
        if media.kind.upper() != fmt:
            return None, [
                FieldViolation(
                    "header_media.type", f"the template's header is {fmt}, not {media.kind}"
                )
            ]
        source = {"link": media.link} if media.link else {"id": media.media_id}
        if media.filename:
            source["filename"] = media.filename
        return {"type": media.kind, media.kind: source}, []
    if fmt == "LOCATION":
        if venue.latitude is None or venue.longitude is None:
            return None, [
                FieldViolation(
                    "event.coordinates",
                    "the template has a LOCATION header: give the event latitude and longitude",
                )
            ]
        location = {
            "latitude": str(venue.latitude),
            "longitude": str(venue.longitude),
            "name": venue.location or venue.name,
            "address": venue.address,
        }
        return {"type": "location", "location": location}, []
    if VARIABLE.search(str(component.get("text", ""))):
        return None, [FieldViolation("template.header", "a text header variable cannot be filled")]
    return None, []


def _buttons(buttons: Sequence[Any]) -> tuple[list[dict[str, Any]], list[FieldViolation]]:
    planned: list[dict[str, Any]] = []
    violations = []
    for index, button in enumerate(buttons):
        if not isinstance(button, Mapping):
            continue
        kind = str(button.get("type", "")).upper()
        if kind == "QUICK_REPLY":
            planned.append({"sub_type": "quick_reply", "index": index})
        elif kind == "URL" and VARIABLE.search(str(button.get("url", ""))):
            planned.append({"sub_type": "url", "index": index})
        elif kind in ("COPY_CODE", "FLOW", "OTP", "CATALOG", "MPM"):
            violations.append(
                FieldViolation(f"template.buttons[{index}]", f"a {kind} button cannot be filled")
            )
    return planned, violations


def quick_reply_payload(message_id: uuid.UUID, index: int) -> str:
    """A quick reply's payload: which invitation, which button."""
    return f"{message_id}:{index}"


def url_suffix(message_id: uuid.UUID) -> str:
    """A URL button's per-guest suffix (the RSVP token)."""
    return message_id.hex


def plan_components(
    plan: Mapping[str, Any],
    message_id: uuid.UUID,
    body_values: Sequence[str],
    body_names: Sequence[str],
) -> list[dict[str, Any]]:
    """The send-time `components` of one message under `plan` (which must not be empty)."""
    components: list[dict[str, Any]] = []
    if plan.get("header"):
        components.append({"type": "header", "parameters": [dict(plan["header"])]})
    named = plan.get("parameter_format") == "named"
    parameters = []
    for index, value in enumerate(body_values):
        parameter = {"type": "text", "text": value}
        if named and index < len(body_names):
            parameter["parameter_name"] = body_names[index]
        parameters.append(parameter)
    if parameters:
        components.append({"type": "body", "parameters": parameters})
    for button in plan.get("buttons", []):
        index = int(button["index"])
        if button["sub_type"] == "quick_reply":
            filled = {"type": "payload", "payload": quick_reply_payload(message_id, index)}
        else:
            filled = {"type": "text", "text": url_suffix(message_id)}
        components.append(
            {
                "type": "button",
                "sub_type": button["sub_type"],
                "index": str(index),
                "parameters": [filled],
            }
        )
    return components

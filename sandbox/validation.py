"""Parse and validate a ``POST /{version}/{phone_number_id}/messages`` body (reference §1).

Hand-written rather than a pydantic model: each failure must name the offending field the way
Graph does (``template['language']['code']``) and map to a specific error code, and this runs on
the hot path of every send.

Codes used: malformed JSON and values of the wrong type or form are 100; a missing field inside
the message is 131008 (``messaging_product`` is checked by Graph itself first, so it is 100);
a message type other than ``template`` is 131051 (the sandbox only simulates templates).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sandbox.errors import Rejected, graph_error

CALLBACK_DATA_MAX_LENGTH = 512  # reference §1: remembered, not confirmed by Meta text
_PHONE_FORMATTING = str.maketrans("", "", "+ -().")
_MESSAGE_TYPES = frozenset(
    {
        "audio",
        "contacts",
        "document",
        "image",
        "interactive",
        "location",
        "reaction",
        "sticker",
        "template",
        "text",
        "video",
    }
)
_COMPONENT_TYPES = frozenset({"header", "body", "button", "footer"})


@dataclass(frozen=True, slots=True)
class TemplateSend:
    """A syntactically valid template send, before the template registry is consulted."""

    to: str
    wa_id: str
    template_name: str
    language: str
    header_parameters: tuple[str, ...]
    body_parameters: tuple[str, ...]
    callback_data: str | None
    body_parameter_names: tuple[str | None, ...] = ()
    """Each body parameter's ``parameter_name`` (None when sent positionally)."""


def parse_template_send(raw: bytes) -> TemplateSend:
    """Validate a send request body; raise :class:`Rejected` with Meta's code when it is bad."""
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise _invalid(100, "Request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise _invalid(100, "Request body must be a JSON object.")
    if "messaging_product" not in body:
        raise _invalid(100, "The parameter messaging_product is required.")
    if body["messaging_product"] != "whatsapp":
        raise _invalid(100, "Param messaging_product must be 'whatsapp'.")
    recipient_type = body.get("recipient_type", "individual")
    if recipient_type != "individual":
        raise _invalid(100, "Param recipient_type must be 'individual'.")
    to = _required_string(body, "to", "to")
    wa_id = to.translate(_PHONE_FORMATTING)
    if not (wa_id.isdigit() and wa_id.isascii() and 7 <= len(wa_id) <= 15):
        raise _invalid(100, f"Param to is not a valid phone number: {to!r}.")
    message_type = body.get("type", "text")
    if message_type not in _MESSAGE_TYPES:
        raise _invalid(100, f"Param type must be one of {{{', '.join(sorted(_MESSAGE_TYPES))}}}.")
    if message_type != "template":
        raise _invalid(131051, f"The sandbox simulates template messages only, not {message_type}.")
    template = body.get("template")
    if template is None:
        raise _invalid(131008, "Param template is required.")
    if not isinstance(template, dict):
        raise _invalid(100, "Param template must be a JSON object.")
    name = _required_string(template, "name", "template['name']")
    language = template.get("language")
    if language is None:
        raise _invalid(131008, "Param template['language'] is required.")
    if not isinstance(language, dict):
        raise _invalid(100, "Param template['language'] must be a JSON object.")
    code = _required_string(language, "code", "template['language']['code']")
    header, body_params, names = _component_parameters(template.get("components", []))
    return TemplateSend(
        to=to,
        wa_id=wa_id,
        template_name=name,
        language=code,
        header_parameters=header,
        body_parameters=body_params,
        callback_data=_callback_data(body.get("biz_opaque_callback_data")),
        body_parameter_names=names,
    )


def _component_parameters(
    components: Any,
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str | None, ...]]:
    """Header and body parameter values (each text parameter as its text), and each body
    parameter's ``parameter_name``."""
    if not isinstance(components, list):
        raise _invalid(100, "Param template['components'] must be an array.")
    header: list[str] = []
    body: list[str] = []
    names: list[str | None] = []
    for index, component in enumerate(components):
        where = f"template['components'][{index}]"
        if not isinstance(component, dict):
            raise _invalid(100, f"Param {where} must be a JSON object.")
        kind = _required_string(component, "type", f"{where}['type']").lower()
        if kind not in _COMPONENT_TYPES:
            raise _invalid(100, f"Param {where}['type'] must be one of header, body, button.")
        values = _parameter_values(component.get("parameters", []), where)
        # Button parameters are accepted but not checked against the template (documented).
        if kind == "header":
            header.extend(values)
        elif kind == "body":
            body.extend(values)
            names.extend(_parameter_names(component.get("parameters", [])))
    return tuple(header), tuple(body), tuple(names)


def _parameter_names(parameters: list[Any]) -> list[str | None]:
    """Each parameter's ``parameter_name`` (shapes were checked by _parameter_values)."""
    return [
        p.get("parameter_name") if isinstance(p.get("parameter_name"), str) else None
        for p in parameters
    ]


def _parameter_values(parameters: Any, where: str) -> list[str]:
    if not isinstance(parameters, list):
        raise _invalid(100, f"Param {where}['parameters'] must be an array.")
    values: list[str] = []
    for index, parameter in enumerate(parameters):
        at = f"{where}['parameters'][{index}]"
        if not isinstance(parameter, dict):
            raise _invalid(100, f"Param {at} must be a JSON object.")
        kind = _required_string(parameter, "type", f"{at}['type']")
        if kind != "text":
            # Currency, date_time and media parameters: kept verbatim for the ledger.
            values.append(json.dumps(parameter, separators=(",", ":"), sort_keys=True))
            continue
        text = parameter.get("text")
        if not isinstance(text, str) or not text.strip():
            raise _invalid(131008, f"Parameter of type text is missing text value at {at}.")
        values.append(text)
    return values


def _callback_data(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _invalid(100, "Param biz_opaque_callback_data must be a string.")
    if len(value) > CALLBACK_DATA_MAX_LENGTH:
        raise _invalid(
            100,
            f"Param biz_opaque_callback_data is longer than {CALLBACK_DATA_MAX_LENGTH} characters.",
        )
    return value


def _required_string(container: dict[str, Any], key: str, where: str) -> str:
    value = container.get(key)
    if value is None:
        raise _invalid(131008, f"Param {where} is required.")
    if not isinstance(value, str) or not value:
        raise _invalid(100, f"Param {where} must be a non-empty string.")
    return value


def _invalid(code: int, details: str) -> Rejected:
    return Rejected(graph_error(code, details))

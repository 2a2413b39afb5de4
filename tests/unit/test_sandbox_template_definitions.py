"""The sandbox validates a send against a template given with components, answering as Meta
does (reference meta-2026 §2.4): 132012 for a header or parameter format mismatch, 132000 for a
count mismatch, 132018 for bad text, 132005 for a body too long once filled. 132001 (missing
translation), 132015/132016 (paused, disabled) and 132007 (a scripted fault) are the decider's."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from sandbox.errors import Rejected
from sandbox.scenario import Scenario, SendDecider, TemplateSpec, check_against_definition
from sandbox.testing import template_message
from sandbox.validation import parse_template_send

CARD = TemplateSpec.model_validate(
    {
        "name": "invitation_card",
        "language": "en_US",
        "parameter_format": "named",
        "components": [
            {"type": "HEADER", "format": "IMAGE"},
            {"type": "BODY", "text": "Hi {{guest_name}}, see you on {{event_date}}."},
            {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Yes"}]},
        ],
    }
)
POSITIONAL = TemplateSpec.model_validate(
    {
        "name": "event_invitation",
        "language": "en_US",
        "components": [{"type": "BODY", "text": "Hi {{1}}, see you on {{2}}."}],
    }
)
IMAGE = {"type": "image", "image": {"link": "https://cdn.example/card.jpg"}}


def body(
    *,
    header: list[dict[str, Any]] | None = None,
    params: list[dict[str, Any]] | None = None,
    name: str = "invitation_card",
) -> bytes:
    message = template_message(name=name)
    components: list[dict[str, Any]] = []
    if header is not None:
        components.append({"type": "header", "parameters": header})
    components.append({"type": "body", "parameters": params or []})
    message["template"]["components"] = components
    return json.dumps(message).encode()


def named(guest: str = "Jane", date: str = "Sat 12 Oct") -> list[dict[str, Any]]:
    return [
        {"type": "text", "parameter_name": "guest_name", "text": guest},
        {"type": "text", "parameter_name": "event_date", "text": date},
    ]


def code_of(raw: bytes, template: TemplateSpec) -> int | None:
    try:
        check_against_definition(parse_template_send(raw), template)
    except Rejected as rejected:
        return rejected.error.code
    return None


def test_a_send_matching_the_definition_passes() -> None:
    assert code_of(body(header=[IMAGE], params=named()), CARD) is None
    positional = [{"type": "text", "text": "Jane"}, {"type": "text", "text": "Sat"}]
    assert code_of(body(params=positional, name="event_invitation"), POSITIONAL) is None


def test_a_missing_or_wrong_header_is_132012_naming_both_types() -> None:
    raw = body(params=named())
    with pytest.raises(Rejected) as missing:
        check_against_definition(parse_template_send(raw), CARD)
    assert missing.value.error.code == 132012
    assert "expected IMAGE, received UNKNOWN" in missing.value.error.details
    video = {"type": "video", "video": {"id": "123"}}
    assert code_of(body(header=[video], params=named()), CARD) == 132012


@pytest.mark.parametrize(
    ("template", "params", "code"),
    [
        (CARD, [{"type": "text", "text": "Jane"}, {"type": "text", "text": "Sat"}], 132012),
        (POSITIONAL, named(), 132012),
        (CARD, named()[:1], 132000),
        (CARD, [*named()[:1], {"type": "text", "parameter_name": "dress", "text": "x"}], 132000),
        (POSITIONAL, [{"type": "text", "text": "Jane"}], 132000),
        (CARD, named(guest="Jane\nDoe"), 132018),
        (CARD, named(guest="Jane      Doe"), 132018),
        (CARD, named(guest="J" * 1100), 132005),
    ],
)
def test_body_mismatches_answer_as_meta(
    template: TemplateSpec, params: list[dict[str, Any]], code: int
) -> None:
    header = [IMAGE] if template is CARD else None
    name = template.name
    assert code_of(body(header=header, params=params, name=name), template) == code


@pytest.mark.parametrize(("status", "code"), [("PAUSED", 132015), ("DISABLED", 132016)])
def test_the_decider_answers_paused_disabled_and_missing_translations(
    status: str, code: int
) -> None:
    scenario = Scenario(templates=(CARD.model_copy(update={"status": status}),))
    decider = SendDecider(scenario, random.Random(1))
    for raw, expected in (
        (body(header=[IMAGE], params=named()), code),
        (body(header=[IMAGE], params=named(), name="unknown_template"), 132001),
    ):
        with pytest.raises(Rejected) as rejected:
            decider.decide(parse_template_send(raw), "106540352242922", 0.0)
        assert rejected.value.error.code == expected


def test_a_policy_violation_is_a_scripted_fault() -> None:
    scenario = Scenario.model_validate(
        {"templates": [CARD.model_dump()], "faults": [{"code": 132007}]}
    )
    decider = SendDecider(scenario, random.Random(1))
    with pytest.raises(Rejected) as rejected:
        decider.decide(
            parse_template_send(body(header=[IMAGE], params=named())), "106540352242922", 0.0
        )
    assert rejected.value.error.code == 132007

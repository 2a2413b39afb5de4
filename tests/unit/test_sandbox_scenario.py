"""Scenario decisions (templates, throughput, faults, account) and status webhook planning."""

import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from sandbox.errors import Rejected, graph_error
from sandbox.ledger import max_in_any_second
from sandbox.scenario import (
    BUILTIN_SCENARIOS,
    Accepted,
    Scenario,
    ScenarioError,
    SendDecider,
    TemplateSpec,
    Webhooks,
    load_scenario,
    plan_statuses,
)
from sandbox.validation import TemplateSend

PHONE_ID = "106540352242922"


def send(
    to: str = "16505551234", params: int = 2, template: str = "event_invitation"
) -> TemplateSend:
    return TemplateSend(
        to=to,
        wa_id=to,
        template_name=template,
        language="en_US",
        header_parameters=(),
        body_parameters=tuple(f"p{i}" for i in range(params)),
        callback_data=None,
    )


def decider(**scenario: object) -> SendDecider:
    base: dict[str, object] = {
        "templates": [{"name": "event_invitation", "language": "en_US", "body_params": 2}]
    }
    return SendDecider(Scenario.model_validate({**base, **scenario}), random.Random(1))


def rejected_code(decide: SendDecider, message: TemplateSend, now: float = 0.0) -> int | None:
    try:
        decide.decide(message, PHONE_ID, now)
    except Rejected as rejected:
        return rejected.error.code
    return None


def test_unknown_template_or_language_is_132001() -> None:
    decide = decider()

    assert rejected_code(decide, send(template="other")) == 132001
    wrong_language = TemplateSend(
        "1", "16505551234", "event_invitation", "fr", (), ("a", "b"), None
    )
    assert rejected_code(decide, wrong_language) == 132001


def test_parameter_count_mismatch_is_132000_with_metas_details() -> None:
    with pytest.raises(Rejected) as caught:
        decider().decide(send(params=0), PHONE_ID, 0.0)

    assert caught.value.error.code == 132000
    assert caught.value.error.details == (
        "body: number of localizable_params (0) does not match the expected number of params (2)"
    )


@pytest.mark.parametrize(
    ("status", "code"),
    [("PAUSED", 132015), ("DISABLED", 132016), ("PENDING", 132001), ("REJECTED", 132001)],
)
def test_templates_that_are_not_approved_cannot_be_sent(status: str, code: int) -> None:
    decide = decider(
        templates=[
            {"name": "event_invitation", "language": "en_US", "body_params": 2, "status": status}
        ]
    )

    assert rejected_code(decide, send()) == code


def test_throughput_cap_counts_accepted_sends_in_any_one_second_window() -> None:
    decide = decider(throughput={"max_per_second": 3})

    results = [rejected_code(decide, send(), now) for now in (0.0, 0.1, 0.2, 0.3, 0.99)]
    assert results == [None, None, None, 130429, 130429]
    assert rejected_code(decide, send(), 1.05) is None  # the send at 0.0 left the window
    assert rejected_code(decide, send(), 1.06) == 130429
    assert decide.accepted == 4


@settings(max_examples=100, deadline=None)
@given(
    cap=st.integers(1, 20),
    gaps=st.lists(st.floats(0.0, 0.3, allow_nan=False), min_size=1, max_size=300),
)
def test_cap_rejects_exactly_when_the_last_second_is_full(cap: int, gaps: list[float]) -> None:
    decide = decider(throughput={"max_per_second": cap})
    now = 0.0
    accepted: list[float] = []
    for gap in gaps:
        now += gap
        in_window = sum(1 for t in accepted if now - 1.0 < t <= now)
        code = rejected_code(decide, send(), now)
        assert (code == 130429) == (in_window >= cap)
        if code is None:
            accepted.append(now)

    # the ledger's figure counts windows the same way, so it never shows more than the cap
    assert max_in_any_second(accepted) <= cap


def test_throughput_cap_is_per_phone_number_id() -> None:
    decide = decider(throughput={"max_per_second": 1})
    decide.decide(send(), PHONE_ID, 0.0)

    assert isinstance(decide.decide(send(), "999999", 0.0), Accepted)


def test_fault_for_chosen_recipient_fires_the_given_number_of_times() -> None:
    decide = decider(faults=[{"code": 131000, "recipients": ["+1 555 000 0004"], "times": 2}])

    flaky = send(to="15550000004")
    assert [rejected_code(decide, flaky) for _ in range(4)] == [131000, 131000, None, None]
    assert rejected_code(decide, send()) is None
    assert decide.accepted == 3


def test_fault_counters_survive_scenario_changes_that_keep_the_faults() -> None:
    decide = decider(faults=[{"code": 131000, "times": 1}])
    assert rejected_code(decide, send()) == 131000

    decide.use(decide.scenario.with_template(TemplateSpec(name="other", language="en_US")))
    assert rejected_code(decide, send()) is None

    decide.use(decide.scenario.patched({"faults": [{"code": 131016, "times": 1}]}))
    assert rejected_code(decide, send()) == 131016


def test_sync_fault_error_carries_catalogue_http_status() -> None:
    decide = decider(faults=[{"code": 131000}])

    with pytest.raises(Rejected) as caught:
        decide.decide(send(), PHONE_ID, 0.0)

    assert caught.value.error.http_status == 500
    assert decide.accepted == 0


def test_async_codes_accept_and_carry_the_error() -> None:
    decide = decider(faults=[{"code": 131026, "recipients": ["15550000001"]}])

    decision = decide.decide(send(to="15550000001"), PHONE_ID, 0.0)

    assert decision.async_error == graph_error(131026)
    assert decide.accepted == 1


def test_delivery_can_be_forced_against_the_codes_default() -> None:
    decide = decider(faults=[{"code": 131026, "delivery": "sync"}])

    assert rejected_code(decide, send()) == 131026


def test_ambiguous_rule_accepts_and_says_how_to_answer() -> None:
    decide = decider(faults=[{"ambiguous": "delay", "delay_ms": 1500}])

    decision = decide.decide(send(), PHONE_ID, 0.0)

    assert decision.ambiguous == "delay"
    assert decision.reply_delay == 1.5
    assert decide.accepted == 1


def test_rate_faults_are_seeded_and_roughly_at_rate() -> None:
    def run() -> list[int | None]:
        decide = decider(faults=[{"code": 131000, "rate": 0.25}])
        return [rejected_code(decide, send()) for _ in range(2000)]

    first = run()

    assert first == run()
    assert 400 < first.count(131000) < 600


def test_account_error_after_n_sends() -> None:
    decide = decider(account={"error_code": 368, "after_sends": 2})

    assert decide.account_error() is None
    decide.decide(send(), PHONE_ID, 0.0)
    decide.decide(send(), PHONE_ID, 0.1)

    error = decide.account_error()
    assert error is not None
    assert (error.code, error.http_status) == (368, 403)


def test_fault_rule_needs_exactly_one_effect() -> None:
    with pytest.raises(ValidationError):
        Scenario.model_validate({"faults": [{"rate": 0.1}]})
    with pytest.raises(ValidationError):
        Scenario.model_validate({"faults": [{"code": 131000, "ambiguous": "drop"}]})


def test_patch_merges_objects_and_replaces_lists() -> None:
    scenario = Scenario.model_validate({"webhooks": {"read_share": 0.5, "hold": False}})

    patched = scenario.patched({"webhooks": {"hold": True}, "faults": [{"code": 368}]})

    assert patched.webhooks.hold is True
    assert patched.webhooks.read_share == 0.5
    assert [rule.code for rule in patched.faults] == [368]


def test_scenario_files_load_from_json_toml_and_by_builtin_name(tmp_path: Path) -> None:
    toml = tmp_path / "s.toml"
    toml.write_text('seed = 3\n[[templates]]\nname = "t"\nlanguage = "en"\nbody_params = 1\n')
    bad = tmp_path / "bad.json"
    bad.write_text('{"latency": {"ms": -1}}')

    assert load_scenario(toml).templates[0].body_params == 1
    assert load_scenario(Path("demo")) == load_scenario(BUILTIN_SCENARIOS / "demo.json")
    with pytest.raises(ScenarioError):
        load_scenario(bad)
    with pytest.raises(ScenarioError):
        load_scenario(tmp_path / "missing.json")


# --- planning ------------------------------------------------------------------------------

INSTANT = {"sent": {"ms": 10}, "delivered": {"ms": 100}, "read": {"ms": 1000}}


def plan(seed: int = 1, error: bool = False, **config: object) -> list[tuple[str, float]]:
    webhooks = Webhooks.model_validate({**INSTANT, **config})
    planned = plan_statuses(webhooks, random.Random(seed), graph_error(131026) if error else None)
    return [(event.status, round(event.arrives_after, 3)) for event in planned]


def test_full_lifecycle_in_order() -> None:
    assert plan(delivered_share=1, read_share=1, read_without_delivered_share=0) == [
        ("sent", 0.01),
        ("delivered", 0.11),
        ("read", 1.11),
    ]


def test_undelivered_and_unread_messages_stop_early() -> None:
    assert plan(delivered_share=0) == [("sent", 0.01)]
    assert plan(delivered_share=1, read_share=0) == [("sent", 0.01), ("delivered", 0.11)]


def test_read_without_delivered_reads_at_delivery_time() -> None:
    assert plan(delivered_share=1, read_share=1, read_without_delivered_share=1) == [
        ("sent", 0.01),
        ("read", 0.11),
    ]


def test_async_failure_is_failed_only_or_after_sent() -> None:
    failed = Webhooks.model_validate({**INSTANT, "failed": {"ms": 50}})
    planned = plan_statuses(failed, random.Random(1), graph_error(131026))
    assert [(e.status, e.error) for e in planned] == [("failed", graph_error(131026))]
    assert plan(error=True, sent_before_failed_share=1, failed={"ms": 50}) == [
        ("sent", 0.01),
        ("failed", 0.06),
    ]


def test_duplicates_repeat_each_event() -> None:
    events = plan(delivered_share=1, read_share=0, duplicate_share=1)

    assert sorted(status for status, _ in events) == ["delivered", "delivered", "sent", "sent"]


def test_only_sent_and_first_of_delivered_or_read_are_billable() -> None:
    webhooks = Webhooks.model_validate({"delivered_share": 1, "read_share": 1})
    for seed in range(20):
        planned = plan_statuses(webhooks, random.Random(seed))
        billable = [event.status for event in planned if event.billable]
        assert billable[0] == "sent"
        assert billable[1:] == [next(e.status for e in planned if e.status != "sent")]


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32), duplicates=st.floats(0, 1), reorder=st.floats(0, 1))
def test_no_event_arrives_before_it_happened(seed: int, duplicates: float, reorder: float) -> None:
    webhooks = Webhooks.model_validate(
        {"delivered_share": 1, "read_share": 1, "duplicate_share": duplicates}
        | {"reorder_share": reorder, "read_without_delivered_share": 0.2}
    )

    planned = plan_statuses(webhooks, random.Random(seed))

    assert all(event.arrives_after >= event.happens_after for event in planned)
    assert [event.arrives_after for event in planned] == sorted(e.arrives_after for e in planned)
    assert {event.status for event in planned} >= {"sent", "read"}


def test_reordering_changes_arrival_order_but_not_timestamps() -> None:
    webhooks = Webhooks.model_validate(
        {**INSTANT, "delivered_share": 1, "read_share": 1, "read_without_delivered_share": 0}
        | {"reorder_share": 1}
    )
    rng = random.Random(5)

    for _ in range(20):
        planned = plan_statuses(webhooks, rng)
        assert [e.status for e in planned] != ["sent", "delivered", "read"]
        happened = {e.status: e.happens_after for e in planned}
        assert happened == {"sent": 0.01, "delivered": pytest.approx(0.11), "read": 1.11}


def test_the_portfolio_messaging_limit_counts_unique_recipients_over_the_window() -> None:
    limited = decider(limits={"messaging_limit": 2, "delivery": "sync", "window_seconds": 10})
    limited.decide(send("16505550001"), PHONE_ID, now=0.0)
    limited.decide(send("16505550002"), PHONE_ID, now=1.0)
    limited.decide(send("16505550001"), PHONE_ID, now=2.0)  # already counted: not new
    with pytest.raises(Rejected) as rejected:
        limited.decide(send("16505550003"), PHONE_ID, now=3.0)
    assert rejected.value.error.code == 131049
    # 16505550002's last send is 10 s old at 11.0: the window frees one place.
    assert limited.decide(send("16505550003"), PHONE_ID, now=11.0).async_error is None


def test_the_per_user_marketing_cap_answers_131049_async_by_default() -> None:
    capped = decider(limits={"marketing_per_user": 1, "window_seconds": 100})
    assert capped.decide(send(), PHONE_ID, now=0.0).async_error is None
    failed = capped.decide(send(), PHONE_ID, now=1.0)
    assert failed.async_error is not None
    assert failed.async_error.code == 131049
    assert capped.decide(send("16505550009"), PHONE_ID, now=1.0).async_error is None
    assert capped.decide(send(), PHONE_ID, now=100.5).async_error is None  # the window moved on

"""An independent parser agrees: pywa (a widely used WhatsApp library, test-only dependency) turns
every webhook body the sandbox emits into typed objects.

Bodies come from two places: every body in-process sandboxes built during this test session
(``tests/webhook_capture.py``), and the bodies this test makes the sandbox emit itself in each
recipients mode (phone, user id only, group) with failures, inbound texts with and without a
phone, marketing stops, calls, echoes and template updates. pywa reads one item per update
(``entry[0].changes[0].value.<items>[0]``), so each body is split into single-item bodies the
way Meta sends them unbatched, each item with the ``contacts`` entries that name it.

Only bodies in the current shape (``v26``) are held to it; the ``v24``/``v23`` shapes the
sandbox can still produce predate business-scoped user ids, which pywa now requires.

One documented disagreement is asserted, not skipped: Meta sends **no** ``contacts`` with
``failed`` statuses (nor with group ``sent`` statuses), and pywa 4.5.0's status parsers require
``contacts[0]``. Such items must fail in pywa for exactly that reason (so the test notices when
pywa changes), and nothing else may fail.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pywa import handlers as pywa_handlers
from pywa.client import WhatsApp

from common.vocabulary import ReceiptFlag
from sandbox.scenario import Scenario
from sandbox.testing import local_settings, serve, serve_recorder, template_message
from tests import webhook_capture
from webhook_service.normalise import normalise

AUTH = {"Authorization": "Bearer test-access-token"}
GROUP = "group"
ITEM_KEYS = ("statuses", "messages", "user_preferences", "calls", "message_echoes")
NAMING_PHONES = ("recipient_id", "recipient_participant_id", "from", "wa_id", "to")
NAMING_USER_IDS = (
    "recipient_user_id",
    "recipient_participant_user_id",
    "from_user_id",
    "user_id",
    "to_user_id",
)
SKIPPED_HANDLERS = {"RawUpdateHandler", "FlowRequestHandler", "Handler"}


def _handler_types() -> list[type[pywa_handlers.Handler[Any]]]:
    """Every concrete update handler pywa offers (so any typed update is caught)."""
    return [
        cls
        for name, cls in vars(pywa_handlers).items()
        if inspect.isclass(cls)
        and issubclass(cls, pywa_handlers.Handler)
        and name.endswith("Handler")
        and not name.startswith("_")
        and name not in SKIPPED_HANDLERS
    ]


class PywaParser:
    """pywa's own update path (``webhook_update_handler``) with a callback on every handler."""

    def __init__(self) -> None:
        self.received: list[object] = []
        self.client = WhatsApp(
            token="sandbox-token",
            server=None,
            validate_updates=False,  # the ingestor checks signatures; here bodies are parsed
            filter_updates=False,
            skip_duplicate_updates=False,  # the same item may come from several bodies
        )
        for handler_type in _handler_types():
            self.client.add_handlers(handler_type(callback=self._got))

    def _got(self, _: WhatsApp, update: object) -> None:
        self.received.append(update)

    def parse(self, body: bytes) -> list[object]:
        """The typed updates pywa made of ``body`` (empty when it could not)."""
        self.received = []
        self.client.webhook_update_handler(body)
        return self.received


def _names(item: dict[str, Any], contact: dict[str, Any]) -> bool:
    phones = {item.get(key) for key in NAMING_PHONES} - {None, ""}
    users = {item.get(key) for key in NAMING_USER_IDS} - {None, ""}
    return contact.get("wa_id") in phones or contact.get("user_id") in users


def single_items(body: bytes) -> Iterator[tuple[str, dict[str, Any], bytes]]:
    """(label, item or value, body) for every item of ``body``, each in a body of its own."""
    payload = json.loads(body)
    for entry in payload["entry"]:
        for change in entry["changes"]:
            value = change["value"]
            key = next((k for k in ITEM_KEYS if isinstance(value.get(k), list)), None)
            items = value[key] if key else [None]
            for n, item in enumerate(items):
                one = dict(value)
                if key is not None:
                    one[key] = [item]
                    named = [c for c in value.get("contacts", []) if _names(item, c)]
                    if key == "statuses" and _contactless(item):
                        named = []  # alone in a body, Meta would send it without contacts
                    one.pop("contacts", None)
                    if named:
                        one["contacts"] = named
                single = {
                    "object": payload["object"],
                    "entry": [{**entry, "changes": [{"field": change["field"], "value": one}]}],
                }
                label = f"{change['field']}.{key}[{n}]" if key else change["field"]
                if item is not None and "status" in item:
                    label += f" ({item['status']}, {item.get('recipient_type', 'individual')})"
                yield label, item or value, json.dumps(single).encode()


def _contactless(item: dict[str, Any]) -> bool:
    """A status Meta documents without ``contacts``: ``failed``, and group ``sent``."""
    group_sent = item.get("recipient_type") == GROUP and item.get("status") == "sent"
    return item.get("status") == "failed" or group_sent


def documented_without_contacts(label: str, item: dict[str, Any], body: bytes) -> bool:
    """A single-status body that Meta documents without ``contacts`` and that has none."""
    value = json.loads(body)["entry"][0]["changes"][0]["value"]
    return label.startswith("messages.statuses") and "contacts" not in value and _contactless(item)


async def _emit_every_shape() -> list[bytes]:
    """Make an in-process sandbox emit each kind of body, in each recipients mode."""
    bodies: list[bytes] = []
    for mode in ("phone", "user_id_only", "group"):
        scenario = Scenario.model_validate(
            {
                "seed": 7,
                "templates": [{"name": "event_invitation", "language": "en_US", "body_params": 2}],
                "faults": [
                    {"code": 131026, "recipients": ["15550000001"]},
                    {"code": 131050, "delivery": "async", "recipients": ["15550000002"]},
                ],
                "webhooks": {
                    "recipients": mode,
                    "hold": True,
                    "delivered_share": 0.9,
                    "read_share": 0.6,
                    "read_without_delivered_share": 0.3,
                    "sent_before_failed_share": 0.5,
                },
            }
        )
        async with (
            serve_recorder() as hooks,
            serve(local_settings(callback_url=hooks.url), scenario=scenario) as sandbox,
            httpx.AsyncClient(timeout=5.0) as client,
        ):
            recipients = ["15550000001", "15550000002", *(f"1650555{n:04d}" for n in range(8))]
            wamids = []
            for to in recipients:
                reply = await client.post(
                    sandbox.send_url(),
                    json=template_message(to, callback_data=f"cb-{to}"),
                    headers=AUTH,
                )
                assert reply.status_code == 200
                wamids.append(reply.json()["messages"][0]["id"])
            service = sandbox.service
            service.emit_status(wamids[-1], "played", None)
            service.emit_inbound_text("16505550003", "STOP", "Jane", None)
            service.emit_inbound_text(
                "16505550004", "Arr\u00eat", "Jos\u00e9", None, phone_shared=False
            )
            service.emit_user_preferences("16505550005", "stop", None)
            service.emit_user_preferences("16505550006", "resume", None, phone_shared=False)
            service.emit_call("16505550007", "connect", None)
            service.emit_call("16505550007", "terminate", None)
            service.emit_echo("16505550003", "See you Saturday!", None)
            service.emit_template_status("event_invitation", "en_US", "PAUSED", "NONE")
            await service.webhooks.flush(include_scheduled=True, batch_size=25, wait=True)
            bodies.extend(post.body for post in hooks.posts)
    return bodies


async def test_pywa_turns_every_sandbox_webhook_into_typed_objects() -> None:
    generated = await _emit_every_shape()
    captured = [body for shape, body in webhook_capture.EMITTED.values() if shape == "v26"]
    parser = PywaParser()
    parsed: dict[str, int] = {}
    divergences: dict[str, int] = {}
    failures: list[str] = []
    for body in {*generated, *captured}:
        for label, item, single in single_items(body):
            updates = parser.parse(single)
            if documented_without_contacts(label, item, single):
                # Meta documents no contacts here; pywa 4.5.0 requires them. Asserted strictly.
                if updates:
                    failures.append(f"{label}: pywa now reads it: drop the documented exception")
                kind = f"{item.get('status')}/{item.get('recipient_type', 'individual')}"
                divergences[kind] = divergences.get(kind, 0) + 1
                continue
            if len(updates) != 1:
                failures.append(f"{label}: {len(updates)} typed updates from {single[:600]!r}")
                continue
            kind = type(updates[0]).__name__
            parsed[kind] = parsed.get(kind, 0) + 1
    assert not failures, "\n".join(failures[:20])
    # What was checked (printed with -s): proof the test is not vacuous.
    print(f"pywa typed updates: {parsed}; Meta-documented contact-less statuses: {divergences}")
    expected = {
        "MessageStatus",
        "GroupMessageStatuses",
        "Message",
        "UserMarketingPreferences",
        "CallConnect",
        "CallTerminate",
        "OutgoingMessage",
        "TemplateStatusUpdate",
    }
    assert expected <= set(parsed), f"kinds parsed: {sorted(parsed)}"


async def test_our_normaliser_reads_every_sandbox_webhook_without_flagging_it() -> None:
    bodies = await _emit_every_shape()
    captured = [body for _, body in webhook_capture.EMITTED.values()]
    seen: dict[str, int] = {}
    for body in {*bodies, *captured}:
        got = normalise(body)
        assert got.unreadable == (), got.problem
        assert got.flag in (None, ReceiptFlag.IGNORED), (got.flag, body[:300])
        for status in got.statuses:
            # Every status names its recipient by phone, user id or group participant.
            assert status.recipient_id or status.recipient_user_id
            if status.recipient_type == GROUP:
                assert status.participant_id
                assert status.participant_user_id
        for note in got.ignored:
            seen[note.subject] = seen.get(note.subject, 0) + 1
        seen["statuses"] = seen.get("statuses", 0) + len(got.statuses)
        seen["inbound_texts"] = seen.get("inbound_texts", 0) + len(got.inbound_texts)
        seen["preferences"] = seen.get("preferences", 0) + len(got.preferences)
        seen["template_updates"] = seen.get("template_updates", 0) + len(got.template_updates)
    # calls and echoes are ignored (never unknown_shape); the rest is read, template updates too.
    for subject in ("calls", "smb_message_echoes", "template_updates"):
        assert seen.get(subject, 0) >= 3, (subject, seen)
    assert seen["inbound_texts"] >= 6
    assert seen["preferences"] >= 6
    assert seen["statuses"] > 0


@pytest.mark.parametrize(
    ("label", "item", "expected"),
    [
        ("messages.statuses[0] (failed, individual)", {"status": "failed"}, True),
        ("messages.statuses[0] (sent, group)", {"status": "sent", "recipient_type": "group"}, True),
        (
            "messages.statuses[0] (read, group)",
            {"status": "read", "recipient_type": "group"},
            False,
        ),
        ("messages.statuses[0] (sent, individual)", {"status": "sent"}, False),
    ],
)
def test_only_documented_contactless_statuses_are_excused(
    label: str, item: dict[str, Any], expected: bool
) -> None:
    value = {"statuses": [item]}
    body = json.dumps({"entry": [{"changes": [{"value": value}]}]}).encode()
    assert documented_without_contacts(label, item, body) is expected

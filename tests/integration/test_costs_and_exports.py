"""Cost and exports: ApplyStatus stores the pricing the provider reported, GetRunStatus and
PrecheckSend estimate from the workspace's rate card, and ExportRunMessages streams every
recipient with its outcome."""

from __future__ import annotations

from decimal import Decimal

import grpc
import psycopg
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc import aio
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.generated.invites.v1 import admin_pb2 as admin_pb
from common.generated.invites.v1 import dispatch_pb2 as pb
from common.generated.invites.v1 import types_pb2 as types
from tests.integration.conftest import INGESTOR_TOKEN, ApiClient, code_of
from tests.integration.dispatch_support import (
    FakeMeta,
    World,
    precheck_and_start,
    running,
    seed_world,
    wait_for,
)
from tests.integration.factories import DEFAULT_SENDER
from tests.integration.test_runs_api import start

PHONES = [
    "+14155550001",
    "+14155550002",
    "+442071838750",
    "+442071838751",
    "+351912345678",
    "+351912345679",
]
RATES = [("1", "marketing", "0.025"), ("44", "marketing", "0.0529"), ("*", "marketing", "0.06")]


def block(type_: str, category: str, **extra: object) -> dict[str, object]:
    """A `pricing` block as Meta reports it."""
    return {"pricing_model": "PMP", "type": type_, "category": category, **extra}


# (phone index, status, pricing block or None)
STATUSES: list[tuple[int, str, dict[str, object] | None]] = [
    (0, "delivered", block("regular", "marketing")),
    (0, "read", block("free_customer_service", "service")),
    (1, "delivered", block("free_customer_service", "service")),
    (2, "sent", block("regular", "marketing", billable=True)),
    (3, "delivered", block("regular", "authentication-international")),
    (4, "delivered", block("regular", "marketing")),
    (5, "delivered", None),
]


async def set_rates(api: ApiClient, world: World) -> None:
    """The rate card through AdminService: a parent admin sets it, others may only read it."""
    card = admin_pb.RateCard(
        currency="usd",
        rates=[admin_pb.Rate(country_code=c, category=k, price=p) for c, k, p in RATES],
    )
    request = admin_pb.SetRateCardRequest(rate_card=card)
    with pytest.raises(aio.AioRpcError) as caught:
        await api.admin.SetRateCard(request, metadata=api.md(str(world.admin)))
    assert code_of(caught.value) == grpc.StatusCode.PERMISSION_DENIED
    bad = admin_pb.SetRateCardRequest(
        rate_card=admin_pb.RateCard(rates=[admin_pb.Rate(country_code="0", price="-1")])
    )
    with pytest.raises(aio.AioRpcError) as caught:
        await api.admin.SetRateCard(bad, metadata=api.md(str(world.parent_admin)))
    assert code_of(caught.value) == grpc.StatusCode.INVALID_ARGUMENT
    await api.admin.SetRateCard(request, metadata=api.md(str(world.parent_admin)))
    stored = await api.admin.GetRateCard(
        admin_pb.GetRateCardRequest(), metadata=api.md(str(world.viewer))
    )
    assert stored.rate_card.currency == "USD"
    assert sorted(
        (r.country_code, r.category, Decimal(r.price)) for r in stored.rate_card.rates
    ) == sorted((c, k, Decimal(p)) for c, k, p in RATES)


async def test_costs_equal_the_stored_pricing_and_the_export_lists_everyone(
    database_url: str, grpc_api: ApiClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    world = seed_world(database_url, PHONES)
    await set_rates(grpc_api, world)
    md = grpc_api.md(str(world.admin))
    checked = await grpc_api.dispatch.PrecheckSend(
        pb.PrecheckSendRequest(event_id=str(world.event_id), template_id=str(world.template_id)),
        metadata=md,
    )
    # Before sending: every eligible recipient at the template's category (MARKETING).
    assert (
        Decimal(checked.estimated_cost)
        == Decimal("0.025") * 2 + Decimal("0.0529") * 2 + Decimal("0.06") * 2
    )
    assert checked.currency == "USD"
    run = await start(grpc_api, world, checked.precheck_id)
    async with running(sessions, FakeMeta()):

        async def all_sent() -> bool:
            with psycopg.connect(database_url) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM invite_message WHERE run_id = %s AND state = 'sent'",
                    [run.run_id],
                ).fetchone()
            return row is not None and row[0] == len(PHONES)

        await wait_for(all_sent, what="every message sent")
    with psycopg.connect(database_url) as conn:
        wamids: dict[str, str] = dict(
            conn.execute(
                "SELECT phone_e164, provider_message_id FROM invite_message WHERE run_id = %s",
                [run.run_id],
            ).fetchall()
        )
    request = pb.ApplyStatusRequest()
    for n, (index, reported_status, reported) in enumerate(STATUSES):
        update = pb.StatusUpdate(
            phone_number_id=DEFAULT_SENDER,
            provider_message_id=wamids[PHONES[index]],
            status=reported_status,
            provider_timestamp=Timestamp(seconds=1_900_000_000 + n),
        )
        if reported is not None:
            update.pricing.CopyFrom(
                pb.Pricing(
                    billable=bool(reported.get("billable", False)),
                    category=str(reported["category"]),
                    pricing_model=str(reported["pricing_model"]),
                    type=str(reported["type"]),
                )
            )
        request.statuses.append(update)
    await grpc_api.dispatch.ApplyStatus(request, metadata=grpc_api.md(token=INGESTOR_TOKEN))

    with psycopg.connect(database_url) as conn:
        stored = conn.execute(
            "SELECT phone_e164, pricing_billable, pricing_category, pricing_type"
            " FROM invite_message WHERE run_id = %s ORDER BY position",
            [run.run_id],
        ).fetchall()
    assert stored == [
        (PHONES[0], True, "marketing", "regular"),  # the first block reported is kept
        (PHONES[1], False, "service", "free_customer_service"),
        (PHONES[2], True, "marketing", "regular"),
        (PHONES[3], True, "authentication_international", "regular"),
        (PHONES[4], True, "marketing", "regular"),
        (PHONES[5], None, None, None),
    ]
    status = (
        await grpc_api.dispatch.GetRunStatus(pb.GetRunStatusRequest(run_id=run.run_id), metadata=md)
    ).status
    # The sum of the stored pricing: billable rows per category, each at its rate.
    rate = {("1", "marketing"): "0.025", ("44", "marketing"): "0.0529"}
    expected: dict[str, tuple[int, Decimal]] = {}
    for phone, billable, category, _ in stored:
        if billable:
            n, cost = expected.get(category, (0, Decimal(0)))
            code = "1" if phone.startswith("+1") else "44" if phone.startswith("+44") else "*"
            price = rate.get((code, category), "0.06" if category == "marketing" else "0")
            expected[category] = (n + 1, cost + Decimal(price))
    assert {
        c.category: (c.billable_count, Decimal(c.estimated_cost))
        for c in status.billable_by_category
    } == expected
    assert Decimal(status.estimated_cost) == sum(c for _, c in expected.values())
    assert status.currency == "USD"

    exported: list[pb.ExportedMessage] = []
    async for batch in grpc_api.dispatch.ExportRunMessages(
        pb.ExportRunMessagesRequest(run_id=run.run_id), metadata=md
    ):
        exported += batch.messages
    assert [m.phone_e164 for m in exported] == PHONES
    assert [m.pricing_category for m in exported] == [
        "marketing", "service", "marketing", "authentication_international", "marketing", ""
    ]  # fmt: skip
    assert {m.state for m in exported} == {
        types.MESSAGE_STATE_SENT,
        types.MESSAGE_STATE_DELIVERED,
        types.MESSAGE_STATE_READ,
    }
    assert all(m.language == "en_US" and m.sent_at.seconds > 0 for m in exported)


async def test_the_billable_projection_follows_every_write_to_the_messages(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    # GetRunStatus's cost estimate reads invite_run_billable, kept by triggers: whatever writes
    # the messages (pricing set, changed, withdrawn, a message deleted), it must equal a count
    # of the billable messages themselves.
    world = seed_world(database_url, PHONES)
    run = (await precheck_and_start(sessions, world)).run

    def projection(conn: psycopg.Connection[tuple[object, ...]]) -> list[tuple[object, ...]]:
        return conn.execute(
            "SELECT prefix, category, sum(count)::int FROM invite_run_billable WHERE run_id = %s"
            " GROUP BY 1, 2 HAVING sum(count) <> 0 ORDER BY 1, 2",
            [run.id],
        ).fetchall()

    def counted(conn: psycopg.Connection[tuple[object, ...]]) -> list[tuple[object, ...]]:
        return conn.execute(
            "SELECT substr(phone_e164, 1, 5), pricing_category, count(*)::int FROM invite_message"
            " WHERE run_id = %s AND pricing_billable AND pricing_category IS NOT NULL"
            " GROUP BY 1, 2 ORDER BY 1, 2",
            [run.id],
        ).fetchall()

    steps = [
        "UPDATE invite_message SET pricing_billable = true, pricing_category = 'marketing'"
        " WHERE run_id = %(run)s",
        "UPDATE invite_message SET pricing_category = 'utility'"
        " WHERE run_id = %(run)s AND phone_e164 LIKE '+44%%'",
        "UPDATE invite_message SET pricing_billable = false"
        " WHERE run_id = %(run)s AND phone_e164 = '+14155550001'",
        "UPDATE invite_message SET pricing_category = NULL"
        " WHERE run_id = %(run)s AND phone_e164 = '+351912345678'",
        "DELETE FROM invite_message WHERE run_id = %(run)s AND phone_e164 = '+14155550002'",
    ]
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert projection(conn) == counted(conn) == []  # nothing priced at StartRun
        for step in steps:
            conn.execute(step, {"run": run.id})
            assert projection(conn) == counted(conn), step
        assert projection(conn) == [
            ("+3519", "marketing", 1),
            ("+4420", "utility", 2),
        ]

"""The provider the dispatcher sends through: each sender's own (Meta or Twilio).

A run's messages go out through its workspace's sender (`invite_send_run.sender_phone_number_id`,
copied from the workspace at StartRun). The dispatcher hands every `TemplateSend` to this router,
which looks the sender up (workspace.sender_provider, twilio_account_sid) and, for Twilio, the
template's Content SID, then calls that provider. Look-ups are cached for a few seconds: the
dispatcher sends up to 1,000 messages a second through a handful of senders. The look-up sits on
the send path (between a message's slot and its request), so it never makes a send wait once the
sender is known: a look-up in flight is shared by every send that needs it, and an expired entry
keeps answering while one refresh runs behind it (for at most one more `ttl_seconds`). Without
that, each expiry sent every send of that moment to the database at once: hundreds of sessions,
a drained connection pool, sends waiting past their windows.

A failed look-up is transient (nothing was sent). A Twilio sender on a deployment without
TWILIO_AUTH_TOKEN, or a template without a Twilio Content SID, halts the run: every other
message would fail the same way, and a human has to configure it (then resume).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.vocabulary import SenderProvider
from dispatch_service.domain.retry import RetryClass
from dispatch_service.providers.base import Failed, Provider, SendOutcome, TemplateSend
from dispatch_service.providers.twilio import TwilioProvider, TwilioRoute

log = logging.getLogger(__name__)

SENDER_QUERY = text("""
    SELECT w.sender_provider, w.twilio_account_sid, t.twilio_content_sid
    FROM workspace w
    LEFT JOIN template t ON t.workspace_id = w.id AND t.name = :name AND t.language = :language
    WHERE w.sender_phone_number_id = :sender
    ORDER BY (w.sender_provider = 'twilio') DESC, (t.twilio_content_sid IS NULL)
    LIMIT 1
""")


@dataclass(frozen=True)
class SenderFacts:
    """What the router needs to know about one (sender, template, language)."""

    provider: str
    account_sid: str | None
    content_sid: str | None


class RoutingProvider:
    """Routes each send to the provider of its sender's workspace."""

    name = SenderProvider.META.value
    """The name StartRun records when it has no per-workspace answer (the default provider)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        meta: Provider,
        twilio: TwilioProvider | None,
        *,
        ttl_seconds: float = 5.0,
    ) -> None:
        self._sessions = sessions
        self._meta = meta
        self._twilio = twilio
        self._ttl = ttl_seconds
        self._cache: dict[tuple[str, str, str], tuple[SenderFacts, float]] = {}
        """Each (sender, template, language)'s facts and when they stop being fresh."""
        self._looking_up: dict[tuple[str, str, str], asyncio.Task[SenderFacts]] = {}

    async def facts(self, send: TemplateSend) -> SenderFacts:
        """The sender's provider and Twilio details (cached for `ttl_seconds`; an expired entry
        answers for one more `ttl_seconds` while a single refresh runs)."""
        key = (send.sender_id, send.template_name, send.language)
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None:
            facts, fresh_until = cached
            if now < fresh_until:
                return facts
            if now < fresh_until + self._ttl:
                self._look_up(key)
                return facts
        return await asyncio.shield(self._look_up(key))

    def _look_up(self, key: tuple[str, str, str]) -> asyncio.Task[SenderFacts]:
        """The look-up of `key` in flight, started if there is none."""
        task = self._looking_up.get(key)
        if task is None:
            task = asyncio.create_task(self._read(key), name="sender look-up")
            self._looking_up[key] = task
            task.add_done_callback(lambda done: self._looked_up(key, done))
        return task

    def _looked_up(self, key: tuple[str, str, str], task: asyncio.Task[SenderFacts]) -> None:
        del self._looking_up[key]
        if task.cancelled():
            return
        error = task.exception()
        if error is None:
            self._cache[key] = (task.result(), time.monotonic() + self._ttl)
        else:  # logged once for every send that waited on it
            log.warning("sender look-up failed: %s", type(error).__name__)

    async def _read(self, key: tuple[str, str, str]) -> SenderFacts:
        sender, name, language = key
        async with self._sessions() as session:
            row = (
                await session.execute(
                    SENDER_QUERY, {"sender": sender, "name": name, "language": language}
                )
            ).first()
        if row is None:
            return SenderFacts(SenderProvider.META.value, None, None)
        return SenderFacts(row.sender_provider, row.twilio_account_sid, row.twilio_content_sid)

    async def send_template(
        self, send: TemplateSend, *, not_after: float | None = None
    ) -> SendOutcome:
        """Send through the sender's provider (its request written only before `not_after`);
        never raises for provider or network failures."""
        try:
            facts = await self.facts(send)
        except Exception as error:  # the database is away: nothing was sent, try again later
            return Failed(
                retry_class=RetryClass.TRANSIENT,
                error_code=None,
                error_title="sender look-up failed: not sent",
                error_details=f"{type(error).__name__} while reading the sender's provider",
            )
        if facts.provider != SenderProvider.TWILIO.value:
            return await self._meta.send_template(send, not_after=not_after)
        if self._twilio is None:
            return _halt("Twilio is not configured on this deployment (TWILIO_AUTH_TOKEN)")
        if not facts.account_sid:
            return _halt("the workspace's Twilio sender has no account SID")
        if not facts.content_sid:
            return _halt(
                f"template {send.template_name!r} ({send.language}) has no Twilio Content SID"
            )
        route = TwilioRoute(facts.account_sid, send.sender_id, facts.content_sid)
        return await self._twilio.send_template_via(send, route, not_after=not_after)


def _halt(reason: str) -> Failed:
    return Failed(
        retry_class=RetryClass.HALT, error_code=None, error_title=reason, error_details=reason
    )

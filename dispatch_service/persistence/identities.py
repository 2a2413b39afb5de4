"""Guest identities learning the provider's user id for their phone (Meta's business-scoped ids).

Statuses name a recipient by phone and user id together (``contacts[]``, or ``recipient_user_id``
beside the phone a matched message was sent to). Each pair is stored on the guest identity with
that phone in every workspace sending from the status's number, unless another identity of the
workspace already holds the user id (one user id names one WhatsApp account). Do-Not-Message
entries known only by that user id then gain the phone (``do_not_message.complete_entries``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch_service.domain.identities import LearnedIdentity
from dispatch_service.persistence.do_not_message import complete_entries

LEARN = text("""
    WITH pair AS (
        SELECT DISTINCT v.pnid, v.phone, v.user_id
        FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS v(pnid text, phone text, user_id text)
    ), target AS (
        SELECT DISTINCT ON (gi.workspace_id, p.user_id) gi.id, p.user_id
        FROM pair p
        JOIN workspace w ON w.sender_phone_number_id = p.pnid
        JOIN guest_identity gi ON gi.workspace_id = w.id AND gi.phone_e164 = p.phone
        WHERE gi.provider_user_id IS NULL
          AND NOT EXISTS (SELECT 1 FROM guest_identity o
                          WHERE o.workspace_id = w.id AND o.provider_user_id = p.user_id)
        ORDER BY gi.workspace_id, p.user_id, gi.id
    )
    UPDATE guest_identity gi SET provider_user_id = t.user_id
    FROM target t WHERE gi.id = t.id
    RETURNING gi.workspace_id, gi.phone_e164, gi.provider_user_id
""")


async def learn_user_ids(session: AsyncSession, identities: Sequence[LearnedIdentity]) -> int:
    """Store each reported (phone, user id) pair on its guest identities; returns how many
    identities learned one. Runs in the caller's (ApplyStatus) transaction."""
    if not identities:
        return 0
    rows = [
        {"pnid": i.phone_number_id, "phone": i.phone_e164, "user_id": i.user_id} for i in identities
    ]
    learned = (await session.execute(LEARN, {"rows": json.dumps(rows)})).all()
    await complete_entries(session, [(r[0], r[1], r[2]) for r in learned])
    return len(learned)

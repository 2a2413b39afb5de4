"""Workspaces and memberships: create a workspace with its first parent_admin, manage members.

CreateWorkspace needs only the backend token (there is no actor yet). Membership changes need a
parent_admin; listing members is open to every role.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.db.models import Membership, Workspace
from common.vocabulary import Role, SenderProvider
from dispatch_service.domain.actors import SENDERS
from dispatch_service.domain.phones import is_supported_region
from dispatch_service.errors import FailedPrecondition, FieldViolation, InvalidArgument
from dispatch_service.persistence.audit_log import record_audit
from dispatch_service.persistence.do_not_message import add_entries, sender_opt_outs
from dispatch_service.persistence.workspaces import (
    count_parent_admins,
    deactivate_member,
    get_active_member,
    insert_member,
    insert_workspace,
    list_active_members,
    lock_workspace,
)
from dispatch_service.use_cases.acting import READERS, acting

MAX_NAME = 200
PHONE_NUMBER_ID = re.compile(r"^[0-9]{1,64}$")
TWILIO_SENDER = re.compile(r"^(whatsapp:\+[1-9][0-9]{6,14}|MG[0-9a-fA-F]{32})$")
TWILIO_ACCOUNT_SID = re.compile(r"^AC[0-9a-fA-F]{32}$")
MEMBER_MANAGERS = SENDERS  # parent_admin only


@dataclass(frozen=True)
class NewWorkspace:
    """A validated CreateWorkspace request."""

    name: str
    default_region: str
    sender_phone_number_id: str
    admin_display_name: str
    sender_provider: SenderProvider = SenderProvider.META
    twilio_account_sid: str | None = None
    waba_id: str | None = None
    """The WhatsApp Business Account whose templates SyncTemplates reads (None: not known)."""


def text_violation(field: str, value: str, *, required: bool = True) -> FieldViolation | None:
    """A violation for an empty (when required) or over-long text field, else None."""
    if required and not value.strip():
        return FieldViolation(field, "is required")
    if len(value) > MAX_NAME:
        return FieldViolation(field, f"must be at most {MAX_NAME} characters")
    return None


def new_workspace(
    *,
    name: str,
    default_region: str,
    sender_phone_number_id: str,
    admin_display_name: str,
    default_sender_phone_number_id: str,
    sender_provider: SenderProvider | None = None,
    twilio_account_sid: str = "",
    waba_id: str = "",
    default_waba_id: str = "",
) -> NewWorkspace:
    """Validate a CreateWorkspace request; a Meta sender defaults to the service's own number
    id; a Twilio one needs its sender and account SID."""
    region = default_region.strip().upper()
    provider = sender_provider or SenderProvider.META
    twilio = provider is SenderProvider.TWILIO
    sender = sender_phone_number_id.strip() or ("" if twilio else default_sender_phone_number_id)
    account = twilio_account_sid.strip()
    violations = [
        v
        for v in (
            text_violation("name", name),
            text_violation("admin_display_name", admin_display_name),
        )
        if v
    ]
    if not is_supported_region(region):
        violations.append(
            FieldViolation("default_region", "must be an ISO 3166 region code such as US or GB")
        )
    if twilio:
        if not TWILIO_SENDER.match(sender):
            violations.append(
                FieldViolation(
                    "sender_phone_number_id",
                    "a Twilio sender is whatsapp:+E164 or a Messaging Service SID (MG...)",
                )
            )
        if not TWILIO_ACCOUNT_SID.match(account):
            violations.append(
                FieldViolation("twilio_account_sid", "must be AC followed by 32 hex digits")
            )
    else:
        if not PHONE_NUMBER_ID.match(sender):
            violations.append(
                FieldViolation(
                    "sender_phone_number_id", "must be a WhatsApp phone number id (digits)"
                )
            )
        if account:
            violations.append(FieldViolation("twilio_account_sid", "only for Twilio senders"))
    waba = waba_id.strip() or ("" if twilio else default_waba_id.strip())
    if waba and not PHONE_NUMBER_ID.match(waba):
        violations.append(FieldViolation("waba_id", "must be a WhatsApp Business Account id"))
    if violations:
        raise InvalidArgument(*violations)
    return NewWorkspace(
        name.strip(),
        region,
        sender,
        admin_display_name.strip(),
        provider,
        account if twilio else None,
        waba_id=waba or None,
    )


async def create_workspace(
    sessions: async_sessionmaker[AsyncSession], command: NewWorkspace
) -> tuple[Workspace, Membership]:
    """The workspace and its first parent_admin, audited as ``workspace.create``."""
    async with sessions() as session, session.begin():
        workspace = await insert_workspace(
            session,
            name=command.name,
            default_region=command.default_region,
            sender_phone_number_id=command.sender_phone_number_id,
            sender_provider=command.sender_provider.value,
            twilio_account_sid=command.twilio_account_sid,
            waba_id=command.waba_id,
        )
        admin = await insert_member(
            session,
            workspace_id=workspace.id,
            display_name=command.admin_display_name,
            role=Role.PARENT_ADMIN,
        )
        if workspace.sender_phone_number_id:
            # People who told the number STOP (or opted out through its provider) are blocked
            # in every workspace sending from it, this new one too (the scope rule).
            inherited = await sender_opt_outs(
                session, workspace.sender_phone_number_id, workspace.id
            )
            await add_entries(session, inherited)
        record_audit(
            session,
            workspace_id=workspace.id,
            actor_id=admin.id,
            action="workspace.create",
            subject_type="workspace",
            subject_id=workspace.id,
            details={"name": workspace.name, "default_region": workspace.default_region},
        )
    return workspace, admin


async def add_member(
    sessions: async_sessionmaker[AsyncSession],
    actor_id: uuid.UUID,
    display_name: str,
    role: Role | None,
) -> Membership:
    """A new member of the actor's workspace (parent_admin only), audited as ``member.add``."""
    violations = [v for v in (text_violation("display_name", display_name),) if v]
    if role is None:
        violations.append(FieldViolation("role", "is required"))
    if violations or role is None:
        raise InvalidArgument(*violations)
    async with acting(sessions, actor_id, MEMBER_MANAGERS, "add members") as (session, actor):
        member = await insert_member(
            session, workspace_id=actor.workspace_id, display_name=display_name.strip(), role=role
        )
        record_audit(
            session,
            workspace_id=actor.workspace_id,
            actor_id=actor.member_id,
            action="member.add",
            subject_type="membership",
            subject_id=member.id,
            details={"display_name": member.display_name, "role": member.role},
        )
    return member


async def remove_member(
    sessions: async_sessionmaker[AsyncSession], actor_id: uuid.UUID, member_id: uuid.UUID
) -> None:
    """Remove a member (parent_admin only; never the last parent_admin), audited."""
    async with acting(sessions, actor_id, MEMBER_MANAGERS, "remove members") as (session, actor):
        await lock_workspace(session, actor.workspace_id)  # two removals never race past the check
        member = await get_active_member(session, actor.workspace_id, member_id)
        if (
            member.role == Role.PARENT_ADMIN
            and await count_parent_admins(session, actor.workspace_id) <= 1
        ):
            raise FailedPrecondition(
                "the workspace's last parent_admin cannot be removed; add another first",
                reason="LAST_PARENT_ADMIN",
            )
        deactivate_member(member)
        record_audit(
            session,
            workspace_id=actor.workspace_id,
            actor_id=actor.member_id,
            action="member.remove",
            subject_type="membership",
            subject_id=member.id,
            details={"display_name": member.display_name, "role": member.role},
        )


async def list_members(
    sessions: async_sessionmaker[AsyncSession], actor_id: uuid.UUID
) -> list[Membership]:
    """The actor's workspace's active members (any role)."""
    async with acting(sessions, actor_id, READERS, "list members") as (session, actor):
        return await list_active_members(session, actor.workspace_id)

"""Templates and Do-Not-Message entries through the real AdminService."""

from __future__ import annotations

import asyncio
import uuid

import grpc

from common.generated.invites.v1 import admin_pb2 as pb
from common.generated.invites.v1 import types_pb2 as types
from tests.integration.admin_support import (
    ADMIN,
    VIEWER,
    audit_actions,
    field_violations,
    new_member,
    new_workspace,
    rows,
    rpc_error,
    scalar,
)
from tests.integration.conftest import ApiClient, code_of


def template(
    name: str = "event_invitation",
    language: str = "en_US",
    status: types.TemplateStatus.ValueType = types.TEMPLATE_STATUS_APPROVED,
) -> pb.RegisterTemplateRequest:
    return pb.RegisterTemplateRequest(
        template=pb.Template(
            name=name,
            language=language,
            category=types.TEMPLATE_CATEGORY_MARKETING,
            variables=["guest_name", "event_name"],
            status=status,
        )
    )


# --- templates ---------------------------------------------------------------------------------


async def test_templates_register_update_status_and_list(grpc_api: ApiClient) -> None:
    created = await new_workspace(grpc_api)
    admin = created.admin.member_id
    registered = (
        await grpc_api.admin.RegisterTemplate(template(), metadata=grpc_api.md(admin))
    ).template
    assert (registered.name, registered.language, list(registered.variables)) == (
        "event_invitation",
        "en_US",
        ["guest_name", "event_name"],
    )
    assert registered.status == types.TEMPLATE_STATUS_APPROVED
    spanish = await grpc_api.admin.RegisterTemplate(
        template(language="es", status=types.TEMPLATE_STATUS_UNSPECIFIED),
        metadata=grpc_api.md(admin),
    )
    assert spanish.template.status == types.TEMPLATE_STATUS_PENDING  # unset means pending
    paused = await grpc_api.admin.UpdateTemplateStatus(
        pb.UpdateTemplateStatusRequest(
            template_id=registered.template_id, status=types.TEMPLATE_STATUS_PAUSED
        ),
        metadata=grpc_api.md(admin),
    )
    assert paused.template.status == types.TEMPLATE_STATUS_PAUSED
    listed = await grpc_api.admin.ListTemplates(
        pb.ListTemplatesRequest(), metadata=grpc_api.md(admin)
    )
    assert [(t.language, t.status) for t in listed.templates] == [
        ("en_US", types.TEMPLATE_STATUS_PAUSED),
        ("es", types.TEMPLATE_STATUS_PENDING),
    ]
    assert await audit_actions(grpc_api.sessions, created.workspace.workspace_id) == [
        "workspace.create",
        "template.register",
        "template.register",
        "template.status",
    ]
    status_change = await scalar(
        grpc_api.sessions, "SELECT details FROM audit_entry WHERE action = 'template.status'"
    )
    assert status_change == {"from": "APPROVED", "to": "PAUSED"}


async def test_a_duplicate_name_and_language_already_exists(grpc_api: ApiClient) -> None:
    admin = (await new_workspace(grpc_api)).admin.member_id
    other = (await new_workspace(grpc_api, name="Other")).admin.member_id
    await grpc_api.admin.RegisterTemplate(template(), metadata=grpc_api.md(admin))
    await rpc_error(
        grpc_api.admin.RegisterTemplate(template(), metadata=grpc_api.md(admin)),
        grpc.StatusCode.ALREADY_EXISTS,
    )
    # Unique per workspace only.
    await grpc_api.admin.RegisterTemplate(template(), metadata=grpc_api.md(other))
    assert await scalar(grpc_api.sessions, "SELECT count(*) FROM template") == 2


async def test_bad_templates_name_their_fields(grpc_api: ApiClient) -> None:
    admin = (await new_workspace(grpc_api)).admin.member_id
    request = pb.RegisterTemplateRequest(
        template=pb.Template(
            name="Bad Name", language="english", variables=["name", "NAME", "", "dress_code"]
        )
    )
    error = await rpc_error(
        grpc_api.admin.RegisterTemplate(request, metadata=grpc_api.md(admin)),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert {v.split(":")[0] for v in field_violations(error)} == {
        "template.name",
        "template.language",
        "template.category",
        "template.variables[1]",  # a duplicate (case-insensitive)
        "template.variables[2]",  # empty
        "template.variables[3]",  # no value source: the run could never fill it
    }
    assert await scalar(grpc_api.sessions, "SELECT count(*) FROM template") == 0


async def test_template_status_needs_a_known_template_and_a_status(grpc_api: ApiClient) -> None:
    admin = (await new_workspace(grpc_api)).admin.member_id
    other = (await new_workspace(grpc_api, name="Other")).admin.member_id
    theirs = (
        await grpc_api.admin.RegisterTemplate(template(), metadata=grpc_api.md(other))
    ).template
    for template_id in (theirs.template_id, str(uuid.uuid4())):
        await rpc_error(
            grpc_api.admin.UpdateTemplateStatus(
                pb.UpdateTemplateStatusRequest(
                    template_id=template_id, status=types.TEMPLATE_STATUS_APPROVED
                ),
                metadata=grpc_api.md(admin),
            ),
            grpc.StatusCode.NOT_FOUND,
        )
    await rpc_error(
        grpc_api.admin.UpdateTemplateStatus(
            pb.UpdateTemplateStatusRequest(template_id=theirs.template_id),
            metadata=grpc_api.md(other),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )


async def test_viewers_cannot_register_templates(grpc_api: ApiClient) -> None:
    admin = (await new_workspace(grpc_api)).admin.member_id
    viewer = await new_member(grpc_api, admin, VIEWER)
    await rpc_error(
        grpc_api.admin.RegisterTemplate(template(), metadata=grpc_api.md(viewer)),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    listed = await grpc_api.admin.ListTemplates(
        pb.ListTemplatesRequest(), metadata=grpc_api.md(viewer)
    )
    assert list(listed.templates) == []


# --- do-not-message ----------------------------------------------------------------------------


async def test_dnm_add_is_normalised_idempotent_and_audited(grpc_api: ApiClient) -> None:
    created = await new_workspace(grpc_api)
    admin, workspace_id = created.admin.member_id, created.workspace.workspace_id
    first = await grpc_api.admin.AddDoNotMessage(
        pb.AddDoNotMessageRequest(phone="(202) 555-0101", reason="asked us to stop"),
        metadata=grpc_api.md(admin),
    )
    assert first.created
    entry = first.entry
    assert (entry.phone_e164, entry.reason, entry.source, entry.actor_id) == (
        "+12025550101",
        "asked us to stop",
        types.DNM_SOURCE_OPERATOR,
        admin,
    )
    again = await grpc_api.admin.AddDoNotMessage(
        pb.AddDoNotMessageRequest(phone="+1 202 555 0101", reason="other"),
        metadata=grpc_api.md(admin),
    )
    assert (again.created, again.entry) == (False, entry)
    assert await audit_actions(grpc_api.sessions, workspace_id) == ["workspace.create", "dnm.add"]


async def test_dnm_remove_keeps_history_and_a_second_remove_is_not_found(
    grpc_api: ApiClient,
) -> None:
    created = await new_workspace(grpc_api)
    admin, workspace_id = created.admin.member_id, created.workspace.workspace_id
    helper = await new_member(grpc_api, admin, ADMIN)
    await grpc_api.admin.AddDoNotMessage(
        pb.AddDoNotMessageRequest(phone="+12025550101"), metadata=grpc_api.md(admin)
    )
    removed = await grpc_api.admin.RemoveDoNotMessage(
        pb.RemoveDoNotMessageRequest(phone="202 555 0101", reason="opted back in"),
        metadata=grpc_api.md(helper),
    )
    assert removed.entry.phone_e164 == "+12025550101"
    await rpc_error(
        grpc_api.admin.RemoveDoNotMessage(
            pb.RemoveDoNotMessageRequest(phone="+12025550101"), metadata=grpc_api.md(helper)
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    history = await rows(
        grpc_api.sessions,
        "SELECT removed_at IS NOT NULL AS removed, removed_by, removal_reason"
        " FROM do_not_message_entry",
    )
    assert [tuple(r) for r in history] == [(True, uuid.UUID(helper), "opted back in")]
    listed = await grpc_api.admin.ListDoNotMessage(
        pb.ListDoNotMessageRequest(), metadata=grpc_api.md(admin)
    )
    assert list(listed.entries) == []
    # Blocking the number again is a new entry, and audited again.
    readded = await grpc_api.admin.AddDoNotMessage(
        pb.AddDoNotMessageRequest(phone="+12025550101"), metadata=grpc_api.md(admin)
    )
    assert readded.created
    assert await audit_actions(grpc_api.sessions, workspace_id) == [
        "workspace.create",
        "member.add",
        "dnm.add",
        "dnm.remove",
        "dnm.add",
    ]


async def test_dnm_rejects_bad_phones_and_viewers(grpc_api: ApiClient) -> None:
    admin = (await new_workspace(grpc_api)).admin.member_id
    viewer = await new_member(grpc_api, admin, VIEWER)
    for phone in ("", "12345", "call me"):
        error = await rpc_error(
            grpc_api.admin.AddDoNotMessage(
                pb.AddDoNotMessageRequest(phone=phone), metadata=grpc_api.md(admin)
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert field_violations(error)[0].startswith("phone:")
    await rpc_error(
        grpc_api.admin.AddDoNotMessage(
            pb.AddDoNotMessageRequest(phone="+12025550101"), metadata=grpc_api.md(viewer)
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    await rpc_error(
        grpc_api.admin.RemoveDoNotMessage(
            pb.RemoveDoNotMessageRequest(phone="+12025550101"), metadata=grpc_api.md(viewer)
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert await scalar(grpc_api.sessions, "SELECT count(*) FROM do_not_message_entry") == 0


async def test_dnm_lists_page_and_stay_in_their_workspace(grpc_api: ApiClient) -> None:
    admin = (await new_workspace(grpc_api)).admin.member_id
    other = (await new_workspace(grpc_api, name="Other")).admin.member_id
    phones = [f"+1202555010{i}" for i in range(5)]
    for phone in phones:
        await grpc_api.admin.AddDoNotMessage(
            pb.AddDoNotMessageRequest(phone=phone), metadata=grpc_api.md(admin)
        )
    await grpc_api.admin.AddDoNotMessage(
        pb.AddDoNotMessageRequest(phone="+12025550199"), metadata=grpc_api.md(other)
    )
    seen, token = [], ""
    while True:
        page = await grpc_api.admin.ListDoNotMessage(
            pb.ListDoNotMessageRequest(page_size=2, page_token=token), metadata=grpc_api.md(admin)
        )
        seen += [e.phone_e164 for e in page.entries]
        token = page.next_page_token
        if not token:
            break
    assert seen == phones
    # Another workspace's blocked phone is not blocked here, and cannot be removed from here.
    await rpc_error(
        grpc_api.admin.RemoveDoNotMessage(
            pb.RemoveDoNotMessageRequest(phone="+12025550199"), metadata=grpc_api.md(admin)
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    await rpc_error(
        grpc_api.admin.ListDoNotMessage(
            pb.ListDoNotMessageRequest(page_size=5000), metadata=grpc_api.md(admin)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )


async def test_concurrent_adds_of_one_phone_make_one_entry(grpc_api: ApiClient) -> None:
    created = await new_workspace(grpc_api)
    admin = created.admin.member_id
    replies = await asyncio.gather(
        *(
            grpc_api.admin.AddDoNotMessage(
                pb.AddDoNotMessageRequest(phone=phone), metadata=grpc_api.md(admin)
            )
            for phone in ("+12025550101", "(202) 555-0101", "202 555 0101", "+1-202-555-0101")
        )
    )
    assert sorted(r.created for r in replies) == [False, False, False, True]
    assert len({r.entry.entry_id for r in replies}) == 1
    actions = await audit_actions(grpc_api.sessions, created.workspace.workspace_id)
    assert actions.count("dnm.add") == 1


async def test_concurrent_registrations_of_one_template_make_one(grpc_api: ApiClient) -> None:
    admin = (await new_workspace(grpc_api)).admin.member_id
    results = await asyncio.gather(
        *(
            grpc_api.admin.RegisterTemplate(template(), metadata=grpc_api.md(admin))
            for _ in range(3)
        ),
        return_exceptions=True,
    )
    failures = [r for r in results if isinstance(r, BaseException)]
    assert len(failures) == 2
    assert all(code_of(f) == grpc.StatusCode.ALREADY_EXISTS for f in failures)
    assert await scalar(grpc_api.sessions, "SELECT count(*) FROM template") == 1

"""Twilio senders through the real AdminService: CreateWorkspace with a Twilio sender, and
RegisterTemplate with a Twilio Content SID (the registration path Meta templates use)."""

from __future__ import annotations

import grpc

from common.generated.invites.v1 import admin_pb2 as pb
from common.generated.invites.v1 import types_pb2 as types
from tests.integration.admin_support import field_violations, rows, rpc_error
from tests.integration.conftest import ApiClient

ACCOUNT = "AC" + "0123456789abcdef" * 2
CONTENT = "HX" + "fedcba9876543210" * 2


def twilio_workspace(
    sender: str = "whatsapp:+14155550100", account: str = ACCOUNT
) -> pb.CreateWorkspaceRequest:
    return pb.CreateWorkspaceRequest(
        name="T",
        default_region="US",
        admin_display_name="A",
        sender_provider=pb.SENDER_PROVIDER_TWILIO,
        sender_phone_number_id=sender,
        twilio_account_sid=account,
    )


async def test_a_twilio_workspace_keeps_its_sender_and_account(grpc_api: ApiClient) -> None:
    reply = await grpc_api.admin.CreateWorkspace(twilio_workspace(), metadata=grpc_api.md())
    workspace = reply.workspace
    assert workspace.sender_provider == pb.SENDER_PROVIDER_TWILIO
    assert (workspace.sender_phone_number_id, workspace.twilio_account_sid) == (
        "whatsapp:+14155550100",
        ACCOUNT,
    )
    service = await grpc_api.admin.CreateWorkspace(
        twilio_workspace(sender="MG" + "1" * 32), metadata=grpc_api.md()
    )
    assert service.workspace.sender_phone_number_id == "MG" + "1" * 32
    meta = await grpc_api.admin.CreateWorkspace(
        pb.CreateWorkspaceRequest(name="M", default_region="US", admin_display_name="A"),
        metadata=grpc_api.md(),
    )
    assert meta.workspace.sender_provider == pb.SENDER_PROVIDER_META
    assert meta.workspace.twilio_account_sid == ""


async def test_bad_twilio_senders_are_refused_by_field(grpc_api: ApiClient) -> None:
    for request, fields in [
        (twilio_workspace(sender="", account=""), ["sender_phone_number_id", "twilio_account_sid"]),
        (twilio_workspace(sender="+14155550100"), ["sender_phone_number_id"]),
        (twilio_workspace(account="AC123"), ["twilio_account_sid"]),
        (
            pb.CreateWorkspaceRequest(
                name="M", default_region="US", admin_display_name="A", twilio_account_sid=ACCOUNT
            ),
            ["twilio_account_sid"],
        ),
    ]:
        error = await rpc_error(
            grpc_api.admin.CreateWorkspace(request, metadata=grpc_api.md()),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert sorted(v.split(":")[0] for v in field_violations(error)) == fields
    assert await rows(grpc_api.sessions, "SELECT id FROM workspace") == []


async def test_a_template_registers_with_its_content_sid(grpc_api: ApiClient) -> None:
    created = await grpc_api.admin.CreateWorkspace(twilio_workspace(), metadata=grpc_api.md())
    admin = created.admin.member_id

    def template(content_sid: str, language: str) -> pb.RegisterTemplateRequest:
        return pb.RegisterTemplateRequest(
            template=pb.Template(
                name="event_invitation",
                language=language,
                category=types.TEMPLATE_CATEGORY_MARKETING,
                variables=["guest_name", "event_name"],
                twilio_content_sid=content_sid,
            )
        )

    reply = await grpc_api.admin.RegisterTemplate(
        template(CONTENT, "en_US"), metadata=grpc_api.md(admin)
    )
    assert reply.template.twilio_content_sid == CONTENT
    listed = await grpc_api.admin.ListTemplates(
        pb.ListTemplatesRequest(), metadata=grpc_api.md(admin)
    )
    assert [t.twilio_content_sid for t in listed.templates] == [CONTENT]
    error = await rpc_error(
        grpc_api.admin.RegisterTemplate(template("HX12", "es"), metadata=grpc_api.md(admin)),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert [v.split(":")[0] for v in field_violations(error)] == ["template.twilio_content_sid"]

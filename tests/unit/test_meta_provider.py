"""The Meta Cloud API adapter against httpx.MockTransport: the request it builds and how every
kind of answer (and transport failure) is classified."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

import httpx
import pytest

from dispatch_service.domain.retry import RetryClass
from dispatch_service.providers.base import Accepted, Failed, TemplateSend
from dispatch_service.providers.meta import MetaCloudProvider, build_http_client

MESSAGE_ID = uuid.UUID("8f3c2a00-0000-4000-8000-000000000001")
SEND = TemplateSend(
    message_id=MESSAGE_ID,
    sender_id="106540352242922",
    to_e164="+16505551234",
    template_name="event_invitation",
    language="en_US",
    body_parameters=("Jane", "Sat 12 Oct 2026, 19:00"),
    body_parameter_names=("guest_name", "event_date"),
)


def provider(
    handler: Callable[[httpx.Request], httpx.Response], *, named: bool = False
) -> MetaCloudProvider:
    client = build_http_client(
        timeout_seconds=1.0,
        connect_timeout_seconds=1.0,
        max_connections=4,
        transport=httpx.MockTransport(handler),
    )
    return MetaCloudProvider(
        client,
        base_url="https://graph.example/",
        api_version="v26.0",
        access_token="token-123",
        parameter_format="named" if named else "positional",
    )


def graph_error(code: int, status: int = 400, details: str = "details") -> httpx.Response:
    body = {
        "error": {
            "message": f"(#{code}) Some title",
            "type": "OAuthException",
            "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": details},
            "fbtrace_id": "abc",
        }
    }
    return httpx.Response(status, json=body)


def accepted(_: httpx.Request) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "messaging_product": "whatsapp",
            "contacts": [{"input": "16505551234", "wa_id": "16505550000"}],
            "messages": [{"id": "wamid.ABC", "message_status": "held_for_quality_assessment"}],
        },
    )


async def test_the_request_is_a_template_send_with_our_id_as_callback_data() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return accepted(request)

    await provider(handler).send_template(SEND)
    [request] = seen
    assert request.method == "POST"
    assert str(request.url) == "https://graph.example/v26.0/106540352242922/messages"
    assert request.headers["authorization"] == "Bearer token-123"
    assert json.loads(request.content) == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "16505551234",
        "type": "template",
        "template": {
            "name": "event_invitation",
            "language": {"code": "en_US"},
            "components": [
                {
                    "type": "body",
                    "parameters": [
                        {"type": "text", "text": "Jane"},
                        {"type": "text", "text": "Sat 12 Oct 2026, 19:00"},
                    ],
                }
            ],
        },
        "biz_opaque_callback_data": str(MESSAGE_ID),
    }


async def test_named_parameters_carry_their_names() -> None:
    body = provider(accepted, named=True).request_body(SEND)
    parameters = body["template"]["components"][0]["parameters"]
    assert [p["parameter_name"] for p in parameters] == ["guest_name", "event_date"]


async def test_accepted_keeps_wamid_wa_id_and_message_status() -> None:
    outcome = await provider(accepted).send_template(SEND)
    assert outcome == Accepted("wamid.ABC", "16505550000", "held_for_quality_assessment")


@pytest.mark.parametrize(
    ("response", "retry_class", "code"),
    [
        (graph_error(131000), RetryClass.TRANSIENT, 131000),
        (graph_error(130429), RetryClass.TRANSIENT, 130429),
        (graph_error(131056), RetryClass.RECIPIENT_BACKOFF, 131056),
        (graph_error(131026), RetryClass.TERMINAL, 131026),
        (graph_error(190, 401), RetryClass.HALT, 190),
        (graph_error(132015), RetryClass.HALT, 132015),
        (graph_error(131000, 500), RetryClass.AMBIGUOUS, 131000),
        (httpx.Response(502, text="bad gateway"), RetryClass.AMBIGUOUS, None),
        (httpx.Response(200, text="not json"), RetryClass.AMBIGUOUS, None),
        (httpx.Response(200, json={"messages": []}), RetryClass.AMBIGUOUS, None),
        (httpx.Response(429, text=""), RetryClass.TRANSIENT, None),
    ],
)
async def test_answers_are_classified_by_code_and_5xx_is_ambiguous(
    response: httpx.Response, retry_class: RetryClass, code: int | None
) -> None:
    outcome = await provider(lambda _: response).send_template(SEND)
    assert isinstance(outcome, Failed)
    assert outcome.retry_class is retry_class
    assert outcome.error_code == code


async def test_error_title_and_details_come_from_the_graph_error() -> None:
    outcome = await provider(lambda _: graph_error(131026, details="Undeliverable.")).send_template(
        SEND
    )
    assert isinstance(outcome, Failed)
    assert outcome.error_title == "Some title"
    assert outcome.error_details == "Undeliverable."


async def test_131050_asks_for_do_not_message_and_130429_for_a_lower_rate() -> None:
    opted_out = await provider(lambda _: graph_error(131050)).send_template(SEND)
    throttled = await provider(lambda _: graph_error(130429)).send_template(SEND)
    assert isinstance(opted_out, Failed)
    assert opted_out.adds_do_not_message
    assert isinstance(throttled, Failed)
    assert throttled.lowers_rate


def raiser(error: Exception) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error

    return handler


@pytest.mark.parametrize(
    ("error", "retry_class"),
    [
        (httpx.ConnectError("refused"), RetryClass.TRANSIENT),
        (httpx.ConnectTimeout("slow connect"), RetryClass.TRANSIENT),
        (httpx.PoolTimeout("pool"), RetryClass.TRANSIENT),
        (httpx.ReadTimeout("slow answer"), RetryClass.AMBIGUOUS),
        (httpx.WriteTimeout("slow write"), RetryClass.AMBIGUOUS),
        (httpx.RemoteProtocolError("server disconnected"), RetryClass.AMBIGUOUS),
        (httpx.ReadError("reset"), RetryClass.AMBIGUOUS),
    ],
)
async def test_transport_errors_never_escape_and_only_unsent_ones_are_transient(
    error: Exception, retry_class: RetryClass
) -> None:
    outcome = await provider(raiser(error)).send_template(SEND)
    assert isinstance(outcome, Failed)
    assert outcome.retry_class is retry_class
    assert outcome.error_code is None

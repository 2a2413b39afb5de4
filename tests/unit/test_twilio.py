"""Twilio pieces that need no network: the signature (checked against Twilio's own helper
library), callback normalisation, the Messages API answer classification and the error table."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from pydantic import ValidationError
from twilio.request_validator import RequestValidator

from common.settings import describe_errors, split_secrets
from common.vocabulary import ReceiptFlag
from dispatch_service.domain.retry import ERROR_CODES, RetryClass, classify_http_error
from dispatch_service.providers.base import Accepted, Failed, TemplateSend
from dispatch_service.providers.meta import build_http_client
from dispatch_service.providers.twilio import (
    TwilioProvider,
    TwilioRoute,
    parse_response,
    status_callback_url,
)
from dispatch_service.settings import DispatchSettings
from webhook_service.settings import WebhookSettings
from webhook_service.twilio import (
    matches,
    normalise_twilio,
    receipt_body,
    signature,
    url_forms,
)

TOKEN = "12345abcdef12345abcdef12345abcde"
URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+12349013030",
    "Digits": "1234",
    "From": "+12349013030",
    "To": "+18005551212",
}
AT = datetime(2026, 12, 4, 19, 0, tzinfo=UTC)


def test_our_signature_is_twilios() -> None:
    ours = signature(TOKEN, URL, PARAMS.items())
    assert ours == RequestValidator(TOKEN).compute_signature(URL, PARAMS)
    assert RequestValidator(TOKEN).validate(URL, PARAMS, ours)


class MultiDict(dict[str, list[str]]):
    """The shape Twilio's validator reads repeated parameters from (Flask's getall)."""

    def getall(self, name: str) -> list[str]:
        return self[name]


def test_repeated_and_unicode_params_sign_like_twilio() -> None:
    pairs = [("B", "2"), ("a", "é"), ("B", "1"), ("B", "2"), ("Body", "")]
    ours = signature(TOKEN, URL, pairs)
    multi = MultiDict({"B": ["2", "1", "2"], "a": ["é"], "Body": [""]})
    assert ours == RequestValidator(TOKEN).compute_signature(URL, multi)


@pytest.mark.parametrize(
    "signed",
    ["https://h.example.com/webhooks/twilio", "https://h.example.com:443/webhooks/twilio"],
)
def test_either_port_form_matches(signed: str) -> None:
    presented = RequestValidator(TOKEN).compute_signature(signed, PARAMS)
    assert matches(
        "https://h.example.com/webhooks/twilio", list(PARAMS.items()), presented, [TOKEN]
    )
    assert matches(
        "https://h.example.com:443/webhooks/twilio", list(PARAMS.items()), presented, [TOKEN]
    )


def test_url_forms_follow_the_helper_library() -> None:
    assert url_forms("http://127.0.0.1:8080/x?m=1") == (
        "http://127.0.0.1/x?m=1",
        "http://127.0.0.1:8080/x?m=1",
    )
    assert url_forms("https://a.example/x") == ("https://a.example/x", "https://a.example:443/x")


def test_wrong_token_url_or_params_do_not_match() -> None:
    presented = RequestValidator(TOKEN).compute_signature(URL, PARAMS)
    pairs = list(PARAMS.items())
    assert matches(URL, pairs, presented, ["other-token", TOKEN])
    assert not matches(URL, pairs, presented, ["other-token"])
    assert not matches(URL + "&x=1", pairs, presented, [TOKEN])
    assert not matches(URL, [*pairs, ("Extra", "1")], presented, [TOKEN])


def _receipt(params: dict[str, str], url: str = "https://h.example/webhooks/twilio") -> bytes:
    return receipt_body(url, httpx.QueryParams(params).__str__().encode())


@pytest.mark.parametrize(
    ("twilio_status", "ours"),
    [
        ("sending", "sent"),
        ("sent", "sent"),
        ("delivered", "delivered"),
        ("read", "read"),
        ("undelivered", "failed"),
        ("failed", "failed"),
        ("queued", "queued"),
        ("accepted", "accepted"),
        ("scheduled", "scheduled"),
    ],
)
def test_statuses_map_onto_our_lifecycle(twilio_status: str, ours: str) -> None:
    form = {
        "MessageSid": "SMabc",
        "MessageStatus": twilio_status,
        "From": "whatsapp:+1555",
        "To": "whatsapp:+15551234567",
    }
    result = normalise_twilio(_receipt(form, "https://h.example/w?m=abc"), AT)
    (status,) = result.statuses
    assert (status.status, status.provider_message_id, status.phone_number_id) == (
        ours,
        "SMabc",
        "whatsapp:+1555",
    )
    assert (status.recipient_id, status.callback_data) == ("15551234567", "abc")
    assert status.timestamp == int(AT.timestamp())


def test_a_failure_carries_its_error_code_and_a_service_is_the_sender() -> None:
    form = {
        "SmsSid": "SMx",
        "SmsStatus": "undelivered",
        "ErrorCode": "63024",
        "ErrorMessage": "Invalid recipient",
        "From": "whatsapp:+1555",
        "MessagingServiceSid": "MG" + "0" * 32,
    }
    (status,) = normalise_twilio(_receipt(form), AT).statuses
    assert status.phone_number_id == "MG" + "0" * 32
    assert [(e.code, e.title) for e in status.errors] == [(63024, "Invalid recipient")]


def test_inbound_messages_and_opt_out_type() -> None:
    form = {
        "MessageSid": "SMi",
        "SmsStatus": "received",
        "From": "whatsapp:+15551234567",
        "To": "whatsapp:+1555",
        "Body": "hello",
        "OptOutType": "STOP",
    }
    result = normalise_twilio(_receipt(form), AT)
    (text,) = result.inbound_texts
    assert (text.text, text.from_wa_id, text.phone_number_id) == (
        "STOP",
        "15551234567",
        "whatsapp:+1555",
    )
    plain = normalise_twilio(_receipt({**form, "OptOutType": ""}), AT)
    assert plain.inbound_texts[0].text == "hello"


@pytest.mark.parametrize(
    "form",
    [
        {},
        {"MessageStatus": "sent"},
        {"MessageSid": "SM1", "MessageStatus": "sent"},
        {"MessageSid": "SM1", "MessageStatus": "failed", "From": "x", "ErrorCode": "abc"},
    ],
)
def test_unreadable_callbacks_are_flagged(form: dict[str, str]) -> None:
    assert normalise_twilio(_receipt(form), AT).flag is ReceiptFlag.UNKNOWN_SHAPE


def test_the_request_form() -> None:
    send = TemplateSend(
        uuid.UUID(int=7),
        "whatsapp:+1555",
        "+15551234567",
        "invite",
        "en_US",
        ("Jane", "Sat 12 Oct"),
    )
    provider = TwilioProvider(
        build_http_client(timeout_seconds=1.0, connect_timeout_seconds=1.0, max_connections=1),
        base_url="http://x",
        auth_token="t",
        status_callback_url="https://h.example/webhooks/twilio",
    )
    form = provider.request_form(send, TwilioRoute("AC1", "whatsapp:+1555", "HX1"))
    assert form["To"] == "whatsapp:+15551234567"
    assert form["From"] == "whatsapp:+1555"
    assert json.loads(form["ContentVariables"]) == {"1": "Jane", "2": "Sat 12 Oct"}
    assert parse_qs(urlsplit(form["StatusCallback"]).query) == {"m": [str(uuid.UUID(int=7))]}
    service = provider.request_form(send, TwilioRoute("AC1", "MG" + "0" * 32, "HX1"))
    assert "From" not in service
    assert service["MessagingServiceSid"] == "MG" + "0" * 32
    assert status_callback_url("https://h/x?a=1", uuid.UUID(int=1)).startswith("https://h/x?a=1&m=")


def test_answers_are_classified_with_the_one_error_table() -> None:
    accepted = parse_response(201, b'{"sid": "SM1", "status": "queued"}')
    assert accepted == Accepted("SM1", None, "queued")

    def error(status: int, code: int) -> Failed:
        body = {
            "code": code,
            "message": "m",
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        }
        outcome = parse_response(status, json.dumps(body).encode())
        assert isinstance(outcome, Failed)
        return outcome

    assert error(429, 20429).retry_class is RetryClass.TRANSIENT
    assert error(429, 20429).lowers_rate
    assert error(400, 63018).lowers_rate
    for code in (63016, 63024, 21211):
        assert error(400, code).retry_class is RetryClass.TERMINAL
    opt_out = error(400, 21610)
    assert opt_out.retry_class is RetryClass.TERMINAL
    assert opt_out.adds_do_not_message
    assert ERROR_CODES[63049].retry_class is ERROR_CODES[131049].retry_class
    assert error(500, 20500).retry_class is RetryClass.AMBIGUOUS
    assert error(503, 21211).retry_class is RetryClass.AMBIGUOUS
    unreadable = parse_response(201, b"{}")
    assert isinstance(unreadable, Failed)
    assert unreadable.retry_class is RetryClass.AMBIGUOUS
    assert classify_http_error(502, None).retry_class is RetryClass.AMBIGUOUS


# --- configuration ------------------------------------------------------------------------------

BASE: dict[str, Any] = {
    "database_url": "postgresql://u@h/db",
    "dispatch_ingestor_token": "ingestor-token-1",
}


def _dispatch(**extra: str) -> DispatchSettings:
    values: dict[str, Any] = {
        **BASE,
        "dispatch_backend_tokens": "backend-token-1",
        "whatsapp_access_token": "access-token-1",
        "whatsapp_phone_number_id": "1",
        **extra,
    }
    return DispatchSettings(**values)


def _webhook(**extra: str) -> WebhookSettings:
    values: dict[str, Any] = {
        **BASE,
        "whatsapp_app_secret": "app-secret-1",
        "whatsapp_verify_token": "verify-1",
        **extra,
    }
    return WebhookSettings(**values)


def test_twilio_is_optional_and_complete_when_configured() -> None:
    assert _dispatch().twilio_auth_token is None
    assert _webhook().twilio_auth_token is None
    url = "https://hooks.example.org/webhooks/twilio"
    dispatch = _dispatch(twilio_auth_token="tok-one,tok-two", twilio_status_callback_url=url)
    assert dispatch.twilio_auth_token is not None
    assert split_secrets(dispatch.twilio_auth_token) == ["tok-one", "tok-two"]
    assert _webhook(twilio_auth_token="tok-one", twilio_webhook_url=url).twilio_webhook_url == url


@pytest.mark.parametrize(
    "extra",
    [
        {"twilio_auth_token": "tok-one"},  # no callback URL
        {"twilio_auth_token": "tok-one", "twilio_status_callback_url": "ftp://h/x"},
        {"twilio_auth_token": "tok-one", "twilio_status_callback_url": "https://my_host/x"},
        {"twilio_auth_token": "changeme", "twilio_status_callback_url": "https://h.example/x"},
        {"twilio_auth_token": "tok-one,", "twilio_status_callback_url": "https://h.example/x"},
    ],
)
def test_incomplete_twilio_settings_stop_start_up_without_printing_the_token(
    extra: dict[str, str],
) -> None:
    with pytest.raises(ValidationError) as caught:
        _dispatch(**extra)
    message = describe_errors(caught.value)
    assert "tok-one" not in message
    assert "changeme" not in message


def test_the_ingestor_needs_the_public_url_with_a_token() -> None:
    with pytest.raises(ValidationError):
        _webhook(twilio_auth_token="tok-one")


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (httpx.ConnectError("refused"), RetryClass.TRANSIENT),
        (httpx.ConnectTimeout("slow connect"), RetryClass.TRANSIENT),
        (httpx.ReadTimeout("no answer"), RetryClass.AMBIGUOUS),
        (httpx.RemoteProtocolError("dropped"), RetryClass.AMBIGUOUS),
    ],
)
async def test_transport_failures_are_transient_only_before_the_request_left(
    raised: Exception, expected: RetryClass
) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        raise raised

    async with build_http_client(
        timeout_seconds=1.0,
        connect_timeout_seconds=1.0,
        max_connections=1,
        transport=httpx.MockTransport(handler),
    ) as client:
        provider = TwilioProvider(
            client,
            base_url="https://api.twilio.example",
            auth_token="tok",
            status_callback_url="https://h.example/webhooks/twilio",
        )
        send = TemplateSend(uuid.uuid4(), "whatsapp:+1555", "+15551234567", "t", "en", ())
        outcome = await provider.send_template_via(
            send, TwilioRoute("AC1", "whatsapp:+1555", "HX1")
        )
    assert isinstance(outcome, Failed)
    assert outcome.retry_class is expected
    (request,) = seen
    assert request.url.path == "/2010-04-01/Accounts/AC1/Messages.json"
    assert request.headers["Authorization"].startswith("Basic ")
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"

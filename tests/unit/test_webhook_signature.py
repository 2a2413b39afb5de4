"""X-Hub-Signature-256 verification edge cases (the expected values are computed independently)."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from webhook_service.signature import Verdict, matches, parse_signature

SECRET = b"first-app-secret"
NEXT_SECRET = b"second-app-secret"
BODY = b'{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[]}]}'


def verify(body: bytes, value: str | None, secrets: list[bytes]) -> Verdict:
    """The verdict the webhook handler reaches: parse the header once, then match the digest."""
    presented = parse_signature(value)
    if isinstance(presented, Verdict):
        return presented
    return Verdict.VALID if matches(body, presented, secrets) else Verdict.MISMATCH


def header(body: bytes, secret: bytes = SECRET) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def test_a_valid_signature() -> None:
    assert verify(BODY, header(BODY), [SECRET]) is Verdict.VALID


def test_upper_case_hex_is_accepted() -> None:
    signature = header(BODY)
    assert verify(BODY, "sha256=" + signature[7:].upper(), [SECRET]) is Verdict.VALID


def test_either_of_two_secrets_during_a_rotation() -> None:
    secrets = [SECRET, NEXT_SECRET]
    assert verify(BODY, header(BODY, SECRET), secrets) is Verdict.VALID
    assert verify(BODY, header(BODY, NEXT_SECRET), secrets) is Verdict.VALID
    assert verify(BODY, header(BODY, b"retired-secret"), secrets) is Verdict.MISMATCH


@pytest.mark.parametrize("value", [None, "", "   "])
def test_a_missing_header(value: str | None) -> None:
    assert verify(BODY, value, [SECRET]) is Verdict.MISSING


@pytest.mark.parametrize(
    "value",
    [
        hmac.new(SECRET, BODY, hashlib.sha256).hexdigest(),  # no prefix
        "sha1=" + hmac.new(SECRET, BODY, hashlib.sha1).hexdigest(),
        "SHA256=" + hmac.new(SECRET, BODY, hashlib.sha256).hexdigest(),
        "sha256=" + hmac.new(SECRET, BODY, hashlib.sha256).hexdigest()[:-1],  # too short
        "sha256=" + hmac.new(SECRET, BODY, hashlib.sha256).hexdigest() + "0",  # too long
        "sha256=" + "g" * 64,  # not hex
        "sha256=",
    ],
)
def test_malformed_headers(value: str) -> None:
    assert parse_signature(value) is Verdict.MALFORMED
    assert verify(BODY, value, [SECRET]) is Verdict.MALFORMED


def test_a_valid_signature_for_another_body_does_not_match() -> None:
    other = BODY.replace(b'"1"', b'"2"')
    assert verify(other, header(BODY), [SECRET]) is Verdict.MISMATCH


def test_the_signature_covers_the_raw_bytes_not_the_json() -> None:
    reformatted = BODY.replace(b",", b", ")
    assert verify(reformatted, header(BODY), [SECRET]) is Verdict.MISMATCH


def test_an_empty_body_with_the_signature_of_something_else() -> None:
    assert verify(b"", header(BODY), [SECRET]) is Verdict.MISMATCH

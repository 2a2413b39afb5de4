"""E.164 normalisation with the workspace's default region."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.vocabulary import PhoneStatus
from dispatch_service.domain.phones import is_supported_region, normalise_phone

REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        ("+1 202 555 0123", "US", "+12025550123"),
        ("(202) 555-0187", "US", "+12025550187"),
        ("07700 900456", "GB", "+447700900456"),
        ("+44 7700 900123", "US", "+447700900123"),  # a country code wins over the region
        ("06 12 34 56 78", "FR", "+33612345678"),
        ("  +1-555-010-0050  ", "US", "+15550100050"),  # fictional 555 range is accepted
        ("+1 202 555 0123 ext. 5", "US", "+12025550123"),  # extensions are dropped
    ],
)
def test_valid_phones_get_their_e164_form(raw: str, region: str, e164: str) -> None:
    phone = normalise_phone(raw, region)
    assert (phone.status, phone.e164, phone.raw) == (PhoneStatus.VALID, e164, raw)
    assert phone.valid


@pytest.mark.parametrize(
    ("raw", "region"),
    [
        ("12345", "US"),  # too short
        ("+1 555 0100", "US"),  # local-only: no area code
        ("07700 900456", "US"),  # a GB national number read in the US
        ("+4477009001234", "GB"),  # too long
        ("not a phone", "US"),
        ("+999 1234567", "US"),  # no such country code
        # "possible" for Germany (up to 17 digits) but over E.164's 15: the schema refuses it,
        # and one such row failed a whole import
        ("+49 151 1234 5678 9012", "DE"),
        ("1" * 300, "US"),
    ],
)
def test_malformed_phones_keep_the_raw_text_and_no_e164(raw: str, region: str) -> None:
    phone = normalise_phone(raw, region)
    assert (phone.status, phone.e164, phone.raw) == (PhoneStatus.MALFORMED, None, raw)
    assert not phone.valid


@pytest.mark.parametrize("raw", ["", "   ", "\t"])
def test_empty_phones_are_missing(raw: str) -> None:
    assert normalise_phone(raw, "US").status is PhoneStatus.MISSING


def test_supported_regions() -> None:
    assert is_supported_region("GB")
    assert not is_supported_region("gb")
    assert not is_supported_region("ZZ")


@settings(max_examples=300, deadline=None)
@given(
    raw=st.text(alphabet="0123456789 +-().x#*abc", max_size=24),
    region=st.sampled_from(REGIONS),
    second_region=st.sampled_from(REGIONS),
)
def test_normalising_twice_is_the_same_as_once(raw: str, region: str, second_region: str) -> None:
    once = normalise_phone(raw, region)
    if once.e164 is None:
        assert once.status is not PhoneStatus.VALID
        return
    twice = normalise_phone(once.e164, second_region)
    assert (twice.status, twice.e164) == (PhoneStatus.VALID, once.e164)


@settings(max_examples=200, deadline=None)
@given(
    region=st.sampled_from([r for r in REGIONS if phonenumbers.example_number(r)]),
    style=st.sampled_from(
        [
            phonenumbers.PhoneNumberFormat.E164,
            phonenumbers.PhoneNumberFormat.INTERNATIONAL,
            phonenumbers.PhoneNumberFormat.NATIONAL,
        ]
    ),
)
def test_every_written_form_of_a_real_number_has_one_identity(region: str, style: int) -> None:
    example = phonenumbers.example_number(region)
    assert example is not None
    e164 = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
    written = phonenumbers.format_number(example, style)
    phone = normalise_phone(written, region)
    assert phone.e164 == e164
    assert normalise_phone(e164, "US").e164 == e164

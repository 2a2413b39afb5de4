"""Phone normalisation to E.164 with `phonenumbers` and a workspace's default region (pure).

A phone is one of three things (common.vocabulary.PhoneStatus):

* ``valid``: libphonenumber parses it and it is a *possible* full number for its country (right
  country code and length); it gets an E.164 form (``+12025550123``), which is the guest's
  identity inside a workspace;
* ``malformed``: something was written but it cannot be a full number (kept as written, never
  inviteable);
* ``missing``: nothing (or only whitespace) was written.

Why "possible" and not libphonenumber's stricter "valid": whether a number reaches WhatsApp is
Meta's call (it answers 131026 otherwise), libphonenumber's range metadata lags new allocations,
and the fictional ranges used for tests and demos (+1 555 01xx, +44 7700 900xxx) are not "valid"
ranges. What we refuse is what can never be a number: wrong length, unknown country code, a
local-only number without its area code. Extensions are dropped (E.164 has none).

Normalising is idempotent: the E.164 form of a valid phone normalises to itself whatever the region.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import phonenumbers

from common.vocabulary import PhoneStatus

IS_POSSIBLE = phonenumbers.ValidationResult.IS_POSSIBLE
# libphonenumber's own limit on what it will try to parse; longer input is malformed by definition.
MAX_PHONE_LENGTH = 250
MAX_E164_LENGTH = 16
"""A "+" and at most 15 digits (ITU-T E.164)."""


@dataclass(frozen=True)
class NormalisedPhone:
    """The outcome of normalising one phone as written."""

    raw: str
    status: PhoneStatus
    e164: str | None = None

    @property
    def valid(self) -> bool:
        """True when the phone has an E.164 form (the only inviteable kind)."""
        return self.status is PhoneStatus.VALID


def is_supported_region(region: str) -> bool:
    """True for an ISO 3166 alpha-2 region libphonenumber knows (upper case, e.g. "GB")."""
    return region in phonenumbers.SUPPORTED_REGIONS


def normalise_phones(raws: Sequence[str], default_region: str) -> list[tuple[str, str | None]]:
    """(status, E.164 or None) of each phone, in order: `normalise_phone` for a batch, in a
    compact form that is cheap to send between processes (a picklable top-level function)."""
    outcomes = []
    for raw in raws:
        phone = normalise_phone(raw, default_region)
        outcomes.append((phone.status.value, phone.e164))
    return outcomes


def normalise_phone(raw: str, default_region: str) -> NormalisedPhone:
    """Normalise `raw` to E.164, reading numbers without a country code in `default_region`."""
    text = raw.strip()
    if not text:
        return NormalisedPhone(raw=raw, status=PhoneStatus.MISSING)
    if len(text) > MAX_PHONE_LENGTH:
        return NormalisedPhone(raw=raw, status=PhoneStatus.MALFORMED)
    try:
        number = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException:
        return NormalisedPhone(raw=raw, status=PhoneStatus.MALFORMED)
    if phonenumbers.is_possible_number_with_reason(number) != IS_POSSIBLE:
        return NormalisedPhone(raw=raw, status=PhoneStatus.MALFORMED)
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if len(e164) > MAX_E164_LENGTH:
        # "Possible" in a few regions (Germany allows 17 digits), but not E.164, whose numbers
        # the schema's checks hold to 15 digits: refused there, one row failed a whole import.
        return NormalisedPhone(raw=raw, status=PhoneStatus.MALFORMED)
    return NormalisedPhone(raw=raw, status=PhoneStatus.VALID, e164=e164)

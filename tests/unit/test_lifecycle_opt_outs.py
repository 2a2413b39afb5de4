"""Opt-out signals: stop keywords, marketing preferences, wa_id to E.164."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from common.vocabulary import DnmSource
from dispatch_service.domain.stop_keywords import (
    InboundText,
    PreferenceUpdate,
    is_stop_keyword,
    opt_out_from_preference,
    opt_out_from_text,
    phone_from_wa_id,
)

NOW = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    [
        "STOP",
        "stop",
        " Stop! ",
        "STOP.",
        "stop 🛑",
        "Stop all",
        "UNSUBSCRIBE",
        "opt-out",
        "Opt out",
        "Parar",
        "BAJA",
        "Arrêt",
        "arret",
        "Stopp",
        "abmelden",
        "Désabonner",
        "\tstop\n",
        "\uff33\uff34\uff2f\uff30",  # full-width letters
    ],
)
def test_clear_opt_out_words_match_the_whole_message(text: str) -> None:
    assert is_stop_keyword(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "stop it",
        "please stop",
        "Don't stop the music",
        "stopped",
        "cancel",  # may mean cancelling attendance
        "alto",
        "end",
        "I'll be there",
        "RSVP_YES",
    ],
)
def test_other_texts_do_not(text: str) -> None:
    assert not is_stop_keyword(text)


def test_phone_from_wa_id() -> None:
    assert phone_from_wa_id("16505551234") == "+16505551234"
    assert phone_from_wa_id("+16505551234") == "+16505551234"
    # where WhatsApp's ids kept a numbering plan the country changed since: the phone as
    # phonenumbers (and so a guest's import) has it, or an opt-out never matched the guest
    assert phone_from_wa_id("5215512345678") == "+525512345678"  # Mexico's old mobile "1"
    assert phone_from_wa_id("525512345678") == "+525512345678"
    # Brazil's older ids lack the ninth digit, but guests may be stored either way: not mapped
    assert phone_from_wa_id("551187654321") == "+551187654321"
    for bad in ("", "abc", "0123456789", "123", "1" * 16, "١٢٣٤٥٦٧٨"):
        assert phone_from_wa_id(bad) is None


def test_marketing_stop_preference_opts_out_and_resume_does_not() -> None:
    stop = PreferenceUpdate("pn", "16505551234", "marketing_messages", "stop", NOW)
    opt_out = opt_out_from_preference(stop)
    assert opt_out is not None
    assert (opt_out.phone_e164, opt_out.source) == ("+16505551234", DnmSource.USER_PREFERENCES_STOP)
    resume = PreferenceUpdate("pn", "16505551234", "marketing_messages", "resume", NOW)
    assert opt_out_from_preference(resume) is None
    other = PreferenceUpdate("pn", "16505551234", "something_else", "stop", NOW)
    assert opt_out_from_preference(other) is None


def test_stop_text_opts_out_its_sender() -> None:
    opt_out = opt_out_from_text(InboundText("pn", "16505551234", "STOP", NOW))
    assert opt_out is not None
    assert (opt_out.phone_number_id, opt_out.phone_e164, opt_out.source) == (
        "pn",
        "+16505551234",
        DnmSource.INBOUND_STOP_KEYWORD,
    )
    assert opt_out_from_text(InboundText("pn", "not-a-phone", "STOP", NOW)) is None

"""Each guest's language (domain/languages.py): the translation rule and how operators write it."""

from __future__ import annotations

import pytest

from dispatch_service.domain.guests import GuestInput, prepare_row
from dispatch_service.domain.languages import LanguagePolicy, choices, guest_language, resolve

APPROVED = frozenset({"en_US", "es", "es_AR", "pt_BR"})


@pytest.mark.parametrize(
    ("preferred", "fallback", "expected"),
    [
        (None, "en_US", "en_US"),  # no preference: the run's language
        (None, None, "en_US"),  # ... even without a fallback
        ("es_AR", "en_US", "es_AR"),  # approved as it is
        ("es_MX", "en_US", "es"),  # its base language
        ("pt", "en_US", "pt_BR"),  # another translation of its base
        ("fr", "en_US", "en_US"),  # nothing fits: the fallback
        ("fr", "es", "es"),
        ("fr", None, None),  # ... or blocked
        ("en_GB", None, "en_US"),
    ],
)
def test_a_guest_gets_the_translation_that_fits(
    preferred: str | None, fallback: str | None, expected: str | None
) -> None:
    assert resolve(preferred, LanguagePolicy(APPROVED, fallback, "en_US")) == expected


def test_a_base_language_approved_itself_wins_over_its_regions() -> None:
    assert choices(LanguagePolicy(APPROVED, None)) == {"en": "en_US", "es": "es", "pt": "pt_BR"}


@pytest.mark.parametrize(
    ("written", "language"),
    [("es", "es"), ("ES", "es"), ("pt-br", "pt_BR"), (" en_us ", "en_US"), ("fil", "fil")],
)
def test_operators_may_write_a_language_loosely(written: str, language: str) -> None:
    assert guest_language(written) == language


@pytest.mark.parametrize("written", ["", "spanish", "e", "es_MXX", "es-419", "12"])
def test_anything_else_is_not_a_language(written: str) -> None:
    assert guest_language(written) is None


def test_an_imported_row_keeps_its_language_and_notes_one_it_cannot_read() -> None:
    row = prepare_row(GuestInput(2, "Ana", "+14155550100", language="es-mx"), "US")
    assert (row.language, row.notes[-1:]) == (
        "es_MX",
        ("no household given: the guest is a household of their own",),
    )
    unread = prepare_row(GuestInput(3, "Bo", "+14155550101", language="klingon"), "US")
    assert unread.language is None
    assert "language 'klingon' not understood; ignored" in unread.notes

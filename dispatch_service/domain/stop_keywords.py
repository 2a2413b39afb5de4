"""Opt-out signals from the provider: stop keywords in inbound texts and marketing preferences.

An inbound text opts the sender out when the *whole* message, ignoring case, accents,
punctuation, symbols (emoji) and surrounding or repeated whitespace, is one of the clear opt-out
words below. Only unambiguous words are listed: "cancel", "end", "quit", "alto" or "sair" could
be a guest cancelling their attendance or a plain word in a conversation, and blocking a guest by
mistake is worse than asking them to use the documented word. "Please stop texting me" is not
matched either: a whole-message match keeps false positives out, and Meta's own marketing
preference (``user_preferences``) covers the in-app opt-out.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import datetime

from common.vocabulary import DnmSource
from dispatch_service.domain.do_not_message import DoNotMessageRequest, provider_opt_out

STOP_KEYWORDS = frozenset(
    {
        # English
        "stop",
        "stop all",
        "stopall",
        "unsubscribe",
        "opt out",
        "optout",
        # Spanish / Portuguese
        "baja",
        "darme de baja",
        "parar",
        "descadastrar",
        # French (accents are folded: arrêt -> arret, désabonner -> desabonner)
        "arret",
        "desabonner",
        "desinscrire",
        # German
        "stopp",
        "abmelden",
        "abbestellen",
        # Italian
        "disiscrivi",
        "disiscriviti",
        # Dutch
        "afmelden",
        "uitschrijven",
    }
)
"""Normalised whole-message opt-out words (see the module docstring for what is left out)."""

_SPACES = re.compile(r"\s+")

MARKETING_CATEGORY = "marketing_messages"
PREFERENCE_STOP = "stop"


def normalise_text(text: str) -> str:
    """Casefold, drop accents, punctuation and symbols, and collapse whitespace."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    kept = "".join(
        " " if unicodedata.category(ch)[0] in "PSZ" else ch
        for ch in decomposed
        if unicodedata.category(ch) != "Mn"
    )
    return _SPACES.sub(" ", kept).strip()


def is_stop_keyword(text: str) -> bool:
    """True when the whole message is an opt-out word (``STOP``, `` stop! ``, ``Arrêt``...)."""
    return normalise_text(text) in STOP_KEYWORDS


def is_marketing_stop(category: str, value: str) -> bool:
    """True for a ``user_preferences`` change that stops marketing messages."""
    return category == MARKETING_CATEGORY and value.strip().lower() == PREFERENCE_STOP


def phone_from_wa_id(wa_id: str) -> str | None:
    """The E.164 phone of a WhatsApp id, or None when it is not a phone number.

    A WhatsApp id is the phone's digits, except where WhatsApp kept a numbering plan the country
    has since changed (Meta: the id and the phone "may not always match"), which would leave an
    opt-out on a phone no guest has. Mexico dropped the mobile "1" in 2019: an id of 521 and ten
    digits is +52 and those ten (a +521 number is not a valid phone, so no guest has one).
    (Brazil's older ids lack the ninth digit its mobiles gained, but a guest may be stored either
    way, both valid: an id is not mapped there.)"""
    digits = wa_id.strip().lstrip("+")
    if not (digits.isascii() and digits.isdigit() and 7 <= len(digits) <= 15 and digits[0] != "0"):
        return None
    if len(digits) == 13 and digits.startswith("521"):
        digits = "52" + digits[3:]
    return "+" + digits


@dataclass(frozen=True, slots=True)
class PreferenceUpdate:
    """A user's marketing preference change (``user_preferences`` webhook, or the older
    ``system``/``user_preference_changed`` message)."""

    phone_number_id: str
    wa_id: str
    category: str
    value: str
    at: datetime
    receipt_id: uuid.UUID | None = None
    user_id: str = ""
    """The user's business-scoped user id; ``wa_id`` may then be empty (phone withheld)."""
    parent_user_id: str = ""


@dataclass(frozen=True, slots=True)
class InboundText:
    """A text message a user sent to the business number."""

    phone_number_id: str
    from_wa_id: str
    text: str
    at: datetime
    provider_message_id: str = ""
    receipt_id: uuid.UUID | None = None
    from_user_id: str = ""
    """The sender's business-scoped user id; ``from_wa_id`` may then be empty."""
    from_parent_user_id: str = ""
    username: str = ""


def opt_out_from_preference(update: PreferenceUpdate) -> DoNotMessageRequest | None:
    """The opt-out a preference change asks for (by phone, user id or both); ``resume`` never
    removes an entry by itself (removal is an operator's audited decision)."""
    phone = phone_from_wa_id(update.wa_id) or ""
    user_id = update.user_id.strip()
    if not (phone or user_id) or not is_marketing_stop(update.category, update.value):
        return None
    return provider_opt_out(
        update.phone_number_id,
        phone,
        DnmSource.USER_PREFERENCES_STOP,
        user_id=user_id,
        receipt_id=update.receipt_id,
    )


def opt_out_from_text(message: InboundText) -> DoNotMessageRequest | None:
    """The opt-out an inbound stop keyword asks for (by phone, user id or both)."""
    phone = phone_from_wa_id(message.from_wa_id) or ""
    user_id = message.from_user_id.strip()
    if not (phone or user_id) or not is_stop_keyword(message.text):
        return None
    return provider_opt_out(
        message.phone_number_id,
        phone,
        DnmSource.INBOUND_STOP_KEYWORD,
        user_id=user_id,
        receipt_id=message.receipt_id,
    )

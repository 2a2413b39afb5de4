"""Each guest's language (pure): which translation of a run's template a recipient gets.

A household may carry a preferred language (``es``, ``pt_BR``; en_US form). A run's template is
one translation of a name; the approved translations of that name in the workspace are the
choices. A recipient gets, in this order:

1. no preference: the run's language (the chosen template's own);
2. the preferred language itself, when approved (``pt_BR`` -> ``pt_BR``);
3. its base language, when approved (``es_MX`` -> ``es``);
4. another approved translation of the same base, the first by name (``es`` -> ``es_AR``);
5. otherwise the fallback.

The fallback is the run's language too, unless the precheck was asked for another approved
translation, or for none: then a recipient whose language no translation fits is blocked
``no_approved_translation``. PrecheckSend
reports how many recipients get each language; StartRun stores each message's language, and the
dispatcher sends the message in it. The SQL that computes this inside the precheck statement
(persistence/prechecks.py) is built from :func:`choices` and proved equal to :func:`resolve` by
tests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_CODE = re.compile(r"^([A-Za-z]{2,3})(?:[_-]([A-Za-z]{2}))?$")


@dataclass(frozen=True)
class LanguagePolicy:
    """The approved translations of a run's template name, and the fallback language."""

    approved: frozenset[str]
    fallback: str | None
    """For a preference no translation fits; None: such recipients are blocked."""
    default: str = ""
    """The run's language, for recipients without a preference ("": the fallback)."""


def guest_language(written: str) -> str | None:
    """A household's language as an operator wrote it -> Meta's form (``es``, ``pt_BR``):
    ``ES`` -> ``es``, ``pt-br`` -> ``pt_BR``; None for anything else (or nothing)."""
    match = _CODE.match(written.strip())
    if match is None:
        return None
    language, region = match.groups()
    return f"{language.lower()}_{region.upper()}" if region else language.lower()


def base(language: str) -> str:
    """``es_MX`` -> ``es``."""
    return language.split("_", 1)[0]


def choices(policy: LanguagePolicy) -> dict[str, str]:
    """Per base language, the approved translation a preference of that base falls back to
    (its base itself when approved, else the first of that base by name)."""
    chosen: dict[str, str] = {}
    for language in sorted(policy.approved):
        key = base(language)
        if key in policy.approved:
            chosen[key] = key
        else:
            chosen.setdefault(key, language)
    return chosen


def resolve(preferred: str | None, policy: LanguagePolicy) -> str | None:
    """The translation a recipient preferring `preferred` gets (None: none fits, blocked)."""
    if not preferred:
        return policy.default or policy.fallback
    if preferred in policy.approved:
        return preferred
    return choices(policy).get(base(preferred), policy.fallback)

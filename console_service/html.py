"""Escaping for server-rendered pages: every value is escaped unless it is already `Html`."""

from __future__ import annotations

import html as _html
from collections.abc import Iterable


class Html(str):
    """Markup that is already safe (built by `render` or a literal in this package)."""

    __slots__ = ()


def escape(value: object) -> Html:
    """`value` as text safe inside an element or a quoted attribute."""
    if isinstance(value, Html):
        return value
    return Html(_html.escape(str(value), quote=True))


def render(template: str, *values: object) -> Html:
    """`template.format(...)` with every value escaped (Html values are kept as they are)."""
    return Html(template.format(*(escape(v) for v in values)))


def join(parts: Iterable[Html]) -> Html:
    """Concatenate markup."""
    return Html("".join(escape(p) for p in parts))

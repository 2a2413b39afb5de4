"""Batches sent to Postgres as one JSON parameter (jsonb_to_recordset, jsonb arrays).

Postgres parses a JSON document in C, while psycopg adapts a Python list element by element; so
hot batch statements take their rows as one JSON text. orjson writes it (datetimes as RFC 3339
with their offset, UUIDs and StrEnums as their text) several times faster than json.dumps with
a conversion hook.
"""

from __future__ import annotations

from typing import Any

import orjson


def json_param(value: Any) -> str:
    """`value` as JSON text for a ``CAST(:param AS jsonb)`` parameter."""
    return orjson.dumps(value).decode()

"""Output helpers shared by the CLI commands: JSON for scripts, readable names for people."""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp


def print_json(message: Message, compact: bool = False) -> None:
    """Print a proto message as JSON (proto field names, defaults included)."""
    data = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    print(json.dumps(data, separators=(",", ":")) if compact else json.dumps(data, indent=2))


def enum_name(enum: Any, value: int) -> str:
    """`MESSAGE_STATE_DELIVERED` -> `delivered` (the enum's common prefix dropped)."""
    name: str = enum.Name(value)
    prefix = enum.keys()[0].removesuffix("UNSPECIFIED")
    return name.removeprefix(prefix).lower()


def timestamp(value: Timestamp) -> str:
    """An ISO-8601 UTC time, or '-' when unset."""
    if not value.seconds and not value.nanos:
        return "-"
    return value.ToDatetime().strftime("%Y-%m-%d %H:%M:%SZ")

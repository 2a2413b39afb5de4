"""Output helpers shared by the CLI commands: JSON for scripts, readable names for people.

`--json` means JSON lines on every command: each line is one JSON object. A command with one
reply prints it on one line; a list prints one line per item (as its pages arrive); `watch`
prints one line per update.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from rich.console import Console

# Width of tables written to a file or pipe: wide enough that no id is cut or wrapped.
UNBOUNDED_WIDTH = 512


def make_console(stderr: bool = False) -> Console:
    """A console for people; when not a terminal (and COLUMNS unset) tables keep their width."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() or os.environ.get("COLUMNS") else UNBOUNDED_WIDTH
    return Console(stderr=stderr, highlight=False, soft_wrap=True, width=width)


def print_json(message: Message) -> None:
    """Print a proto message as one JSON line (proto field names, defaults included)."""
    data = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    print(json.dumps(data, separators=(",", ":")), flush=False)


def print_json_items(messages: Iterable[Message]) -> None:
    """Print each message as its own JSON line (a list's items)."""
    for message in messages:
        print_json(message)


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

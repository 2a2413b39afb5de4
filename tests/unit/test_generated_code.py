"""The checked-in generated code is exactly what `make protos` produces from protos/."""

from __future__ import annotations

from pathlib import Path

from protos.generate import TARGET, generate


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_checked_in_code_matches_a_fresh_generation(tmp_path: Path) -> None:
    fresh = tmp_path / "generated"
    generate(fresh)
    assert _files(fresh) == _files(TARGET), "generated code is stale: run `make protos`"

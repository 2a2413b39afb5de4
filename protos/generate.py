"""Generate the Python modules for protos/invites/v1 into common/generated (one codegen command).

Run through `make protos`. Messages, gRPC stubs and typed stubs (mypy-protobuf) are written to a
temporary folder, their `invites.v1` imports are rewritten to absolute `common.generated.invites.v1`
imports, and the result replaces common/generated. Generated code is checked in and never edited.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import grpc_tools

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
TARGET = ROOT / "common" / "generated"
IMPORT_FIX = re.compile(r"^(from|import) invites\.v1", re.MULTILINE)


def generate(target: Path = TARGET) -> None:
    """Run protoc with the grpc and mypy plugins and write the fixed-up modules to `target`."""
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    bin_dir = Path(sys.executable).parent  # the venv's protoc-gen-mypy plugins
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "grpc_tools.protoc",
                f"-I{PROTO_ROOT}",
                f"-I{well_known}",
                f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}",
                f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
                f"--python_out={out}",
                f"--grpc_python_out={out}",
                f"--mypy_out={out}",
                f"--mypy_grpc_out={out}",
                *protos,
            ],
            check=True,
        )
        for path in out.rglob("*.py*"):
            text = IMPORT_FIX.sub(r"\1 common.generated.invites.v1", path.read_text())
            path.write_text(text)
        for folder in [out, *(p for p in out.rglob("*") if p.is_dir())]:
            (folder / "__init__.py").touch()
        (out / "py.typed").touch()
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(out, target)


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else TARGET)

"""Generate the Python code for protos/accord/v1 into adapters/grpc/generated.

``--check`` generates into a scratch directory and fails if the committed code differs:
CI runs it so the generated code can never drift from the contract.
"""

from __future__ import annotations

import filecmp
import re
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[1]
PROTOS = ROOT / "protos"
TARGET = ROOT / "adapters" / "grpc" / "generated"
PACKAGE = "adapters.grpc.generated"
HEADER = '"""Generated from protos/accord/v1 by `make protos`; do not edit."""\n'


def generate(into: Path) -> None:
    into.mkdir(parents=True, exist_ok=True)
    sources = sorted(str(p.relative_to(PROTOS)) for p in (PROTOS / "accord" / "v1").glob("*.proto"))
    include = Path(protoc.__file__).parent / "_proto"
    bin_dir = Path(sys.executable).parent
    args = [
        "protoc",
        f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
        f"-I{PROTOS}",
        f"-I{include}",
        f"--python_out={into}",
        f"--grpc_python_out={into}",
        f"--mypy_out={into}",
        f"--mypy_grpc_out={into}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    for path in into.rglob("*.py*"):
        text = path.read_text()
        # Generated modules import each other as top-level `accord.v1`; make them package-relative.
        text = re.sub(
            r"^from accord\.v1 import", f"from {PACKAGE}.accord.v1 import", text, flags=re.M
        )
        text = re.sub(r"^import accord\.v1\.", f"import {PACKAGE}.accord.v1.", text, flags=re.M)
        path.write_text(text)
    for directory in [into, *(p for p in into.rglob("*") if p.is_dir())]:
        (directory / "__init__.py").write_text(HEADER)


def differences(left: Path, right: Path) -> list[str]:
    compared = filecmp.dircmp(left, right, ignore=["__pycache__"])
    found = [*compared.left_only, *compared.right_only, *compared.diff_files]
    for name, sub in compared.subdirs.items():
        found += [f"{name}/{d}" for d in differences(Path(sub.left), Path(sub.right))]
    return found


def main() -> int:
    if "--check" in sys.argv:
        with tempfile.TemporaryDirectory() as scratch:
            fresh = Path(scratch) / "generated"
            generate(fresh)
            stale = differences(fresh, TARGET) if TARGET.exists() else ["(missing)"]
        if stale:
            print(f"generated code is stale ({', '.join(sorted(stale))}): run `make protos`")
            return 1
        print("generated code matches protos/")
        return 0
    shutil.rmtree(TARGET, ignore_errors=True)
    generate(TARGET)
    print(f"generated {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

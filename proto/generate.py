"""Compile the .proto files under proto/ into Python modules.

`make proto` writes into the repository; the regeneration test writes into a
temporary directory and compares, so both go through this one script and the
checked-in code can never silently drift from its source.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parent


def proto_files() -> list[Path]:
    return sorted(PROTO_ROOT.rglob("*.proto"))


def generate(out_dir: Path) -> None:
    from importlib.resources import files

    from grpc_tools import protoc

    well_known_types = files("grpc_tools") / "_proto"  # google/protobuf/*.proto
    out_dir.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"--proto_path={PROTO_ROOT}",
        f"--proto_path={well_known_types}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        *(str(path.relative_to(PROTO_ROOT)) for path in proto_files()),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="directory to write into")
    generate(parser.parse_args().out)


if __name__ == "__main__":
    sys.exit(main())

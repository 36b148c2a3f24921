"""The checked-in code generated from proto/ is exactly what proto/ produces."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_regenerating_the_protos_gives_no_diff(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(REPO / "proto" / "generate.py"), "--out", str(tmp_path)], check=True
    )
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*_pb2.py*"))
    assert generated, "protoc produced nothing"
    for relative in generated:
        checked_in = REPO / relative
        assert checked_in.exists(), f"{relative} is generated but not checked in; run `make proto`"
        assert checked_in.read_bytes() == (tmp_path / relative).read_bytes(), (
            f"{relative} differs from proto/; run `make proto`"
        )
    checked_in_all = sorted(
        p.relative_to(REPO) for p in (REPO / "meshroute" / "api").rglob("*_pb2.py*")
    )
    assert checked_in_all == generated, "generated code with no .proto source; remove it"

"""docs/hardening.md promises that every row is backed by a test: hold it to that."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MATRIX = REPO / "docs" / "hardening.md"
TEST_REFERENCE = re.compile(r"`(tests/[\w/]+\.py)::(test_\w+)`")


def table_rows(text: str) -> list[str]:
    return [
        line
        for line in text.splitlines()
        if line.startswith("| ") and not line.startswith(("| input", "| fault"))
    ]


def test_every_row_of_the_matrix_names_a_test_or_follows_one() -> None:
    rows = table_rows(MATRIX.read_text(encoding="utf-8"))
    assert len(rows) >= 30
    for row in rows:
        test_cell = row.rstrip(" |").rsplit(" | ", 1)[1]
        assert TEST_REFERENCE.search(test_cell) or test_cell == "same test", row


def test_every_test_the_matrix_names_exists() -> None:
    references = TEST_REFERENCE.findall(MATRIX.read_text(encoding="utf-8"))
    assert references
    for path, name in references:
        source = (REPO / path).read_text(encoding="utf-8")
        assert re.search(rf"^def {name}\(", source, re.MULTILINE), f"{path}::{name} is gone"

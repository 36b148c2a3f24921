"""Quoting what an upstream said, in logs and error messages: one line, bounded.

Upstream bodies can be huge or multi-line; an error message that embeds one whole
would be unreadable and could flood logs.
"""

from __future__ import annotations


def snippet(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit] + "…"

"""The gateway's error shape, as clients see it."""

from __future__ import annotations

import httpx


def assert_error(
    response: httpx.Response, status: int, error_type: str, code: str
) -> dict[str, str]:
    """`response` is our JSON error with this status, type and code (and a message,
    never a traceback); returns the error object."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert set(error) == {"type", "message", "code"}
    assert error["type"] == error_type
    assert error["code"] == code
    assert error["message"]
    assert "Traceback" not in response.text
    return dict(error)

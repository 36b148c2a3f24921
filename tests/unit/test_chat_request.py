from __future__ import annotations

import json

import pytest

from meshroute.ext_proc.chat_request import BadRequest, Turn, parse_chat_request


def test_reads_roles_and_text_including_text_parts() -> None:
    body = json.dumps(
        {
            "model": "x",
            "messages": [
                {"role": "system", "content": "be brief"},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "hello"}, {"type": "image_url"}],
                },
                {"role": "assistant", "content": None, "tool_calls": []},
            ],
        }
    ).encode()
    request = parse_chat_request(body)
    assert request.turns == [
        Turn("system", "be brief"),
        Turn("user", "hello"),
        Turn("assistant", ""),
    ]
    assert request.payload["model"] == "x"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"", "empty_body"),
        (b"  \n", "empty_body"),
        (b"{", "invalid_json"),
        (b"\xff\xfe", "invalid_json"),
        (b"[1, 2]", "invalid_request"),
        (b'{"model": "x"}', "missing_messages"),
        (b'{"messages": []}', "invalid_messages"),
        (b'{"messages": "hi"}', "invalid_messages"),
        (b'{"messages": [{"content": "no role"}]}', "invalid_messages"),
        (b'{"messages": [42]}', "invalid_messages"),
        (b"[" * 100_000 + b"]" * 100_000, "invalid_json"),
    ],
)
def test_bad_bodies_say_what_is_wrong(body: bytes, code: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_chat_request(body)
    assert caught.value.code == code
    assert caught.value.message

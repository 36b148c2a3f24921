"""A config reload while a stream is in flight: the stream finishes, whole."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx

from tests.support.configs import agent_yaml, documents, gateway_yaml
from tests.support.processes import free_port
from tests.support.stack import UpStack
from tests.support.upstreams import Upstream


def test_a_stream_in_flight_during_a_reload_completes(tmp_path: Path) -> None:
    talker = Upstream("talker")
    talker.stream_for(3.0, interval=0.25)
    port = free_port()
    config = tmp_path / "config"
    config.mkdir()
    (config / "agents.yaml").write_text(
        documents(
            agent_yaml("talker", "Talks for a while", talker.url),
            gateway_yaml("g", port, ["talker"], "talker"),
        )
    )
    stack = UpStack([config], {"g": port})
    lines: list[str] = []
    problems: list[str] = []
    started = threading.Event()

    def stream() -> None:
        try:
            with httpx.stream(
                "POST",
                stack.url("g"),
                json={"messages": [{"role": "user", "content": "talk"}], "stream": True},
                timeout=60,
            ) as response:
                if response.status_code != 200:
                    problems.append(f"HTTP {response.status_code}: {response.read()!r}")
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        lines.append(line)
                        started.set()
        except httpx.HTTPError as error:
            problems.append(repr(error))
        finally:
            started.set()

    reader = threading.Thread(target=stream)
    try:
        reader.start()
        assert started.wait(timeout=30)
        assert not problems, problems
        mark = len(stack.process.lines)
        (config / "more.yaml").write_text(agent_yaml("newcomer", "Arrives mid-stream", talker.url))
        (config / "agents.yaml").write_text(
            documents(
                agent_yaml("talker", "Talks for a while", talker.url),
                gateway_yaml("g", port, ["talker", "newcomer"], "talker"),
            )
        )
        stack.process.wait_for_line(r"config reloaded: now serving version 2", start=mark)
        reader.join(timeout=60)
        assert not reader.is_alive()
        assert lines[-1] == "data: [DONE]"
        assert len(lines) == 12 + 2  # every chunk, the final one, and [DONE]
    finally:
        stack.stop()
        talker.close()

"""Config errors that say where: file, line, object (`Kind/name`) and field."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml


@dataclass(frozen=True, order=True)
class ConfigError:
    file: Path | None
    line: int | None
    object: str | None
    """`Kind/name`, when the error belongs to one object."""
    field: str | None
    """Dotted path inside the object, e.g. `spec.agents[1].name`."""
    message: str

    def __str__(self) -> str:
        where = str(self.file) if self.file else "<config>"
        if self.line is not None:
            where += f":{self.line}"
        parts = [where]
        if self.object:
            parts.append(self.object)
        if self.field:
            parts.append(self.field)
        parts.append(self.message)
        return ": ".join(parts)


class ConfigErrors(Exception):
    """Every problem found in a config, so one run shows them all."""

    def __init__(self, errors: Iterable[ConfigError]) -> None:
        self.errors = sorted(errors, key=_sort_key)
        super().__init__("\n".join(str(error) for error in self.errors))


def _sort_key(error: ConfigError) -> tuple[str, int, str]:
    return (str(error.file or ""), error.line or 0, error.message)


def format_field_path(location: Iterable[str | int]) -> str:
    """('spec', 'agents', 1, 'name') -> 'spec.agents[1].name'."""
    text = ""
    for part in location:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


@dataclass(frozen=True)
class Source:
    """Where an object was written: its file and the line its document starts on."""

    file: Path
    line: int
    node: yaml.Node = field(repr=False, compare=False)

    def line_of(self, location: Sequence[str | int]) -> int:
        """The line of the deepest YAML node on `location` that exists."""
        node: yaml.Node = self.node
        for part in location:
            child = _child(node, part)
            if child is None:
                break
            node = child
        return int(node.start_mark.line) + 1


def _child(node: yaml.Node, part: str | int) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode) and isinstance(part, str):
        for key, value in node.value:
            if getattr(key, "value", None) == part:
                return value  # type: ignore[no-any-return]
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        return node.value[part]  # type: ignore[no-any-return]
    return None

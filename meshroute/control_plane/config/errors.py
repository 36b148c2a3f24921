"""Config errors that say where: file, line, object (`Kind/name`) and field."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
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
    lines: Mapping[tuple[str | int, ...], int] = field(
        default_factory=dict, repr=False, compare=False
    )
    """The line of each node of the document, by its path (`node_lines`)."""

    def line_of(self, location: Sequence[str | int]) -> int:
        """The line of the deepest YAML node on `location` that exists."""
        line = self.line
        path: tuple[str | int, ...] = ()
        for part in location:
            path = (*path, part)
            found = self.lines.get(path)
            if found is None:
                break
            line = found
        return line


def node_lines(root: yaml.Node) -> dict[tuple[str | int, ...], int]:
    """Every node's line (1-based) by its path of mapping keys and sequence indexes;
    a key written twice counts where it is first written.

    A flat map rather than the YAML node tree itself: the tree is ~250 Python objects
    per object (nodes, marks and their dicts), a quarter of a million at 1,000 agents,
    all kept alive for error messages, and each of the garbage collector's full
    collections walked them all (~0.2 s, landing in the middle of reloads)."""
    lines: dict[tuple[str | int, ...], int] = {(): int(root.start_mark.line) + 1}
    pending: list[tuple[tuple[str | int, ...], yaml.Node]] = [((), root)]
    while pending:
        path, node = pending.pop()
        children: list[tuple[str | int, yaml.Node]] = []
        if isinstance(node, yaml.MappingNode):
            children = [
                (key.value, value) for key, value in node.value if isinstance(key.value, str)
            ]
        elif isinstance(node, yaml.SequenceNode):
            children = list(enumerate(node.value))
        for part, child in children:
            child_path = (*path, part)
            if child_path not in lines:
                lines[child_path] = int(child.start_mark.line) + 1
                pending.append((child_path, child))
    return lines

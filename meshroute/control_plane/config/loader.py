"""Read config files (multi-document YAML, a file or a directory) into a checked Config.

Every error carries its file and line: the loader keeps the YAML node tree next to
the parsed data, so a pydantic error at `spec.agents[1].name` is traced back to the
exact line it came from.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from meshroute.control_plane.config.errors import (
    ConfigError,
    ConfigErrors,
    Source,
    format_field_path,
    node_lines,
)
from meshroute.control_plane.config.model import (
    API_VERSION,
    KINDS,
    Agent,
    Config,
    Gateway,
    LLMProvider,
    Object,
)
from meshroute.control_plane.config.references import check_references

YAML_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class _Parsed:
    text: str
    objects: tuple[tuple[Object, Source | None], ...]
    errors: tuple[ConfigError, ...]


class ParsedFiles:
    """What each file's text parsed into, kept between loads.

    A reload usually follows an edit to one file of many; parsing YAML and checking
    each object's schema was most of a reload at 1,000 agents (~0.6 s). The text is
    the key, not the file's size and mtime: an edit within the mtime's granularity
    must not be missed. The objects are frozen models, so sharing them across
    loads is safe; the cross-object checks run on every load. Holds only the files
    of the latest load.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_file: dict[Path, _Parsed] = {}

    def get(self, file: Path, text: str) -> _Parsed | None:
        with self._lock:
            parsed = self._by_file.get(file)
        return parsed if parsed is not None and parsed.text == text else None

    def keep(self, parsed: dict[Path, _Parsed]) -> None:
        with self._lock:
            self._by_file = parsed


def load_config(paths: Iterable[Path | str], cache: ParsedFiles | None = None) -> Config:
    """Load and check every object under `paths`; raise ConfigErrors listing all problems.

    `cache`: reuse what files whose text is unchanged parsed into last time."""
    errors: list[ConfigError] = []
    objects: list[tuple[Object, Source | None]] = []
    seen: dict[Path, _Parsed] = {}
    for file in _yaml_files([Path(path) for path in paths], errors):
        objects.extend(_load_file(file, errors, cache, seen))
    if cache is not None:
        cache.keep(seen)
    config, problems = check_objects(objects)
    errors.extend(problems)
    if errors:
        raise ConfigErrors(errors)
    return config


def check_objects(
    objects: Sequence[tuple[Object, Source | None]],
) -> tuple[Config, list[ConfigError]]:
    """Parsed objects -> a Config, with every problem between them (names defined
    twice, references to what does not exist); a source of None says "not from a file"."""
    errors: list[ConfigError] = []
    config = _assemble(objects, errors)
    errors.extend(check_references(config))
    return config, errors


def _yaml_files(paths: list[Path], errors: list[ConfigError]) -> list[Path]:
    if not paths:
        errors.append(ConfigError(None, None, None, None, "no config path given"))
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(
                child
                for child in path.iterdir()
                if child.suffix in YAML_SUFFIXES
                and not child.name.startswith(".")  # editors' swap files, ConfigMap internals
                and child.is_file()
            )
            if not found:
                errors.append(ConfigError(path, None, None, None, "no .yaml files in directory"))
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            errors.append(ConfigError(path, None, None, None, "no such file or directory"))
    return files


def _load_file(
    file: Path,
    errors: list[ConfigError],
    cache: ParsedFiles | None = None,
    seen: dict[Path, _Parsed] | None = None,
) -> list[tuple[Object, Source | None]]:
    """The objects in `file` (from `cache` if its text is unchanged), its problems
    into `errors`, and what it parsed into, for the cache, into `seen`."""
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        errors.append(ConfigError(file, None, None, None, f"cannot read: {error}"))
        return []
    parsed = cache.get(file, text) if cache is not None else None
    if parsed is None:
        problems: list[ConfigError] = []
        objects = _parse_text(file, text, problems)
        parsed = _Parsed(text, tuple(objects), tuple(problems))
    if seen is not None:
        seen[file] = parsed
    errors.extend(parsed.errors)
    return list(parsed.objects)


def _parse_text(
    file: Path, text: str, errors: list[ConfigError]
) -> list[tuple[Object, Source | None]]:
    loaded: list[tuple[Object, Source | None]] = []
    problems: list[ConfigError] = []
    try:
        try:
            _parse_documents(file, text, _FAST_LOADER, loaded, problems)
        except yaml.YAMLError:
            # libyaml words syntax errors more tersely than PyYAML ("did not find expected
            # ',' or ']'" where PyYAML adds "but got ':'"): parse the broken file again in
            # pure Python, so users read the same message either way. Only a broken file
            # pays for the second pass, and only one of a size people write by hand.
            if len(text) > _REPARSE_LIMIT:
                raise
            loaded, problems = [], []
            _parse_documents(file, text, yaml.SafeLoader, loaded, problems)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = int(mark.line) + 1 if mark is not None else None
        problem = getattr(error, "problem", None) or str(error)
        problems.append(ConfigError(file, line, None, None, f"invalid YAML: {problem}"))
    except RecursionError:  # PyYAML recurses per nesting level
        loaded, problems = [], [ConfigError(file, None, None, None, "YAML nests too deeply")]
    errors.extend(problems)
    return loaded


# libyaml's parser (C) builds the very same node tree, marks (lines) included, about ten
# times faster than PyYAML's pure-Python one: with thousands of objects, parsing was
# most of a reload. PyYAML without libyaml falls back to the Python parser.
_REPARSE_LIMIT = 1 << 20
_FAST_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _parse_documents(
    file: Path,
    text: str,
    loader_class: type[yaml.SafeLoader],
    loaded: list[tuple[Object, Source | None]],
    errors: list[ConfigError],
) -> None:
    """Every document of `file` into `loaded` (schema errors into `errors`); a YAML
    syntax error is raised, with the documents before it already in `loaded`."""
    loader = loader_class(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            data = loader.construct_document(node)
            source = Source(file=file, line=int(node.start_mark.line) + 1, lines=node_lines(node))
            parsed = parse_object(data, source, errors)
            if parsed is not None:
                loaded.append((parsed, source))
    finally:
        loader.dispose()


def parse_object(data: Any, source: Source | None, errors: list[ConfigError]) -> Object | None:
    """One parsed document -> its checked object, or None with the reasons in `errors`."""

    def error(location: Sequence[str | int], message: str, ref: str | None = None) -> None:
        field_path = format_field_path(location) or None
        file, line = (source.file, source.line_of(location)) if source else (None, None)
        errors.append(ConfigError(file, line, ref, field_path, message))

    if data is None:  # an empty document, e.g. a trailing `---`
        return None
    if not isinstance(data, dict):
        error([], "each YAML document must be a mapping with apiVersion, kind, metadata, spec")
        return None
    kind = data.get("kind")
    name = data.get("metadata", {}).get("name") if isinstance(data.get("metadata"), dict) else None
    ref = f"{kind}/{name}" if isinstance(kind, str) and isinstance(name, str) else None
    if data.get("apiVersion") != API_VERSION:
        error(["apiVersion"], f"must be {API_VERSION!r}, got {data.get('apiVersion')!r}", ref)
        return None
    model = KINDS.get(kind) if isinstance(kind, str) else None
    if model is None:
        error(["kind"], f"unknown kind {kind!r}; expected one of {', '.join(sorted(KINDS))}", ref)
        return None
    try:
        return model.model_validate(data)
    except ValidationError as validation:
        for detail in validation.errors(include_url=False):
            error(_as_written(detail["loc"], data), _friendly(detail), ref)
        return None


def _as_written(location: Sequence[str | int], data: Any) -> list[str | int]:
    """Pydantic's error location as the user wrote it.

    For a union picked by `type` (a Gateway's spec, a router), pydantic inserts the
    chosen tag into the location ("spec.router.orchestrator.timeout"); the YAML has
    no such key, so it is dropped.
    """
    written: list[str | int] = []
    node = data
    parts = list(location)
    for index, part in enumerate(parts):
        following = parts[index + 1] if index + 1 < len(parts) else None
        is_tag = (
            isinstance(node, dict)
            and part not in node
            and (node.get("type") == part or ("type" not in node and following is not None))
        )
        if is_tag:
            continue
        written.append(part)
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            node = None
    return written


def _friendly(detail: Any) -> str:
    """Pydantic's messages, minus its jargon."""
    kind, message = detail["type"], str(detail["msg"])
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return "unknown field"
    return message.removeprefix("Value error, ")


def _assemble(objects: Sequence[tuple[Object, Source | None]], errors: list[ConfigError]) -> Config:
    agents: dict[str, Agent] = {}
    gateways: dict[str, Gateway] = {}
    providers: dict[str, LLMProvider] = {}
    sources: dict[str, Source] = {}
    buckets: dict[type[Object], dict[str, Any]] = {
        Agent: agents,
        Gateway: gateways,
        LLMProvider: providers,
    }
    for obj, source in objects:
        bucket = buckets[type(obj)]
        if obj.name in bucket:
            first = sources.get(obj.ref)
            errors.append(
                ConfigError(
                    source.file if source else None,
                    source.line_of(["metadata", "name"]) if source else None,
                    obj.ref,
                    "metadata.name",
                    f"defined twice; first at {first.file}:{first.line}"
                    if first
                    else "defined twice",
                )
            )
            continue
        bucket[obj.name] = obj
        if source is not None:
            sources[obj.ref] = source
    return Config(agents=agents, gateways=gateways, providers=providers, sources=sources)

"""Reading a grid file safely, and every problem phrased for the person who has to fix it.

The text is read with a size limit, parsed by PyYAML's safe loader (plain values only, never an
object), refused when it nests too deep or expands to too many nodes (alias bombs), checked for
duplicate keys (PyYAML keeps the last silently), and pydantic's validation errors become
`Problem`s: file, line, dotted field path, what was given and what is allowed.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from ablate.config.methods import METHOD_SPECS

MAX_GRID_FILE_BYTES = 1_000_000  # a real grid file is a few hundred bytes; refuse anything absurd
MAX_YAML_NODES = 20_000  # alias bombs expand to millions of nodes; a Figure 5 grid with 10 seeds has ~60
# Fields that moved, so that an older grid file gets told where (one line each).
MOVED = {"train.temperature": "the temperature is the method's setting now, e.g. method: {name: simclr, temperature: 0.5}"}
MAX_YAML_DEPTH = 32  # a grid file nests 4 deep; thousands of levels would exhaust the recursion of the validator


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one input, phrased for the person who has to fix it."""

    source: str
    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class GridError(Exception):
    """Raised with every problem found in a grid file; the CLI prints them and exits with status 2."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


# ----------------------------------------------------------------------------------------- reading


def read_grid_text(path: Path) -> str:
    """The file's text, or a GridError that says why it cannot be read."""
    source = str(path)
    try:
        if not path.exists():
            raise GridError([Problem(source, "", "no such file")])
        if not path.is_file():
            raise GridError([Problem(source, "", "not a regular file")])
        size = path.stat().st_size
        if size > MAX_GRID_FILE_BYTES:
            raise GridError([Problem(source, "", f"file is {size} bytes; a grid file may have at most {MAX_GRID_FILE_BYTES}")])
        with path.open("rb") as handle:  # read at most the limit: the file may grow (or be a pipe) meanwhile
            raw = handle.read(MAX_GRID_FILE_BYTES + 1)
    except OSError as err:
        raise GridError([Problem(source, "", f"cannot be read ({err.strerror or err})")]) from None
    if len(raw) > MAX_GRID_FILE_BYTES:
        raise GridError([Problem(source, "", f"file has more than {MAX_GRID_FILE_BYTES} bytes, the most a grid file may have")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise GridError([Problem(source, "", f"not UTF-8 text (byte {err.start} is {raw[err.start]:#04x})")]) from None
    return text.removeprefix("\ufeff")  # a byte-order mark some editors write


def _walk(node: yaml.Node, budget: int) -> Iterator[tuple[yaml.Node, int]]:
    """(node, depth) for every node of the tree, aliases followed at every use, at most `budget` + 1 of them."""
    stack = [(node, 1)]
    seen = 0
    while stack and seen <= budget:
        current, depth = stack.pop()
        seen += 1
        yield current, depth
        if isinstance(current, yaml.SequenceNode):
            stack.extend((child, depth + 1) for child in reversed(current.value))
        elif isinstance(current, yaml.MappingNode):
            for key, value in reversed(current.value):
                stack.extend(((value, depth + 1), (key, depth + 1)))


def _too_big(node: yaml.Node, text: str, source: str) -> Problem | None:
    """Refuse, without constructing anything, a tree that expands to too many nodes or nests too deep."""
    count = 0
    for current, depth in _walk(node, MAX_YAML_NODES):
        count += 1
        if depth > MAX_YAML_DEPTH:
            why = " (an alias that contains itself?)" if "*" in text else ""
            return Problem(source, "", f"nested more than {MAX_YAML_DEPTH} levels deep{why}; a grid file needs about 4",
                           current.start_mark.line + 1)
    if count > MAX_YAML_NODES:
        why = "alias bomb? each alias counts at every use" if "*" in text else "far larger than any grid"
        return Problem(source, "", f"document expands to more than {MAX_YAML_NODES} nodes ({why})")
    return None


MERGE_TAG = "tag:yaml.org,2002:merge"
COMPOSER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: same nodes, 10x faster


def duplicate_keys(node: yaml.Node, source: str) -> list[Problem]:
    """Keys given twice in one mapping (PyYAML would silently keep the last one)."""
    problems = []
    done: set[int] = set()  # a mapping reached again through an alias is checked once
    for current, _ in _walk(node, MAX_YAML_NODES):
        if not isinstance(current, yaml.MappingNode) or id(current) in done:
            continue
        done.add(id(current))
        first_line: dict[tuple[str, str], int] = {}
        for key, _ in current.value:
            if not isinstance(key, yaml.ScalarNode) or key.tag == MERGE_TAG:
                continue
            line = key.start_mark.line + 1
            if (key.tag, key.value) in first_line:
                problems.append(Problem(source, _shorten(key.value), f"duplicate key (first given on line {first_line[key.tag, key.value]}); "
                                        "give each key once", line))
            else:
                first_line[key.tag, key.value] = line
    return problems


def _too_deep(source: str, line: int | None) -> GridError:
    return GridError([Problem(source, "", f"nested more than {MAX_YAML_DEPTH} levels deep; a grid file needs about 4", line)])


def _check_depth(text: str, source: str) -> None:
    """Refuse deep nesting while reading the event stream (flat, lazy), stopping at the first level too deep.

    PyYAML 6.0.4's scanner has a nesting limit of its own (1,000 levels) and, looking ahead inside
    a flow collection, can reach it before the parser has given us the 33rd start event; its error
    is worded by PyYAML and differs between versions, so it is reported in ablate's words here.
    """
    depth = 0
    try:
        for event in yaml.parse(text, Loader=COMPOSER):
            if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                depth += 1
                if depth > MAX_YAML_DEPTH:
                    raise _too_deep(source, event.start_mark.line + 1)
            elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                depth -= 1
    except yaml.MarkedYAMLError as err:
        if "nesting depth" not in (err.problem or ""):
            raise
        raise _too_deep(source, err.problem_mark.line + 1 if err.problem_mark else None) from None


def _compose(text: str, source: str) -> yaml.Node | None:
    """The YAML node tree (nothing constructed yet), or a GridError naming the line."""
    try:
        _check_depth(text, source)  # before composing: libyaml's composer recurses in C and would crash
        return yaml.compose(text, Loader=COMPOSER)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else None
        what = err.problem or str(err)
        raise GridError([Problem(source, "", f"broken YAML: {_one_line(what)}", line)]) from None
    except yaml.reader.ReaderError as err:  # a NUL byte or another control character
        line = text.count("\n", 0, err.position) + 1
        code = err.character if isinstance(err.character, int) else ord(err.character)
        raise GridError([Problem(source, "", f"not a text file: control character U+{code:04X} is not allowed in YAML", line)]) from None
    except (yaml.YAMLError, UnicodeError) as err:
        raise GridError([Problem(source, "", f"broken YAML: {_shorten(_one_line(str(err)), 200)}")]) from None
    except RecursionError:
        raise GridError([Problem(source, "", "nested too deeply to be a grid file")]) from None


def parse_yaml(text: str, source: str) -> tuple[Any, yaml.Node | None]:
    """safe_load the text (never constructs objects), refusing alias bombs; returns data and node tree."""
    node = _compose(text, source)
    if node is None:
        raise GridError([Problem(source, "", "file is empty; expected a mapping with at least 'name' and 'grid'")])
    too_big = _too_big(node, text, source)
    if too_big:
        raise GridError([too_big])
    duplicates = duplicate_keys(node, source)
    if duplicates:
        raise GridError(duplicates)
    try:
        # Build the data from the tree already checked (no second parse) with the safe constructor,
        # which knows only plain YAML types: a tag such as !!python/object is an error, never a call.
        return yaml.SafeLoader("").construct_document(node), node
    except yaml.YAMLError as err:  # tags such as !!python/object are refused here
        mark = getattr(err, "problem_mark", None)
        problem = getattr(err, "problem", None) or str(err)
        raise GridError([Problem(source, "", f"refused YAML: {_one_line(problem)}; grid files hold plain values only",
                                 mark.line + 1 if mark else None)]) from None
    except RecursionError:
        raise GridError([Problem(source, "", "nested too deeply to be a grid file")]) from None


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _shorten(text: str, limit: int = 80) -> str:
    """A value as shown in a message: one line, at most `limit` characters."""
    if not text.isprintable():  # control characters, newlines, lone surrogates: shown escaped
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def line_of(node: yaml.Node | None, path: tuple[Any, ...]) -> int | None:
    """1-based line of the value at path in the composed YAML tree, or of its nearest parent."""
    line = None
    current = node
    for key in path:
        if isinstance(current, yaml.MappingNode):
            match = [v for k, v in current.value if isinstance(k, yaml.ScalarNode) and k.value == str(key)]
            if not match:
                break
            current = match[0]
        elif isinstance(current, yaml.SequenceNode) and isinstance(key, int) and key < len(current.value):
            current = current.value[key]
        else:
            break
        line = current.start_mark.line + 1
    return line


# -------------------------------------------------------------------------------------- validation


def describe_error(error: dict[str, Any]) -> str:
    """Pydantic's error as one sentence: what was given and what is allowed."""
    given = error.get("input")
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "missing (required)"
    shown = _shorten(repr(given))
    if kind == "literal_error":
        return f"got {shown}; expected one of {error['ctx']['expected']}"
    if kind == "union_tag_invalid":  # a method name that no method has
        return f"got {_shorten(repr(error['ctx']['tag']))}; expected one of {_one_of(METHOD_SPECS)}"
    if kind == "union_tag_not_found":
        return f"got {shown}; a method is a name, or a mapping with a name: one of {_one_of(METHOD_SPECS)}"
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    return f"got {shown}; {message[0].lower() + message[1:]}"


def _one_of(names: Iterable[str]) -> str:
    """'a', 'b' or 'c': the way pydantic lists a Literal's values, so every 'expected one of' reads alike."""
    quoted = [repr(name) for name in names]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def known_fields(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Names allowed at loc (for 'did you mean' hints on unknown keys)."""
    current: Any = model
    for key in loc[:-1]:
        if key in METHOD_SPECS and not hasattr(current, "model_fields"):
            current = METHOD_SPECS[key]  # a member of the method union, named by the tag in the location
            continue
        field = getattr(current, "model_fields", {}).get(key)
        if field is None:
            return []
        current = field.annotation
    return list(getattr(current, "model_fields", {}))


def _without_method_tag(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """pydantic puts the chosen member's tag in the location ('method', 'simclr', 'temperature'); the file has none."""
    if len(loc) > 1 and loc[0] == "method" and loc[1] in METHOD_SPECS:
        return loc[:1] + loc[2:]
    return loc


def problems_from_validation(
    err: ValidationError, model: type[BaseModel], source: str, node: yaml.Node | None, prefix: tuple[Any, ...] = ()
) -> list[Problem]:
    problems = []
    for error in err.errors():
        message = describe_error(error)
        if error["type"] == "extra_forbidden":
            allowed = known_fields(model, tuple(error["loc"]))
            close = difflib.get_close_matches(str(error["loc"][-1]), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            moved = MOVED.get(dotted_path(tuple(error["loc"])))
            message = f"unknown key; it moved: {moved}" if moved else f"unknown key{hint}; allowed: {', '.join(allowed)}"
        full = prefix + _without_method_tag(tuple(error["loc"]))
        problems.append(Problem(source, dotted_path(full), message, line_of(node, full)))
    return problems


def dotted_path(parts: tuple[Any, ...]) -> str:
    """('grid', 'pair', 1) -> 'grid.pair[1]'; long or odd keys shortened so a message stays one line."""
    return ".".join(_shorten(str(part), 60) if not isinstance(part, int) else f"[{part}]" for part in parts).replace(".[", "[")

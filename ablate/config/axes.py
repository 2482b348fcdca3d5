"""Grid axes and --set overrides: which dotted paths may vary, and applying a value at a path.

Each axis is either ``pair`` (a list of operators, expanded by the planner into every ordered pair),
``seed``, ``method``, a section (a mapping merged into it) or the dotted path of any run-spec field
(``train.batch_size``, ``augment.color_strength``, ``method.temperature`` ...). Every value of every
axis is validated here, once, so that a typo costs a message and an exit status of 2 instead of a
night on the cluster.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from typing import Any

import yaml
from pydantic import ValidationError

from ablate.config.methods import DEFAULT_METHOD, method_fields, method_from_name
from ablate.config.reading import GridError, Problem, _compose, _shorten, _too_big, duplicate_keys, line_of, problems_from_validation
from ablate.config.specs import RunSpec

MAX_RUNS = 100_000


SECTIONS = ("dataset", "model", "train", "augment", "eval")


def run_spec_fields() -> list[str]:
    """Every dotted path that a grid axis (or --set) may name.

    A section name (e.g. `augment`) is an axis too: each of its values is a mapping merged into the
    section, so several fields change together (Table 1: strength 1 with and without blur).
    """
    paths = ["seed", "method", *SECTIONS]
    for section in SECTIONS:
        annotation = RunSpec.model_fields[section].annotation
        paths += [f"{section}.{name}" for name in annotation.model_fields]  # type: ignore[union-attr]
    return paths + [f"method.{name}" for name in method_fields()]


def _mapping_at(key: str, child: Any) -> dict[str, Any]:
    """The mapping to descend into at `key`; a method given by its bare name (or not at all) becomes its mapping."""
    if key == "method" and (child is None or isinstance(child, str)):
        return method_from_name(child or DEFAULT_METHOD)
    return child if isinstance(child, dict) else {}


def set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set data[a][b] = value for dotted 'a.b', creating mappings on the way.

    A mapping given for a mapping is merged into it (only the fields it names change). A method
    named by the one already there keeps its settings; another method replaces it, with its own
    defaults or the fields given (the settings of one method do not fit another).
    """
    *parents, leaf = dotted.split(".")
    current = data
    for key in parents:
        current[key] = _mapping_at(key, current.get(key))
        current = current[key]
    here = current.get(leaf)
    if leaf == "method" and not parents:
        here = _mapping_at("method", here)
        if isinstance(value, str) and value == here.get("name"):
            return  # the method it is already: its settings stay (a grid's `method: [simclr, supervised]`)
        if isinstance(value, dict) and value.get("name", here.get("name")) != here.get("name"):
            here = None
    if isinstance(value, dict) and isinstance(here, dict):
        current[leaf] = {**here, **value}
    else:
        current[leaf] = value


def check_axes(axes: dict[str, list[Any]], base: dict[str, Any], source: str, node: yaml.Node | None) -> list[Problem]:
    """Each axis names a real field, is non-empty, has no duplicates, and each value validates.

    `base` is the file's base spec, or the defaults when the base itself is invalid, so that the
    axes are checked (and their problems reported) in the same pass as the rest of the file.
    """
    problems: list[Problem] = []
    allowed = ["pair"] + run_spec_fields()
    for axis, values in axes.items():
        where = ("grid", axis)
        line = line_of(node, where)
        if axis not in allowed:
            close = difflib.get_close_matches(axis, allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(Problem(source, f"grid.{_shorten(axis, 60)}", f"unknown axis{hint}; {_allowed_axes(axis, allowed)}", line))
            continue
        if not values:
            problems.append(Problem(source, f"grid.{axis}", "empty axis; give at least one value", line))
            continue
        duplicates = _duplicate_values(values)
        if duplicates:
            shown = _shorten(", ".join(duplicates), 200)
            problems.append(Problem(source, f"grid.{axis}", f"duplicate values [{shown}]; each value must appear once", line))
        checked: set[str] = set()
        for index, value in enumerate(values):
            key = _canonical(value)
            if key in checked:
                continue  # a repeated value is reported once, above; validating it again would repeat its problems
            checked.add(key)
            trial = _deep_copy(base)
            if axis == "pair":
                set_path(trial, "augment.ops", [value])
            else:
                set_path(trial, axis, value)
            try:
                RunSpec.model_validate(trial)
            except ValidationError as err:
                for problem in problems_from_validation(err, RunSpec, source, None):
                    problems.append(Problem(source, f"grid.{axis}[{index}]", problem.message, line_of(node, where + (index,))))
    return problems


def _allowed_axes(axis: str, allowed: list[str]) -> str:
    """The axes allowed near the one given: the fields of its section, or the sections (one short line)."""
    section = axis.split(".", 1)[0]
    fields = [path.split(".", 1)[1] for path in allowed if path.startswith(section + ".")]
    if fields:
        return f"allowed in {section}: {', '.join(fields)}"
    sections = sorted({path.split(".", 1)[0] for path in allowed if "." in path})
    return f"allowed: pair, seed, method, or SECTION.FIELD with SECTION one of {', '.join(sections)}"


def _canonical(value: Any) -> str:
    """A text equal for equal YAML values (sets and other unhashable values included)."""
    return repr(value) if not isinstance(value, (dict, list, set, tuple)) else yaml.safe_dump(value, sort_keys=True)


def _duplicate_values(values: list[Any]) -> list[str]:
    """Each value given more than once, as shown to the user, in order of first appearance."""
    counts = Counter(_canonical(v) for v in values)
    shown: dict[str, str] = {}
    for value in values:
        key = _canonical(value)
        if counts[key] > 1 and key not in shown:
            shown[key] = _shorten(repr(value) if isinstance(value, str) else str(value), 60)
    return list(shown.values())


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data


FIELD_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def parse_override_value(text: str) -> Any:
    """A --set value read as YAML with the file's limits; text that is not plain YAML stays a string.

    Raises GridError for what no reading makes acceptable: an alias bomb, deep nesting, a duplicate key.
    """
    if not text.strip():
        return None
    try:
        node = _compose(text, "--set")
    except GridError:
        return text  # e.g. 'dataset.root=/data: 2': taken literally, validated as a string
    if node is None:
        return None
    problems = [p for p in [_too_big(node, text, "--set")] if p] or duplicate_keys(node, "--set")
    if problems:
        raise GridError(problems)
    try:
        return yaml.SafeLoader("").construct_document(node)
    except yaml.YAMLError:
        return text  # a tag such as !x: never constructed, kept as the literal string


def apply_overrides(raw: dict[str, Any], overrides: list[str], source: str) -> list[Problem]:
    """Apply --set PATH=VALUE (VALUE read as YAML). Setting a field that is also an axis replaces the axis."""
    problems = []
    for item in overrides:
        if "=" not in item:
            problems.append(Problem("--set", _shorten(item), "expected PATH=VALUE, e.g. train.epochs=1"))
            continue
        dotted, text = item.split("=", 1)
        dotted = dotted.strip()
        if not FIELD_PATH.fullmatch(dotted):
            problems.append(Problem("--set", _shorten(dotted) or "''", "not a dotted field path, e.g. train.epochs=1"))
            continue
        try:
            value = parse_override_value(text)
        except GridError as err:
            problems += [Problem("--set", dotted, p.message) for p in err.problems]
            continue
        if dotted.startswith("grid."):
            grid = raw.setdefault("grid", {})
            if isinstance(grid, dict):
                grid[dotted[len("grid."):]] = value
            continue
        set_path(raw, dotted, value)
        grid = raw.get("grid")
        if isinstance(grid, dict) and dotted in grid:
            del grid[dotted]
    return problems


def _from_override(problem: Problem, overridden: set[str]) -> bool:
    """True when the problem is about a path given with --set (or a parent or child of one)."""
    return any(problem.path == o or problem.path.startswith(o + ".") or problem.path.startswith(o + "[")
               or o.startswith(problem.path + ".") for o in overridden)

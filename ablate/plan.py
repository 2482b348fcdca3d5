"""Grid → run specs. The product of the axes, in file order; `pair` becomes every ordered pair.

A run's id is a short hash of the canonical JSON of its *resolved* spec (every default filled in),
so the same grid gives the same ids on any machine, and two grids that share a run share its id.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from ablate.config.base import id_data
from ablate.config import GridError, GridSpec, MAX_RUNS, Problem, RunSpec, _deep_copy, problems_from_validation, set_path

RUN_ID_LENGTH = 12  # 48 bits: a collision among 100k runs has probability ~2e-5


@dataclass(frozen=True)
class PlannedRun:
    run_id: str
    spec: RunSpec
    axes: dict[str, Any] = field(default_factory=dict)  # this run's value on each axis, for reports


# What json.dumps(data, sort_keys=True, separators=(",", ":")) uses, made once: json.dumps with
# options builds a new encoder per call, and a grid of 10,000 runs hashes 10,000 specs.
_CANONICAL_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


def canonical_json(spec: RunSpec) -> str:
    """The spec as the id sees it: every field, except those `ablate.config.base.id_data` leaves out."""
    return _CANONICAL_ENCODER.encode(id_data(spec, spec.model_dump(mode="json")))


def run_id_of(spec: RunSpec) -> str:
    return hashlib.sha256(canonical_json(spec).encode("utf-8")).hexdigest()[:RUN_ID_LENGTH]


def expand_pairs(operators: list[str]) -> list[tuple[str, str]]:
    """Every ordered pair (first, second) in the given order; (a, a) stands for `a` alone."""
    return [(first, second) for first in operators for second in operators]


def ops_of_pair(pair: tuple[str, str]) -> list[str]:
    first, second = pair
    return [first] if first == second else [first, second]


def axis_values(grid: GridSpec) -> dict[str, list[Any]]:
    values: dict[str, list[Any]] = {}
    for axis, given in grid.grid.items():
        values[axis] = expand_pairs(given) if axis == "pair" else list(given)
    return values


def run_data(base: dict[str, Any], chosen: dict[str, Any]) -> dict[str, Any]:
    """The spec data of one run: `base` with the run's value on each axis set; `base` is not changed.

    Only the mappings on the way to a field an axis sets are copied (set_path writes into them); the
    rest is shared with `base` and every other run, read-only: validation builds the spec's own
    objects from it. Copying the whole base for each of thousands of runs was a large share of planning.
    """
    data = dict(base)
    for axis, value in chosen.items():
        path = "augment.ops" if axis == "pair" else axis
        _copy_mappings_on(data, path)
        set_path(data, path, ops_of_pair(value) if axis == "pair" else _deep_copy(value))
    return data


def _copy_mappings_on(data: dict[str, Any], dotted: str) -> None:
    """Replace each mapping on the way to the field `dotted` names by a copy of it (the field's own value is
    replaced by set_path, never changed in place)."""
    current = data
    for key in dotted.split(".")[:-1]:
        child = current.get(key)
        if not isinstance(child, dict):
            return  # set_path makes new mappings from here on
        copy = dict(child)
        current[key] = copy
        current = copy


def plan_grid(grid: GridSpec) -> list[PlannedRun]:
    """Every run of the grid, in a stable order; identical specs (e.g. from --set) appear once."""
    axes = axis_values(grid)
    total = 1
    for values in axes.values():
        total *= len(values)
    if total > MAX_RUNS:
        raise GridError([Problem(grid.name, "grid", f"expands to {total} runs; at most {MAX_RUNS} are allowed")])
    base = grid.base_spec()
    runs: list[PlannedRun] = []
    seen: set[str] = set()
    problems: list[Problem] = []
    for combination in itertools.product(*axes.values()):
        chosen = dict(zip(axes.keys(), combination))
        data = run_data(base, chosen)
        try:
            spec = RunSpec.model_validate(data)
        except ValidationError as err:
            label = ", ".join(f"{k}={v}" for k, v in chosen.items())
            problems += [Problem(grid.name, f"run ({label}): {p.path}", p.message) for p in problems_from_validation(err, RunSpec, grid.name, None)]
            continue
        run_id = run_id_of(spec)
        if run_id not in seen:
            seen.add(run_id)
            runs.append(PlannedRun(run_id, spec, {k: list(v) if isinstance(v, tuple) else v for k, v in chosen.items()}))
    if problems:
        raise GridError(problems)
    return runs

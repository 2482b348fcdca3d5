"""Grid files and run specs: load a YAML grid, validate it strictly, report every problem at once.

specs.py holds the models (a run spec, a grid), methods.py each method's own settings, reading.py
the safe YAML reading and the problem reports, axes.py the axes and --set overrides. Nothing here
imports torch: a grid with a typo is refused before any heavy import.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from ablate.config.axes import MAX_RUNS, _deep_copy, _from_override, apply_overrides, check_axes, parse_override_value, run_spec_fields, set_path
from ablate.config.base import StrictModel
from ablate.config.methods import METHOD_SPECS, MethodSpec
from ablate.config.reading import (
    GridError,
    Problem,
    dotted_path,
    parse_yaml,
    problems_from_validation,
    read_grid_text,
)
from ablate.config.specs import (
    ARCHS,
    DATASETS,
    OPERATORS,
    OPTIMIZERS,
    AugmentSpec,
    DatasetSpec,
    EvalSpec,
    GridSpec,
    ModelSpec,
    RunSpec,
    SlurmSpec,
    TrainSpec,
)

__all__ = [
    "ARCHS", "DATASETS", "MAX_RUNS", "METHOD_SPECS", "OPERATORS", "OPTIMIZERS", "AugmentSpec", "DatasetSpec", "EvalSpec",
    "GridError", "GridSpec", "MethodSpec", "ModelSpec", "Problem", "RunSpec", "SlurmSpec", "StrictModel", "TrainSpec",
    "_deep_copy", "apply_overrides", "check_axes", "dotted_path", "load_grid", "parse_override_value", "parse_yaml",
    "problems_from_validation", "read_grid_text", "run_spec_fields", "set_path",
]


def load_grid(path: Path | str, overrides: list[str] | None = None) -> GridSpec:
    """Read, parse and validate a grid file; raise GridError listing every problem at once."""
    path = Path(path)
    source = str(path)
    data, node = parse_yaml(read_grid_text(path), source)
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise GridError([Problem(source, "", f"top level is a {kind}; expected a mapping with at least 'name' and 'grid'")])
    problems = apply_overrides(data, overrides or [], source)
    grid: GridSpec | None = None
    try:
        grid = GridSpec.model_validate(data)
    except ValidationError as err:
        problems += problems_from_validation(err, GridSpec, source, node)
    except RecursionError:
        problems.append(Problem(source, "", "nested too deeply to be a grid file"))
    if grid is not None:
        problems += check_axes(grid.grid, grid.base_spec(), source, node)
    else:
        axes = data.get("grid")
        if isinstance(axes, dict):  # check the axes even when the rest is broken: every problem in one pass
            lists = {str(k): v for k, v in axes.items() if isinstance(v, list)}
            problems += check_axes(lists, RunSpec().model_dump(mode="json"), source, node)
    overridden = {item.split("=", 1)[0].strip() for item in overrides or []}
    # A bad value given with --set is reported as such, not at the line of the file it replaced.
    problems = [Problem("--set", p.path, p.message) if p.source != "--set" and _from_override(p, overridden) else p
                for p in problems]
    if problems or grid is None:
        raise GridError(problems or [Problem(source, "", "not a valid grid file")])
    return grid

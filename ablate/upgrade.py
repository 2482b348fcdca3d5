"""Results written by an earlier ablate, adopted under this version's run ids.

A run id is the hash of the run's spec, and the spec's shape changed with result schema version 2
(`method: simclr` + `train.temperature` became `method: {name: simclr, temperature: ...}`), so every
run id changed with it. A completed run of an earlier version sits in a folder named by its old
id, where this version would not look and would train it again (and a report would then count it
twice). `ablate run` adopts such results first: a version-1 result whose spec, upgraded, is a run
of the plan moves to the folder of that run's new id (one `os.rename`, atomic on one file system)
and its result.json is rewritten in the current version (atomically). Nothing is adopted over a
folder that already exists, and a crash between the two steps leaves a folder that the next
`ablate run` finishes adopting.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from ablate.config import RunSpec
from ablate.plan import PlannedRun, run_id_of
from ablate.schema import ResultProblem, parse_result
from ablate.store import RESULT_FILE, grid_dir, write_result


@dataclass(frozen=True)
class Adoption:
    folder: Path  # where the earlier result is
    run_id: str  # the id of the planned run it is


def earlier_results(planned: list[PlannedRun], results_root: Path, grid: str) -> list[Adoption]:
    """The version-1 results of the grid's folder that are runs of the plan, each with its new id."""
    wanted = {run.run_id for run in planned}
    folder = grid_dir(results_root, grid)
    if not folder.is_dir():
        return []
    found = []
    for child in sorted(folder.iterdir()):
        if child.name in wanted and not _is_earlier(child / RESULT_FILE):
            continue  # a folder of the plan holding a current result (the common case): not read twice
        run_id = _new_id_of_earlier_result(child / RESULT_FILE)
        if run_id in wanted and (run_id == child.name or not (folder / run_id).exists()):
            found.append(Adoption(child, run_id))
    return found


def _is_earlier(path: Path) -> bool:
    """Whether a planned run's folder holds a version-1 result (left there by an interrupted adoption)."""
    try:
        with path.open("rb") as handle:
            return b'"schema_version"' not in handle.read()
    except OSError:
        return False


def _new_id_of_earlier_result(path: Path) -> str | None:
    """The run id, under this version, of a readable version-1 result; None for anything else."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict) or data.get("schema_version", 1) != 1:
        return None
    try:
        upgraded = parse_result(data)
        return run_id_of(RunSpec.model_validate(upgraded.spec))
    except (ResultProblem, ValidationError, TypeError):
        return None  # a spec no run of this version has: left where it is


def adopt(adoption: Adoption) -> Path:
    """Move the earlier result to its new id's folder and rewrite it in the current version."""
    target = adoption.folder.parent / adoption.run_id
    if adoption.folder != target:
        os.rename(adoption.folder, target)
    data = parse_result(json.loads((target / RESULT_FILE).read_text(encoding="utf-8"))).to_json_dict()
    return write_result(target, {**data, "run_id": adoption.run_id})

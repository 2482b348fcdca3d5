"""Results written by an earlier ablate, adopted under this version's run ids.

A run id is the hash of the run's spec, and the spec's shape changed with result schema version 2
(`method: simclr` + `train.temperature` became `method: {name: simclr, temperature: ...}`), so every
run id changed with it. A completed run of an earlier version sits in a folder named by its old
id, where this version would not look and would train it again (and a report would then count it
twice). `ablate run` adopts such results first: a version-1 result whose spec, upgraded, is a run
of the plan is rewritten in the current version under that run's new id (atomically, in its folder)
and its folder then moves to the new id (one `os.rename`, atomic on one file system). Nothing is
adopted over a folder that already exists, and a crash between the two steps leaves a rewritten
result in the old folder, which the next `ablate run` moves.
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
    """The earlier results of the grid's folder that are runs of the plan, each with its new id.

    Only folders that no planned run is named by are read (current results are read once, by
    `ablate.execute.run_states`): a version-1 result there, or a result already rewritten under its
    new id by an adoption that stopped before the rename.
    """
    wanted = {run.run_id for run in planned}
    folder = grid_dir(results_root, grid)
    if not folder.is_dir():
        return []
    found = []
    for child in sorted(folder.iterdir()):
        if child.name in wanted or not child.is_dir():
            continue
        run_id = _planned_id_of(child / RESULT_FILE)
        if run_id in wanted and not (folder / run_id).exists():
            found.append(Adoption(child, run_id))
    return found


def _planned_id_of(path: Path) -> str | None:
    """The run id, under this version, of the result in a folder of another name; None for anything else."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    if data.get("schema_version", 1) != 1:
        return data.get("run_id") if isinstance(data.get("run_id"), str) else None  # rewritten, not yet renamed
    try:
        upgraded = parse_result(data)
        return run_id_of(RunSpec.model_validate(upgraded.spec))
    except (ResultProblem, ValidationError, TypeError):
        return None  # a spec no run of this version has: left where it is


def adopt(adoption: Adoption) -> Path:
    """Rewrite the earlier result in the current version under its new id (atomically, in place),
    then move its folder to that id (one rename)."""
    path = adoption.folder / RESULT_FILE
    data = parse_result(json.loads(path.read_text(encoding="utf-8"))).to_json_dict()
    if data.get("run_id") != adoption.run_id:
        write_result(adoption.folder, {**data, "run_id": adoption.run_id})
    target = adoption.folder.parent / adoption.run_id
    os.rename(adoption.folder, target)
    return target / RESULT_FILE

"""Results on disk: one folder per run, one result.json per run, written atomically.

    results/<grid>/<run_id>/result.json     the outcome (completed or failed), never appended to
    results/<grid>/<run_id>/checkpoint.pt   training state while the run is under way

Every file that another process may read is written to a temporary file in the same folder and
then moved into place with os.replace, which is atomic on POSIX filesystems (NFS included): a
reader sees the old file or the new one, never half of one.

result.json has a typed schema (ablate.schema.Result): it is validated when written and when read,
and a file of an older schema version is read by upgrading it in memory.
"""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import tempfile
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel
from pydantic_core import from_json

from ablate.schema import NewerResult, Result, ResultProblem, parse_result, validate_result

if TYPE_CHECKING:  # pandas is imported where it is used: `ablate run` must start fast
    import pandas as pd

RESULT_FILE = "result.json"
RunState = Literal["completed", "failed", "pending", "corrupt"]


MIN_FREE_BYTES = 64 * 2**20  # below this a run would likely fail writing its checkpoint (ResNet-50 + LARS: ~200 MB)


class CorruptResult(Exception):
    """A result.json that exists but cannot be read as a result (truncated, edited, foreign).

    The message is one line: the file, then what is wrong (the field and the value, for a file that
    does not match the schema).
    """


class ResultTooNew(CorruptResult):
    """A result.json written by a newer ablate (a schema version this one does not know)."""


class StoreWriteError(OSError):
    """A file of the store could not be written (disk full, read-only, not a folder); nothing was replaced.

    An OSError, so code that catches OSError keeps working; its message names the file and the cause.
    """


class ResultsUnwritable(Exception):
    """The results folder cannot take results (checked before any training starts)."""


def grid_dir(results_root: Path, grid: str) -> Path:
    return Path(results_root) / grid


def run_dir(results_root: Path, grid: str, run_id: str) -> Path:
    return Path(results_root, grid, run_id)  # grid_dir(results_root, grid) / run_id, built in one step


def write_bytes_atomic(path: Path, payload: bytes) -> None:
    """Write payload to path so that no reader ever sees a partial file.

    On failure (disk full, read-only folder...) the temporary file is removed, a file already at
    `path` is left exactly as it was, and StoreWriteError says which file and why.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise _write_error(path, err) from err
    try:
        with os.fdopen(handle, "wb") as temp_file:
            temp_file.write(payload)
            temp_file.flush()
            os.fsync(temp_file.fileno())  # the data is on disk before the name points at it
        os.replace(temp_name, path)
    except BaseException as err:
        Path(temp_name).unlink(missing_ok=True)
        if isinstance(err, OSError) and not isinstance(err, StoreWriteError):
            raise _write_error(path, err) from err
        raise


def _write_error(path: Path, err: OSError) -> StoreWriteError:
    cause = err.strerror or str(err)
    if err.errno == errno.ENOSPC:
        cause += " (disk full: free some space, then rerun the same command; finished results are kept)"
    elif isinstance(err, (PermissionError, NotADirectoryError, FileExistsError)) or err.errno == errno.EROFS:
        cause += " (choose a writable folder with --results-dir)"
    return StoreWriteError(err.errno, f"cannot write {path}: {cause}", str(path))


def check_writable(
    results_root: Path, min_free_bytes: int = MIN_FREE_BYTES, what: str = "results folder", option: str = "--results-dir"
) -> None:
    """Raise ResultsUnwritable unless results_root is (or can become) a folder that takes files and has room.

    `what` and `option` name the folder and the command-line option that chooses it in the messages;
    report and preview output folders use the same check with min_free_bytes=0 (no space rule).

    Tried for real rather than judged from permission bits (root ignores them; read-only mounts and
    full disks only show on write): a probe file is written atomically in the folder, or in the
    nearest existing folder above it when it does not exist yet, read back and removed. Nothing is
    left behind, and no folder is created.
    """
    root = Path(results_root)
    existing = root
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ResultsUnwritable(f"{what} {root} cannot be created: {existing} is a file, not a folder; "
                                f"choose another with {option}")
    probe = existing / f".ablate-write-probe.{os.getpid()}"
    try:
        write_bytes_atomic(probe, b"ablate\n")
        if probe.read_bytes() != b"ablate\n":
            raise ResultsUnwritable(f"{what} {root}: a probe file did not read back as written")
    except OSError as err:
        raise ResultsUnwritable(f"{what} {root} is not writable: {err.strerror or err}") from None
    finally:
        try:
            probe.unlink(missing_ok=True)
        except OSError:
            pass
    free = shutil.disk_usage(existing).free
    if free < min_free_bytes:
        raise ResultsUnwritable(f"{what} {root} has only {free / 2**20:.1f} MiB free; runs need at least "
                                f"{min_free_bytes / 2**20:.0f} MiB for checkpoints and results. Free some space or "
                                f"choose another folder with {option}")


def remove_orphan_temps(directory: Path, names: tuple[str, ...]) -> int:
    """Delete temporary files that a killed writer of these files left behind; returns how many.

    Only for the holder of the run's lock: nobody else writes these files, so none is in use.
    """
    removed = 0
    for name in names:
        for orphan in Path(directory).glob(f".{name}.*.tmp"):
            orphan.unlink(missing_ok=True)
            removed += 1
    return removed


def write_json_atomic(path: Path, data: Any) -> None:
    write_bytes_atomic(path, (json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n").encode("utf-8"))


def write_result(directory: Path, result: Result | dict[str, Any]) -> Path:
    """Validate `result` against the schema and write it as directory/result.json, atomically.

    A dict is validated as a result of the current schema version (ResultProblem, a ValueError,
    names the bad field; nothing is written then). Only the fields that were given are written.
    """
    path = Path(directory) / RESULT_FILE
    try:
        model = validate_result(result)
    except ResultProblem as problem:
        raise ResultProblem(f"{path}: not written, not a valid result: {problem}") from None
    write_json_atomic(path, model.to_json_dict())
    return path


def read_result_model(directory: Path) -> Result | None:
    """The run's result as the current schema version, None when it has none yet; CorruptResult
    (ResultTooNew for a newer ablate's file) when the file is unreadable or not a valid result."""
    path = Path(directory) / RESULT_FILE
    try:
        payload = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise CorruptResult(f"{path}: cannot be read ({err})") from None
    data = parse_json(path, payload)
    try:
        return parse_result(data)
    except NewerResult as problem:
        raise ResultTooNew(f"{path}: {problem}") from None
    except ResultProblem as problem:
        raise CorruptResult(f"{path}: {problem}") from None


def parse_json(path: Path, payload: bytes) -> Any:
    """The JSON value a result file's bytes hold; CorruptResult, naming `path`, when they hold none.

    Parsed by pydantic-core's parser, which is faster than the json module (a report reads thousands
    of these files). It accepts no file that Python's json module, reading the text as UTF-8,
    would refuse, and gives the same values, in the same key order, for every file both accept.
    Whatever it refuses (a broken file, and the few valid ones it does not take: nesting deeper than
    its limit, a lone surrogate escape such as "\\ud800") is read again the json module's way,
    from the same bytes, so that a broken file gets that reading's one-line message.
    """
    try:
        return from_json(payload)
    except ValueError:
        pass
    try:
        text = io.TextIOWrapper(io.BytesIO(payload), encoding="utf-8").read()  # as Path.read_text decodes
    except UnicodeDecodeError as err:
        raise CorruptResult(f"{path}: cannot be read ({err})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise CorruptResult(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None


def read_result(directory: Path) -> dict[str, Any] | None:
    """read_result_model as the JSON object a current ablate would write (older versions upgraded)."""
    result = read_result_model(directory)
    return None if result is None else result.to_json_dict()


def run_state(directory: Path) -> RunState:
    """The run's state from its result file. A file written by a newer ablate is not "corrupt" here:
    ResultTooNew is raised, so that `ablate run` refuses (exit 2) instead of training the run again
    and replacing a result this version cannot read."""
    try:
        result = read_result_model(directory)
    except ResultTooNew:
        raise
    except CorruptResult:
        return "corrupt"
    return "pending" if result is None else result.status


def iter_results(results_root: Path, grid: str) -> list[dict[str, Any]]:
    """Every readable result of a grid (corrupt files are skipped here; `ablate status` names them)."""
    results = []
    folder = grid_dir(results_root, grid)
    if not folder.is_dir():
        return results
    with os.scandir(folder) as entries:  # each entry knows whether it is a folder: no stat per run
        children = sorted(entry.name for entry in entries if entry.is_dir())
    for name in children:
        try:
            result = read_result(folder / name)
        except CorruptResult:
            continue
        if result is not None:
            results.append(result)
    return results


def result_row(result: Result | dict[str, Any]) -> dict[str, Any]:
    """One flat row: identity, status, every spec field by dotted path, every metric and timing.

    `method` is the method's name whether the spec names it (older files, plans) or holds its
    settings ({"name": "simclr", "temperature": 0.5}); the other settings become method.<field>.
    Also takes the rows reports add for planned runs without a result (status "missing").
    """
    if isinstance(result, Result):
        result = result.to_json_dict()
    spec = result.get("spec") or {}
    ops = spec.get("augment", {}).get("ops", [])
    row: dict[str, Any] = {
        "run_id": result["run_id"],
        "grid": result.get("grid"),
        "status": result["status"],
        "ops": "+".join(ops),
        "first_op": ops[0] if ops else None,
        "second_op": ops[-1] if ops else None,
        "error": (result.get("error") or {}).get("message") if isinstance(result.get("error"), dict) else result.get("error"),
    }
    for key, value in flat_spec(spec).items():
        if key == "augment.ops":
            value = "+".join(value)
        row["method" if key == "method.name" else key] = value
    if spec:
        for key, value in added_field_defaults(row.get("method")):
            row.setdefault(key, value)
    for key, value in (result.get("metrics") or {}).items():
        row[key] = value
    for key, value in (result.get("timings") or {}).items():
        row[f"time.{key}"] = value
    provenance = result.get("provenance") or {}
    row["device"] = provenance.get("device")
    row["color"] = provenance.get("color")  # eager / compiled (ABLATE_COMPILE_COLOR); absent in older results
    row["processes"] = result.get("processes")  # training processes (ablate run --devices, SLURM tasks); absent: one
    return row


@cache
def added_field_defaults(method: Any) -> tuple[tuple[str, Any], ...]:
    """(dotted path, default) of every spec field added after result schema 2 (ablate.config.base.added_field)
    for a run of `method`: a result written before a field existed ran with its default, and shows it, so
    that older and newer results of one grid do not differ on a setting none of them changed."""
    from ablate.config import RunSpec
    from ablate.config.base import added_fields
    from ablate.config.methods import METHOD_SPECS

    defaults = RunSpec().model_dump(mode="json")
    added: dict[str, Any] = {}
    for section, info in RunSpec.model_fields.items():
        held = info.annotation if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel) else None
        if held is not None:
            added[section] = {name: defaults[section][name] for name in added_fields(held)}
    method_spec = METHOD_SPECS.get(method) if isinstance(method, str) else None
    if method_spec is not None:
        method_defaults = method_spec().model_dump(mode="json")
        added["method"] = {name: method_defaults[name] for name in added_fields(method_spec)}
    return tuple(flat_spec(added).items())


def flat_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """A spec as one level of dotted paths ({"train": {"lr": 1.0}} -> {"train.lr": 1.0}), lists kept whole.

    The keys come in the order pandas.json_normalize(spec, sep=".") gives its columns, because a
    report's column order (and so its facet order) follows them: first the top-level values that are
    not mappings (``seed``), then each mapping's entries, depth first, in the order they were
    written. A mapping with no entries gives no key. Plain Python, not json_normalize itself: that
    builds a one-row DataFrame per result, which took most of a report's time on a large grid.
    """
    flat = {key: value for key, value in spec.items() if not isinstance(value, dict)}
    nested = [(key, value) for key, value in spec.items() if isinstance(value, dict)]
    _flatten_into(flat, "", dict(nested))
    return flat


def _flatten_into(flat: dict[str, Any], prefix: str, mapping: dict[str, Any]) -> None:
    for key, value in mapping.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            _flatten_into(flat, path, value)
        else:
            flat[path] = value


def load_results(results_root: Path, grid: str) -> pd.DataFrame:
    """All results of a grid as a DataFrame, one row per run (completed and failed)."""
    import pandas as pd

    rows = [result_row(result) for result in iter_results(results_root, grid)]
    return pd.DataFrame(rows)

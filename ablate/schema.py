"""result.json as a typed schema: the one model that writes a run's result and reads it back.

Each run folder holds one result.json (ablate.store). `Result` is its shape; `parse_result` turns the
JSON object read from a file into a `Result`, upgrading files of an older schema version in memory,
and raises `ResultProblem` with one line naming the field that is wrong.

Versions (``schema_version``; a file without one is version 1):

    1  written before the schema existed: spec.method is a bare name ("simclr"), and SimCLR's
       temperature is spec.train.temperature
    2  spec.method is the method's settings, {"name": "simclr", "temperature": 0.5, ...}
       (ablate.config.methods); the file says schema_version 2

Older files are read by upgrading them (results of earlier runs stay usable and comparable); a file
of a newer version than this ablate knows is refused with a message that says to upgrade ablate.

What is typed and what is open, and why:
- `spec` is the run spec as a plain mapping: its shape belongs to ablate.config and changes with it
  (the version above records those changes); validating it against today's RunSpec would make every
  older result unreadable the day a spec field is renamed.
- `metrics`, `timings` and `curves` type the entries ablate writes today and accept further ones of
  the same kind (methods add their own metrics): numbers or null, lists of numbers for curves.
- The top level and `provenance` keep fields they do not know (notes added by other tools, such
  as the SLURM follower's); they are written back unchanged.

`python -m ablate.schema` prints the JSON Schema of the current version (docs/result.schema.json is
that output; a test checks that the two agree).
"""

from __future__ import annotations

import copy
import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, GetPydanticSchema, ValidationError, WithJsonSchema
from pydantic_core import core_schema

SCHEMA_VERSION = 2
SCHEMA_URI = "https://json-schema.org/draft/2020-12/schema"
MAX_SHOWN_INPUT = 60  # characters of a bad value quoted in a message


def _number_schema(_source: Any, _handler: Any) -> core_schema.CoreSchema:
    """A JSON number kept as written (an int stays an int); bools and strings are refused.

    A strict int-or-float union checked inside pydantic-core, with one error of its own ("number_type",
    as a Python validator raising it would give): no Python call per value, which matters for the
    curves, a hundred numbers or more per result, times every result a report reads.
    """
    return core_schema.union_schema([core_schema.int_schema(strict=True), core_schema.float_schema(strict=True)],
                                    custom_error_type="number_type", custom_error_message="Input should be a valid number")


Number = Annotated[float | int, GetPydanticSchema(_number_schema), WithJsonSchema({"type": "number"})]


class _Closed(BaseModel):
    """Parts that only ablate writes: every field is known, values are not coerced ("1.5" is no number)."""

    model_config = ConfigDict(strict=True, extra="forbid")


class _Open(BaseModel):
    """Parts that other code adds to: known fields typed, unknown ones kept."""

    model_config = ConfigDict(strict=True, extra="allow")


class Metrics(_Open):
    """Evaluation results (accuracies in percent) and speed; a method may add metrics of its own (numbers)."""

    __pydantic_extra__: dict[str, Number | None] = Field(init=False)

    linear_top1: float | None = None
    linear_top5: float | None = None
    linear_train_top1: float | None = None
    knn_top1: float | None = None
    label_fraction: float | None = None
    labelled_examples: int | None = None
    supervised_top1: float | None = None
    supervised_top5: float | None = None
    final_loss: float | None = None
    images_per_second: float | None = None
    encoder_gflops_per_view: float | None = None
    achieved_tflops: float | None = None
    mfu: float | None = None


class Timings(_Open):
    """Seconds spent per stage; `total` covers the whole run, failed ones included."""

    __pydantic_extra__: dict[str, Number | None] = Field(init=False)

    data: float | None = None
    train: float | None = None
    eval: float | None = None
    total: float | None = None


class Curves(_Open):
    """Per-epoch series: the loss and learning rate of every epoch (the lr of its last step), and the
    online kNN monitor's top-1 (%) on a fixed subset at the epochs it measured (`monitor_epochs`,
    counted from 1; absent when the monitor was off: ablate.evaluate.monitor)."""

    __pydantic_extra__: dict[str, list[Number]] = Field(init=False)

    epoch_loss: list[Number] | None = None
    lr: list[Number] | None = None
    monitor_epochs: list[int] | None = None
    monitor_knn_top1: list[Number] | None = None


class ErrorRecord(_Closed):
    """Why a run failed: the exception's type and message, and the end of its traceback."""

    type: str
    message: str
    traceback: str = ""


class FastPath(_Closed):
    """Which speed-ups the run used (they change its numbers slightly, as a different device would)."""

    bf16: bool
    channels_last: bool
    compile: bool


class SlurmRecord(_Closed):
    """The SLURM job of a run that the follower recorded as lost."""

    job_id: str | None = None
    state: str | None = None
    exit_code: str | None = None
    log: str | None = None


class CollapseRecord(_Closed):
    """The collapse diagnostic of a completed run (ablate.evaluate.collapse): the mean per-dimension std
    of the ℓ2-normalised embeddings of the test images, relative to 1/√d, and whether it is collapsed."""

    embedding_std: float
    embedding_dim: int
    std_ratio: float
    threshold: float
    collapsed: bool


class Provenance(_Open):
    """Where and with what the run ran; timestamps are ISO 8601 strings."""

    ablate_version: str | None = None
    git_commit: str | None = None
    torch_version: str | None = None
    kornia_version: str | None = None
    python_version: str | None = None
    device: str | None = None
    color: str | None = None  # eager, or compiled (ABLATE_COMPILE_COLOR)
    host: str | None = None
    slurm_job_id: str | None = None
    recorded_by: str | None = None
    start_time: str | None = None
    end_time: str | None = None


class Result(_Open):
    """One run's outcome, completed or failed: what result.json holds."""

    schema_version: Literal[2] = SCHEMA_VERSION
    run_id: str
    status: Literal["completed", "failed"]
    grid: str | None = None
    spec: dict[str, Any] = Field(default_factory=dict)
    axes: dict[str, Any] = Field(default_factory=dict)
    metrics: Metrics = Field(default_factory=Metrics)
    timings: Timings = Field(default_factory=Timings)
    curves: Curves | None = None
    error: ErrorRecord | None = None
    provenance: Provenance | None = None
    resumed_from_epoch: float | None = None
    processes: int | None = Field(None, ge=1)  # training processes, one per device; absent in older results: one
    fast_path: FastPath | None = None
    collapse: CollapseRecord | None = None  # absent in results written before the diagnostic existed
    log_tail: str | None = None
    slurm: SlurmRecord | None = None

    def to_json_dict(self) -> dict[str, Any]:
        """The JSON object to write: the fields that were given (absent metrics stay absent), always versioned."""
        return {**self.model_dump(mode="json", exclude_unset=True), "schema_version": self.schema_version}


class ResultProblem(ValueError):
    """A JSON object that is not a result this ablate can read; the message is one line, without the file name."""


class NewerResult(ResultProblem):
    """A result written by a newer ablate (a schema version above SCHEMA_VERSION)."""


def parse_result(data: Any) -> Result:
    """The result a JSON object describes, upgraded to the current version; ResultProblem when it is none."""
    if not isinstance(data, dict):
        raise ResultProblem(f"not an ablate result (a JSON object was expected, got {type(data).__name__})")
    version = data.get("schema_version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ResultProblem(f"schema_version: got {_shown(version)}; expected a whole number from 1 to {SCHEMA_VERSION}")
    if version > SCHEMA_VERSION:
        raise NewerResult(f"written by a newer ablate (schema_version {version}; this ablate reads up to "
                          f"{SCHEMA_VERSION}): upgrade ablate")
    if version == 1:
        data = upgrade_v1(data)
    return validate_result(data)


def validate_result(data: Result | dict[str, Any]) -> Result:
    """`data` as a Result of the current version (a dict without schema_version is taken as current)."""
    if isinstance(data, Result):
        return data
    try:
        return Result.model_validate(data)
    except ValidationError as err:
        raise ResultProblem(describe(err)) from None


def upgrade_v1(data: dict[str, Any]) -> dict[str, Any]:
    """A version-1 result in the shape of version 2 (a copy): spec.method becomes {"name": ...} and
    train.temperature, SimCLR's setting, moves into it; a bare error string becomes an error record.

    Tolerant of files already partly in the new shape (the SLURM follower wrote method mappings
    without a version).
    """
    upgraded = copy.deepcopy(data)
    upgraded["schema_version"] = 2
    spec = upgraded.get("spec")
    if isinstance(spec, dict) and "method" in spec:
        method = spec["method"]
        if isinstance(method, str):
            method = spec["method"] = {"name": method}
        train = spec.get("train")
        if isinstance(train, dict) and "temperature" in train:
            temperature = train.pop("temperature")
            if isinstance(method, dict) and method.get("name") == "simclr":
                method.setdefault("temperature", temperature)
    if isinstance(upgraded.get("error"), str):
        upgraded["error"] = {"type": "Error", "message": upgraded["error"], "traceback": ""}
    return upgraded


def describe(err: ValidationError) -> str:
    """One line: the first problem's field, the value found and what was expected (and how many more)."""
    problems = err.errors(include_url=False)
    first = problems[0]
    where = _location(first["loc"])
    expected = first["msg"][:1].lower() + first["msg"][1:]
    if first["type"] == "missing":
        text = f"{where}: missing"
    elif first["type"] == "extra_forbidden":
        text = f"{where}: not a field of a result"
    else:
        text = f"{where}: got {_shown(first['input'])}; {expected}"
    if len(problems) > 1:
        text += f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})"
    return text


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(the whole result)"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= MAX_SHOWN_INPUT else text[: MAX_SHOWN_INPUT - 3] + "..."


def json_schema() -> dict[str, Any]:
    """The JSON Schema of result.json at the current version."""
    schema = Result.model_json_schema()
    schema["$schema"] = SCHEMA_URI
    schema["description"] = (f"One ablate run's result.json, schema_version {SCHEMA_VERSION} (a file without "
                             "schema_version is version 1; ablate reads it by upgrading it: see ablate/schema.py).")
    return schema


def json_schema_text() -> str:
    """What docs/result.schema.json holds."""
    return json.dumps(json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    print(json_schema_text(), end="")

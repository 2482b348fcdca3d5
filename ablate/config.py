"""Grid files and run specs: load a YAML grid, validate it strictly, report every problem at once.

A grid file holds one *base* run spec (dataset, model, method, train, augment, eval) and a ``grid:``
mapping of axes. Each axis is either ``pair`` (a list of operators, expanded by the planner into
every ordered pair), ``seed``, or the dotted path of any run-spec field (``train.batch_size``,
``augment.color_strength``, ``method`` ...). Validation happens here, once, so that a typo costs a
message and an exit status of 2 instead of a night on the cluster.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from dataclasses import dataclass
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

# The vocabulary of grid files. The implementations live in ablate.augment / data / models /
# methods; tests check that each name here has an implementation there.
OPERATORS: tuple[str, ...] = ("crop", "cutout", "color", "sobel", "noise", "blur", "rotate", "autoaugment")
Operator = Literal["crop", "cutout", "color", "sobel", "noise", "blur", "rotate", "autoaugment"]
DatasetName = Literal["shapes", "cifar10", "cifar100", "stl10", "folder"]
Arch = Literal["small_cnn", "resnet18", "resnet34", "resnet50"]
Method = Literal["simclr", "supervised"]
OptimizerName = Literal["lars", "sgd", "adamw"]

GRID_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")  # \Z, not $: no trailing newline
MAX_GRID_FILE_BYTES = 1_000_000  # a real grid file is a few hundred bytes; refuse anything absurd
MAX_YAML_NODES = 20_000  # alias bombs expand to millions of nodes; a Figure 5 grid with 10 seeds has ~60
MAX_YAML_DEPTH = 32  # a grid file nests 4 deep; thousands of levels would exhaust the recursion of the validator
MAX_RUNS = 100_000


class StrictModel(BaseModel):
    """Unknown keys are refused: a misspelt field must never be silently ignored."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


class DatasetSpec(StrictModel):
    name: DatasetName = "shapes"
    root: str | None = Field(None, description="folder of the files; default $ABLATE_DATA/<name> or ./data/<name>")
    train_size: int | None = Field(None, ge=10, le=10_000_000, description="images used for training (None: all)")
    test_size: int | None = Field(None, ge=10, le=10_000_000, description="images used for evaluation (None: all)")
    image_size: int = Field(32, ge=8, le=512, description="side in pixels after resizing")
    pretrain_split: Literal["train", "unlabeled", "train+unlabeled"] = Field(
        "train", description="STL-10: which images SimCLR pre-trains on"
    )
    seed: int = Field(0, ge=0, description="seed of the dataset itself (generation, subsets), not of the run")


class ModelSpec(StrictModel):
    arch: Arch = "small_cnn"
    width: int = Field(1, ge=1, le=8, description="width multiplier (the paper's model-size axis: 1, 2, 4)")
    stem: Literal["auto", "cifar", "imagenet"] = Field(
        "auto", description="auto: CIFAR stem (3x3 stride-1 conv, no max-pool) up to 64 px, ImageNet stem above"
    )
    proj_dim: int = Field(128, ge=2, le=8192, description="output of the 2-layer projection head")
    proj_hidden: int | None = Field(None, ge=2, le=65536, description="hidden width of the head (None: feature dim)")


class TrainSpec(StrictModel):
    epochs: int = Field(10, ge=1, le=10_000)
    batch_size: int = Field(256, ge=2, le=65536)
    lr: float = Field(0.5, gt=0, le=100, description="base learning rate per 256 images: lr = lr x batch / 256")
    temperature: float = Field(0.5, gt=0, le=100, description="NT-Xent temperature (0.5 on CIFAR in the paper)")
    optimizer: OptimizerName = "lars"
    weight_decay: float = Field(1e-6, ge=0, le=1)
    momentum: float = Field(0.9, ge=0, lt=1)
    warmup_epochs: float = Field(1.0, ge=0, le=10_000, description="linear warm-up, then cosine decay to zero; a warm-up longer than training covers all of it")
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description="auto: bf16 autocast on CUDA, fp32 on CPU")
    compile: Literal["auto", "on", "off"] = Field("auto", description="torch.compile: auto = on CUDA only")
    checkpoint_minutes: float = Field(5.0, gt=0, le=10_000, description="also checkpoint at every epoch end")



class AugmentSpec(StrictModel):
    protocol: Literal["one_branch", "both_branches"] = Field(
        "both_branches",
        description="one_branch: paper 3.1 (shared random crop, ops on one view only); "
        "both_branches: ordinary SimCLR (ops drawn independently on both views)",
    )
    ops: list[Operator] = Field(default_factory=lambda: ["crop", "color"], max_length=8)
    color_strength: float = Field(1.0, gt=0, le=8, description="s of the paper's colour distortion (Table 1)")
    # Options of the operators (ablate.augment). Pairs are [low, high]; defaults are the paper's.
    base_crop: bool = Field(True, description="one_branch: crop+resize every image once, shared by both views (3.1)")
    base_crop_scale: tuple[float, float] = Field(
        (0.08, 1.0), description="one_branch base crop: area fraction range, within (0, 1]; milder, e.g. [0.5, 1], for tiny images"
    )
    crop_scale: tuple[float, float] = Field((0.08, 1.0), description="crop: area fraction range, within (0, 1]")
    crop_ratio: tuple[float, float] = Field((3 / 4, 4 / 3), description="crop: aspect ratio (w/h) range, log-uniform, within [0.1, 10]")
    flip_p: float = Field(0.5, ge=0, le=1, description="crop (and base crop): probability of a horizontal flip")
    color_p: float = Field(0.8, ge=0, le=1, description="color: probability of the jitter (brightness, contrast, saturation, hue)")
    grayscale_p: float = Field(0.2, ge=0, le=1, description="color: probability of grayscale, independent of the jitter")
    blur_sigma: tuple[float, float] = Field((0.1, 2.0), description="blur: gaussian sigma range in pixels, within [0.01, 50]")
    blur_p: float = Field(0.5, ge=0, le=1, description="blur: probability of blurring an image")
    noise_std: float = Field(0.1, gt=0, le=1, description="noise: std of additive gaussian noise on the [0, 1] scale")
    cutout_scale: tuple[float, float] = Field((0.02, 0.33), description="cutout: erased area fraction range, within (0, 1]")
    cutout_ratio: tuple[float, float] = Field((0.3, 3.3), description="cutout: erased aspect ratio range, log-uniform, within [0.1, 10]")
    cutout_fill: Literal["zero", "mean"] = Field("zero", description="cutout: fill with 0 (random erasing) or the image mean")
    autoaugment_policy: Literal["imagenet", "cifar10"] = Field("imagenet", description="autoaugment: policy of Cubuk et al.")

    @field_validator("ops")
    @classmethod
    def _ops_not_empty(cls, ops: list[str]) -> list[str]:
        if not ops:
            raise ValueError("ops must name at least one operator")
        return ops

    @field_validator("base_crop_scale", "crop_scale", "cutout_scale")
    @classmethod
    def _fraction_range(cls, pair: tuple[float, float]) -> tuple[float, float]:
        return cls._checked_range(pair, 0.0, 1.0, low_open=True)

    @field_validator("crop_ratio", "cutout_ratio")
    @classmethod
    def _ratio_range(cls, pair: tuple[float, float]) -> tuple[float, float]:
        return cls._checked_range(pair, 0.1, 10.0)

    @field_validator("blur_sigma")
    @classmethod
    def _sigma_range(cls, pair: tuple[float, float]) -> tuple[float, float]:
        return cls._checked_range(pair, 0.01, 50.0)

    @staticmethod
    def _checked_range(pair: tuple[float, float], lowest: float, highest: float, low_open: bool = False) -> tuple[float, float]:
        """A [low, high] pair inside [lowest, highest] (or (lowest, highest]) with low <= high, else a clear error."""
        low, high = pair
        bracket = "(" if low_open else "["
        below = low <= lowest if low_open else low < lowest
        if below or high > highest:
            raise ValueError(f"expected inside {bracket}{lowest}, {highest}], got [{low}, {high}]")
        if low > high:
            raise ValueError(f"expected [low, high] with low <= high, got [{low}, {high}]")
        return pair


class EvalSpec(StrictModel):
    linear_epochs: int = Field(100, ge=1, le=10_000, description="epochs of the linear probe on frozen features")
    linear_lr: float = Field(0.01, gt=0, le=100, description="Adam learning rate of the linear probe")
    linear_batch_size: int = Field(512, ge=2, le=1_000_000)
    label_fraction: float = Field(1.0, gt=0, le=1, description="fraction of labels for the probe (0.01, 0.1: paper)")
    knn_k: int = Field(200, ge=1, le=10_000)
    knn_temperature: float = Field(0.1, gt=0, le=100)


class SlurmSpec(StrictModel):
    """The grid file's `slurm:` section: how runs are submitted (not part of a run's spec or id).

    Each field maps to one submitit parameter (`ablate.execute.slurm.executor_parameters`); a field
    left unset is not requested, so the cluster's default applies.
    """

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    gpus_per_node: int | None = Field(
        None, ge=0, le=64, description="GPUs per job; None: 1 where the partition has GPUs (sinfo's GRES), else none"
    )
    cpus_per_task: int | None = Field(None, ge=1, le=1024, description="None: the cluster's default (usually 1)")
    mem_gb: float | None = Field(None, gt=0, le=100_000)
    time_min: int = Field(120, ge=1, le=100_000, description="time limit per job, minutes")
    array_parallelism: int = Field(64, ge=1, le=100_000, description="most tasks of one array running at once")
    constraint: str | None = None
    additional_parameters: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="extra sbatch options, e.g. {exclude: node7}; true: a bare flag"
    )
    max_requeues: int = Field(
        3, ge=0, le=1000,
        description="requeues after a time-out signal (submitit's max_num_timeout); in jobs of at most 10 minutes "
        "submitit counts every signal, preemption included, as a time-out (submitit issue #1656)",
    )


class RunSpec(StrictModel):
    """Everything that decides the numbers of one run; its canonical JSON hashes to the run id."""

    dataset: DatasetSpec = Field(default_factory=DatasetSpec)
    model: ModelSpec = Field(default_factory=ModelSpec)
    method: Method = "simclr"
    train: TrainSpec = Field(default_factory=TrainSpec)
    augment: AugmentSpec = Field(default_factory=AugmentSpec)
    eval: EvalSpec = Field(default_factory=EvalSpec)
    seed: int = Field(0, ge=0, le=2**31 - 1)


class GridSpec(RunSpec):
    """A grid file: a base run spec (the inherited fields), its name, SLURM settings and its axes."""

    name: str
    slurm: SlurmSpec = Field(default_factory=SlurmSpec)
    grid: dict[str, list[Any]] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        if not GRID_NAME_PATTERN.match(name) or ".." in name:
            raise ValueError(
                f"grid name {name!r} is not a plain name: use letters, digits, '_', '-', '.' "
                "(no path separators, no '..', at most 64 characters)"
            )
        return name

    def base_spec(self) -> dict[str, Any]:
        """The run-spec fields of the file, before any axis is applied (JSON-ready)."""
        data = self.model_dump(mode="json")
        return {key: data[key] for key in RunSpec.model_fields}


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
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    return f"got {shown}; {message[0].lower() + message[1:]}"


def known_fields(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Names allowed at loc (for 'did you mean' hints on unknown keys)."""
    current: Any = model
    for key in loc[:-1]:
        field = getattr(current, "model_fields", {}).get(key)
        if field is None:
            return []
        current = field.annotation
    return list(getattr(current, "model_fields", {}))


def problems_from_validation(
    err: ValidationError, model: type[BaseModel], source: str, node: yaml.Node | None, prefix: tuple[Any, ...] = ()
) -> list[Problem]:
    problems = []
    for error in err.errors():
        loc = tuple(error["loc"])
        message = describe_error(error)
        if error["type"] == "extra_forbidden":
            allowed = known_fields(model, loc)
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            message = f"unknown key{hint}; allowed: {', '.join(allowed)}"
        full = prefix + loc
        problems.append(Problem(source, dotted_path(full), message, line_of(node, full)))
    return problems


def dotted_path(parts: tuple[Any, ...]) -> str:
    """('grid', 'pair', 1) -> 'grid.pair[1]'; long or odd keys shortened so a message stays one line."""
    return ".".join(_shorten(str(part), 60) if not isinstance(part, int) else f"[{part}]" for part in parts).replace(".[", "[")


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
    return paths


def set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set data[a][b] = value for dotted 'a.b', creating mappings on the way.

    A mapping given for a mapping is merged into it (only the fields it names change).
    """
    *parents, leaf = dotted.split(".")
    current = data
    for key in parents:
        child = current.get(key)
        if not isinstance(child, dict):
            child = {}
            current[key] = child
        current = child
    if isinstance(value, dict) and isinstance(current.get(leaf), dict):
        current[leaf] = {**current[leaf], **value}
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

"""The run and grid specs: pydantic models, strict (unknown keys refused), with the paper's defaults.

A grid file holds one *base* run spec (dataset, model, method, train, augment, eval) and a ``grid:``
mapping of axes (see `ablate.config.axes`). The names a grid may use for operators, datasets,
architectures and methods are written once, here and in `ablate.config.methods`; tests check them
against the registries of the implementations (ablate.augment, ablate.data, ablate.models,
ablate.methods), which would import torch, and validating a grid file must not.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from ablate.config.base import StrictModel, added_field, not_in_id
from ablate.config.methods import DEFAULT_METHOD, MethodChoice, method_from_name

OPERATORS: tuple[str, ...] = ("crop", "cutout", "color", "sobel", "noise", "blur", "rotate", "autoaugment")
DATASETS: tuple[str, ...] = ("shapes", "cifar10", "cifar100", "stl10", "folder", "imagenette", "tiny-imagenet", "imagenet")
IN_MEMORY_ONLY: tuple[str, ...] = ("shapes", "cifar10", "cifar100", "stl10")  # arrays, not image files: nothing to stream
ARCHS: tuple[str, ...] = ("small_cnn", "resnet18", "resnet34", "resnet50")
OPTIMIZERS: tuple[str, ...] = ("lars", "sgd", "adamw")
Operator = Literal[OPERATORS]  # type: ignore[valid-type]  # Literal of a tuple: the same names, written once
DatasetName = Literal[DATASETS]  # type: ignore[valid-type]
Arch = Literal[ARCHS]  # type: ignore[valid-type]
OptimizerName = Literal[OPTIMIZERS]  # type: ignore[valid-type]

GRID_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")  # \Z, not $: no trailing newline


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
    download: bool = not_in_id(
        False, description="fetch the dataset into its root when its files are missing (never without asking)"
    )
    stream: bool | Literal["auto"] = added_field(
        "auto", description="read and decode image files off the training loop instead of holding the set in "
        "memory; auto: stream an image folder whose decoded size is above the memory budget"
    )

    @field_validator("stream")
    @classmethod
    def _streams_files_only(cls, stream: bool | str, info: ValidationInfo) -> bool | str:
        name = info.data.get("name")
        if stream is True and name in IN_MEMORY_ONLY:
            raise ValueError(f"dataset {name!r} is held in memory, it cannot stream; stream: true is for image folders")
        return stream


class ModelSpec(StrictModel):
    arch: Arch = "small_cnn"
    width: int = Field(1, ge=1, le=8, description="width multiplier (the paper's model-size axis: 1, 2, 4)")
    stem: Literal["auto", "cifar", "imagenet"] = Field(
        "auto", description="auto: CIFAR stem (3x3 stride-1 conv, no max-pool) up to 64 px, ImageNet stem above"
    )
    head: Literal["none", "linear", "mlp"] = added_field(
        "mlp", description="SimCLR's projection head g between h and the loss (Figure 8): none (z = h), "
        "linear (one layer), mlp (two layers, ReLU between: the paper's)"
    )
    proj_dim: int = Field(128, ge=2, le=8192, description="output size of the projection head (Figure 8: 32 ... 2048)")
    proj_hidden: int | None = Field(None, ge=2, le=65536, description="hidden width of the head (None: feature dim)")


class TrainSpec(StrictModel):
    epochs: int = Field(10, ge=1, le=10_000)
    batch_size: int = Field(256, ge=2, le=65536)
    lr: float = Field(0.5, gt=0, le=100, description="base learning rate per 256 images: lr = lr x batch / 256")
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


TRANSFORM_PROBES: tuple[str, ...] = ("color", "rotation", "noise", "sobel")
TransformProbe = Literal[TRANSFORM_PROBES]  # type: ignore[valid-type]


class FinetuneSpec(StrictModel):
    """Fine-tuning the whole pre-trained encoder with a linear head on a fraction of the labels
    (paper Table 7, Appendix B.5): SGD with Nesterov momentum, no weight decay, crop + flip only."""

    fractions: list[float] = Field(
        default_factory=list, max_length=8, description="label fractions, each in (0, 1], e.g. [0.01, 0.1, 1.0]; empty: no fine-tuning"
    )
    epochs: list[int] | None = Field(
        None, description="epochs per fraction (same length); None: the paper's (B.5: 60 for 1 %, 30 for 10 %): "
        "60 up to 1 %, 30 above (100 %, where the paper says nothing, included)"
    )
    lr: float = Field(0.05, gt=0, le=100, description="learning rate per 256 images (paper: 0.05 x batch / 256)")
    momentum: float = Field(0.9, ge=0, lt=1, description="Nesterov momentum")
    batch_size: int = Field(4096, ge=2, le=65536, description="paper: 4096; capped at the labelled subset's size")
    scratch: bool = Field(True, description="also train the same network from scratch on the same subset (the supervised baseline)")

    @field_validator("fractions")
    @classmethod
    def _fractions_in_range(cls, fractions: list[float]) -> list[float]:
        outside = [fraction for fraction in fractions if not 0 < fraction <= 1]
        if outside:
            raise ValueError(f"expected label fractions inside (0, 1], got {outside}")
        if len(set(fractions)) != len(fractions):
            raise ValueError(f"expected each label fraction once, got {fractions}")
        return fractions

    @field_validator("epochs")
    @classmethod
    def _epochs_per_fraction(cls, epochs: list[int] | None, info: ValidationInfo) -> list[int] | None:
        fractions = info.data.get("fractions")  # absent when the fractions themselves were refused
        if epochs is None or fractions is None:
            return epochs
        if len(epochs) != len(fractions):
            raise ValueError(f"expected one epoch count per fraction ({len(fractions)}), got {len(epochs)}: {epochs}")
        if any(not 1 <= count <= 10_000 for count in epochs):
            raise ValueError(f"expected epochs inside [1, 10000], got {epochs}")
        return epochs


class TransferTarget(StrictModel):
    """A dataset the pre-trained encoder is evaluated on (paper Table 8, Appendix B.8)."""

    label: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9_]{0,31}\z", description="names its metrics: transfer_<label>_...")
    dataset: DatasetSpec
    linear: bool = Field(True, description="a linear probe on the frozen encoder's features")
    finetune: bool = Field(False, description="fine-tune the whole encoder on all of the target's labels")
    finetune_epochs: int | None = added_field(
        None, ge=1, le=10_000, description="epochs of that fine-tuning; None: eval.finetune's for 100 % of the labels (30)"
    )


class EvalSpec(StrictModel):
    linear_epochs: int = Field(100, ge=1, le=10_000, description="epochs of the linear probe on frozen features")
    linear_lr: float = Field(0.01, gt=0, le=100, description="Adam learning rate of the linear probe")
    linear_batch_size: int = Field(512, ge=2, le=1_000_000)
    label_fraction: float = Field(1.0, gt=0, le=1, description="fraction of labels for the probe (0.01, 0.1: paper)")
    knn_k: int = Field(200, ge=1, le=10_000)
    knn_temperature: float = Field(0.1, gt=0, le=100)
    representation: Literal["h", "z"] = added_field(
        "h", description="what the linear probe and kNN read: h = f(x), the encoder's output, or z = g(h), the head's (Figure 8)"
    )
    linear: Literal["features", "paper"] = added_field(
        "features", description="features: Adam on pre-computed, un-augmented features (fast); paper: SGD with "
        "Nesterov momentum on random crop + flip views through the frozen encoder (Appendix B.6)"
    )
    linear_paper_epochs: int = added_field(
        90, ge=1, le=10_000, description="eval.linear paper: passes over the labelled training images (B.6: 90)"
    )
    transform_probes: list[TransformProbe] = added_field(
        default_factory=list, description="Table 3: linear probes on h and z that predict which transformation was applied"
    )
    finetune: FinetuneSpec = added_field(default_factory=FinetuneSpec)
    transfer: list[TransferTarget] = added_field(default_factory=list, max_length=16)

    @field_validator("transfer")
    @classmethod
    def _distinct_labels(cls, targets: list[TransferTarget]) -> list[TransferTarget]:
        labels = [target.label for target in targets]
        repeated = sorted({label for label in labels if labels.count(label) > 1})
        if repeated:
            raise ValueError(f"transfer targets' labels must differ (they name the metrics); repeated: {', '.join(repeated)}")
        return targets


class SlurmSpec(StrictModel):
    """The grid file's `slurm:` section: how runs are submitted (not part of a run's spec or id).

    Each field maps to one submitit parameter (`ablate.execute.slurm.submit.executor_parameters`); a field
    left unset is not requested, so the cluster's default applies.
    """

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    gpus_per_node: int | None = Field(
        None, ge=0, le=64, description="GPUs per node, one task (training process) each: a run trains on nodes × "
        "gpus_per_node GPUs; None: 1 where the partition has GPUs (sinfo's GRES), else none"
    )
    nodes: int = Field(1, ge=1, le=4096, description="nodes per run; more than 1: one run across the nodes' tasks")
    tasks_per_node: int | None = Field(
        None, ge=1, le=256, description="training processes per node; None: one per GPU (gpus_per_node), 1 without GPUs "
        "(set it to train one run on several CPU processes)"
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
    method: MethodChoice = Field(default_factory=lambda: method_from_name(DEFAULT_METHOD))
    train: TrainSpec = Field(default_factory=TrainSpec)
    augment: AugmentSpec = Field(default_factory=AugmentSpec)
    eval: EvalSpec = Field(default_factory=EvalSpec)
    seed: int = Field(0, ge=0, le=2**31 - 1)

    @field_validator("method", mode="before")
    @classmethod
    def _bare_method_name(cls, value: Any) -> Any:
        return method_from_name(value)

    @field_validator("method")
    @classmethod
    def _head_is_simclrs(cls, method: Any, info: ValidationInfo) -> Any:
        """model.head chooses SimCLR's projection head (Figure 8); every other method builds its own
        projector from its own settings, so another head there would be silently ignored."""
        model = info.data.get("model")  # absent when the model section itself failed validation
        if model is not None and model.head != "mlp" and method.name != "simclr":
            raise ValueError(
                f"model.head {model.head!r} chooses SimCLR's projection head, which {method.name} does not use "
                "(its own heads come from its method settings): leave model.head at 'mlp' for it"
            )
        return method


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


"""Each method's own settings: one spec model per method, chosen by its ``name`` (a discriminated union).

A run spec's ``method`` is one of these models. In a grid file it is written either as a bare name
(``method: simclr``: that method with its defaults) or as a mapping (``method: {name: simclr,
temperature: 0.2}``); an axis may vary it (``method: [simclr, supervised]``) or one of its fields
(``method.temperature: [0.1, 0.5]``). The implementations live in ``ablate/methods/<name>.py``
(registry: `ablate.methods.METHODS`); these models live apart from them because validating a grid
file must not import torch (a test checks that the two lists of names agree).

A new method: its spec model here (``name`` a one-value Literal, ``label`` for reports, its fields
with the published defaults and their units), one line in `METHOD_SPECS`, its implementation file.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import Field, model_validator

from ablate.config.base import StrictModel, added_field


class MethodSpec(StrictModel):
    """What every method's settings have: its name, and how reports call it."""

    label: ClassVar[str]
    name: str


class SimCLRSpec(MethodSpec):
    """SimCLR (Chen et al., ICML 2020): NT-Xent between the projections of two views."""

    label: ClassVar[str] = "SimCLR"
    name: Literal["simclr"] = "simclr"
    temperature: float = Field(0.5, gt=0, le=100, description="NT-Xent temperature (0.5 on CIFAR in the paper, B.9)")
    loss: Literal["nt_xent", "nt_logistic", "margin_triplet"] = added_field(
        "nt_xent", description="the contrastive loss (Table 2, Table 4)"
    )
    semi_hard: bool = added_field(False, description="semi-hard negative mining (Table 4)")
    l2_normalize: bool = added_field(True, description="ℓ2-normalise the projections before the loss (Table 5)")
    margin: float = added_field(
        1.0, gt=0, le=100,
        description="margin_triplet's margin m, in units of u·v (cosine with ℓ2); the paper tuned m in {0, 0.4, 0.8, 1.6} (B.10)",
    )

    @model_validator(mode="after")
    def _margin_is_the_margin_losss(self) -> SimCLRSpec:
        """Only margin_triplet has a margin (Table 2): another loss would ignore it and make a new run id
        for the same run."""
        if self.loss != "margin_triplet" and self.margin != type(self).model_fields["margin"].default:
            raise ValueError(f"margin is margin_triplet's setting; loss {self.loss} has none: leave margin out of this run")
        return self


class MoCoV2Spec(MethodSpec):
    """MoCo v2 (Chen, Fan, Girshick, He, 2020): a momentum-updated key encoder, a queue of K negative
    keys, InfoNCE with a temperature, an MLP head. Defaults: solo-learn's CIFAR-10 recipe
    (scripts/pretrain/cifar/mocov2plus.yaml: 2048-d hidden, 256-d output, K = 32768, τ = 0.2,
    momentum 0.99 → 0.999 on a cosine; the paper's ImageNet setting is a fixed 0.999, K = 65536)."""

    label: ClassVar[str] = "MoCo v2"
    name: Literal["moco_v2"] = "moco_v2"
    temperature: float = Field(0.2, gt=0, le=100, description="InfoNCE temperature")
    queue_size: int = Field(32768, ge=1, le=10_000_000, description="K: negative keys kept from earlier batches")
    proj_hidden_dim: int = Field(2048, ge=2, le=65536, description="hidden width of the MLP head")
    proj_output_dim: int = Field(256, ge=2, le=65536, description="output size of the MLP head (the keys' size)")
    momentum_base: float = Field(0.99, ge=0, le=1, description="key-encoder EMA momentum at the first step")
    momentum_final: float = Field(0.999, ge=0, le=1, description="momentum at the last step (cosine from base)")


class BYOLSpec(MethodSpec):
    """BYOL (Grill et al., NeurIPS 2020): online encoder + projector + predictor regress an EMA target's
    projection (normalised MSE, both view orders). Defaults: solo-learn's CIFAR-10 recipe
    (scripts/pretrain/cifar/byol.yaml: projector 4096 → 256, predictor 4096, τ 0.99 → 1.0 on a cosine;
    the paper's ImageNet τ_base is 0.996)."""

    label: ClassVar[str] = "BYOL"
    name: Literal["byol"] = "byol"
    proj_hidden_dim: int = Field(4096, ge=2, le=65536, description="hidden width of the projector")
    proj_output_dim: int = Field(256, ge=2, le=65536, description="output size of the projector and predictor")
    pred_hidden_dim: int = Field(4096, ge=2, le=65536, description="hidden width of the predictor")
    momentum_base: float = Field(0.99, ge=0, le=1, description="target EMA momentum τ at the first step")
    momentum_final: float = Field(1.0, ge=0, le=1, description="τ at the last step (cosine from base, paper eq. 3.2)")


class SimSiamSpec(MethodSpec):
    """SimSiam (Chen & He, CVPR 2021): projector + predictor, stop-gradient, negative cosine, symmetrised.
    Defaults: solo-learn's CIFAR-10 recipe (scripts/pretrain/cifar/simsiam.yaml: projector 2048 → 2048,
    predictor hidden 512, as the paper's CIFAR variant). `predictor: false` and `stop_gradient: false`
    are the paper's collapse ablations (Table 1 / Figure 2: both collapse)."""

    label: ClassVar[str] = "SimSiam"
    name: Literal["simsiam"] = "simsiam"
    proj_hidden_dim: int = Field(2048, ge=2, le=65536, description="hidden width of the projector")
    proj_output_dim: int = Field(2048, ge=2, le=65536, description="output size of the projector")
    pred_hidden_dim: int = Field(512, ge=2, le=65536, description="bottleneck width of the predictor")
    predictor: bool = Field(True, description="false: compare projections directly (collapses, paper 4.2)")
    stop_gradient: bool = Field(True, description="false: gradients through both branches (collapses, paper 4.1)")


class BarlowTwinsSpec(MethodSpec):
    """Barlow Twins (Zbontar et al., ICML 2021): the cross-correlation of the batch-normalised projections
    of two views pushed to the identity; λ weighs the off-diagonal terms. Defaults: solo-learn's
    CIFAR-10 recipe (scripts/pretrain/cifar/barlow.yaml: projector 2048 → 2048, scale_loss 0.1, and its
    default λ = 0.0051, the paper's value)."""

    label: ClassVar[str] = "Barlow Twins"
    name: Literal["barlow_twins"] = "barlow_twins"
    proj_hidden_dim: int = Field(2048, ge=2, le=65536, description="hidden width of the projector")
    proj_output_dim: int = Field(2048, ge=2, le=65536, description="output size of the projector")
    off_diagonal_weight: float = Field(0.0051, ge=0, le=100, description="λ: weight of the redundancy-reduction terms")
    scale_loss: float = Field(0.1, gt=0, le=100, description="the loss is multiplied by this (solo-learn's CIFAR value)")


class VICRegSpec(MethodSpec):
    """VICReg (Bardes, Ponce, LeCun, ICLR 2022): invariance (MSE), variance (hinge on the std of each
    dimension) and covariance (off-diagonal covariance) terms on the two views' projections.
    Defaults: the paper's 25 / 25 / 1 and solo-learn's CIFAR-10 projector
    (scripts/pretrain/cifar/vicreg.yaml: 2048 → 2048)."""

    label: ClassVar[str] = "VICReg"
    name: Literal["vicreg"] = "vicreg"
    proj_hidden_dim: int = Field(2048, ge=2, le=65536, description="hidden width of the projector (expander)")
    proj_output_dim: int = Field(2048, ge=2, le=65536, description="output size of the projector")
    invariance_weight: float = Field(25.0, ge=0, le=1000, description="λ: weight of the MSE between the views")
    variance_weight: float = Field(25.0, ge=0, le=1000, description="μ: weight of the std hinge (target std 1)")
    covariance_weight: float = Field(1.0, ge=0, le=1000, description="ν: weight of the off-diagonal covariance")


class DINOSpec(MethodSpec):
    """DINO (Caron et al., ICCV 2021): a student matches an EMA teacher's centred, sharpened softmax over
    prototypes (cross-entropy, both view orders). Defaults: solo-learn's CIFAR-10 recipe
    (scripts/pretrain/cifar/dino.yaml: head 2048 → 256 → 4096 prototypes, teacher momentum 0.9995 → 1)
    and solo-learn's / the paper's temperatures (student 0.1; teacher 0.04 → 0.07 over a warm-up;
    centre momentum 0.9)."""

    label: ClassVar[str] = "DINO"
    name: Literal["dino"] = "dino"
    proj_hidden_dim: int = Field(2048, ge=2, le=65536, description="hidden width of the head's MLP")
    proj_output_dim: int = Field(256, ge=2, le=65536, description="bottleneck size before the prototypes")
    num_prototypes: int = Field(4096, ge=2, le=1_000_000, description="K: output size (prototypes)")
    student_temperature: float = Field(0.1, gt=0, le=100)
    teacher_temperature: float = Field(0.07, gt=0, le=100, description="after the warm-up")
    teacher_temperature_start: float = Field(0.04, gt=0, le=100, description="at the first step (linear warm-up)")
    teacher_warmup_fraction: float = Field(
        0.05, ge=0, le=1, description="share of the training steps of the teacher-temperature warm-up (solo-learn: 50 of 1000 epochs)"
    )
    center_momentum: float = Field(0.9, ge=0, lt=1, description="EMA momentum of the centre of the teacher's outputs")
    momentum_base: float = Field(0.9995, ge=0, le=1, description="teacher EMA momentum at the first step")
    momentum_final: float = Field(1.0, ge=0, le=1, description="at the last step (cosine from base)")


class SupervisedSpec(MethodSpec):
    """The supervised baseline of Table 1: the same encoder, a linear classifier, cross-entropy on labels."""

    label: ClassVar[str] = "Supervised"
    name: Literal["supervised"] = "supervised"


# The grid vocabulary of methods, in the order reports list them.
METHOD_SPECS: dict[str, type[MethodSpec]] = {
    "simclr": SimCLRSpec,
    "moco_v2": MoCoV2Spec,
    "byol": BYOLSpec,
    "simsiam": SimSiamSpec,
    "barlow_twins": BarlowTwinsSpec,
    "vicreg": VICRegSpec,
    "dino": DINOSpec,
    "supervised": SupervisedSpec,
}
DEFAULT_METHOD = "simclr"

# The union pydantic validates `method` against, derived from the registry above (so one line adds a method).
MethodChoice = Annotated[Union[tuple(METHOD_SPECS.values())], Field(discriminator="name")]  # type: ignore[valid-type]


def method_from_name(value: Any) -> Any:
    """A bare method name stands for that method with its defaults: 'simclr' -> {'name': 'simclr'}."""
    return {"name": value} if isinstance(value, str) else value


def method_fields() -> list[str]:
    """Every field any method has besides its name (the `method.FIELD` axes), in registry order."""
    fields: list[str] = []
    for spec in METHOD_SPECS.values():
        fields += [name for name in spec.model_fields if name != "name" and name not in fields]
    return fields

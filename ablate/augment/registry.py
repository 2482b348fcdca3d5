"""Operator names of grid files (ablate.config.OPERATORS) → operator classes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ablate.augment.autoaugment import AutoAugment
from ablate.augment.base import Operator
from ablate.augment.blur import Blur
from ablate.augment.color import Color
from ablate.augment.crop import Crop
from ablate.augment.cutout import Cutout
from ablate.augment.noise import Noise
from ablate.augment.rotate import Rotate
from ablate.augment.sobel import Sobel

if TYPE_CHECKING:  # pydantic is only needed to validate grid files, not to augment
    from ablate.config import AugmentSpec

OPERATOR_CLASSES: dict[str, type[Operator]] = {
    cls.name: cls for cls in (Crop, Cutout, Color, Sobel, Noise, Blur, Rotate, AutoAugment)
}


def build_operator(name: str, spec: AugmentSpec | None = None) -> Operator:
    """The operator ``name`` configured by ``spec`` (the defaults, i.e. the paper's settings, when None)."""
    if name not in OPERATOR_CLASSES:
        raise ValueError(f"unknown operator {name!r}; expected one of {', '.join(OPERATOR_CLASSES)}")
    if spec is None:
        from ablate.config import AugmentSpec  # noqa: PLC0415 - only here, so augmenting never needs pydantic

        spec = AugmentSpec()
    return OPERATOR_CLASSES[name].from_spec(spec)

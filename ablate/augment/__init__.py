"""Augmentation engine: the SimCLR paper's operators, batched on the images' device (Kornia kernels).

    from ablate.augment import ViewMaker, build_operator, OPERATOR_CLASSES
    maker = ViewMaker(spec.augment)
    view1, view2 = maker.pair(images, generator)   # uint8 or float [0, 1] B×3×H×W → float32 [0, 1]
    single = maker.single(images, generator)

Each operator samples its parameters (``sample``) apart from applying them (``apply``), so any
batch replays exactly from its parameters (``ViewMaker.sample_pair`` / ``apply_pair``).
"""

from ablate.augment.base import Operator, Params
from ablate.augment.registry import OPERATOR_CLASSES, build_operator
from ablate.augment.views import PairParams, ViewMaker, ViewParams

__all__ = ["OPERATOR_CLASSES", "Operator", "PairParams", "Params", "ViewMaker", "ViewParams", "build_operator"]

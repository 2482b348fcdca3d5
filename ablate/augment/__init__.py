"""Augmentation engine: the SimCLR paper's operators, per-image random, batched on the images' device.

    from ablate.augment import ViewMaker, build_operator, OPERATOR_CLASSES
    maker = ViewMaker(spec.augment)                 # ablate.config.AugmentSpec
    view1, view2 = maker.pair(images, generator)   # uint8 or float [0, 1] B×3×H×W → float32 [0, 1]
    single = maker.single(images, generator)       # one view (supervised baseline)
    params = maker.sample_pair(B, H, W, generator, device); maker.apply_pair(images, params)  # replay

One module per operator (crop, color, blur, cutout, sobel, noise, rotate, autoaugment); each
samples its parameters from the run's ``torch.Generator`` (``sample``) apart from applying them
(``apply``), so any batch replays exactly. views.py holds the two protocols (paper §3.1's
one_branch, ordinary both_branches).

Definitions follow the paper's official settings and torchvision's/Kornia's functions, and the
tests hold every operator to an independent reference (torchvision per image, Kornia) or a known answer.
Kornia's kernels are used as they are where they suit per-image parameters (AutoAugment's
operations, Sobel). On the hot path of every training step (crop, colour, blur) a few small
formulations of the same definitions replace Kornia's calls, because per-image random order and
parameters would otherwise cost about twice the tensor operations; each is tested against the
Kornia function it replaces. Evidence: benchmarks/bench_augment.py and benchmarks/results/augment-*.md.
ABLATE_COMPILE_COLOR=1 runs the colour distortion through torch.compile (compiled.py, opt-in).
Importing this package does not need pydantic (only ``ViewMaker(spec)`` takes a spec object).
"""

from ablate.augment.base import Operator, Params
from ablate.augment.registry import OPERATOR_CLASSES, build_operator
from ablate.augment.views import PairParams, ViewMaker, ViewParams

__all__ = ["OPERATOR_CLASSES", "Operator", "PairParams", "Params", "ViewMaker", "ViewParams", "build_operator"]

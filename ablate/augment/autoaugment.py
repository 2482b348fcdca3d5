"""``autoaugment``: the AutoAugment policies of Cubuk et al. (CVPR 2019), per sample, batched (Table 1, last column).

A policy is 25 sub-policies of two operations, each ``(operation, probability, magnitude bin)``.
Per image: one sub-policy uniformly, then each of its two operations with its probability, at the
bin's magnitude with a random sign for signed operations. Tables and magnitude scales as
torchvision's ``AutoAugmentPolicy.IMAGENET`` / ``CIFAR10`` list them (10 bins): shear 0..0.3,
translate 0..150/331 of the side, rotate 0..30°, brightness/color/contrast/sharpness factor
1 ± 0..0.9, posterize 8..4 bits, solarize threshold 1..0; fill 0 and nearest-neighbour
resampling, as torchvision's defaults.

Why not ``kornia.augmentation.auto.AutoAugment``: it draws ONE sub-policy per batch (every image in
a batch gets the same pair of operations), not one per image as the paper does. Here every image
draws its own; each operation then runs once on the images that drew it (Kornia kernels), and the
geometric ones (shear, translate, rotate) of a step are one batched ``warp_affine``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import kornia
import torch

from ablate.augment.base import Operator, Params, apply_to_subset

if TYPE_CHECKING:  # pydantic is only needed to validate grid files, not to augment
    from ablate.config import AugmentSpec

BINS = 10
# Operation index → name; magnitudes of index < len(SIGNED) take a random sign.
NAMES = (
    "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate",  # geometric (one warp)
    "Brightness", "Color", "Contrast", "Sharpness",  # factor 1 + magnitude
    "Posterize", "Solarize", "AutoContrast", "Equalize", "Invert",
)
GEOMETRIC = frozenset(range(5))
SIGNED = frozenset(range(9))

# (name, probability, bin) pairs of the 25 sub-policies (Cubuk et al. 2019, Appendix; torchvision's lists).
IMAGENET = (
    (("Posterize", 0.4, 8), ("Rotate", 0.6, 9)), (("Solarize", 0.6, 5), ("AutoContrast", 0.6, 0)),
    (("Equalize", 0.8, 0), ("Equalize", 0.6, 0)), (("Posterize", 0.6, 7), ("Posterize", 0.6, 6)),
    (("Equalize", 0.4, 0), ("Solarize", 0.2, 4)), (("Equalize", 0.4, 0), ("Rotate", 0.8, 8)),
    (("Solarize", 0.6, 3), ("Equalize", 0.6, 0)), (("Posterize", 0.8, 5), ("Equalize", 1.0, 0)),
    (("Rotate", 0.2, 3), ("Solarize", 0.6, 8)), (("Equalize", 0.6, 0), ("Posterize", 0.4, 6)),
    (("Rotate", 0.8, 8), ("Color", 0.4, 0)), (("Rotate", 0.4, 9), ("Equalize", 0.6, 0)),
    (("Equalize", 0.0, 0), ("Equalize", 0.8, 0)), (("Invert", 0.6, 0), ("Equalize", 1.0, 0)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)), (("Rotate", 0.8, 8), ("Color", 1.0, 2)),
    (("Color", 0.8, 8), ("Solarize", 0.8, 7)), (("Sharpness", 0.4, 7), ("Invert", 0.6, 0)),
    (("ShearX", 0.6, 5), ("Equalize", 1.0, 0)), (("Color", 0.4, 0), ("Equalize", 0.6, 0)),
    (("Equalize", 0.4, 0), ("Solarize", 0.2, 4)), (("Solarize", 0.6, 5), ("AutoContrast", 0.6, 0)),
    (("Invert", 0.6, 0), ("Equalize", 1.0, 0)), (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Equalize", 0.8, 0), ("Equalize", 0.6, 0)),
)
CIFAR10 = (
    (("Invert", 0.1, 0), ("Contrast", 0.2, 6)), (("Rotate", 0.7, 2), ("TranslateX", 0.3, 9)),
    (("Sharpness", 0.8, 1), ("Sharpness", 0.9, 3)), (("ShearY", 0.5, 8), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.5, 0), ("Equalize", 0.9, 0)), (("ShearY", 0.2, 7), ("Posterize", 0.3, 7)),
    (("Color", 0.4, 3), ("Brightness", 0.6, 7)), (("Sharpness", 0.3, 9), ("Brightness", 0.7, 9)),
    (("Equalize", 0.6, 0), ("Equalize", 0.5, 0)), (("Contrast", 0.6, 7), ("Sharpness", 0.6, 5)),
    (("Color", 0.7, 7), ("TranslateX", 0.5, 8)), (("Equalize", 0.3, 0), ("AutoContrast", 0.4, 0)),
    (("TranslateY", 0.4, 3), ("Sharpness", 0.2, 6)), (("Brightness", 0.9, 6), ("Color", 0.2, 8)),
    (("Solarize", 0.5, 2), ("Invert", 0.0, 0)), (("Equalize", 0.2, 0), ("AutoContrast", 0.6, 0)),
    (("Equalize", 0.2, 0), ("Equalize", 0.6, 0)), (("Color", 0.9, 9), ("Equalize", 0.6, 0)),
    (("AutoContrast", 0.8, 0), ("Solarize", 0.2, 8)), (("Brightness", 0.1, 3), ("Color", 0.7, 0)),
    (("Solarize", 0.4, 5), ("AutoContrast", 0.9, 0)), (("TranslateY", 0.9, 9), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.9, 0), ("Solarize", 0.8, 3)), (("Equalize", 0.8, 0), ("Invert", 0.1, 0)),
    (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, 0)),
)
POLICIES = {"imagenet": IMAGENET, "cifar10": CIFAR10}


def magnitude(name: str, bin_: int, height: int, width: int) -> float:
    """Unsigned magnitude of bin ``bin_`` (0..9) of an operation, on the [0, 1] image scale."""
    fraction = bin_ / (BINS - 1)
    if name in ("ShearX", "ShearY"):
        return 0.3 * fraction
    if name == "TranslateX":
        return 150 / 331 * width * fraction
    if name == "TranslateY":
        return 150 / 331 * height * fraction
    if name == "Rotate":
        return 30.0 * fraction
    if name in ("Brightness", "Color", "Contrast", "Sharpness"):
        return 0.9 * fraction
    if name == "Posterize":
        return float(8 - round(bin_ / ((BINS - 1) / 4)))  # bits kept: 8 (bin 0) .. 4 (bin 9)
    if name == "Solarize":
        return 1.0 - fraction  # threshold: 1 (nothing inverted) .. 0 (everything)
    return 0.0


class AutoAugment(Operator):
    """Per-image AutoAugment. Params: ``subpolicy`` B long, ``applied`` B×2 bool, ``sign`` B×2 (±1)."""

    name = "autoaugment"

    def __init__(self, policy: str = "imagenet") -> None:
        if policy not in POLICIES:
            raise ValueError(f"autoaugment policy: expected one of {', '.join(POLICIES)}, got {policy!r}")
        self.policy = policy
        table = POLICIES[policy]
        self._ops = torch.tensor([[NAMES.index(name) for name, _, _ in sub] for sub in table])  # 25×2
        self._probs = torch.tensor([[p for _, p, _ in sub] for sub in table])  # 25×2
        self._on_device: dict[tuple[torch.device, int, int], dict[str, torch.Tensor]] = {}

    def _tables(self, device: torch.device, height: int, width: int) -> dict[str, torch.Tensor]:
        """The policy's tables on `device` for images of this size, made once (not a host-to-device copy per batch)."""
        key = (torch.device(device), height, width)
        if key not in self._on_device:
            table = POLICIES[self.policy]
            self._on_device[key] = {
                "ops": self._ops.to(device),
                "probs": self._probs.to(device),
                "magnitudes": torch.tensor(
                    [[magnitude(name, b, height, width) for name, _, b in sub] for sub in table], device=device
                ),
                "signed": torch.tensor([k in SIGNED for k in range(len(NAMES))], device=device),
            }
        return self._on_device[key]

    @classmethod
    def from_spec(cls, spec: AugmentSpec) -> "AutoAugment":
        return cls(spec.autoaugment_policy)

    def sample(
        self, batch_size: int, height: int, width: int, generator: torch.Generator | None, device: torch.device
    ) -> Params:
        subpolicy = torch.randint(0, len(self._ops), (batch_size,), generator=generator, device=device)
        coins = torch.rand((batch_size, 2), generator=generator, device=device)
        signs = torch.rand((batch_size, 2), generator=generator, device=device) < 0.5
        return {
            "subpolicy": subpolicy,
            "applied": coins < self._tables(device, height, width)["probs"][subpolicy],
            "sign": 1.0 - 2.0 * signs.float(),
        }

    def apply(self, images: torch.Tensor, params: Params) -> torch.Tensor:
        height, width = images.shape[-2:]
        tables = self._tables(images.device, height, width)
        subpolicy = params["subpolicy"]
        ops = tables["ops"][subpolicy]  # B×2 operation index
        signed = tables["signed"][ops]
        values = tables["magnitudes"][subpolicy] * torch.where(signed, params["sign"], torch.ones_like(params["sign"]))
        out = images
        for step in range(2):
            out = self._step(out, ops[:, step], values[:, step], params["applied"][:, step])
        return out

    def _step(self, images: torch.Tensor, ops: torch.Tensor, values: torch.Tensor, applied: torch.Tensor) -> torch.Tensor:
        """One of the two steps: every operation on the images that drew it and passed its coin."""
        geometric = applied & (ops < len(GEOMETRIC))
        out = apply_to_subset(images, geometric, lambda x, idx: warp(x, ops[idx], values[idx]))
        for k in range(len(GEOMETRIC), len(NAMES)):
            out = apply_to_subset(out, applied & (ops == k), lambda x, idx, k=k: photometric(x, k, values[idx]))
        return out


def warp(images: torch.Tensor, ops: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Shear, translate or rotate (about the centre) per image, as torchvision.transforms.v2 defines them; one warp."""
    batch, _, height, width = images.shape
    matrix = torch.eye(3, device=images.device).repeat(batch, 1, 1)
    # Shear about the image's top-left corner, i.e. the pixel edge at -1/2 (torchvision's center=[0, 0]),
    # with torchvision's sign: ShearX m maps x to x - m (y + 1/2); ShearY likewise.
    shear_x = torch.where(ops == 0, values, 0.0)
    shear_y = torch.where(ops == 1, values, 0.0)
    matrix[:, 0, 1] = -shear_x
    matrix[:, 1, 0] = -shear_y
    matrix[:, 0, 2] = torch.where(ops == 2, values, 0.0) - 0.5 * shear_x  # TranslateX, pixels
    matrix[:, 1, 2] = torch.where(ops == 3, values, 0.0) - 0.5 * shear_y  # TranslateY, pixels
    # Rotation rows replace the whole 2×3 part; computed for every image and selected with where, not
    # behind an `any()` test or a boolean index, each of which would make the host wait for a GPU.
    rotate = ops == 4
    centre = torch.tensor([[(width - 1) / 2, (height - 1) / 2]], device=images.device).expand(batch, 2)
    rotation = kornia.geometry.transform.get_rotation_matrix2d(
        centre, torch.where(rotate, values, 0.0), torch.ones(batch, 2, device=images.device)
    )
    matrix[:, :2] = torch.where(rotate[:, None, None], rotation, matrix[:, :2])
    return kornia.geometry.transform.warp_affine(
        images, matrix[:, :2], (height, width), mode="nearest", padding_mode="zeros", align_corners=True
    )


def photometric(images: torch.Tensor, k: int, value: torch.Tensor) -> torch.Tensor:
    """Operation NAMES[k] with one value per image (Kornia's PIL-compatible kernels)."""
    name = NAMES[k]
    enhance = kornia.enhance
    if name == "Brightness":
        return enhance.adjust_brightness_accumulative(images, 1.0 + value)
    if name == "Color":
        return enhance.adjust_saturation_with_gray_subtraction(images, 1.0 + value)
    if name == "Contrast":
        return enhance.adjust_contrast_with_mean_subtraction(images, 1.0 + value)
    if name == "Sharpness":
        return enhance.sharpness(images, 1.0 + value).clamp(0.0, 1.0)
    if name == "Posterize":
        return enhance.posterize(images, value.round().to(torch.int64))
    if name == "Solarize":
        # torchvision inverts values >= threshold; kornia's solarize inverts where not (x < threshold): the same.
        return enhance.solarize(images, value)
    if name == "AutoContrast":
        return autocontrast(images)
    if name == "Equalize":
        return enhance.equalize(images)
    return enhance.invert(images)


def autocontrast(images: torch.Tensor) -> torch.Tensor:
    """Each channel stretched to [0, 1]; a flat channel is left as is (torchvision/PIL)."""
    low = images.amin(dim=(-2, -1), keepdim=True)
    high = images.amax(dim=(-2, -1), keepdim=True)
    # kornia.enhance.normalize_min_max's formula, without computing the minimum and maximum again;
    # flat channels divide by zero and are then not selected.
    stretched = (images - low) / (high - low)
    return torch.where(high > low, stretched, images).clamp(0.0, 1.0)


__all__ = ["AutoAugment", "CIFAR10", "IMAGENET", "NAMES", "POLICIES", "magnitude"]

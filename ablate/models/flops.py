"""Model FLOPs of a forward pass, and the accelerator peaks that turn them into a utilisation (MFU).

`count_flops` uses PyTorch's own ``torch.utils.flop_counter.FlopCounterMode``, which counts matrix
multiplications and convolutions (2 FLOPs per multiply-add) and nothing else — the usual "model
FLOPs" convention of MFU (Chowdhery et al., PaLM, 2022, Appendix B): normalisation, activations and
pooling are a rounding error next to the convolutions and are not what a GPU's tensor-core peak
measures. The model runs on the *meta* device with meta copies of its weights, so counting costs no
arithmetic and no memory, and leaves the model itself untouched. A training step costs about three
forward passes (forward, plus backward for activations and for weights).

`PEAK_FLOPS` holds dense (no structured sparsity) BF16 tensor-core peaks from the vendors' data
sheets; the data sheets print the sparse figure first, which is twice these.
"""

from __future__ import annotations

import re

import torch
from torch import nn
from torch.func import functional_call
from torch.utils.flop_counter import FlopCounterMode

# Dense BF16 tensor-core peak, FLOP/s, per device. Sources: NVIDIA H100 Tensor Core GPU datasheet
# (SXM 989 TF, PCIe 756 TF, NVL 835 TF); NVIDIA H200 datasheet (SXM 989 TF, NVL 835 TF); NVIDIA A100
# datasheet (312 TF, SXM and PCIe); NVIDIA L40S datasheet (362 TF); L40 (181 TF); L4 (121 TF); A10
# (125 TF); NVIDIA RTX A6000 datasheet (155 TF); Ada (RTX 4090, 165 TF with FP32 accumulate) and
# Ampere GA102 (RTX 3090, 71 TF) whitepapers; AMD Instinct MI300X datasheet (1307 TF).
# Order matters: the first key found in the device name wins, so specific names come first.
PEAK_FLOPS: dict[str, float] = {
    "H100 PCIe": 756e12,
    "H100 NVL": 835e12,
    "H200 NVL": 835e12,
    "GH200": 989e12,
    "H100": 989e12,  # SXM5 (e.g. "NVIDIA H100 80GB HBM3")
    "H200": 989e12,  # SXM
    "H800": 989e12,
    "A100": 312e12,
    "A800": 312e12,
    "L40S": 362e12,
    "L40": 181e12,
    "L4": 121e12,
    "A10": 125e12,
    "RTX A6000": 155e12,
    "RTX 4090": 165e12,
    "RTX 3090": 71e12,
    "MI300X": 1307e12,
}


def count_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """FLOPs (2 × multiply-adds of matmuls and convolutions) of one forward pass of one input.

    ``input_shape`` is the shape of one example without the batch dimension, e.g. ``(3, 32, 32)``.
    """
    meta = {name: torch.empty_like(t, device="meta") for name, t in _tensors(model).items()}
    example = torch.empty((1, *input_shape), device="meta")
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        functional_call(model, meta, (example,))
    return int(counter.get_total_flops())


def _tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    tensors = dict(model.named_parameters(remove_duplicate=False))
    tensors.update(model.named_buffers(remove_duplicate=False))
    return tensors


def peak_flops_for_name(name: str) -> float | None:
    """Dense BF16 peak of the device called `name` (as torch.cuda.get_device_name says), or None."""
    for key, flops in PEAK_FLOPS.items():
        # Whole-token match: "A10" must not match "A100", nor "L40" match "L40S".
        if re.search(rf"(?<![A-Za-z0-9]){re.escape(key)}(?![A-Za-z0-9])", name):
            return flops
    return None


def device_peak_flops(device: torch.device) -> float | None:
    """Dense BF16 peak FLOP/s of a CUDA (or ROCm) device; None on CPU, MPS or an unknown device."""
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    return peak_flops_for_name(torch.cuda.get_device_name(device))


def training_flops_per_second(flops_per_view: float, views_per_second: float) -> float:
    """Model FLOPs per second of training: forward + backward ≈ 3 × the forward pass, for every view."""
    return 3 * flops_per_view * views_per_second

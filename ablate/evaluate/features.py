"""Features of the frozen encoder, computed once in eval mode without gradients.

The images are a uint8 tensor, or a streamed folder's centre crops (`ablate.data.stream.CentreCrops`),
read in one pass by DataLoader workers: a streamed split is never held in memory whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import nullcontext
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from ablate.data.stream import CentreCrops


@torch.no_grad()
def extract_features(
    encoder: nn.Module,
    images_uint8: torch.Tensor | CentreCrops,
    device: torch.device,
    batch_size: int = 1024,
    bf16: bool = False,
    channels_last: bool = False,
) -> torch.Tensor:
    """h = f(x) for every image (no augmentation), as float32 on `device`.

    The encoder is put in eval mode (batch-norm running statistics, no updates) and restored after;
    no gradient is taken, so its weights and buffers are exactly as they were (a test checks this).
    `bf16` and `channels_last` are the CUDA fast path (the same settings training used).
    """
    was_training = encoder.training
    encoder.eval()
    device = torch.device(device)
    chunks = []
    try:
        for batch in uint8_batches(images_uint8, batch_size, device):
            batch = batch.to(device, non_blocking=True).float().div_(255)
            if channels_last:
                batch = batch.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext():
                chunks.append(encoder(batch).float())
    finally:
        encoder.train(was_training)
    return torch.cat(chunks)


def uint8_batches(images: torch.Tensor | CentreCrops, batch_size: int, device: torch.device) -> Iterator[torch.Tensor]:
    """The images in order, `batch_size` at a time: slices of a tensor, or a streamed folder's batches."""
    if isinstance(images, torch.Tensor):
        for start in range(0, images.shape[0], batch_size):
            yield images[start : start + batch_size]
    else:
        yield from images.batches(batch_size, pin_memory=device.type == "cuda")

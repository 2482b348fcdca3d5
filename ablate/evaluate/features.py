"""Features of the frozen encoder, computed once in eval mode without gradients."""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import nn


@torch.no_grad()
def extract_features(
    encoder: nn.Module,
    images_uint8: torch.Tensor,
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
        for start in range(0, images_uint8.shape[0], batch_size):
            batch = images_uint8[start : start + batch_size].to(device, non_blocking=True).float().div_(255)
            if channels_last:
                batch = batch.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext():
                chunks.append(encoder(batch).float())
    finally:
        encoder.train(was_training)
    return torch.cat(chunks)

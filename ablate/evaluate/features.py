"""Features of the frozen encoder, computed once in eval mode without gradients."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def extract_features(encoder: nn.Module, images_uint8: torch.Tensor, device: torch.device, batch_size: int = 1024) -> torch.Tensor:
    """h = f(x) for every image (no augmentation), as float32 on `device`.

    The encoder is put in eval mode (batch-norm running statistics, no updates) and restored after.
    """
    was_training = encoder.training
    encoder.eval()
    chunks = []
    for start in range(0, images_uint8.shape[0], batch_size):
        batch = images_uint8[start : start + batch_size].to(device, non_blocking=True).float().div_(255)
        chunks.append(encoder(batch).float())
    encoder.train(was_training)
    return torch.cat(chunks)

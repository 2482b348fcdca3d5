"""The collapse diagnostic (SimSiam paper §4.1): std of ℓ2-normalised embeddings per dimension, relative to 1/√d."""

import math

import pytest
import torch
from torch import nn

from ablate.evaluate.collapse import COLLAPSE_RATIO, collapse_record, embedding_std, method_embeddings


def test_identical_embeddings_have_zero_spread_and_are_flagged():
    record = collapse_record(torch.tensor([[3.0, -1.0, 2.0]]).repeat(50, 1))
    assert record["embedding_std"] == pytest.approx(0.0, abs=1e-12)
    assert record["std_ratio"] == pytest.approx(0.0, abs=1e-12)
    assert record["collapsed"] is True and record["embedding_dim"] == 3 and record["threshold"] == COLLAPSE_RATIO


def test_a_known_answer_by_hand():
    # Two samples in 2-d: e1 and −e1 (any scale: they are normalised first). Per dimension, the
    # unbiased std of (1, −1) is √2 and of (0, 0) is 0, so the mean is √2 / 2 and the ratio √2/2 · √2 = 1.
    record = collapse_record(torch.tensor([[5.0, 0.0], [-0.5, 0.0]]))
    assert record["embedding_std"] == pytest.approx(math.sqrt(2) / 2)
    assert record["std_ratio"] == pytest.approx(1.0)
    assert record["collapsed"] is False


@pytest.mark.parametrize("dim", [16, 128])
def test_isotropic_gaussians_sit_near_one_over_root_d(dim):
    # A standard normal vector normalised is uniform on the sphere: each coordinate has variance 1/d,
    # so the per-dimension std is 1/√d and the ratio 1 (sampling error ~1/√(2n) relative).
    samples = torch.randn(20_000, dim, generator=torch.Generator().manual_seed(0))
    assert embedding_std(samples) == pytest.approx(1 / math.sqrt(dim), rel=0.02)
    assert collapse_record(samples)["std_ratio"] == pytest.approx(1.0, rel=0.02)


def test_a_shared_offset_shrinks_the_ratio_below_the_threshold():
    # Outputs dominated by one common vector (a near-collapse): the spread left is the small noise.
    generator = torch.Generator().manual_seed(1)
    noise = torch.randn(1000, 32, generator=generator)
    common = torch.full((1, 32), 1.0)
    record = collapse_record(common * 100 + noise)
    # Normalising divides by ≈ 100·√32; what is left of each coordinate's spread is ≈ 1 / (100 √32).
    assert record["embedding_std"] == pytest.approx(1 / (100 * math.sqrt(32)), rel=0.05)
    assert record["collapsed"] is True


def test_one_sample_is_refused():
    with pytest.raises(ValueError, match="samples"):
        collapse_record(torch.ones(1, 4))


def test_method_embeddings_use_eval_mode_and_restore_the_mode():
    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = nn.BatchNorm1d(4)

        def embedding(self, features):
            return self.norm(features)

    head = Head().train()
    head.norm.running_mean.fill_(2.0)
    features = torch.full((6, 4), 2.0)
    out = method_embeddings(head, features, batch_size=4)  # two chunks
    # Eval mode: (2 − running mean 2) / √(1 + eps) = 0 everywhere; train mode would have normalised by the batch.
    assert torch.equal(out, torch.zeros(6, 4))
    assert head.training and torch.equal(head.norm.running_mean, torch.full((4,), 2.0))

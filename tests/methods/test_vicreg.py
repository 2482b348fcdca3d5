"""VICReg: each of the three terms against the paper's definitions (eq. 1-5) written with loops, their
known values, the weighted sum with the official branch conventions, gradients, and bit-exact resume."""

from __future__ import annotations

import math

import pytest
import torch

from ablate.augment import ViewMaker
from ablate.config import AugmentSpec, ModelSpec
from ablate.config.methods import VICRegSpec
from ablate.methods.base import MethodContext
from ablate.methods.vicreg import VICReg, covariance_term, invariance_term, variance_term, vicreg_loss, vicreg_terms
from ablate.models import build_encoder
from ablate.run import seed_everything

CPU = torch.device("cpu")
SMALL_HEAD = {"proj_hidden_dim": 64, "proj_output_dim": 16}


def column(z: torch.Tensor, j: int) -> list[float]:
    return [float(z[b, j]) for b in range(z.shape[0])]


def reference_invariance(z1, z2) -> float:
    """Mean over all N·d entries of the squared difference (Algorithm 1's mse_loss)."""
    n, d = z1.shape
    return sum((float(z1[b, j]) - float(z2[b, j])) ** 2 for b in range(n) for j in range(d)) / (n * d)


def reference_variance(z) -> float:
    """Eq. 1-2: (1/d) Σ_j max(0, 1 − √(Var(z_j) + 1e-4)), Var with N − 1."""
    n, d = z.shape
    total = 0.0
    for j in range(d):
        values = column(z, j)
        mean = sum(values) / n
        var = sum((v - mean) ** 2 for v in values) / (n - 1)
        total += max(0.0, 1.0 - math.sqrt(var + 1e-4))
    return total / d


def reference_covariance(z) -> float:
    """Eq. 3-4: C_ij = Σ_b (z_bi − z̄_i)(z_bj − z̄_j) / (N − 1); (1/d) Σ_{i≠j} C_ij²."""
    n, d = z.shape
    means = [sum(column(z, j)) / n for j in range(d)]
    total = 0.0
    for i in range(d):
        for j in range(d):
            if i != j:
                c = sum((float(z[b, i]) - means[i]) * (float(z[b, j]) - means[j]) for b in range(n)) / (n - 1)
                total += c**2
    return total / d


def views(seed: int, n: int = 9, d: int = 5, spread: float = 0.6) -> tuple[torch.Tensor, torch.Tensor]:
    """Two correlated float64 batches whose stds straddle 1 (so the hinge is active on some dimensions only)."""
    generator = torch.Generator().manual_seed(seed)
    scales = torch.linspace(0.3, 1.6, d, dtype=torch.float64)
    z1 = torch.randn(n, d, generator=generator, dtype=torch.float64) * scales
    z2 = z1 + spread * torch.randn(n, d, generator=generator, dtype=torch.float64)
    return z1, z2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_each_term_matches_the_formula(seed):
    z1, z2 = views(seed)
    assert invariance_term(z1, z2).item() == pytest.approx(reference_invariance(z1, z2), rel=1e-9)
    for z in (z1, z2):
        assert variance_term(z).item() == pytest.approx(reference_variance(z), rel=1e-9)
        assert covariance_term(z).item() == pytest.approx(reference_covariance(z), rel=1e-9)
    assert 0 < reference_variance(z1) < 0.7  # some dimensions below std 1, some above: the hinge matters


def test_the_branches_are_averaged_for_variance_and_summed_for_covariance():
    z1, z2 = views(3)
    invariance, variance, covariance = vicreg_terms(z1, z2)
    assert variance.item() == pytest.approx((reference_variance(z1) + reference_variance(z2)) / 2, rel=1e-9)
    assert covariance.item() == pytest.approx(reference_covariance(z1) + reference_covariance(z2), rel=1e-9)
    expected = 25 * reference_invariance(z1, z2) + 25 * variance.item() + 1 * covariance.item()
    assert vicreg_loss(z1, z2, 25.0, 25.0, 1.0).item() == pytest.approx(expected, rel=1e-9)
    assert vicreg_loss(z1, z2, 2.0, 0.0, 0.0).item() == pytest.approx(2 * reference_invariance(z1, z2), rel=1e-9)


def orthogonal_columns(scale: float) -> torch.Tensor:
    """8 × 4 of ±scale: zero-mean columns, mutually orthogonal (Hadamard rows without the ones column),
    so every off-diagonal covariance is exactly 0; Var = 8·scale²/7 for each dimension."""
    rows = torch.tensor([[1.0, 1.0], [1.0, -1.0]], dtype=torch.float64)
    return scale * torch.kron(torch.kron(rows, rows), rows)[:, 1:5]


def test_known_values():
    z = orthogonal_columns(1.0)
    # Identical views: nothing to make invariant.
    assert invariance_term(z, z.clone()).item() == 0.0
    # Std √(8/7 + 1e-4) > 1 in every dimension: the hinge is inactive.
    assert variance_term(z).item() == 0.0
    assert variance_term(3 * z + 5).item() == 0.0
    # Uncorrelated dimensions: no covariance, whatever their scale.
    assert covariance_term(z).item() == pytest.approx(0.0, abs=1e-15)
    assert covariance_term(orthogonal_columns(0.1)).item() == pytest.approx(0.0, abs=1e-15)
    # A constant batch (full collapse): std √1e-4 = 0.01 in every dimension, so the hinge is 0.99.
    assert variance_term(torch.ones(6, 3, dtype=torch.float64)).item() == pytest.approx(0.99, rel=1e-12)
    # d copies of one dimension with variance v: every one of the d(d − 1) off-diagonal entries is v.
    same = orthogonal_columns(1.0)[:, :1].expand(8, 4)
    assert covariance_term(same).item() == pytest.approx(4 * 3 * (8 / 7) ** 2 / 4, rel=1e-12)
    # Views that differ by a constant 0.5 in every entry: MSE 0.25.
    assert invariance_term(z, z + 0.5).item() == pytest.approx(0.25, rel=1e-12)


def method_of(spec: VICRegSpec) -> VICReg:
    seed_everything(0)
    model = ModelSpec(arch="small_cnn")
    return VICReg(spec, MethodContext(build_encoder(model, 16), ViewMaker(AugmentSpec(ops=["crop", "color"])), model, num_classes=10))


def test_every_trained_module_gets_a_gradient_and_the_embedding_is_the_projection():
    method = method_of(VICRegSpec(**SMALL_HEAD))
    images = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    pair = method.make_inputs(images, torch.zeros(8, dtype=torch.long), torch.Generator().manual_seed(1))
    method.loss(pair, torch.zeros(8, dtype=torch.long)).backward()
    for name, param in method.named_parameters():
        assert param.grad is not None, name
        if param.ndim > 1:
            assert param.grad.abs().sum() > 0, name
    # Every term is blind to a shift shared by both views (MSE of their difference, variances and
    # covariances about the mean): the output bias gets no gradient, up to rounding.
    output = method.projector[-1]
    assert output.bias.grad.abs().max() < 1e-5 * output.weight.grad.abs().max()
    assert len(method.projector) == 3 * 2 + 1  # 2 × (Linear, BN, ReLU) + the output Linear: 3 layers
    method.eval()
    with torch.no_grad():
        torch.testing.assert_close(method.embedding(method.encoder(pair[0])), method(pair[0]))


def test_the_method_uses_its_specs_weights():
    method = method_of(VICRegSpec(invariance_weight=3.0, variance_weight=0.0, covariance_weight=0.0, **SMALL_HEAD))
    images = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    pair = method.make_inputs(images, torch.zeros(8, dtype=torch.long), torch.Generator().manual_seed(1))
    z1, z2 = method(torch.cat(pair)).chunk(2)  # train mode: the same batch statistics as inside the loss
    expected = 3.0 * reference_invariance(z1.detach(), z2.detach())
    assert method.loss(pair, torch.zeros(8, dtype=torch.long)).item() == pytest.approx(expected, rel=1e-5)

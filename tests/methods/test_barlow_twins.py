"""Barlow Twins: the loss against the paper's eq. 1-2 written with loops, its known values, gradients,
and bit-exact resume."""

from __future__ import annotations

import math

import pytest
import torch

from ablate.augment import ViewMaker
from ablate.config import AugmentSpec, ModelSpec
from ablate.config.methods import BarlowTwinsSpec
from ablate.methods.barlow_twins import BarlowTwins, barlow_twins_loss, cross_correlation
from ablate.methods.base import MethodContext
from ablate.models import build_encoder
from ablate.run import seed_everything

CPU = torch.device("cpu")
SMALL_HEAD = {"proj_hidden_dim": 64, "proj_output_dim": 16}
EPS = 1e-5  # BatchNorm1d's ε, which the paper's code standardises with


def reference_loss(z1: torch.Tensor, z2: torch.Tensor, lam: float, scale: float) -> float:
    """Eq. 1-2 one number at a time: standardise each column (biased variance, + ε as BatchNorm1d),
    C_ij = Σ_b ẑ1_bi ẑ2_bj / N, then Σ_i (1 − C_ii)² + λ Σ_{i≠j} C_ij²."""
    n, d = z1.shape

    def standardised(z):
        columns = []
        for j in range(d):
            values = [float(z[b, j]) for b in range(n)]
            mean = sum(values) / n
            variance = sum((v - mean) ** 2 for v in values) / n
            columns.append([(v - mean) / math.sqrt(variance + EPS) for v in values])
        return columns  # columns[j][b]

    a, b = standardised(z1), standardised(z2)
    total = 0.0
    for i in range(d):
        for j in range(d):
            c = sum(a[i][k] * b[j][k] for k in range(n)) / n
            total += (1 - c) ** 2 if i == j else lam * c**2
    return scale * total


@pytest.mark.parametrize("lam, scale", [(0.0051, 0.1), (0.5, 1.0), (0.0, 2.0)])
def test_loss_matches_the_formula(lam, scale):
    generator = torch.Generator().manual_seed(0)
    z1 = torch.randn(7, 5, generator=generator, dtype=torch.float64)
    z2 = z1 + 0.8 * torch.randn(7, 5, generator=generator, dtype=torch.float64)  # correlated, not identical
    expected = reference_loss(z1, z2, lam, scale)
    assert barlow_twins_loss(z1, z2, lam, scale).item() == pytest.approx(expected, rel=1e-9)
    assert barlow_twins_loss(z1.float(), z2.float(), lam, scale).item() == pytest.approx(expected, rel=1e-5)


def hadamard_columns() -> torch.Tensor:
    """8 × 4 of ±1: every column has mean 0 and biased variance 1, and the columns are orthogonal."""
    rows = torch.tensor([[1.0, 1.0], [1.0, -1.0]], dtype=torch.float64)
    h8 = torch.kron(torch.kron(rows, rows), rows)
    return h8[:, 1:5]  # drop the all-ones column (mean 1), keep 4 zero-mean ones


def test_identical_decorrelated_standardised_views_cost_nothing():
    z = hadamard_columns()
    assert torch.allclose(z.T @ z / 8, torch.eye(4, dtype=torch.float64))  # what the test relies on
    # C = I / (1 + ε) exactly: only ε keeps the diagonal from 1, so the loss is 4·(ε/(1+ε))².
    assert barlow_twins_loss(z, z.clone(), 0.0051, 1.0).item() == pytest.approx(4 * (EPS / (1 + EPS)) ** 2, rel=1e-6)
    assert barlow_twins_loss(z, z.clone(), 0.0051, 1.0).item() < 1e-8
    # Affine per-dimension changes of one view do not matter: each column is standardised first.
    rescaled = 3.0 * z + torch.tensor([1.0, -2.0, 0.5, 7.0], dtype=torch.float64)
    assert barlow_twins_loss(z, rescaled, 0.0051, 1.0).item() < 1e-8


def test_loss_known_values():
    z = hadamard_columns()
    lam, scale = 0.25, 0.1
    # Anti-correlated views: C = −I, each of the 4 diagonal terms is (1 − (−1))² = 4.
    assert barlow_twins_loss(z, -z, lam, scale).item() == pytest.approx(scale * 4 * 4, rel=1e-4)
    # Every dimension a copy of the same one: C is all ones, the diagonal costs nothing, the
    # 4·3 off-diagonal entries cost λ each.
    same = z[:, :1].expand(8, 4)
    assert barlow_twins_loss(same, same, lam, scale).item() == pytest.approx(scale * lam * 12, rel=1e-4)


def test_cross_correlation_entries_are_correlation_coefficients():
    generator = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(50, 3, generator=generator, dtype=torch.float64), torch.randn(50, 3, generator=generator, dtype=torch.float64)
    c = cross_correlation(z1, z2)
    pearson = torch.corrcoef(torch.cat([z1, z2], dim=1).T)[:3, 3:]  # numpy-style Pearson r, ε aside
    torch.testing.assert_close(c, pearson, atol=1e-5, rtol=1e-5)


def method_of(spec: BarlowTwinsSpec) -> BarlowTwins:
    seed_everything(0)
    model = ModelSpec(arch="small_cnn")
    return BarlowTwins(spec, MethodContext(build_encoder(model, 16), ViewMaker(AugmentSpec(ops=["crop", "color"])), model, num_classes=10))


def test_every_trained_module_gets_a_gradient_and_the_embedding_is_the_projection():
    method = method_of(BarlowTwinsSpec(**SMALL_HEAD))
    images = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    views = method.make_inputs(images, torch.zeros(8, dtype=torch.long), torch.Generator().manual_seed(1))
    method.loss(views, torch.zeros(8, dtype=torch.long)).backward()
    for name, param in method.named_parameters():
        assert param.grad is not None, name
        if param.ndim > 1:
            assert param.grad.abs().sum() > 0, name
    # Each dimension is standardised over the batch, so a shift of the output costs nothing: the
    # output bias gets no gradient (up to rounding), while its weight matrix does.
    output = method.projector[-1]
    assert output.bias.grad.abs().max() < 1e-6 * output.weight.grad.abs().max()
    assert len(method.projector) == 3 * 2 + 1  # 2 × (Linear, BN, ReLU) + the output Linear: 3 layers
    method.eval()
    with torch.no_grad():
        torch.testing.assert_close(method.embedding(method.encoder(views[0])), method(views[0]))

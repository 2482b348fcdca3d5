"""NT-Xent against a direct, loop-by-loop computation of the paper's formula (eq. 1)."""

import math

import pytest
import torch

from ablate.methods.simclr import nt_xent


def reference_nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> float:
    z = torch.cat([z1, z2]).double()
    n2 = z.shape[0]
    n = n2 // 2

    def sim(a, b):
        return float(a @ b / (a.norm() * b.norm()))

    total = 0.0
    for i in range(n2):
        j = (i + n) % n2  # the other view of the same image
        numerator = math.exp(sim(z[i], z[j]) / temperature)
        denominator = sum(math.exp(sim(z[i], z[k]) / temperature) for k in range(n2) if k != i)
        total += -math.log(numerator / denominator)
    return total / n2


@pytest.mark.parametrize("temperature", [0.1, 0.5, 1.0])
def test_nt_xent_matches_the_formula(temperature):
    generator = torch.Generator().manual_seed(0)
    z1 = torch.randn(6, 5, generator=generator)
    z2 = torch.randn(6, 5, generator=generator)
    assert nt_xent(z1, z2, temperature).item() == pytest.approx(reference_nt_xent(z1, z2, temperature), rel=1e-5)


def test_nt_xent_known_limits():
    # Identical, mutually orthogonal pairs: positives have cosine 1, negatives 0 (N = 2, so 2N-2 = 2
    # negatives plus 1 positive in each denominator): loss = -log(e^{1/t} / (e^{1/t} + 2)).
    z = torch.eye(2, 4)
    t = 0.5
    expected = -math.log(math.exp(1 / t) / (math.exp(1 / t) + 2))
    assert nt_xent(z, z.clone(), t).item() == pytest.approx(expected, rel=1e-6)
    # Scale invariance: embeddings are L2-normalised first.
    z1, z2 = torch.randn(4, 3), torch.randn(4, 3)
    assert nt_xent(3 * z1, 0.2 * z2, t).item() == pytest.approx(nt_xent(z1, z2, t).item(), rel=1e-6)


def test_nt_xent_gradient_matches_a_term_by_term_reference():
    # The diagonal is removed in place; the gradient must equal that of eq. 1 written term by term
    # (cosine similarities, and a log-sum-exp over the 2N - 1 others of each anchor).
    generator = torch.Generator().manual_seed(1)
    z1 = torch.randn(5, 4, generator=generator, requires_grad=True)
    z2 = torch.randn(5, 4, generator=generator, requires_grad=True)
    t = 0.3
    (grad1, grad2) = torch.autograd.grad(nt_xent(z1, z2, t), (z1, z2))

    z = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1)
    n2, n = 10, 5
    terms = []
    for i in range(n2):
        others = torch.stack([z[i] @ z[k] / t for k in range(n2) if k != i])
        terms.append(torch.logsumexp(others, dim=0) - z[i] @ z[(i + n) % n2] / t)
    (ref1, ref2) = torch.autograd.grad(torch.stack(terms).mean(), (z1, z2))
    torch.testing.assert_close(grad1, ref1, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(grad2, ref2, atol=1e-6, rtol=1e-5)
    assert grad1.abs().sum() > 0.01  # a real gradient, not an all-zero one that would match trivially

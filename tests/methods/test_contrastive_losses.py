"""SimCLR's losses (Table 2) and contrastive-task metrics (Table 5) against formulas written here
anchor by anchor in float64, hand-made cases with known answers, and the NT-Xent values of the code
before the losses moved (so default runs stay bit-identical)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from ablate.config import AugmentSpec, ModelSpec, RunSpec
from ablate.config.methods import SimCLRSpec
from ablate.methods.contrastive_losses import (
    contrastive_loss,
    contrastive_metrics,
    margin_triplet,
    nt_logistic,
    nt_xent,
    semi_hard_negatives,
)

LOSSES = ["nt_xent", "nt_logistic", "margin_triplet"]


# ------------------------------------------------------------------ the reference, anchor by anchor


def sim(a: torch.Tensor, b: torch.Tensor, l2: bool) -> float:
    dot = float(a @ b)
    return dot / (float(a.norm()) * float(b.norm())) if l2 else dot


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def reference_terms(z1, z2, l2):
    """For every anchor i of the 2N: (its positive similarity, [its negatives' similarities])."""
    z = torch.cat([z1, z2]).double()
    n2 = z.shape[0]
    n = n2 // 2
    rows = []
    for i in range(n2):
        j = (i + n) % n2
        negatives = [sim(z[i], z[k], l2) for k in range(n2) if k not in (i, j)]
        rows.append((sim(z[i], z[j], l2), negatives))
    return rows


def reference_semi_hard(positive: float, negatives: list[float]) -> float:
    farther = [s for s in negatives if s < positive]
    return max(farther) if farther else min(negatives)


def reference_loss(name, z1, z2, temperature, margin, l2, semi_hard) -> float:
    total = 0.0
    rows = reference_terms(z1, z2, l2)
    for positive, negatives in rows:
        chosen = [reference_semi_hard(positive, negatives)] if semi_hard else negatives
        if name == "nt_xent":
            denominator = math.exp(positive / temperature) + sum(math.exp(s / temperature) for s in chosen)
            total += -(positive / temperature - math.log(denominator))
        elif name == "nt_logistic":
            total += -log_sigmoid(positive / temperature) - sum(log_sigmoid(-s / temperature) for s in chosen) / len(chosen)
        else:
            total += sum(max(s - positive + margin, 0.0) for s in chosen) / len(chosen)
    return total / len(rows)


def embeddings(seed: int, n: int = 5, d: int = 4, requires_grad: bool = False):
    generator = torch.Generator().manual_seed(seed)
    z1 = torch.randn(n, d, generator=generator, requires_grad=requires_grad)
    z2 = torch.randn(n, d, generator=generator, requires_grad=requires_grad)
    return z1, z2


@pytest.mark.parametrize("semi_hard", [False, True])
@pytest.mark.parametrize("l2", [True, False])
@pytest.mark.parametrize("name", LOSSES)
def test_each_loss_matches_its_formula(name, l2, semi_hard):
    for seed, temperature, margin in ((0, 0.5, 1.0), (1, 0.1, 0.4), (2, 2.0, 1.6)):
        z1, z2 = embeddings(seed)
        got = contrastive_loss(z1, z2, name, temperature, margin, l2_normalize=l2, semi_hard=semi_hard).item()
        expected = reference_loss(name, z1, z2, temperature, margin, l2, semi_hard)
        assert got == pytest.approx(expected, rel=2e-5, abs=1e-6), (seed, temperature)


# ------------------------------------------------------------------------- hand-made known answers


def test_known_answers_on_orthogonal_pairs():
    # Two images, identical views, orthogonal to each other: every positive has cosine 1, each of the
    # 2N - 2 = 2 negatives cosine 0.
    z = torch.eye(2, 4)
    t = 0.5
    assert nt_xent(z, z.clone(), t).item() == pytest.approx(-math.log(math.exp(2) / (math.exp(2) + 2)), rel=1e-6)
    # NT-Logistic: -log sigma(1/t) - log sigma(0) = log(1 + e^-2) + log 2.
    assert nt_logistic(z, z.clone(), t).item() == pytest.approx(math.log1p(math.exp(-2)) + math.log(2), rel=1e-6)
    # Margin: max(0 - 1 + m, 0): nothing below m = 1, 0.6 at m = 1.6.
    assert margin_triplet(z, z.clone(), 1.0).item() == pytest.approx(0.0, abs=1e-7)
    assert margin_triplet(z, z.clone(), 1.6).item() == pytest.approx(0.6, rel=1e-6)


def unit(degrees: float) -> list[float]:
    return [math.cos(math.radians(degrees)), math.sin(math.radians(degrees))]


def test_semi_hard_selects_the_known_negatives():
    # Two images in the plane. View 1: image 0 at 0°, image 1 at 50°; view 2: image 0 at 30°, image 1 at 90°.
    z1 = torch.tensor([unit(0), unit(50)])
    z2 = torch.tensor([unit(30), unit(90)])
    c = lambda degrees: math.cos(math.radians(degrees))  # noqa: E731
    # Anchor 0 (0°): positive at 30°; negatives at 50° and 90°, both farther: the nearer, 50°.
    # Anchor 1 (50°): positive at 90° (40° away); negatives at 0° (50°) and 30° (20°, nearer than
    #   the positive, so hard, not semi-hard): the chosen one is 0°.
    # Anchor 2 (30°): positive at 0° (30° away); negatives at 50° (20°, hard) and 90° (60°): 90°.
    # Anchor 3 (90°): positive at 50° (40° away); negatives at 0° (90°) and 30° (60°): 30°.
    expected = torch.tensor([c(50), c(50), c(60), c(60)])
    positives = torch.tensor([c(30), c(40), c(30), c(40)])
    z = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1)
    similarities = z @ z.T
    negatives = torch.tensor([[False, True, False, True], [True, False, True, False],
                              [False, True, False, True], [True, False, True, False]])
    torch.testing.assert_close(semi_hard_negatives(similarities, positives, negatives), expected)
    # The margin loss with m = 0.25 then has a known value per anchor: max(cos_n - cos_p + m, 0).
    m = 0.25
    per_anchor = [max(n - p + m, 0.0) for n, p in zip(expected.tolist(), positives.tolist())]
    assert margin_triplet(z1, z2, m, semi_hard=True).item() == pytest.approx(sum(per_anchor) / 4, rel=1e-6)
    # Without mining, anchor 1's hard negative (30°) counts too, so the loss is larger.
    assert margin_triplet(z1, z2, m).item() > margin_triplet(z1, z2, m, semi_hard=True).item()


def test_semi_hard_falls_back_to_the_least_similar_negative():
    # Every negative more similar than the positive: the least similar of them is kept.
    similarities = torch.tensor([[0.0, 0.9, 0.7, 0.8]])
    mask = torch.tensor([[False, True, True, True]])
    assert semi_hard_negatives(similarities, torch.tensor([0.1]), mask).item() == pytest.approx(0.7)


# --------------------------------------------------------------------- gradients, ℓ2 and temperature


@pytest.mark.parametrize("semi_hard", [False, True])
@pytest.mark.parametrize("l2", [True, False])
@pytest.mark.parametrize("name", LOSSES)
def test_gradients_are_finite_and_not_all_zero(name, l2, semi_hard):
    z1, z2 = embeddings(3, n=6, d=5, requires_grad=True)
    loss = contrastive_loss(z1, z2, name, temperature=0.1, margin=1.6, l2_normalize=l2, semi_hard=semi_hard)
    grad1, grad2 = torch.autograd.grad(loss, (z1, z2))
    assert torch.isfinite(grad1).all() and torch.isfinite(grad2).all()
    assert grad1.abs().sum() + grad2.abs().sum() > 1e-4
    # Identical views (a collapsed batch for the positives): still finite.
    same = torch.randn(4, 3, requires_grad=True)
    grad = torch.autograd.grad(contrastive_loss(same, same, name, 0.1, 1.6, l2, semi_hard), same)[0]
    assert torch.isfinite(grad).all()


@pytest.mark.parametrize("name", LOSSES)
def test_l2_normalisation_makes_the_loss_scale_free_and_its_absence_does_not(name):
    z1, z2 = embeddings(4)
    base = contrastive_loss(z1, z2, name, 0.5, 1.0).item()
    assert contrastive_loss(3 * z1, 0.2 * z2, name, 0.5, 1.0).item() == pytest.approx(base, rel=1e-5)
    # Without ℓ2 a dot product scales by c², exactly as a temperature divided by c² (or a margin times c²).
    c = 1.7
    scaled = contrastive_loss(c * z1, c * z2, name, 0.5, 1.0, l2_normalize=False).item()
    if name == "margin_triplet":
        assert scaled == pytest.approx(c**2 * margin_triplet(z1, z2, 1.0 / c**2, l2_normalize=False).item(), rel=1e-5)
    else:
        assert scaled == pytest.approx(contrastive_loss(z1, z2, name, 0.5 / c**2, 1.0, l2_normalize=False).item(), rel=1e-5)
    assert contrastive_loss(z1, z2, name, 0.5, 1.0, l2_normalize=False).item() != pytest.approx(base, rel=1e-3)


def test_temperature_limits_of_nt_xent():
    z1, z2 = embeddings(5, n=4)
    # Very high temperature: every logit near 0, a uniform softmax over the 2N - 1 = 7 others.
    assert nt_xent(z1, z2, 100.0).item() == pytest.approx(math.log(7), abs=0.02)
    # Very low temperature with each positive the most similar: the loss goes to 0.
    z = torch.eye(4)
    assert nt_xent(z, z + 0.01, 0.01).item() < 1e-6
    # The margin loss ignores the temperature (Table 2 has none for it).
    assert contrastive_loss(z1, z2, "margin_triplet", 0.1, 0.8).item() == contrastive_loss(z1, z2, "margin_triplet", 5.0, 0.8).item()


def test_nt_xent_is_bit_identical_to_the_code_before_the_losses_moved():
    # Values printed (float.hex) by ablate/methods/simclr.py's nt_xent at commit 64daf37, before any change.
    generator = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(8, 16, generator=generator), torch.randn(8, 16, generator=generator)
    assert nt_xent(z1, z2, 0.5).item() == float.fromhex("0x1.4bedb40000000p+1")
    assert nt_xent(z1, z2, 0.1).item() == float.fromhex("0x1.e073260000000p+1")
    assert nt_xent(z1, z2, 2.0).item() == float.fromhex("0x1.544f220000000p+1")
    assert contrastive_loss(z1, z2, "nt_xent", 0.5, 1.0).item() == float.fromhex("0x1.4bedb40000000p+1")
    z = torch.randn(8, 16, generator=generator, requires_grad=True)
    nt_xent(z, z.detach() * 0.9 + 0.1, 0.5).backward()
    first = ["0x1.254c000000000p-11", "0x1.f85cc40000000p-8", "0x1.810d880000000p-10",
             "0x1.570b980000000p-8", "0x1.3a4a400000000p-11", "-0x1.37abd00000000p-10"]
    assert z.grad.flatten()[:6].tolist() == [float.fromhex(h) for h in first]


# ------------------------------------------------------------------------ the contrastive task (Table 5)


def reference_task(z1, z2, temperature, l2):
    """Table 5's task as the paper's code measures it: each anchor against the N embeddings of the other view."""
    def unit(v):
        norm = math.sqrt(sum(x * x for x in v)) if l2 else 1.0
        return [x / norm for x in v]

    first, second = [unit(v) for v in z1.double().tolist()], [unit(v) for v in z2.double().tolist()]
    correct, entropies = [], []
    for anchors, candidates in ((first, second), (second, first)):
        for i, anchor in enumerate(anchors):
            logits = [sum(a * c for a, c in zip(anchor, candidate)) / temperature for candidate in candidates]
            top = max(logits)
            weights = [math.exp(v - top) for v in logits]
            total = sum(weights)
            entropies.append(-sum(w / total * math.log(w / total) for w in weights))
            correct.append(logits[i] > max(logits[:i] + logits[i + 1:]))
    return correct, entropies


def reference_margins(z1, z2, temperature):
    """Per anchor (ℓ2-normalised, float64): the positive's logit minus the best other candidate's of the other view."""
    first, second = F.normalize(z1.double(), dim=1), F.normalize(z2.double(), dim=1)
    margins = []
    for anchors, candidates in ((first, second), (second, first)):
        logits = anchors @ candidates.T / temperature
        for i in range(len(anchors)):
            others = torch.cat([logits[i, :i], logits[i, i + 1:]])
            margins.append(float(logits[i, i] - others.max()))
    return margins


@pytest.mark.parametrize("l2,temperature", [(True, 0.5), (True, 0.05), (False, 10.0)])
def test_contrastive_metrics_match_their_definition(l2, temperature):
    generator = torch.Generator().manual_seed(6)
    z1 = torch.randn(6, 4, generator=generator)
    z2 = z1 + 0.8 * torch.randn(6, 4, generator=generator)  # some anchors right, some wrong
    task = contrastive_metrics(z1, z2, temperature, l2)
    correct, entropies = reference_task(z1, z2, temperature, l2)
    assert task.correct.tolist() == correct
    assert 0 < sum(correct) < 12  # both outcomes occur, so the comparison tests something
    torch.testing.assert_close(task.entropy.double(), torch.tensor(entropies, dtype=torch.float64), rtol=1e-5, atol=1e-6)


def test_contrastive_metrics_known_answer():
    # Orthogonal images, identical views, τ = 1: over the other view's 2 embeddings, softmax e / (e + 1) on
    # the positive and 1 / (e + 1) on the other image; every positive is the top-1.
    z = torch.eye(2, 4)
    task = contrastive_metrics(z, z.clone(), 1.0)
    p, q = math.e / (math.e + 1), 1 / (math.e + 1)
    assert task.correct.all()
    torch.testing.assert_close(task.entropy, torch.full((4,), -(p * math.log(p) + q * math.log(q))))
    # A positive tied with a negative is a miss: views of two images that are all the same vector.
    same = torch.ones(2, 3)
    assert not contrastive_metrics(same, same, 1.0).correct.any()


# ------------------------------------------------------------------------------ SimCLR and its spec


def small_simclr(**method):
    from ablate.augment import ViewMaker
    from ablate.methods.base import MethodContext
    from ablate.methods.simclr import SimCLR
    from ablate.models import build_encoder

    torch.manual_seed(0)
    model = ModelSpec(arch="small_cnn", proj_dim=16)
    context = MethodContext(build_encoder(model, 16), ViewMaker(AugmentSpec(ops=["crop", "color"])), model, num_classes=10)
    return SimCLR(SimCLRSpec(**method), context)


@pytest.mark.parametrize("name", LOSSES)
def test_simclr_trains_on_the_loss_its_spec_names(name):
    settings = {"loss": name, "temperature": 0.2, "l2_normalize": False, "semi_hard": True}
    if name == "margin_triplet":
        settings["margin"] = 0.4
    simclr = small_simclr(**settings)
    images = torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8)
    views = simclr.make_inputs(images, torch.zeros(6, dtype=torch.long), torch.Generator().manual_seed(0))
    got = simclr.loss(views, torch.zeros(6, dtype=torch.long))
    z1, z2 = simclr(torch.cat(views)).chunk(2)
    expected = reference_loss(name, z1.detach(), z2.detach(), 0.2, settings.get("margin", 1.0), False, True)
    assert got.item() == pytest.approx(expected, rel=1e-4)


def test_contrastive_task_metrics_of_a_simclr_run():
    from ablate.methods.train import DeviceSettings
    from ablate.run import view_task_metrics as contrastive_task_metrics

    simclr = small_simclr(temperature=0.5)
    simclr.train()
    images = torch.randint(0, 256, (10, 3, 16, 16), dtype=torch.uint8)
    data = SimpleNamespace(test=SimpleNamespace(images=images))
    spec = RunSpec(train={"batch_size": 4}, seed=3)
    settings = DeviceSettings(torch.device("cpu"), autocast_bf16=False, channels_last=False)
    before = {k: v.clone() for k, v in simclr.state_dict().items()}
    rng_before = torch.get_rng_state()
    got = contrastive_task_metrics(simclr, data, spec, settings)  # type: ignore[arg-type]
    # Batches of 4 images: two full ones (images 0-3, 4-7); the last 2 images are left out.
    generator = torch.Generator().manual_seed(3)
    simclr.eval()
    correct, entropies, sure, unsure = [], [], 0, 0
    with torch.no_grad():
        for start in (0, 4):
            view1, view2 = simclr.views.pair(images[start : start + 4], generator)
            z1, z2 = simclr(torch.cat([view1, view2])).chunk(2)
            c, e = reference_task(z1, z2, 0.5, True)
            correct += c
            entropies += e
            # An untrained network's embeddings are nearly alike: a positive within float32 rounding of the best
            # other candidate may go either way in the float32 implementation.
            for margin in reference_margins(z1, z2, 0.5):
                sure += margin > 1e-4
                unsure += abs(margin) <= 1e-4
    assert 100 * sure / 16 - 1e-6 <= got["contrastive_top1"] <= 100 * (sure + unsure) / 16 + 1e-6
    assert got["contrastive_entropy"] == pytest.approx(sum(entropies) / 16, rel=1e-4)
    assert 0 < got["contrastive_entropy"] <= math.log(7) + 1e-6
    # Weights, batch-norm statistics, the training mode and the global random state are untouched.
    simclr.train()
    assert all(torch.equal(before[k], v) for k, v in simclr.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng_before)
    from ablate.config.methods import SupervisedSpec
    from ablate.methods.base import MethodContext
    from ablate.methods.supervised import Supervised

    context = MethodContext(simclr.encoder, simclr.views, ModelSpec(arch="small_cnn", proj_dim=8), num_classes=10)
    supervised = Supervised(SupervisedSpec(), context)  # a method without view metrics: none, nothing decoded
    assert contrastive_task_metrics(supervised, data, spec, settings) == {}  # type: ignore[arg-type]


def test_the_spec_refuses_a_margin_for_a_loss_without_one():
    with pytest.raises(ValidationError, match="margin is margin_triplet's setting; loss nt_logistic has none"):
        SimCLRSpec(loss="nt_logistic", margin=0.4)
    assert SimCLRSpec(loss="margin_triplet", margin=0.4).margin == 0.4
    assert SimCLRSpec(loss="nt_logistic", margin=SimCLRSpec().margin).loss == "nt_logistic"  # the default is fine

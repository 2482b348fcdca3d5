"""BYOL: the normalised MSE against a loop-by-loop computation of the paper's eq. 2, known answers
(identical → 0, orthogonal → 2 per order, the two orders summed), the views' pairing, gradients only
in the online networks, the target's EMA on the cosine schedule, and a bit-identical resume."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ablate.augment import ViewMaker
from ablate.config import AugmentSpec, ModelSpec, RunSpec
from ablate.config.methods import BYOLSpec
from ablate.data import load_dataset
from ablate.methods.base import MethodContext
from ablate.methods.byol import BYOL, normalised_mse
from ablate.methods.train import CHECKPOINT_FILE, InterruptedForTest, TrainStep, device_settings, train
from ablate.models import build_encoder

CPU = torch.device("cpu")


def byol(**spec) -> BYOL:
    model = ModelSpec(arch="small_cnn")
    context = MethodContext(build_encoder(model, 16), ViewMaker(AugmentSpec(ops=["crop", "color"])), model, num_classes=10)
    return BYOL(BYOLSpec(**{"proj_hidden_dim": 32, "proj_output_dim": 8, "pred_hidden_dim": 16, **spec}), context)


def views(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(count, 3, 16, 16, generator=generator), torch.rand(count, 3, 16, 16, generator=generator)


def reference_normalised_mse(p: torch.Tensor, z: torch.Tensor) -> float:
    """Eq. 2 term by term, float64: mean over i of Σ_j (p_ij/‖p_i‖ − z_ij/‖z_i‖)²."""
    p, z = p.double(), z.double()
    total = 0.0
    for i in range(p.shape[0]):
        p_norm = math.sqrt(sum(float(v) ** 2 for v in p[i]))
        z_norm = math.sqrt(sum(float(v) ** 2 for v in z[i]))
        total += sum((float(p[i, j]) / p_norm - float(z[i, j]) / z_norm) ** 2 for j in range(p.shape[1]))
    return total / p.shape[0]


def test_normalised_mse_matches_the_formula():
    generator = torch.Generator().manual_seed(0)
    p, z = torch.randn(6, 5, generator=generator), torch.randn(6, 5, generator=generator)
    assert normalised_mse(p, z).item() == pytest.approx(reference_normalised_mse(p, z), rel=1e-5)


def test_normalised_mse_known_answers():
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(1))
    assert normalised_mse(x, 5 * x).item() == pytest.approx(0.0, abs=1e-6)  # same direction, any scale
    assert normalised_mse(x, -x).item() == pytest.approx(4.0, rel=1e-6)  # opposite
    eye = torch.eye(4)
    assert normalised_mse(eye[:2], eye[2:]).item() == pytest.approx(2.0, rel=1e-6)  # orthogonal


class KnownOutputs:
    """A stand-in for the network: chosen online predictions and target projections (per branch)."""

    def __init__(self, online: torch.Tensor, target: torch.Tensor):
        self.outputs = {"online": online, "target": target}

    def __call__(self, images: torch.Tensor, branch: str) -> torch.Tensor:
        return self.outputs[branch]


def test_each_views_prediction_meets_the_other_views_target_and_the_orders_are_summed():
    method = byol()
    eye = torch.eye(8)
    p1, p2 = eye[0:2], eye[2:4]
    same = KnownOutputs(torch.cat([p1, p2]), torch.cat([2 * p2, 3 * p1]))  # z1 ∥ p2, z2 ∥ p1: both orders 0
    assert method.loss(views(2, 0), torch.zeros(2), forward=same).item() == pytest.approx(0.0, abs=1e-6)
    crossed = KnownOutputs(torch.cat([p1, p2]), torch.cat([p1, p2]))  # z1 = p1 ⟂ p2, z2 = p2 ⟂ p1: 2 + 2
    assert method.loss(views(2, 0), torch.zeros(2), forward=crossed).item() == pytest.approx(4.0, rel=1e-6)
    half = KnownOutputs(torch.cat([p1, p2]), torch.cat([eye[4:6], p1]))  # p1 vs z2 = p1: 0; p2 vs z1 ⟂: 2
    assert method.loss(views(2, 0), torch.zeros(2), forward=half).item() == pytest.approx(2.0, rel=1e-6)


def test_loss_of_the_method_matches_the_reference_on_its_own_outputs():
    method = byol()
    view1, view2 = views(4, 2)
    with torch.no_grad():  # train mode: batch statistics, so the loss's own pass gives the same outputs
        p = method(torch.cat([view1, view2]), "online")
        z = method(torch.cat([view1, view2]), "target")
    expected = reference_normalised_mse(p[:4], z[4:]) + reference_normalised_mse(p[4:], z[:4])
    assert method.loss((view1, view2), torch.zeros(4)).item() == pytest.approx(expected, rel=1e-5)


def test_identical_views_with_no_predictor_give_zero():
    """At construction the target equals the online encoder + projector; with the predictor removed
    and the same images as both views, every prediction equals its target: the loss is 0."""
    method = byol()
    method.predictor = nn.Identity()
    images = views(4, 3)[0]
    assert method.loss((images, images.clone()), torch.zeros(4)).item() == pytest.approx(0.0, abs=1e-5)


def test_only_the_online_networks_get_gradients():
    method = byol()
    method.loss(views(4, 4), torch.zeros(4)).backward()
    online = [*method.encoder.named_parameters(), *method.projector.named_parameters(), *method.predictor.named_parameters()]
    for name, param in online:
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    for name, param in [*method.target_encoder.named_parameters(), *method.target_projector.named_parameters()]:
        assert not param.requires_grad and param.grad is None, name


def test_the_target_is_a_stop_gradient_even_if_its_weights_asked_for_gradients():
    """The target runs under no_grad: turning requires_grad on in the target changes nothing."""
    method = byol()
    method.target_encoder.requires_grad_(True)
    method.target_projector.requires_grad_(True)
    method.loss(views(4, 5), torch.zeros(4)).backward()
    assert all(p.grad is None for p in [*method.target_encoder.parameters(), *method.target_projector.parameters()])
    assert method.predictor[0].weight.grad is not None


@pytest.mark.parametrize("base, final", [(0.99, 1.0), (0.996, 1.0), (0.5, 0.9)])
def test_momentum_schedule_goes_from_base_through_the_midpoint_to_final(base, final):
    method = byol(momentum_base=base, momentum_final=final)
    assert method.target_momentum(0, 1000) == pytest.approx(base, abs=1e-12)
    assert method.target_momentum(500, 1000) == pytest.approx((base + final) / 2, abs=1e-12)
    assert method.target_momentum(1000, 1000) == pytest.approx(final, abs=1e-12)
    # BYOL §3.2 with final 1: τ = 1 − (1 − τ_base)(cos(πk/K) + 1)/2, at k = K/4.
    if final == 1.0:
        assert method.target_momentum(250, 1000) == pytest.approx(1 - (1 - base) * (math.cos(math.pi / 4) + 1) / 2, abs=1e-12)


@pytest.mark.parametrize("step, total, momentum", [(0, 10, 0.5), (5, 10, 0.75), (10, 10, 1.0)])
def test_the_target_follows_by_ema_on_the_cosine_schedule(step, total, momentum):
    method = byol(momentum_base=0.5, momentum_final=1.0)
    optimizer = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.5)
    method.loss(views(4, 6), torch.zeros(4)).backward()
    optimizer.step()  # the online network moves away from the target
    targets = [*method.target_encoder.parameters(), *method.target_projector.parameters()]
    online = [*method.encoder.parameters(), *method.projector.parameters()]
    before = [p.detach().clone() for p in targets]
    target_statistics = method.target_projector[1].running_mean.clone()
    assert any(not torch.equal(a, b) for a, b in zip(before, online, strict=True))
    method.after_step(step, total)
    for new, old, theta in zip(targets, before, online, strict=True):
        torch.testing.assert_close(new, momentum * old + (1 - momentum) * theta, rtol=0, atol=1e-6)
    if momentum == 1.0:
        assert all(torch.equal(new, old) for new, old in zip(targets, before, strict=True))
    assert torch.equal(method.target_projector[1].running_mean, target_statistics)  # buffers are the target's own


def test_embedding_is_the_online_projection_not_the_prediction():
    method = byol().eval()
    images = views(4, 7)[0]
    with torch.no_grad():
        features = method.encoder(images)
        torch.testing.assert_close(method.embedding(features), method.projector(features))
        assert not torch.allclose(method.embedding(features), method(images, "online"))
    with pytest.raises(ValueError, match="branches 'online' and 'target'"):
        method(images, "key")


# --------------------------------------------------------------------------- resume


def run_spec() -> RunSpec:
    """64 shapes images of 16 px, batch 16: 4 steps an epoch, 2 epochs."""
    return RunSpec.model_validate({
        "dataset": {"name": "shapes", "train_size": 64, "test_size": 16, "image_size": 16},
        "model": {"arch": "small_cnn"},
        "method": {"name": "byol", "proj_hidden_dim": 32, "proj_output_dim": 8, "pred_hidden_dim": 16},
        "train": {"epochs": 2, "batch_size": 16, "lr": 1.0, "warmup_epochs": 0.5},
        "augment": {"protocol": "both_branches", "ops": ["crop", "color"]},
        "seed": 3,
    })


def train_byol(folder, stop_after_steps: int | None = None):
    spec = run_spec()
    torch.manual_seed(spec.seed)  # as a run does before building the method
    settings = device_settings(spec, CPU)
    context = MethodContext(build_encoder(spec.model, 16), ViewMaker(spec.augment), spec.model, num_classes=10)
    method = BYOL(spec.method, context)
    data = load_dataset(spec.dataset).pretrain
    outcome = train(method, TrainStep.of(method, settings), data, spec, settings, folder, stop_after_steps=stop_after_steps)
    return method, outcome


def test_an_interrupted_run_resumes_bit_identically_target_included(tmp_path):
    straight, reference = train_byol(None)
    assert reference.steps == 8
    assert not torch.equal(straight.target_projector[0].weight, straight.projector[0].weight)  # the EMA lags behind

    with pytest.raises(InterruptedForTest):
        train_byol(tmp_path, stop_after_steps=3)  # mid-epoch
    saved = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)
    assert any(name.startswith("target_encoder.") for name in saved["model"]) and saved["method"] == {}
    resumed, outcome = train_byol(tmp_path)
    assert outcome.resumed_from_epoch == pytest.approx(3 / 4)
    assert outcome.epoch_losses == reference.epoch_losses
    state, expected = resumed.state_dict(), straight.state_dict()
    assert {name.split(".")[0] for name in state} == {"encoder", "projector", "predictor", "target_encoder", "target_projector"}
    assert state.keys() == expected.keys()
    different = [name for name in expected if not torch.equal(state[name], expected[name])]
    assert not different, f"tensors differ after resume: {different[:5]}"

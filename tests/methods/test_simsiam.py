"""SimSiam: the loss against the paper's eq. 1-2 written with loops, its known values, where the
stop-gradient does (and does not) let gradients through, the `predictor: false` ablation, bit-exact
resume, and the paper's collapse ablations (no predictor, no stop-gradient) on a tiny training run."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ablate.augment import ViewMaker
from ablate.config import AugmentSpec, ModelSpec, RunSpec
from ablate.config.methods import SimSiamSpec
from ablate.data import load_dataset
from ablate.evaluate.features import extract_features
from ablate.methods.base import MethodContext
from ablate.methods.simsiam import SimSiam, simsiam_loss
from ablate.methods.train import CHECKPOINT_FILE, InterruptedForTest, TrainStep, device_settings, train
from ablate.models import build_encoder
from ablate.run import seed_everything

CPU = torch.device("cpu")
SMALL_HEAD = {"proj_hidden_dim": 64, "proj_output_dim": 64, "pred_hidden_dim": 16}


def method_of(spec: SimSiamSpec, seed: int = 0) -> SimSiam:
    seed_everything(seed)
    model = ModelSpec(arch="small_cnn")
    return SimSiam(spec, MethodContext(build_encoder(model, 16), ViewMaker(AugmentSpec(ops=["crop", "color"])), model, num_classes=10))


def reference_loss(p1, p2, z1, z2) -> float:
    """0.5·D(p1, z2) + 0.5·D(p2, z1), D = −mean_i cos(p_i, z_i), one python float at a time."""

    def cosine(a, b) -> float:
        dot = sum(float(x) * float(y) for x, y in zip(a, b))
        return dot / (math.sqrt(sum(float(x) ** 2 for x in a)) * math.sqrt(sum(float(y) ** 2 for y in b)))

    def d(p, z) -> float:
        return -sum(cosine(p[i], z[i]) for i in range(len(p))) / len(p)

    return d(p1, z2) / 2 + d(p2, z1) / 2


def random_tensors(seed: int, count: int = 4, shape=(6, 5)) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=generator, dtype=torch.float64) for _ in range(count)]


@pytest.mark.parametrize("stop_gradient", [True, False])
@pytest.mark.parametrize("seed", [0, 1])
def test_loss_matches_the_formula(seed, stop_gradient):
    p1, p2, z1, z2 = random_tensors(seed)
    expected = reference_loss(p1, p2, z1, z2)
    assert simsiam_loss(p1, p2, z1, z2, stop_gradient).item() == pytest.approx(expected, rel=1e-6)
    assert abs(expected) > 0.01  # random vectors: not a trivial 0 that any bug could match


def test_loss_known_values():
    z1, z2 = random_tensors(2, count=2)
    # Predictions along their targets (scaled: the cosine ignores the length) give −1 ...
    assert simsiam_loss(3 * z2, z1, z1, z2).item() == pytest.approx(-1.0, abs=1e-6)
    # ... opposite to them +1 ...
    assert simsiam_loss(-z2, -0.5 * z1, z1, z2).item() == pytest.approx(1.0, abs=1e-6)
    # ... and orthogonal to them 0.
    e = torch.eye(2, 3)
    assert simsiam_loss(e[[1, 0]], e[[1, 0]], e, e).item() == pytest.approx(0.0, abs=1e-7)


def negative_cosine_gradient(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """∂/∂p of −cos(p, z) for each row, by hand: −(ẑ − cos·p̂) / ‖p‖."""
    p_norm, z_norm = p.norm(dim=1, keepdim=True), z.norm(dim=1, keepdim=True)
    cos = (p * z).sum(dim=1, keepdim=True) / (p_norm * z_norm)
    return -(z / z_norm - cos * p / p_norm) / p_norm


def test_stop_gradient_gives_the_targets_no_gradient():
    p1, p2, z1, z2 = (t.requires_grad_() for t in random_tensors(3))
    grads = torch.autograd.grad(simsiam_loss(p1, p2, z1, z2, stop_gradient=True), (p1, p2, z1, z2), allow_unused=True)
    assert grads[2] is None and grads[3] is None  # the targets are outside the graph
    n = p1.shape[0]  # 1/2 for the symmetrisation, 1/N for the batch mean
    torch.testing.assert_close(grads[0], negative_cosine_gradient(p1.detach(), z2.detach()) / (2 * n))
    torch.testing.assert_close(grads[1], negative_cosine_gradient(p2.detach(), z1.detach()) / (2 * n))


def test_without_stop_gradient_the_targets_get_their_gradient():
    p1, p2, z1, z2 = (t.requires_grad_() for t in random_tensors(4))
    grads = torch.autograd.grad(simsiam_loss(p1, p2, z1, z2, stop_gradient=False), (z1, z2))
    n = p1.shape[0]  # −cos is symmetric: ∂/∂z of −cos(p, z) is the same formula with p and z swapped
    torch.testing.assert_close(grads[0], negative_cosine_gradient(z1.detach(), p2.detach()) / (2 * n))
    torch.testing.assert_close(grads[1], negative_cosine_gradient(z2.detach(), p1.detach()) / (2 * n))


def projection_gradient(method: SimSiam, views: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The gradient that reaches the projector's output z (both views), and z itself, via a tensor hook."""
    seen: dict[str, torch.Tensor] = {}

    def keep(module, inputs, output):
        seen["z"] = output.detach().clone()
        output.register_hook(lambda grad: seen.__setitem__("grad", grad.clone()))

    handle = method.projector.register_forward_hook(keep)
    try:
        method.zero_grad(set_to_none=True)
        method.loss(views, torch.zeros(len(views[0]), dtype=torch.long)).backward()
    finally:
        handle.remove()
    return seen["grad"], seen["z"]


def test_in_the_method_the_stop_gradient_halves_the_gradient_at_the_projections():
    """Without a predictor D is symmetric in its arguments, so each z gets the same gradient from its
    own term and, without the stop-gradient, the same again from the term where it is the target:
    exactly twice as much; with the stop-gradient it is the hand formula of its own term alone."""
    method = method_of(SimSiamSpec(predictor=False, **SMALL_HEAD))
    images = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    views = method.make_inputs(images, torch.zeros(8, dtype=torch.long), torch.Generator().manual_seed(1))
    stopped, z = projection_gradient(method, views)
    z1, z2 = z.chunk(2)
    expected = torch.cat([negative_cosine_gradient(z1, z2), negative_cosine_gradient(z2, z1)]) / (2 * 8)
    torch.testing.assert_close(stopped, expected, atol=1e-7, rtol=1e-4)
    method.stop_gradient = False
    through, z_again = projection_gradient(method, views)
    torch.testing.assert_close(z_again, z)  # the same forward pass (train-mode batch norm: batch statistics)
    torch.testing.assert_close(through, 2 * stopped, atol=1e-7, rtol=1e-4)


@pytest.mark.parametrize("predictor", [True, False])
def test_every_trained_module_gets_a_gradient(predictor):
    method = method_of(SimSiamSpec(predictor=predictor, **SMALL_HEAD))
    images = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    method.loss(method.make_inputs(images, torch.zeros(8, dtype=torch.long), torch.Generator().manual_seed(1)), torch.zeros(8)).backward()
    # The projector's last linear is followed by batch norm, which cancels a shift: its bias alone
    # may get (almost) no gradient; every weight matrix must get one.
    for name, param in method.named_parameters():
        assert param.grad is not None, name
        if param.ndim > 1:
            assert param.grad.abs().sum() > 0, name


def test_without_predictor_there_is_no_predictor_at_all():
    with_predictor = method_of(SimSiamSpec(**SMALL_HEAD))
    without = method_of(SimSiamSpec(predictor=False, **SMALL_HEAD))
    assert without.predictor is None
    assert not [name for name, _ in without.named_parameters() if name.startswith("predictor")]
    predictor_params = sum(p.numel() for p in with_predictor.predictor.parameters())
    # 64·16 (no bias: batch norm follows) + 2·16 (its scale and shift) + 16·64 + 64 (output bias)
    assert predictor_params == 64 * 16 + 2 * 16 + 16 * 64 + 64
    assert sum(p.numel() for p in without.parameters()) == sum(p.numel() for p in with_predictor.parameters()) - predictor_params
    z, p = without(torch.rand(4, 3, 16, 16))
    assert p is z  # the loss then compares the projections directly


def test_embedding_is_the_projection_of_the_features():
    method = method_of(SimSiamSpec(**SMALL_HEAD)).eval()
    images = torch.rand(5, 3, 16, 16)
    with torch.no_grad():
        z, _ = method(images)
        torch.testing.assert_close(method.embedding(method.encoder(images)), z)
    assert z.shape == (5, 64)


# ----------------------------------------------------------------------------- training runs


def run_spec(epochs: int = 2, batch_size: int = 16, lr: float = 1.0, optimizer: str = "lars", **method) -> RunSpec:
    return RunSpec.model_validate({
        "dataset": {"name": "shapes", "train_size": 128, "test_size": 40, "image_size": 16},
        "model": {"arch": "small_cnn"},
        "method": {"name": "simsiam", **SMALL_HEAD, **method},
        "train": {"epochs": epochs, "batch_size": batch_size, "lr": lr, "optimizer": optimizer, "weight_decay": 0.0 if optimizer == "adamw" else 1e-5,
                  "warmup_epochs": 0.5 if optimizer == "lars" else 0},
        "augment": {"protocol": "both_branches", "ops": ["crop", "color"]},
        "seed": 0,
    })


def trained(spec: RunSpec, folder=None, stop_after_steps: int | None = None):
    """A fresh method built as `ablate.run.build_method` does (seeded, channels_last), trained on `spec`."""
    seed_everything(spec.seed)
    encoder = build_encoder(spec.model, spec.dataset.image_size)
    method = SimSiam(spec.method, MethodContext(encoder, ViewMaker(spec.augment), spec.model, num_classes=10))
    method.to(memory_format=torch.channels_last)
    settings = device_settings(spec, CPU)
    data = load_dataset(spec.dataset)
    outcome = train(method, TrainStep.of(method, settings), data.pretrain, spec, settings, folder, stop_after_steps=stop_after_steps)
    return method, outcome, data


def test_interrupted_run_resumes_to_the_same_numbers(tmp_path):
    spec = run_spec()
    reference, reference_outcome, _ = trained(spec, tmp_path / "straight")
    with pytest.raises(InterruptedForTest):
        trained(spec, tmp_path / "resumed", stop_after_steps=5)  # mid-epoch (8 steps an epoch)
    assert (tmp_path / "resumed" / CHECKPOINT_FILE).exists()
    resumed, outcome, _ = trained(spec, tmp_path / "resumed")
    assert outcome.resumed_from_epoch == pytest.approx(5 / 8)
    assert outcome.epoch_losses == reference_outcome.epoch_losses  # exact floats
    state, reference_state = resumed.state_dict(), reference.state_dict()
    assert state.keys() == reference_state.keys()
    assert [name for name in state if not torch.equal(state[name], reference_state[name])] == []


def embedding_spread(method: SimSiam, images: torch.Tensor) -> float:
    """The paper's collapse diagnostic (§4.1): per-dimension std of the ℓ2-normalised outputs, averaged
    over dimensions: ≈ 1/√d for outputs spread over the sphere, 0 for a constant output."""
    features = extract_features(method.encoder, images, CPU)  # eval mode, no gradients
    method.eval()
    with torch.no_grad():
        return float(F.normalize(method.embedding(features), dim=1).std(dim=0).mean())


# 100 steps (25 epochs of 128 images, batch 32) of AdamW at 1.0 per 256 images (0.125 at batch 32) with
# a cosine decay: long enough for both ablations to collapse, about a second each on one core. Measured
# over seeds 0-5: the default 0.090-0.106 (1/√64 = 0.125), no predictor 0.0021-0.0029, no stop-gradient
# 0.0004-0.0037. The thresholds leave a factor of 1.5 (healthy) and 4 (collapsed) to those ranges.
HEALTHY_ABOVE = 0.06
COLLAPSED_BELOW = 0.015


@pytest.mark.parametrize("ablation, collapses", [({}, False), ({"predictor": False}, True), ({"stop_gradient": False}, True)],
                         ids=["default", "no-predictor", "no-stop-gradient"])
def test_the_papers_ablations_collapse_and_the_default_does_not(ablation, collapses):
    spec = run_spec(epochs=25, batch_size=32, optimizer="adamw", **ablation)
    method, outcome, data = trained(spec)
    assert outcome.steps == 100
    spread = embedding_spread(method, data.test.images)
    if collapses:
        assert spread < COLLAPSED_BELOW
        assert outcome.epoch_losses[-1] < -0.99  # the loss reaches its minimum, −1, the trivial way
    else:
        assert HEALTHY_ABOVE < spread < 1.5 / math.sqrt(64)

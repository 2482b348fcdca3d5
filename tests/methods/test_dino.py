"""DINO: the loss against Algorithm 1 written with loops in float64 and hand-computed answers, the centre
and teacher-temperature schedules, the stop-gradient and frozen teacher, the weight-normalised prototypes,
the teacher's EMA, and a bit-identical resume."""

from __future__ import annotations

import doctest
import io
import math

import pytest
import torch

import ablate.methods.dino
from ablate.augment import ViewMaker
from ablate.config import AugmentSpec, ModelSpec, RunSpec
from ablate.config.methods import DINOSpec
from ablate.data import load_dataset
from ablate.methods.base import MethodContext
from ablate.methods.dino import DINO, dino_loss, teacher_temperature_at, update_center_
from ablate.methods.optim import build_optimizer
from ablate.methods.train import CHECKPOINT_FILE, InterruptedForTest, TrainStep, device_settings, train
from ablate.models import build_encoder
from ablate.run import seed_everything

CPU = torch.device("cpu")
SMALL = {"proj_hidden_dim": 32, "proj_output_dim": 8, "num_prototypes": 16}


def small_dino(**spec) -> DINO:
    model = ModelSpec(arch="small_cnn")
    context = MethodContext(build_encoder(model, 16), ViewMaker(AugmentSpec(ops=["crop", "color"])), model, num_classes=10)
    return DINO(DINOSpec(**{**SMALL, **spec}), context)


def two_views(method: DINO, count: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.randint(0, 256, (count, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))
    return method.make_inputs(images, torch.zeros(count, dtype=torch.long), torch.Generator().manual_seed(seed + 1))


def move_student_away(method: DINO, seed: int = 0) -> None:
    """The student starts equal to the teacher; shift its head so the two give different logits."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in method.head.parameters():
            if param.requires_grad:
                param.add_(0.3 * torch.randn(param.shape, generator=generator))


# ---------------------------------------------------------------- reference (paper Algorithm 1, float64 loops)


def softmax(values: list[float]) -> list[float]:
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    total = sum(exps)
    return [e / total for e in exps]


def reference_dino_loss(student: torch.Tensor, teacher: torch.Tensor, center: torch.Tensor,
                        student_temperature: float, teacher_temperature: float) -> float:
    student, teacher, center = student.double().tolist(), teacher.double().tolist(), center.double()[0].tolist()
    n = len(student) // 2
    classes = range(len(center))

    def cross_entropy(teacher_row: list[float], student_row: list[float]) -> float:
        t = softmax([(teacher_row[k] - center[k]) / teacher_temperature for k in classes])
        s = softmax([student_row[k] / student_temperature for k in classes])
        return -sum(t[k] * math.log(s[k]) for k in classes)

    total = 0.0
    for i in range(n):  # view 1 of image i is row i, view 2 is row n + i
        total += cross_entropy(teacher[i], student[n + i]) / 2 + cross_entropy(teacher[n + i], student[i]) / 2
    return total / n


def reference_center(center: torch.Tensor, teacher: torch.Tensor, momentum: float) -> torch.Tensor:
    rows = teacher.double().tolist()
    means = [sum(row[k] for row in rows) / len(rows) for k in range(len(rows[0]))]
    return torch.tensor([[momentum * c + (1 - momentum) * m for c, m in zip(center.double()[0].tolist(), means)]], dtype=torch.float64)


# ---------------------------------------------------------------- the loss


@pytest.mark.parametrize("student_temperature, teacher_temperature", [(0.1, 0.04), (0.1, 0.07), (1.0, 0.5)])
def test_loss_matches_algorithm_1(student_temperature, teacher_temperature):
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(8, 5, generator=generator)
    teacher = torch.randn(8, 5, generator=generator)
    center = 0.5 * torch.randn(1, 5, generator=generator)
    got = dino_loss(student, teacher, center, student_temperature, teacher_temperature).item()
    assert got == pytest.approx(reference_dino_loss(student, teacher, center, student_temperature, teacher_temperature), rel=1e-5)
    # The temperature may be a 0-dim tensor (the method's buffer) with the same result.
    as_tensor = dino_loss(student, teacher, center, student_temperature, torch.tensor(teacher_temperature)).item()
    assert as_tensor == pytest.approx(got, rel=1e-6)


def test_loss_known_answers():
    # All logits zero: both distributions are uniform over K, so H = log K whatever the temperatures.
    assert dino_loss(torch.zeros(4, 7), torch.zeros(4, 7), torch.zeros(1, 7), 0.1, 0.04).item() == pytest.approx(math.log(7), rel=1e-6)

    # Teacher logits (10, 0, 0) at τ_t = 0.04: softmax of (250, 0, 0), one-hot on class 0 up to e^-250.
    # Student (0.1, 0, 0) at τ_s = 0.1: log P_s(0) = −log(1 + 2/e), so H = log(1 + 2/e).
    teacher = torch.tensor([[10.0, 0.0, 0.0]]).repeat(4, 1)
    student = torch.tensor([[0.1, 0.0, 0.0]]).repeat(4, 1)
    assert dino_loss(student, teacher, torch.zeros(1, 3), 0.1, 0.04).item() == pytest.approx(math.log(1 + 2 / math.e), rel=1e-6)
    # Centred by C = (20, 0, 0), the teacher is (−250, 0, 0) → (0, ½, ½); log P_s(1) = log P_s(2) = −log(e + 2).
    assert dino_loss(student, teacher, torch.tensor([[20.0, 0.0, 0.0]]), 0.1, 0.04).item() == pytest.approx(math.log(math.e + 2), rel=1e-6)

    # Each view's teacher is the target of the OTHER view's student. One image, K = 2, τ_s = 1: teacher
    # view 1 → class 0, view 2 → class 1; student view 1 (0, 1), view 2 (1, 0): both cross terms give
    # −log(e / (e + 1)) = log(1 + 1/e); pairing a view with itself would give log(1 + e) instead.
    teacher = torch.tensor([[10.0, 0.0], [0.0, 10.0]])
    student = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    assert dino_loss(student, teacher, torch.zeros(1, 2), 1.0, 0.04).item() == pytest.approx(math.log(1 + 1 / math.e), rel=1e-6)


def test_centre_update_matches_the_formula():
    generator = torch.Generator().manual_seed(2)
    center = torch.randn(1, 6, generator=generator)
    teacher = torch.randn(10, 6, generator=generator)
    expected = reference_center(center, teacher, 0.9)
    update_center_(center, teacher, 0.9)
    torch.testing.assert_close(center.double(), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("steps_done", [0, 3], ids=["first-step", "mid-warm-up"])
def test_method_loss_pairs_views_centres_and_sharpens_the_teacher(steps_done):
    """`DINO.loss` = Algorithm 1 on its own networks' logits, with the centre and temperature it holds;
    afterwards the centre has moved by this step's teacher logits."""
    method = small_dino(momentum_base=1.0, teacher_warmup_fraction=0.5)  # momentum 1: after_step leaves the teacher
    move_student_away(method)
    with torch.no_grad():
        method.center.copy_(torch.randn(1, 16, generator=torch.Generator().manual_seed(3)))
    if steps_done:
        method.after_step(steps_done, total_steps=10)  # warm-up of 5 steps: 3 done → τ_t = 0.04 + 0.03 · 3/5
    temperature = 0.04 + 0.03 * steps_done / 5
    assert float(method.next_teacher_temperature) == pytest.approx(temperature, rel=1e-6)

    view1, view2 = two_views(method)
    with torch.no_grad():  # train mode: batch statistics, so these are the logits the loss sees
        student = method(torch.cat([view1, view2]), "student")
        teacher = method(torch.cat([view1, view2]), "teacher")
    assert not torch.allclose(student, teacher, atol=1e-3)
    old_center = method.center.clone()
    loss = method.loss((view1, view2), torch.zeros(6, dtype=torch.long))
    assert loss.dtype == torch.float32 and loss.shape == ()
    assert loss.item() == pytest.approx(reference_dino_loss(student, teacher, old_center, 0.1, temperature), rel=1e-5)
    torch.testing.assert_close(method.center.double(), reference_center(old_center, teacher, 0.9), rtol=1e-5, atol=1e-6)


def test_centre_moves_only_in_training_mode():
    method = small_dino()
    view1, view2 = two_views(method)
    method.eval()
    method.loss((view1, view2), torch.zeros(6, dtype=torch.long))
    assert torch.equal(method.center, torch.zeros(1, 16))
    method.train()
    method.loss((view1, view2), torch.zeros(6, dtype=torch.long))
    assert method.center.abs().sum() > 0


# ---------------------------------------------------------------- teacher temperature


def test_teacher_temperature_warm_up():
    def at(step, total=100, fraction=0.1):
        return teacher_temperature_at(step, total, start=0.04, final=0.07, warmup_fraction=fraction)

    assert at(0) == 0.04  # step 0
    assert at(5) == pytest.approx(0.055)  # half-way through the 10-step warm-up
    assert at(9) == pytest.approx(0.04 + 0.03 * 0.9)
    assert at(10) == 0.07 and at(60) == 0.07 and at(100) == 0.07  # after the warm-up
    assert at(0, fraction=0.0) == 0.07  # no warm-up: constant from the first step


def test_the_method_keeps_the_next_steps_temperature():
    method = small_dino(teacher_temperature_start=0.04, teacher_temperature=0.07, teacher_warmup_fraction=0.1)
    assert float(method.next_teacher_temperature) == pytest.approx(0.04)  # a fresh run, before any after_step
    method.after_step(5, 100)
    assert float(method.next_teacher_temperature) == pytest.approx(0.055)
    method.after_step(10, 100)
    assert float(method.next_teacher_temperature) == pytest.approx(0.07)
    assert "next_teacher_temperature" in method.state_dict() and "center" in method.state_dict()
    assert float(small_dino(teacher_warmup_fraction=0.0).next_teacher_temperature) == pytest.approx(0.07)


# ---------------------------------------------------------------- gradients


def test_gradients_reach_the_student_only():
    method = small_dino()
    loss = method.loss(two_views(method), torch.zeros(6, dtype=torch.long))
    loss.backward()
    teacher = list(method.teacher_encoder.parameters()) + list(method.teacher_head.parameters())
    assert teacher and all(p.grad is None and not p.requires_grad for p in teacher)
    scale = method.head.prototypes.parametrizations.weight.original0
    assert scale.grad is None and not scale.requires_grad
    student = [(name, p) for name, p in method.named_parameters() if p.requires_grad]
    assert {name.split(".")[0] for name, _ in student} == {"encoder", "head"}
    missing = [name for name, p in student if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing, f"no gradient for {missing}"
    assert not method.center.requires_grad and not method.next_teacher_temperature.requires_grad


def test_the_teacher_logits_are_a_stopped_branch():
    student = torch.randn(6, 5, requires_grad=True)
    teacher = torch.randn(6, 5, requires_grad=True)
    loss = dino_loss(student, teacher, torch.zeros(1, 5), 0.1, 0.04)
    grad_student, grad_teacher = torch.autograd.grad(loss, (student, teacher), allow_unused=True)
    assert grad_teacher is None
    assert grad_student.abs().sum() > 0.01


# ---------------------------------------------------------------- weight-normalised prototypes


def prototype_rows(method: DINO, teacher: bool = False) -> torch.Tensor:
    return (method.teacher_head if teacher else method.head).prototypes.weight.detach()


def test_prototypes_are_unit_rows_and_their_scale_is_not_trained():
    method = small_dino()
    layer = method.head.prototypes
    scale, direction = layer.parametrizations.weight.original0, layer.parametrizations.weight.original1
    assert layer.bias is None
    assert torch.equal(scale, torch.ones(16, 1)) and not scale.requires_grad and direction.requires_grad
    torch.testing.assert_close(prototype_rows(method).norm(dim=1), torch.ones(16))

    optimizer = build_optimizer(method, RunSpec().train)
    trained = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert id(scale) not in trained and id(direction) in trained
    before = direction.detach().clone()
    loss = method.loss(two_views(method), torch.zeros(6, dtype=torch.long))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    method.after_step(1, 10)
    assert not torch.equal(direction, before)  # the direction learns
    assert torch.equal(scale, torch.ones(16, 1))  # g stays 1
    for teacher in (False, True):
        torch.testing.assert_close(prototype_rows(method, teacher).norm(dim=1), torch.ones(16))


def test_state_dict_round_trip_with_weights_only():
    method = small_dino()
    move_student_away(method)
    method.after_step(2, 10)
    with torch.no_grad():
        method.center.normal_()
    buffer = io.BytesIO()
    torch.save(method.state_dict(), buffer)
    buffer.seek(0)
    restored = small_dino()
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    for name, tensor in method.state_dict().items():
        assert torch.equal(tensor, restored.state_dict()[name]), name
    method.eval(), restored.eval()
    views = torch.cat(two_views(method))
    with torch.no_grad():
        for branch in ("student", "teacher"):
            assert torch.equal(method(views, branch), restored(views, branch))


def test_forward_refuses_an_unknown_branch_and_embedding_is_the_students_logits():
    method = small_dino()
    with pytest.raises(ValueError, match="'student' or 'teacher', not 'target'"):
        method(torch.rand(2, 3, 16, 16), "target")
    method.eval()
    features = torch.randn(5, method.encoder.feature_dim)
    with torch.no_grad():
        assert torch.equal(method.embedding(features), method.head(features))
    assert method.embedding(features).shape == (5, 16)


# ---------------------------------------------------------------- EMA teacher


def test_teacher_follows_the_student_by_the_cosine_momentum():
    method = small_dino(momentum_base=0.9, momentum_final=1.0)
    move_student_away(method)
    with torch.no_grad():
        for param in method.encoder.parameters():
            param.add_(0.1)
    pairs = [(method.teacher_encoder, method.encoder), (method.teacher_head, method.head)]
    old_teacher = [[p.detach().clone() for p in teacher.parameters()] for teacher, _ in pairs]
    teacher_buffers = [b.clone() for b in method.teacher_encoder.buffers()]
    method.after_step(3, 10)
    # BYOL's cosine, written out: τ = 1 − (1 − 0.9)(cos(π · 3/10) + 1)/2.
    momentum = 1 - 0.1 * (math.cos(math.pi * 0.3) + 1) / 2
    moved = 0
    for (teacher, student), olds in zip(pairs, old_teacher):
        for new, old, online in zip(teacher.parameters(), olds, student.parameters(), strict=True):
            expected = momentum * old.double() + (1 - momentum) * online.detach().double()
            torch.testing.assert_close(new.double(), expected, rtol=1e-6, atol=1e-6)
            moved += int(not torch.equal(new, old))
    assert moved > 5  # the student was moved away, so the teacher's weights really changed
    # Buffers (batch-norm statistics) are the teacher's own: the EMA leaves them.
    assert all(torch.equal(a, b) for a, b in zip(teacher_buffers, method.teacher_encoder.buffers(), strict=True))


# ---------------------------------------------------------------- resume


def resume_spec() -> RunSpec:
    """128 shapes images, batch 16: 8 steps an epoch, 2 epochs; a warm-up of 8 steps, a fast-moving teacher."""
    return RunSpec.model_validate({
        "dataset": {"name": "shapes", "train_size": 128, "test_size": 40, "image_size": 16},
        "model": {"arch": "small_cnn"},
        "method": {"name": "dino", **SMALL, "teacher_warmup_fraction": 0.5, "momentum_base": 0.9},
        "train": {"epochs": 2, "batch_size": 16, "lr": 1.0, "warmup_epochs": 0.5},
        "augment": {"protocol": "both_branches", "ops": ["crop", "color"]},
        "seed": 3,
    })


def train_dino(folder, stop_after_steps: int | None = None):
    """Build as `ablate.run.build_method` does (encoder first, channels_last), then train."""
    spec = resume_spec()
    seed_everything(spec.seed)
    settings = device_settings(spec, CPU)
    context = MethodContext(build_encoder(spec.model, spec.dataset.image_size), ViewMaker(spec.augment), spec.model, 10)
    method = DINO(spec.method, context).to(memory_format=torch.channels_last)
    data = load_dataset(spec.dataset).pretrain
    outcome = train(method, TrainStep.of(method, settings), data, spec, settings, folder, stop_after_steps=stop_after_steps)
    return method, outcome


def test_resumed_training_is_bit_identical(tmp_path):
    straight, reference = train_dino(None)
    assert float(straight.next_teacher_temperature) == pytest.approx(0.07)
    assert straight.center.abs().sum() > 0

    with pytest.raises(InterruptedForTest):
        train_dino(tmp_path, stop_after_steps=5)  # mid-epoch and mid warm-up
    saved = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)
    assert saved["method"] == {}  # everything DINO keeps is in its state_dict
    assert saved["model"]["next_teacher_temperature"].item() == pytest.approx(0.04 + 0.03 * 5 / 8)
    assert saved["model"]["center"].abs().sum() > 0

    resumed, outcome = train_dino(tmp_path)
    assert outcome.resumed_from_epoch == pytest.approx(5 / 8)
    assert outcome.epoch_losses == reference.epoch_losses  # exact floats
    state, expected = resumed.state_dict(), straight.state_dict()
    assert state.keys() == expected.keys()
    assert any(name.startswith("teacher_head.") for name in state)
    different = [name for name in expected if not torch.equal(state[name], expected[name])]
    assert not different, f"tensors differ after resume: {different[:5]}"


# ---------------------------------------------------------------- docstring example


def test_the_usage_example_in_the_docstring_runs():
    seed_everything(0)
    failed, attempted = doctest.testmod(ablate.methods.dino, raise_on_error=False, report=True)
    assert attempted >= 10 and failed == 0

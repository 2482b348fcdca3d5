"""LARS against a hand computation of its formula; the warm-up + cosine schedule; lr = base × batch / 256."""

import math

import pytest
import torch
from torch import nn

from ablate.config import TrainSpec
from ablate.methods.optim import LARS, build_optimizer, build_schedule, scaled_lr, split_decay_groups, warmup_cosine


def _weight_and_bias(lr: float, momentum: float, weight_decay: float, eta: float):
    weight = nn.Parameter(torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]], dtype=torch.float64))
    bias = nn.Parameter(torch.tensor([0.3, -0.7, 2.0], dtype=torch.float64))
    optimizer = LARS(
        [{"params": [weight]}, {"params": [bias], "weight_decay": 0.0, "adapt": False}],
        lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta,
    )
    return weight, bias, optimizer


def _norm(values: list[float]) -> float:
    return math.sqrt(sum(v * v for v in values))


def test_lars_one_step_matches_the_formula_for_a_weight_and_a_bias():
    lr, momentum, weight_decay, eta = 2.0, 0.9, 1e-2, 1e-3
    weight, bias, optimizer = _weight_and_bias(lr, momentum, weight_decay, eta)
    w = weight.detach().flatten().tolist()
    b = bias.detach().tolist()
    g = [0.1, 0.2, -0.3, 0.4, -0.5, 0.6]
    gb = [1.0, -2.0, 0.5]
    weight.grad = torch.tensor(g, dtype=torch.float64).view(2, 3)
    bias.grad = torch.tensor(gb, dtype=torch.float64)
    optimizer.step()

    # Weight: u = g + wd·w, trust = eta·‖w‖/‖u‖, v = lr·trust·u (fresh momentum buffer), w' = w − v.
    u = [gi + weight_decay * wi for gi, wi in zip(g, w)]
    trust = eta * _norm(w) / _norm(u)
    expected_w = [wi - lr * trust * ui for wi, ui in zip(w, u)]
    assert weight.detach().flatten().tolist() == pytest.approx(expected_w, rel=1e-12, abs=1e-15)
    # Bias: no weight decay, no trust ratio: b' = b − lr·g. (With the trust ratio the step would be
    # ~1000× smaller, with decay it would differ in the 3rd digit: the check below tells them apart.)
    expected_b = [bi - lr * gi for bi, gi in zip(b, gb)]
    assert bias.detach().tolist() == pytest.approx(expected_b, rel=1e-12)
    assert trust < 0.1  # so the two formulas really differ here


def test_lars_second_step_carries_lr_inside_the_momentum_buffer():
    lr1, lr2, momentum, weight_decay, eta = 1.0, 0.25, 0.9, 0.0, 1e-3
    weight, bias, optimizer = _weight_and_bias(lr1, momentum, weight_decay, eta)
    w0 = weight.detach().flatten().tolist()
    g1 = [0.5, -0.5, 0.25, 1.0, 0.0, -1.0]
    g2 = [-0.1, 0.3, 0.2, -0.4, 0.6, 0.1]
    gb1, gb2 = [1.0, 1.0, 1.0], [0.5, -0.5, 2.0]
    b0 = bias.detach().tolist()

    weight.grad = torch.tensor(g1, dtype=torch.float64).view(2, 3)
    bias.grad = torch.tensor(gb1, dtype=torch.float64)
    optimizer.step()
    for group in optimizer.param_groups:
        group["lr"] = lr2  # what the schedule does between steps
    weight.grad = torch.tensor(g2, dtype=torch.float64).view(2, 3)
    bias.grad = torch.tensor(gb2, dtype=torch.float64)
    optimizer.step()

    v1 = [lr1 * eta * _norm(w0) / _norm(g1) * gi for gi in g1]
    w1 = [wi - vi for wi, vi in zip(w0, v1)]
    v2 = [momentum * vi + lr2 * eta * _norm(w1) / _norm(g2) * gi for vi, gi in zip(v1, g2)]
    w2 = [wi - vi for wi, vi in zip(w1, v2)]
    assert weight.detach().flatten().tolist() == pytest.approx(w2, rel=1e-12, abs=1e-15)
    vb1 = [lr1 * g for g in gb1]
    vb2 = [momentum * v + lr2 * g for v, g in zip(vb1, gb2)]
    assert bias.detach().tolist() == pytest.approx([b - v1_ - v2_ for b, v1_, v2_ in zip(b0, vb1, vb2)], rel=1e-12)


def test_lars_trust_ratio_is_one_for_a_zero_weight():
    weight, _, optimizer = _weight_and_bias(lr=0.5, momentum=0.0, weight_decay=0.0, eta=1e-3)
    with torch.no_grad():
        weight.zero_()
    weight.grad = torch.ones(2, 3, dtype=torch.float64)
    optimizer.step()
    assert torch.equal(weight.detach(), torch.full((2, 3), -0.5, dtype=torch.float64))


def test_biases_and_batch_norm_are_excluded_from_decay_and_adaptation():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2), nn.BatchNorm1d(2))
    decay, no_decay = split_decay_groups(model)
    assert {id(p) for p in decay} == {id(model[0].weight), id(model[3].weight)}
    excluded = [model[0].bias, model[1].weight, model[1].bias, model[3].bias, model[4].weight, model[4].bias]
    assert {id(p) for p in no_decay} == {id(p) for p in excluded}
    optimizer = build_optimizer(model, TrainSpec(optimizer="lars", weight_decay=1e-4, batch_size=256, lr=1.0))
    adapted, plain = optimizer.param_groups
    assert adapted["adapt"] is True and adapted["weight_decay"] == 1e-4
    assert plain["adapt"] is False and plain["weight_decay"] == 0.0
    assert {id(p) for p in plain["params"]} == {id(p) for p in excluded}


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_other_optimizers_exclude_biases_and_norms_from_decay(optimizer):
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    built = build_optimizer(model, TrainSpec(optimizer=optimizer, weight_decay=0.1, lr=0.4, batch_size=128))
    assert [g["weight_decay"] for g in built.param_groups] == [0.1, 0.0]
    assert [len(g["params"]) for g in built.param_groups] == [1, 3]
    assert all(g["lr"] == pytest.approx(0.2) for g in built.param_groups)


@pytest.mark.parametrize("base, batch, expected", [(1.0, 256, 1.0), (1.0, 512, 2.0), (0.3, 4096, 4.8), (1.5, 1024, 6.0)])
def test_lr_is_base_times_batch_over_256(base, batch, expected):
    spec = TrainSpec(lr=base, batch_size=batch)
    assert scaled_lr(spec) == pytest.approx(expected)
    optimizer = build_optimizer(nn.Linear(2, 2), spec)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([expected, expected])


def test_warmup_cosine_known_values():
    total, warmup = 100, 10
    assert warmup_cosine(0, total, warmup) == pytest.approx(0.1)  # first step: 1/warmup of the peak
    assert warmup_cosine(4, total, warmup) == pytest.approx(0.5)
    assert warmup_cosine(9, total, warmup) == pytest.approx(1.0)  # last warm-up step reaches the peak
    assert warmup_cosine(10, total, warmup) == pytest.approx(1.0)  # cosine starts at the peak
    assert warmup_cosine(55, total, warmup) == pytest.approx(0.5)  # midpoint of the cosine
    assert warmup_cosine(32, total, warmup) == pytest.approx(0.5 * (1 + math.cos(math.pi * 22 / 90)))
    assert warmup_cosine(100, total, warmup) == pytest.approx(0.0, abs=1e-15)  # end = 0
    assert warmup_cosine(150, total, warmup) == pytest.approx(0.0, abs=1e-15)  # never negative after the end
    assert warmup_cosine(0, total, 0) == 1.0  # no warm-up: start at the peak
    values = [warmup_cosine(s, total, warmup) for s in range(warmup, total + 1)]
    assert all(a >= b for a, b in zip(values, values[1:]))  # monotone decay


def test_schedule_drives_the_optimizer_lr():
    spec = TrainSpec(lr=1.0, batch_size=512, epochs=4, warmup_epochs=1)
    model = nn.Linear(2, 2)
    optimizer = build_optimizer(model, spec)
    schedule = build_schedule(optimizer, spec, steps_per_epoch=5)  # 20 steps, 5 of warm-up
    seen = []
    for _ in range(20):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert seen[0] == pytest.approx(2.0 * 1 / 5)
    assert seen[4] == pytest.approx(2.0)
    assert seen[5] == pytest.approx(2.0)
    assert seen[19] == pytest.approx(2.0 * 0.5 * (1 + math.cos(math.pi * 14 / 15)))
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)

"""MoCo v2: InfoNCE against a loop-by-loop computation of MoCo eq. 1, the views' pairing in the
symmetrised loss, the queue as a ring buffer (contents, order, pointer, wrap-around), gradients only
in the query encoder and head, the key encoder's EMA, and a bit-identical resume (queue included)."""

from __future__ import annotations

import math

import pytest
import torch

from ablate.augment import ViewMaker
from ablate.config import AugmentSpec, ModelSpec, RunSpec
from ablate.config.methods import MoCoV2Spec
from ablate.data import load_dataset
from ablate.methods.base import MethodContext
from ablate.methods.moco_v2 import MoCoV2, infonce_with_queue
from ablate.methods.train import CHECKPOINT_FILE, InterruptedForTest, TrainStep, device_settings, train
from ablate.models import build_encoder

CPU = torch.device("cpu")


def moco(**spec) -> MoCoV2:
    model = ModelSpec(arch="small_cnn")
    context = MethodContext(build_encoder(model, 16), ViewMaker(AugmentSpec(ops=["crop", "color"])), model, num_classes=10)
    return MoCoV2(MoCoV2Spec(**{"proj_hidden_dim": 32, "proj_output_dim": 8, "queue_size": 20, **spec}), context)


def views(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(count, 3, 16, 16, generator=generator), torch.rand(count, 3, 16, 16, generator=generator)


def reference_infonce(queries: torch.Tensor, keys: torch.Tensor, queue: torch.Tensor, temperature: float) -> float:
    """MoCo eq. 1 term by term, float64: −log(exp(q·k+/τ) / (exp(q·k+/τ) + Σ_j exp(q·queue_j/τ)))."""
    q, k, negatives = queries.double(), keys.double(), queue.double()
    total = 0.0
    for i in range(q.shape[0]):
        positive = math.exp(float(q[i] @ k[i]) / temperature)
        others = sum(math.exp(float(q[i] @ negatives[j]) / temperature) for j in range(negatives.shape[0]))
        total += -math.log(positive / (positive + others))
    return total / q.shape[0]


def unit_rows(count: int, dim: int, seed: int) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.randn(count, dim, generator=torch.Generator().manual_seed(seed)), dim=1)


@pytest.mark.parametrize("temperature", [0.07, 0.2, 1.0])
def test_infonce_matches_the_formula(temperature):
    q, k, queue = unit_rows(5, 6, 0), unit_rows(5, 6, 1), unit_rows(7, 6, 2)
    assert infonce_with_queue(q, k, queue, temperature).item() == pytest.approx(reference_infonce(q, k, queue, temperature), rel=1e-5)


def test_infonce_known_answer():
    # Each query equals its key, and every queued key is orthogonal to every query: the positive
    # logit is 1/τ, the K negatives 0, so the loss is −log(e^{1/τ} / (e^{1/τ} + K)).
    q = torch.eye(6)[:2]
    queue = torch.eye(6)[2:]  # K = 4
    t = 0.5
    expected = -math.log(math.exp(1 / t) / (math.exp(1 / t) + 4))
    assert infonce_with_queue(q, q.clone(), queue, t).item() == pytest.approx(expected, rel=1e-6)


def test_each_views_queries_meet_the_other_views_keys_and_the_two_directions_are_averaged():
    """A fake network gives known outputs: q1 = k2 (cosine 1), q2 ⟂ k1 (cosine 0), queue ⟂ queries."""
    method = moco(queue_size=4, temperature=0.5)
    eye = torch.eye(8)
    outputs = {
        "query": torch.cat([eye[0:2], eye[2:4]]),  # q1 = e0, e1; q2 = e2, e3
        "key": torch.cat([eye[6:8], eye[0:2]]),  # k1 = e6, e7 (⟂ q2); k2 = e0, e1 (= q1)
    }
    method.queue.copy_(eye[4:8])  # negatives e4..e7: orthogonal to every query
    loss = method.loss(views(2, 0), torch.zeros(2), forward=lambda images, branch: 3.0 * outputs[branch])
    t, k = 0.5, 4
    direction_1 = -math.log(math.exp(1 / t) / (math.exp(1 / t) + k))  # q1 against k2 = q1
    direction_2 = -math.log(1 / (1 + k))  # q2 against k1: every logit is 0
    assert loss.item() == pytest.approx((direction_1 + direction_2) / 2, rel=1e-6)


def test_loss_and_queue_over_a_few_steps_with_wrap_around():
    """K = 20, 2 × 4 keys a step: the pointer goes 0 → 8 → 16 → 4, the third step wrapping around.
    Each step's loss is eq. 1 against the queue *before* the step; the queue is then a ring buffer."""
    method = moco(queue_size=20, temperature=0.2)
    ring = [row.clone() for row in method.queue]  # the reference: a python list written one key at a time
    pointer = 0
    for step in range(3):
        view1, view2 = views(4, seed=step)
        both = torch.cat([view1, view2])
        with torch.no_grad():  # the network's outputs (train mode: batch statistics, so the loss's pass gives the same)
            q = torch.nn.functional.normalize(method(both, "query"), dim=1)
            k = torch.nn.functional.normalize(method(both, "key"), dim=1)
        queue_before = torch.stack(ring)
        expected = (reference_infonce(q[:4], k[4:], queue_before, 0.2) + reference_infonce(q[4:], k[:4], queue_before, 0.2)) / 2
        assert method.loss((view1, view2), torch.zeros(4)).item() == pytest.approx(expected, rel=1e-5)
        for key in k:  # view 1's keys, then view 2's
            ring[pointer] = key
            pointer = (pointer + 1) % 20
        torch.testing.assert_close(method.queue, torch.stack(ring), rtol=0, atol=1e-6)
        assert method.queue_pointer.item() == pointer
        assert method.queue_pointer.dtype == torch.long and method.queue_pointer.shape == ()
    assert pointer == 4  # it did wrap around


@pytest.mark.parametrize("size, batches", [(10, [4, 4, 4, 4]), (5, [13, 3]), (6, [6, 2, 6])],
                         ids=["wraps", "more-keys-than-rows", "exactly-full"])
def test_enqueue_is_a_ring_buffer_that_keeps_the_newest_keys(size, batches):
    method = moco(queue_size=size, proj_output_dim=3)
    ring = [row.clone() for row in method.queue]
    pointer, label = 0, 0
    for count in batches:
        keys = torch.stack([torch.tensor([label + i, -(label + i), 0.5]) for i in range(count)], dim=0).float()
        label += count
        method.enqueue(keys)
        for key in keys:  # one at a time: later keys overwrite earlier ones, so the newest K remain
            ring[pointer] = key
            pointer = (pointer + 1) % size
        assert torch.equal(method.queue, torch.stack(ring))
        assert method.queue_pointer.item() == pointer
    assert method.queue.requires_grad is False


def test_the_initial_queue_is_unit_rows_drawn_from_the_seeded_global_generator():
    torch.manual_seed(4)
    first = moco(queue_size=30)
    torch.manual_seed(4)
    again = moco(queue_size=30)
    assert torch.equal(first.queue, again.queue)
    torch.testing.assert_close(first.queue.norm(dim=1), torch.ones(30))
    assert first.queue.shape == (30, 8) and first.queue_pointer.item() == 0
    assert {"queue", "queue_pointer"} <= set(first.state_dict())


def test_only_the_query_encoder_and_head_get_gradients():
    method = moco()
    loss = method.loss(views(4, 0), torch.zeros(4))
    loss.backward()
    for name, param in [*method.encoder.named_parameters(), *method.head.named_parameters()]:
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    for name, param in [*method.key_encoder.named_parameters(), *method.key_head.named_parameters()]:
        assert not param.requires_grad and param.grad is None, name
    assert not method.queue.requires_grad


def test_keys_are_a_stop_gradient_even_if_the_key_encoder_asked_for_gradients():
    """The keys are computed under no_grad: turning requires_grad on in the key network changes nothing."""
    method = moco()
    method.key_encoder.requires_grad_(True)
    method.key_head.requires_grad_(True)
    method.loss(views(4, 1), torch.zeros(4)).backward()
    assert all(p.grad is None for p in [*method.key_encoder.parameters(), *method.key_head.parameters()])
    assert method.head[0].weight.grad is not None


@pytest.mark.parametrize("step, total, momentum", [(0, 10, 0.5), (5, 10, 0.75), (10, 10, 1.0)])
def test_the_key_encoder_follows_by_ema_on_the_cosine_schedule(step, total, momentum):
    method = moco(momentum_base=0.5, momentum_final=1.0)
    optimizer = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.5)
    method.loss(views(4, 2), torch.zeros(4)).backward()
    optimizer.step()  # the query network moves away from the key network
    keys = [*method.key_encoder.parameters(), *method.key_head.parameters()]
    queries = [*method.encoder.parameters(), *method.head.parameters()]
    before = [p.detach().clone() for p in keys]
    key_statistics = method.key_head[1].running_mean.clone()
    assert any(not torch.equal(a, b) for a, b in zip(before, queries, strict=True))
    method.after_step(step, total)
    for new, old, query in zip(keys, before, queries, strict=True):
        torch.testing.assert_close(new, momentum * old + (1 - momentum) * query, rtol=0, atol=1e-6)
    assert torch.equal(method.key_head[1].running_mean, key_statistics)  # buffers are the key network's own


def test_embedding_is_the_query_projection():
    method = moco().eval()
    images = views(4, 3)[0]
    with torch.no_grad():
        method.key_head[-1].weight.add_(1.0)  # make the key head differ from the query head
        torch.testing.assert_close(method.embedding(method.encoder(images)), method(images, "query"))
        assert not torch.allclose(method.embedding(method.encoder(images)), method(images, "key"))
    with pytest.raises(ValueError, match="branches 'query' and 'key'"):
        method(images, "target")


# --------------------------------------------------------------------------- resume


def run_spec() -> RunSpec:
    """64 shapes images of 16 px, batch 16: 4 steps an epoch, 2 epochs; 32 keys a step into K = 40 (wraps)."""
    return RunSpec.model_validate({
        "dataset": {"name": "shapes", "train_size": 64, "test_size": 16, "image_size": 16},
        "model": {"arch": "small_cnn"},
        "method": {"name": "moco_v2", "queue_size": 40, "proj_hidden_dim": 32, "proj_output_dim": 8},
        "train": {"epochs": 2, "batch_size": 16, "lr": 1.0, "warmup_epochs": 0.5},
        "augment": {"protocol": "both_branches", "ops": ["crop", "color"]},
        "seed": 3,
    })


def train_moco(folder, stop_after_steps: int | None = None):
    spec = run_spec()
    torch.manual_seed(spec.seed)  # as a run does before building the method
    settings = device_settings(spec, CPU)
    context = MethodContext(build_encoder(spec.model, 16), ViewMaker(spec.augment), spec.model, num_classes=10)
    method = MoCoV2(spec.method, context)
    initial_queue = method.queue.clone()
    data = load_dataset(spec.dataset).pretrain
    outcome = train(method, TrainStep.of(method, settings), data, spec, settings, folder, stop_after_steps=stop_after_steps)
    return method, outcome, initial_queue


def test_an_interrupted_run_resumes_bit_identically_queue_and_key_encoder_included(tmp_path):
    straight, reference, initial_queue = train_moco(None)
    assert reference.steps == 8
    assert straight.queue_pointer.item() == (8 * 32) % 40
    assert not torch.equal(straight.queue, initial_queue)
    assert not torch.equal(straight.key_head[0].weight, straight.head[0].weight)  # the EMA lags behind

    with pytest.raises(InterruptedForTest):
        train_moco(tmp_path, stop_after_steps=3)  # mid-epoch, pointer at 96 % 40 = 16
    saved = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)
    assert saved["model"]["queue_pointer"].item() == 16 and saved["method"] == {}
    resumed, outcome, _ = train_moco(tmp_path)
    assert outcome.resumed_from_epoch == pytest.approx(3 / 4)
    assert outcome.epoch_losses == reference.epoch_losses
    state, expected = resumed.state_dict(), straight.state_dict()
    assert state.keys() == expected.keys()
    assert {"queue", "queue_pointer"} <= set(state)
    assert {name.split(".")[0] for name in state} == {"encoder", "head", "key_encoder", "key_head", "queue", "queue_pointer"}
    different = [name for name in expected if not torch.equal(state[name], expected[name])]
    assert not different, f"tensors differ after resume: {different[:5]}"

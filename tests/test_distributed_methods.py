"""Every method on two gloo processes does the single-process maths on the same global batch (ablate.distributed).

One spawn runs one step of every method on 2 ranks of 8 images (global BN, DDP, gathered batch statistics, global
keys and centre) and saves what each rank ends with; the test then takes the same step on one process of 16: the
loss the training loop records, every gradient, and the whole state after a plain SGD step and `after_step` (BN
running statistics, target / key / teacher weights, MoCo's queue and pointer, DINO's centre) within 1e-5 relative.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ablate import distributed
from ablate.config import RunSpec
from ablate.data import load_dataset
from ablate.methods import METHODS
from ablate.methods.train import CHECKPOINT_FILE, ModelForward, device_settings
from ablate.run import build_method, seed_everything

CPU = torch.device("cpu")
RELATIVE = 1e-5  # the brief's target: within 1e-5 relative of one process
ZERO_FRACTION = 1e-4  # a gradient (a state tensor) below this fraction of the largest is zero up to rounding
GLOBAL_BATCH = 16
SGD_LR = 0.5  # a plain SGD step after the backward, so that `after_step` has moved weights to follow
EMA = 0.5  # a low momentum: the target moves halfway to the online weights, far more than the tolerance
TARGET_PREFIXES = {"moco_v2": "key_", "byol": "target_", "dino": "teacher_"}  # the EMA networks' state_dict keys

# Small heads and queues; the momentum fixed at EMA (base == final).
SMALL_METHODS = {
    "supervised": {},
    "simclr": {},
    "moco_v2": {"queue_size": 64, "proj_hidden_dim": 32, "proj_output_dim": 16, "momentum_base": EMA, "momentum_final": EMA},
    "byol": {"proj_hidden_dim": 32, "proj_output_dim": 16, "pred_hidden_dim": 32, "momentum_base": EMA, "momentum_final": EMA},
    "simsiam": {"proj_hidden_dim": 32, "proj_output_dim": 16, "pred_hidden_dim": 16},
    "barlow_twins": {"proj_hidden_dim": 32, "proj_output_dim": 16},
    "vicreg": {"proj_hidden_dim": 32, "proj_output_dim": 16},
    "dino": {"proj_hidden_dim": 32, "proj_output_dim": 16, "num_prototypes": 24, "momentum_base": EMA, "momentum_final": EMA},
}


def tiny_spec(name: str, **changes) -> RunSpec:
    """64 shapes images of 16 px, global batch 16 (8 a rank), the method's small heads."""
    spec = {
        "dataset": {"name": "shapes", "train_size": 64, "test_size": 16, "image_size": 16},
        "model": {"arch": "small_cnn", "proj_hidden": 32, "proj_dim": 16},
        "method": {"name": name, **SMALL_METHODS[name]},
        "train": {"epochs": 2, "batch_size": GLOBAL_BATCH, "lr": 1.0, "warmup_epochs": 0.5},
        "augment": {"protocol": "both_branches", "ops": ["crop", "color"]},
        "seed": 5,
    }
    for section, values in changes.items():
        spec[section] = {**spec[section], **values}
    return RunSpec.model_validate(spec)


def fresh_method(spec: RunSpec):
    seed_everything(spec.seed)
    return build_method(spec, 10, device_settings(spec, CPU))


def fixed_inputs(spec: RunSpec) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    """The network inputs and labels of the first global batch, made once: both sides get exactly these."""
    method = fresh_method(spec)
    data = method.pretraining_data(load_dataset(spec.dataset))
    images, labels = data.images[:GLOBAL_BATCH], data.labels[:GLOBAL_BATCH]
    return method.make_inputs(images, labels, torch.Generator().manual_seed(11)), labels


def sgd_step_then_after_step(method) -> None:
    """What the loop does after the backward, with a plain SGD step: the weights move, then the EMA targets follow."""
    with torch.no_grad():
        for parameter in method.parameters():
            if parameter.grad is not None:
                parameter.sub_(SGD_LR * parameter.grad)
    method.after_step(1, 2)


def _one_step_of_every_method(device: torch.device, spec_jsons: list[str], inputs_file: str, out_folder: str) -> None:
    """Each method in turn: this rank's loss and backward on its rows of the fixed inputs through the training path
    (global BN, DDP, gathers), the loss the loop would record, then an SGD step and `after_step`."""
    every_input = torch.load(inputs_file)
    for spec_json in spec_jsons:
        spec = RunSpec.model_validate_json(spec_json)
        model = fresh_method(spec)
        forward = ModelForward(distributed.wrap_model(model, device), device_settings(spec, device))
        inputs, labels = every_input[spec.method.name]
        rows = distributed.rank_slice(len(labels))
        loss = model.loss(tuple(tensor[rows] for tensor in inputs), labels[rows], forward)
        loss.backward()
        grads = {name: parameter.grad.clone() for name, parameter in model.named_parameters() if parameter.grad is not None}
        recorded = distributed.mean_over_ranks(loss.detach())  # what train.py accumulates
        sgd_step_then_after_step(model)
        state = {name: tensor.clone() for name, tensor in model.state_dict().items()}
        torch.save({"loss": recorded, "grads": grads, "state": state},
                   Path(out_folder) / f"{spec.method.name}.rank{distributed.rank()}.pt")


def relative_error(got: torch.Tensor, expected: torch.Tensor, scale: float | None = None) -> float:
    """max |got − expected| / `scale`, by default max |expected| (the absolute error when that is 0)."""
    got, expected = got.double(), expected.double()
    scale = expected.abs().max().item() if scale is None else scale
    error = (got - expected).abs().max().item()
    return error / scale if scale else error


def relative_errors(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> dict[str, float]:
    """Each tensor's relative error. A tensor that is zero in exact arithmetic (the gradient of a bias right before
    batch norm, which subtracts it again; the running mean of a batch norm whose input has mean 0) is rounding
    noise of the size of its siblings either way, so it is measured against the largest of `expected` instead."""
    largest = max(tensor.abs().max().item() for tensor in expected.values())
    return {name: relative_error(got[name], tensor, None if tensor.abs().max().item() > ZERO_FRACTION * largest else largest)
            for name, tensor in expected.items()}


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> Path:
    """One spawn of 2 gloo ranks that takes one step of every method (a spawn costs seconds: one for them all)."""
    folder = tmp_path_factory.mktemp("ranks")
    specs = [tiny_spec(name) for name in SMALL_METHODS]
    torch.save({spec.method.name: fixed_inputs(spec) for spec in specs}, folder / "inputs.pt")
    distributed.spawn(_one_step_of_every_method, 2, [spec.model_dump_json() for spec in specs], str(folder / "inputs.pt"), str(folder))
    return folder


def test_every_method_is_covered():
    assert set(SMALL_METHODS) == set(METHODS)


@pytest.mark.parametrize("name", list(SMALL_METHODS))
def test_one_step_on_two_ranks_matches_one_process(name, two_ranks):
    spec = tiny_spec(name)
    inputs, labels = torch.load(two_ranks / "inputs.pt")[name]
    single = fresh_method(spec)
    before = {key: tensor.clone() for key, tensor in single.state_dict().items()}
    loss = single.loss(inputs, labels)
    loss.backward()
    grads = {key: parameter.grad.clone() for key, parameter in single.named_parameters() if parameter.grad is not None}
    sgd_step_then_after_step(single)
    after = single.state_dict()

    for rank in (0, 1):
        got = torch.load(two_ranks / f"{name}.rank{rank}.pt")
        # Relative to max(|loss|, 1): SimSiam's loss is a mean of cosines in [−1, 1] that nearly cancel at
        # initialisation, so its rounding is that of terms of size 1, not of the small sum.
        assert relative_error(got["loss"], loss.detach(), max(abs(loss.item()), 1.0)) < RELATIVE, (got["loss"], loss)
        assert got["grads"].keys() == grads.keys() and grads
        errors = relative_errors(got["grads"], grads)
        assert max(errors.values()) < RELATIVE, sorted(errors.items(), key=lambda item: -item[1])[:3]
        assert got["state"].keys() == after.keys()
        errors = relative_errors(got["state"], {key: tensor for key, tensor in after.items() if tensor.is_floating_point()})
        assert max(errors.values()) < RELATIVE, sorted(errors.items(), key=lambda item: -item[1])[:3]
        counters = [key for key in after if not after[key].is_floating_point()]  # num_batches_tracked, queue_pointer
        assert all(torch.equal(got["state"][key], after[key]) for key in counters)

    # The state compared above really moved in the step, by far more than the tolerance.
    running = [key for key in after if "running_var" in key]
    assert running and all(relative_error(after[key], before[key]) > 1e3 * RELATIVE for key in running)
    if name in TARGET_PREFIXES:
        targets = [key for key in after if key.startswith(TARGET_PREFIXES[name]) and after[key].is_floating_point()]
        assert max(relative_error(after[key], before[key]) for key in targets) > 1e3 * RELATIVE


def test_moco_enqueues_the_global_keys_in_the_one_process_order(two_ranks):
    """Both views' keys of the whole batch (2 × 16) replace queue rows 0-31, the rest stay; every rank has the queue."""
    spec = tiny_spec("moco_v2")
    initial = fresh_method(spec).queue
    ranks = [torch.load(two_ranks / f"moco_v2.rank{rank}.pt")["state"] for rank in (0, 1)]
    keys = 2 * GLOBAL_BATCH
    for state in ranks:
        assert int(state["queue_pointer"]) == keys
        assert torch.equal(state["queue"][keys:], initial[keys:])
        assert relative_error(state["queue"][:keys], initial[:keys]) > 0.1
    assert torch.equal(ranks[0]["queue"], ranks[1]["queue"])


def test_dino_centre_is_the_global_batch_mean(two_ranks):
    """C = m·0 + (1 − m)·mean of the teacher logits of all 32 views, whichever rank computed them."""
    spec = tiny_spec("dino")
    inputs, _ = torch.load(two_ranks / "inputs.pt")["dino"]
    teacher = fresh_method(spec)
    with torch.no_grad():
        logits = teacher(torch.cat(inputs), "teacher")
    expected = (1 - spec.method.center_momentum) * logits.mean(dim=0, keepdim=True)
    for rank in (0, 1):
        centre = torch.load(two_ranks / f"dino.rank{rank}.pt")["state"]["center"]
        assert relative_error(centre, expected) < RELATIVE


def test_moco_trains_two_steps_on_two_processes(tmp_path):
    """The whole training loop: 2 steps of 2 × 16 keys move the pointer of a 100-key queue to 64; rows 64-99 are
    still the initial keys, the first 64 are new unit keys; the recorded loss is finite."""
    spec = tiny_spec("moco_v2", method={"queue_size": 100})
    distributed.train_distributed(spec, 2, tmp_path, stop_after_steps=2)
    saved = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)
    queue, pointer = saved["model"]["queue"], saved["model"]["queue_pointer"]
    written = 2 * GLOBAL_BATCH * 2
    assert saved["state"]["global_step"] == 2 and int(pointer) == written
    assert torch.isfinite(queue).all()
    initial = fresh_method(spec).queue
    assert torch.equal(queue[written:], initial[written:])
    assert torch.allclose(queue[:written].norm(dim=1), torch.ones(written), atol=1e-5)
    assert not torch.isclose(queue[:written], initial[:written]).all(dim=1).any()
    assert torch.isfinite(torch.tensor(saved["state"]["loss_sum"]))


def _two_steps_of_every_method(device: torch.device, spec_jsons: list[str], base: str) -> None:
    """Each method trains 2 steps through the training loop in this process group (DDP, global BN); rank 0
    checkpoints into <base>/<method>/."""
    from ablate.methods.train import InterruptedForTest, train
    from ablate.run import build_trainable

    for spec_json in spec_jsons:
        spec = RunSpec.model_validate_json(spec_json)
        settings = device_settings(spec, device)
        seed_everything(spec.seed)
        data = load_dataset(spec.dataset)
        model, step = build_trainable(spec, 10, settings)
        folder = Path(base) / spec.method.name
        folder.mkdir(exist_ok=True)
        with pytest.raises(InterruptedForTest):
            train(model, step, model.pretraining_data(data), spec, settings, folder, stop_after_steps=2)


def test_every_method_trains_through_the_loop_on_two_processes(tmp_path):
    """Past the first step too: DDP raises at the second step when a trained parameter gets no gradient (its
    reducer waits for it), which one step cannot show. Every method's weights move and stay finite."""
    specs = [tiny_spec(name) for name in SMALL_METHODS]
    distributed.spawn(_two_steps_of_every_method, 2, [spec.model_dump_json() for spec in specs], str(tmp_path))
    for spec in specs:
        saved = torch.load(tmp_path / spec.method.name / CHECKPOINT_FILE, weights_only=True)
        assert saved["state"]["global_step"] == 2, spec.method.name
        initial = fresh_method(spec).state_dict()
        weights = {name: value for name, value in saved["model"].items() if value.is_floating_point()}
        assert all(torch.isfinite(value).all() for value in weights.values()), spec.method.name
        assert any(not torch.equal(value, initial[name]) for name, value in weights.items()), spec.method.name

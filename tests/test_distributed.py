"""One run across two gloo processes on the CPU (ablate.distributed): the same loss and gradients as one process on
the same global batch, per-rank views, reproducible and resumable training, and rank 0 alone writing files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ablate import distributed
from ablate.config import RunSpec
from ablate.config.methods import METHOD_SPECS
from ablate.data import load_dataset
from ablate.methods.train import CHECKPOINT_FILE, InterruptedForTest, ModelForward, device_settings, train
from ablate.run import build_method, build_trainable, seed_everything

CPU = torch.device("cpu")
RELATIVE = 1e-5  # the target: within 1e-5 relative of one process


def tiny_spec(**changes) -> RunSpec:
    """64 shapes images of 16 px, global batch 16 (8 a rank): 4 steps an epoch, 2 epochs."""
    spec = {
        "dataset": {"name": "shapes", "train_size": 64, "test_size": 16, "image_size": 16},
        "model": {"arch": "small_cnn"},
        "train": {"epochs": 2, "batch_size": 16, "lr": 1.0, "warmup_epochs": 0.5},
        "augment": {"protocol": "both_branches", "ops": ["crop", "color"]},
        "seed": 5,
    }
    for section, values in changes.items():
        spec[section] = {**spec.get(section, {}), **values} if isinstance(values, dict) else values
    return RunSpec.model_validate(spec)


def fresh_method(spec: RunSpec):
    seed_everything(spec.seed)
    return build_method(spec, 10, device_settings(spec, CPU))


def fixed_views(spec: RunSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """Two views of the first global batch, made once: both sides of the comparison get exactly these."""
    images = load_dataset(spec.dataset).pretrain.images[: spec.train.batch_size]
    return fresh_method(spec).views.pair(images, torch.Generator().manual_seed(11))


def _one_step(device: torch.device, spec_json: str, views_file: str, out_folder: str) -> None:
    """A rank's loss and backward on its rows of the fixed views, through the training path (global BN, DDP, gather)."""
    spec = RunSpec.model_validate_json(spec_json)
    model = fresh_method(spec)
    forward = ModelForward(distributed.wrap_model(model, device), device_settings(spec, device))
    view1, view2 = torch.load(views_file)
    rows = distributed.rank_slice(len(view1))
    loss = model.loss((view1[rows], view2[rows]), torch.zeros(len(view1[rows]), dtype=torch.long), forward)
    loss.backward()
    grads = {name: parameter.grad for name, parameter in model.named_parameters()}
    buffers = {name: buffer for name, buffer in model.named_buffers() if "running" in name}
    torch.save({"loss": loss.detach(), "grads": grads, "buffers": buffers}, Path(out_folder) / f"rank{distributed.rank()}.pt")


def _train_in_rank_folder(device: torch.device, spec_json: str, base: str) -> None:
    """Train two steps with a folder of its own for each rank: who wrote what shows in the folders."""
    spec = RunSpec.model_validate_json(spec_json)
    settings = device_settings(spec, device)
    seed_everything(spec.seed)
    data = load_dataset(spec.dataset)
    model, step = build_trainable(spec, 10, settings)
    folder = Path(base) / f"rank{distributed.rank()}"
    folder.mkdir()
    with pytest.raises(InterruptedForTest):
        train(model, step, data.pretrain, spec, settings, folder, stop_after_steps=2)


def relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    """max |got − expected| / max |expected| (0 when both are 0)."""
    scale = expected.abs().max().item()
    return (got - expected).abs().max().item() / scale if scale else (got - expected).abs().max().item()


def test_one_step_matches_one_process_on_the_same_global_batch(tmp_path):
    """Loss, every parameter's gradient and the BN running statistics after one forward/backward of the same
    16 views: 2 ranks of 8 (global BN, DDP, gathered negatives) against one process of 16."""
    spec = tiny_spec()
    views = fixed_views(spec)
    torch.save(views, tmp_path / "views.pt")
    distributed.spawn(_one_step, 2, spec.model_dump_json(), str(tmp_path / "views.pt"), str(tmp_path))

    single = fresh_method(spec)
    loss = single.loss(views, torch.zeros(len(views[0]), dtype=torch.long))
    loss.backward()
    for rank in (0, 1):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert relative_error(got["loss"], loss.detach()) < RELATIVE
        errors = {name: relative_error(got["grads"][name], parameter.grad) for name, parameter in single.named_parameters()}
        assert max(errors.values()) < RELATIVE, sorted(errors.items(), key=lambda item: -item[1])[:3]
        running = {name: buffer for name, buffer in single.named_buffers() if "running" in name}
        assert running.keys() == got["buffers"].keys() and running
        assert all(relative_error(got["buffers"][name], running[name]) < RELATIVE for name in running)


@pytest.fixture(scope="module")
def straight_runs(tmp_path_factory):
    """Two uninterrupted 2-process runs of the same spec."""
    spec = tiny_spec()
    folders = [tmp_path_factory.mktemp(f"straight{index}") for index in range(2)]
    for folder in folders:
        distributed.train_distributed(spec, 2, folder)
    return spec, [torch.load(folder / CHECKPOINT_FILE, weights_only=True) for folder in folders]


def assert_same_checkpoint_weights(a: dict, b: dict) -> None:
    assert a["model"].keys() == b["model"].keys()
    different = [name for name in a["model"] if not torch.equal(a["model"][name], b["model"][name])]
    assert not different, different[:5]


def test_two_process_training_is_reproducible_and_trains(straight_runs):
    spec, (first, second) = straight_runs
    assert first["state"]["global_step"] == 8 and first["state"]["epoch"] == 2
    assert_same_checkpoint_weights(first, second)
    initial = fresh_method(spec).state_dict()
    assert any(not torch.equal(initial[name], first["model"][name]) for name in initial)


def test_interrupted_and_resumed_equals_uninterrupted(straight_runs, tmp_path):
    spec, (straight, _) = straight_runs
    distributed.train_distributed(spec, 2, tmp_path, stop_after_steps=3)  # mid-epoch 1
    assert torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)["state"]["global_step"] == 3
    distributed.train_distributed(spec, 2, tmp_path)
    resumed = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)
    assert resumed["state"]["resumed_from_epoch"] == 0.75
    assert_same_checkpoint_weights(resumed, straight)


def test_only_rank_zero_writes_files(tmp_path):
    distributed.spawn(_train_in_rank_folder, 2, tiny_spec().model_dump_json(), str(tmp_path))
    assert [path.name for path in (tmp_path / "rank0").iterdir()] == [CHECKPOINT_FILE]
    assert list((tmp_path / "rank1").iterdir()) == []


def test_each_rank_draws_its_own_views_reproducibly(monkeypatch):
    spec = tiny_spec()
    images = load_dataset(spec.dataset).pretrain.images[:8]
    method = fresh_method(spec)

    def views_of(rank: int, step: int) -> torch.Tensor:
        monkeypatch.setattr(distributed, "rank", lambda: rank)
        generator = torch.Generator()
        distributed.seed_views(generator, spec.seed, step)
        return torch.cat(method.views.pair(images, generator))

    assert torch.equal(views_of(1, 4), views_of(1, 4))
    assert not torch.equal(views_of(0, 4), views_of(1, 4))
    assert not torch.equal(views_of(1, 4), views_of(1, 5))


def test_refusals_name_the_problem_in_one_line(monkeypatch):
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    with pytest.raises(ValueError, match="^train.batch_size 15 is not divisible by the 2 processes$"):
        distributed.check_trainable(tiny_spec(train={"batch_size": 15}))
    for name in METHOD_SPECS:  # every method trains on several processes (tests/test_distributed_methods.py)
        distributed.check_trainable(tiny_spec(method={"name": name}))


def test_a_whole_run_on_two_processes_stores_one_result(straight_runs, tmp_path):
    """Train on 2 ranks, then rank 0 evaluates alone and writes result.json: its losses are those of the
    2-process training above, and the checkpoint is gone (the result supersedes it)."""
    spec, (straight, _) = straight_runs
    distributed.run_distributed(spec, 2, "tiny", "run0", tmp_path)
    assert [path.name for path in tmp_path.iterdir()] == ["result.json"]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["status"] == "completed", result["error"]
    assert result["curves"]["epoch_loss"] == straight["state"]["epoch_losses"]
    assert 0.0 <= result["metrics"]["linear_top1"] <= 100.0

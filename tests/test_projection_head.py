"""SimCLR's projection head in a run (Figure 8): model.head builds g, eval.representation picks what the
probes read (h or z = g(h)), the default stays bit-identical, and the grids plan as the paper's axes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from ablate.augment import ViewMaker
from ablate.config import AugmentSpec, GridError, ModelSpec, RunSpec, load_grid
from ablate.config.methods import SimCLRSpec
from ablate.data import load_dataset
from ablate.evaluate.collapse import collapse_record
from ablate.evaluate.features import extract_features
from ablate.evaluate.knn import knn_accuracy
from ablate.evaluate.linear import train_linear_probe
from ablate.methods.base import MethodContext
from ablate.methods.simclr import SimCLR, nt_xent
from ablate.methods.train import device_settings
from ablate.models import build_encoder
from ablate.plan import plan_grid, run_id_of
from ablate.run import build_method, evaluate, probe_features
from cli_helpers import run_ablate

REPO = Path(__file__).parents[1]
CPU = torch.device("cpu")
FAST = {"channels_last": True}  # as device_settings on the CPU: the same features bit for bit
TINY = {
    "dataset": {"name": "shapes", "train_size": 64, "test_size": 32, "image_size": 16},
    "model": {"arch": "small_cnn", "proj_dim": 8},
    "eval": {"linear_epochs": 3, "knn_k": 5},
    "seed": 2,
}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_spec(**sections) -> RunSpec:
    data = {key: dict(value) if isinstance(value, dict) else value for key, value in TINY.items()}
    for section, fields in sections.items():
        data[section] = {**data.get(section, {}), **fields} if isinstance(fields, dict) else fields
    return RunSpec.model_validate(data)


@pytest.fixture(scope="module")
def data():
    return load_dataset(RunSpec.model_validate(TINY).dataset)


def simclr_with_head(head: str, seed: int = 0) -> SimCLR:
    torch.manual_seed(seed)
    model = ModelSpec(arch="small_cnn", head=head, proj_dim=8)
    context = MethodContext(build_encoder(model, 16), ViewMaker(AugmentSpec(ops=["crop", "color"])), model, num_classes=10)
    return SimCLR(SimCLRSpec(temperature=0.5), context)


def test_the_default_head_gives_the_same_weights_and_loss_as_before():
    # The head SimCLR built before model.head existed, written out: same seed -> same weights, same loss, bit for bit.
    torch.manual_seed(0)
    model = ModelSpec(arch="small_cnn")  # head at its default, mlp
    encoder = build_encoder(model, 16)
    dim = encoder.feature_dim
    earlier_head = nn.Sequential(nn.Linear(dim, dim, bias=False), nn.BatchNorm1d(dim), nn.ReLU(inplace=True), nn.Linear(dim, 128))
    earlier = {**{f"encoder.{k}": v for k, v in encoder.state_dict().items()}, **{f"head.{k}": v for k, v in earlier_head.state_dict().items()}}
    torch.manual_seed(0)
    views = ViewMaker(AugmentSpec(ops=["crop", "color"]))
    simclr = SimCLR(SimCLRSpec(temperature=0.5), MethodContext(build_encoder(model, 16), views, model, num_classes=10))
    now = simclr.state_dict()
    assert list(now) == list(earlier)  # checkpoints of earlier runs load
    assert all(torch.equal(now[key], earlier[key]) for key in earlier)
    images = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(5))
    inputs = simclr.make_inputs(images, torch.zeros(8, dtype=torch.long), torch.Generator().manual_seed(6))
    encoder.load_state_dict(simclr.encoder.state_dict())
    expected = nt_xent(*earlier_head(encoder(torch.cat(inputs))).chunk(2), 0.5)
    assert simclr.loss(inputs, torch.zeros(8, dtype=torch.long)).item() == expected.item()


def test_each_head_kind_is_what_simclr_compares():
    none, linear = simclr_with_head("none"), simclr_with_head("linear")
    assert isinstance(none.head, nn.Identity) and not list(none.head.parameters())
    assert isinstance(linear.head, nn.Linear) and linear.head.weight.shape == (8, linear.encoder.feature_dim)
    images = torch.rand(6, 3, 16, 16)
    # No head: the loss compares h itself; linear: W h + b.
    h = none.encoder(images)
    assert torch.equal(none(images), h)
    h = linear.encoder(images)
    torch.testing.assert_close(linear(images), h @ linear.head.weight.T + linear.head.bias)


def test_the_default_run_id_is_unchanged_and_mlp_written_out_is_the_default():
    # ids of default runs: tests/test_plan.py pins them; here writing the defaults out changes no id.
    assert run_id_of(RunSpec.model_validate({"model": {"head": "mlp"}, "eval": {"representation": "h"}})) == run_id_of(RunSpec())
    assert len({run_id_of(RunSpec.model_validate({"model": {"head": kind}})) for kind in ("none", "linear", "mlp")}) == 3


@pytest.mark.parametrize("head", ["none", "linear", "mlp"])
def test_probe_features_read_h_or_z(head):
    settings = device_settings(tiny_spec(), CPU)
    images = torch.randint(0, 256, (10, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    method = build_method(tiny_spec(model={"head": head}), 10, settings)
    method.train()  # as after training: probe_features must use batch norm's running statistics and restore the mode
    h = extract_features(method.encoder, images, CPU, **FAST)
    encoded, read = probe_features(method, images, tiny_spec(model={"head": head}), settings)
    assert torch.equal(encoded, h) and torch.equal(read, h)  # representation h: the encoder's output
    encoded, z = probe_features(method, images, tiny_spec(model={"head": head}, eval={"representation": "z"}), settings)
    assert torch.equal(encoded, h) and method.training
    if head == "none":
        assert torch.equal(z, h)  # no head: z is h
        return
    assert z.shape == (10, 8)
    if head == "linear":
        expected = h.double() @ method.head.weight.double().T + method.head.bias.double()
    else:  # W2 ReLU(BN(W1 h)) with the running statistics
        first, norm, last = method.head[0], method.head[1], method.head[3]
        a = h.double() @ first.weight.double().T
        a = (a - norm.running_mean.double()) / torch.sqrt(norm.running_var.double() + norm.eps) * norm.weight.double() + norm.bias.double()
        expected = a.clamp(min=0) @ last.weight.double().T + last.bias.double()
    torch.testing.assert_close(z.double(), expected, rtol=1e-4, atol=1e-5)


def test_the_supervised_baselines_z_is_its_class_logits():
    settings = device_settings(tiny_spec(), CPU)
    method = build_method(tiny_spec(method="supervised"), 10, settings)
    images = torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    h, z = probe_features(method, images, tiny_spec(method="supervised", eval={"representation": "z"}), settings)
    torch.testing.assert_close(z, h @ method.classifier.weight.T + method.classifier.bias)


def test_evaluate_probes_z_and_keeps_h_for_the_collapse_diagnostic(data):
    spec = tiny_spec(model={"head": "linear"}, eval={"representation": "z"})
    settings = device_settings(spec, CPU)
    method = build_method(spec, len(data.classes), settings)
    evaluation = evaluate(method, data, spec, settings)
    # The same numbers from z computed by hand (W h + b) through the probes directly.
    with torch.no_grad():
        def z_of(images):
            return extract_features(method.encoder, images, CPU, **FAST) @ method.head.weight.T + method.head.bias
        train_z, test_z = z_of(data.train.images), z_of(data.test.images)
    probe = train_linear_probe(train_z, data.train.labels, test_z, data.test.labels, num_classes=len(data.classes),
                               epochs=3, lr=spec.eval.linear_lr, batch_size=spec.eval.linear_batch_size, seed=spec.seed)
    knn = knn_accuracy(train_z, data.train.labels, test_z, data.test.labels, k=5,
                       temperature=spec.eval.knn_temperature, num_classes=len(data.classes))
    assert evaluation.metrics["linear_top1"] == pytest.approx(probe.top1, abs=1e-9)
    assert evaluation.metrics["knn_top1"] == pytest.approx(knn, abs=1e-9)
    # The collapse diagnostic still measures the loss's input g(h) (not g(z)).
    assert evaluation.collapse["embedding_dim"] == 8
    assert evaluation.collapse["embedding_std"] == pytest.approx(collapse_record(test_z)["embedding_std"], rel=1e-5)
    # Representation h: the probes read the encoder's features.
    on_h = evaluate(method, data, tiny_spec(model={"head": "linear"}), settings)
    train_h, test_h = (extract_features(method.encoder, images, CPU, **FAST) for images in (data.train.images, data.test.images))
    knn_h = knn_accuracy(train_h, data.train.labels, test_h, data.test.labels, k=5,
                         temperature=spec.eval.knn_temperature, num_classes=len(data.classes))
    assert on_h.metrics["knn_top1"] == pytest.approx(knn_h, abs=1e-9)


@pytest.mark.parametrize("method", ["byol", "supervised"])
def test_a_head_for_another_method_is_refused_in_one_line(tmp_path, method):
    grid = tmp_path / "g.yaml"
    grid.write_text(f"name: g\nmodel: {{head: linear}}\ngrid:\n  method: [simclr, {method}]\n")
    with pytest.raises(GridError) as caught:
        load_grid(grid)
    assert [str(p) for p in caught.value.problems] == [
        f"{grid}:4: grid.method[1]: got '{method}'; model.head 'linear' chooses SimCLR's projection head, which "
        f"{method} does not use (its own heads come from its method settings): leave model.head at 'mlp' for it"]
    done = run_ablate("run", str(grid), "--dry-run", cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len((done.stdout + done.stderr).strip().splitlines()) == 1


def test_the_quickstart_grid_is_heads_by_representations_by_two_seeds():
    planned = plan_grid(load_grid(REPO / "grids" / "quickstart-head.yaml"))
    cells = sorted((r.spec.model.head, r.spec.eval.representation, r.spec.seed) for r in planned)
    assert cells == sorted((head, rep, seed) for head in ("none", "linear", "mlp") for rep in "hz" for seed in (0, 1))
    assert all(r.spec.dataset.name == "shapes" and r.spec.method.name == "simclr" for r in planned)


def test_the_figure_8_grid_plans_on_cifar_with_overrides(tmp_path):
    overrides = ["train.epochs=1", "dataset.train_size=40", f"dataset.root={tmp_path}", "grid.model.proj_dim=[32, 2048]"]
    planned = plan_grid(load_grid(REPO / "grids" / "projection-head.yaml", overrides))
    assert len(planned) == 3 * 2 * 2
    assert {(r.spec.model.head, r.spec.model.proj_dim, r.spec.eval.representation) for r in planned} == {
        (head, dim, rep) for head in ("none", "linear", "mlp") for dim in (32, 2048) for rep in "hz"}
    assert all(r.spec.model.arch == "resnet50" and r.spec.dataset.name == "cifar10" and r.spec.train.epochs == 1 for r in planned)

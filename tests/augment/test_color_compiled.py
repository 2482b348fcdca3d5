"""The colour distortion's compiled form (ABLATE_COMPILE_COLOR=1): same numbers as the eager path, and a safe fallback."""

from __future__ import annotations

import datetime
import warnings

import pytest
import torch
from augment_helpers import generator, structured_images

from ablate.augment import compiled
from ablate.augment.color import COMPILED_COLOR, Color, color_planes, schedule_around_hue

DEVICE = torch.device("cpu")


def planes_of(op: Color, images: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """color_planes run eagerly (no compiler) on the operator's parameters, as Color.apply feeds the compiled one."""
    steps = schedule_around_hue(params["jitter"], params["factors"], params["order"])
    return color_planes(images, params["jitter"], params["factors"][:, 3], *steps, params["gray"])


def test_schedule_around_hue_known_answer() -> None:
    """Order (contrast, hue, brightness, saturation): contrast just before the hue, the other two just after."""
    factors = torch.tensor([[1.5, 0.7, 0.4, 0.1], [1.5, 0.7, 0.4, 0.1], [1.2, 1.3, 0.6, -0.2]])
    order = torch.tensor([[1, 3, 0, 2], [1, 3, 0, 2], [3, 2, 1, 0]])
    active = torch.tensor([True, False, True])
    weight, use_mean, use_gray = schedule_around_hue(active, factors, order)
    assert weight.shape == (6, 3)
    # sample 0: steps 0, 1 identity; 2 contrast (0.7); [hue]; 3 brightness (1.5); 4 saturation (0.4); 5 identity
    assert weight[:, 0].tolist() == pytest.approx([1.0, 1.0, 0.7, 1.5, 0.4, 1.0])
    assert use_mean[:, 0].tolist() == [0, 0, 1, 0, 0, 0] and use_gray[:, 0].tolist() == [0, 0, 0, 0, 1, 0]
    # sample 1 is not jittered: six identity steps
    assert weight[:, 1].tolist() == [1.0] * 6 and use_mean[:, 1].sum() == 0 and use_gray[:, 1].sum() == 0
    # sample 2: hue first, then saturation (0.6), contrast (1.3), brightness (1.2)
    assert weight[:, 2].tolist() == pytest.approx([1.0, 1.0, 1.0, 0.6, 1.3, 1.2])
    assert use_gray[:, 2].tolist() == [0, 0, 0, 1, 0, 0] and use_mean[:, 2].tolist() == [0, 0, 0, 0, 1, 0]


@pytest.mark.parametrize("strength", [0.5, 1.0, 2.0])
def test_planes_form_equals_the_eager_path(strength: float) -> None:
    x = torch.cat([structured_images(48, seed=11), torch.rand(16, 3, 32, 32, generator=generator(11))])
    op = Color(strength=strength)
    params = op.sample(64, 32, 32, generator(12), DEVICE)
    eager = op.apply(x, params)
    planes = planes_of(op, x, params)
    torch.testing.assert_close(planes, eager, atol=1e-5, rtol=0)
    untouched = ~params["jitter"] & ~params["gray"]
    assert untouched.any() and torch.equal(planes[untouched], x[untouched])  # identity steps are exact
    assert (eager - x).abs().amax(dim=(1, 2, 3)).gt(0.01).sum() >= 40  # the distortion did act


@pytest.mark.slow
def test_compiled_colour_equals_the_eager_path_and_replays() -> None:
    """Through torch.compile (a C++ compiler on CPU; a few seconds): eager's numbers to 1e-5, bit-identical replay."""
    x = structured_images(64, seed=13)
    eager_op, compiled_op = Color(strength=1.0), Color(strength=1.0, compile=True)
    params = eager_op.sample(64, 32, 32, generator(14), DEVICE)
    out = compiled_op.apply(x, params)
    assert COMPILED_COLOR.failure is None, COMPILED_COLOR.failure
    torch.testing.assert_close(out, eager_op.apply(x, params), atol=1e-5, rtol=0)
    assert torch.equal(compiled_op.apply(x, params), out)
    assert out.shape == x.shape and out.dtype == torch.float32 and 0 <= out.min() and out.max() <= 1


@pytest.mark.slow
def test_a_machine_that_cannot_compile_gets_the_eager_path_and_one_warning(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    import torch._inductor.config as inductor_config

    monkeypatch.setattr(inductor_config.cpp, "cxx", ("/nonexistent/c++",))
    monkeypatch.setattr(inductor_config, "fx_graph_cache", False)  # else a cached kernel needs no compiler
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    torch._dynamo.reset()
    fresh = compiled.Compiled(color_planes, "the colour distortion")
    monkeypatch.setattr("ablate.augment.color.COMPILED_COLOR", fresh)
    x = structured_images(8, seed=15)
    op = Color(compile=True)
    params = op.sample(8, 32, 32, generator(16), DEVICE)
    with pytest.warns(RuntimeWarning, match="ABLATE_COMPILE_COLOR: torch.compile of the colour distortion failed"):
        out = op.apply(x, params)
    assert fresh.failure and "compiler" in fresh.failure.lower()
    assert torch.equal(out, Color().apply(x, params))  # exactly the eager path
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once: no second warning, no second attempt
        assert torch.equal(op.apply(x, params), out)
    monkeypatch.setenv("ABLATE_COMPILE_COLOR", "1")
    assert compiled.color_compile_status().startswith("eager: torch.compile failed (")


def test_errors_that_are_not_the_compilers_are_raised() -> None:
    """Only a failing compiler falls back; a bug in the compiled function itself is not hidden behind the eager path."""

    def wrong_shapes(x: torch.Tensor) -> torch.Tensor:
        return x + x[:2]

    with pytest.raises(RuntimeError, match="broadcast") as raised:
        compiled.Compiled(wrong_shapes, "a broken function")(torch.ones(5))
    assert not isinstance(raised.value, torch._dynamo.exc.BackendCompilerFailed)


@pytest.mark.parametrize(("value", "expected"), [("", False), ("0", False), ("1", True)])
def test_the_environment_switch(monkeypatch: pytest.MonkeyPatch, value: str, expected: bool) -> None:
    from ablate.augment import ViewMaker
    from ablate.config import AugmentSpec

    monkeypatch.setenv("ABLATE_COMPILE_COLOR", value)
    assert compiled.color_compile_requested() is expected
    (color,) = ViewMaker(AugmentSpec(ops=["color"])).ops
    assert color.compile is expected
    assert compiled.color_compile_status() == ("compiled (torch.compile)" if expected else "eager")


def test_a_run_without_a_colour_operator_is_recorded_eager_under_the_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing compiled touches such a run's numbers, so neither its provenance nor a report counts it as compiled."""
    from ablate.run import provenance

    monkeypatch.setenv("ABLATE_COMPILE_COLOR", "1")
    assert compiled.color_compile_status(uses_color=False) == "eager"
    started = datetime.datetime.now(datetime.timezone.utc)
    assert provenance(DEVICE, started, uses_color=False)["color"] == "eager"
    assert provenance(DEVICE, started, uses_color=True)["color"] == "compiled (torch.compile)"


def test_a_bad_switch_value_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ABLATE_COMPILE_COLOR", "yes")
    with pytest.raises(ValueError, match="ABLATE_COMPILE_COLOR is 'yes'; expected 1"):
        compiled.color_compile_requested()


ONE_RUN_GRID = """\
name: compiled
dataset: {name: shapes, train_size: 400, test_size: 200, image_size: 16}
model: {arch: small_cnn}
train: {epochs: 2, batch_size: 64, lr: 0.5, warmup_epochs: 0.5}
augment: {protocol: one_branch, ops: [color]}
eval: {linear_epochs: 10, knn_k: 20}
"""


@pytest.mark.slow
def test_a_run_with_the_switch_compiles_keeps_its_run_id_and_says_so(tmp_path) -> None:
    """`ABLATE_COMPILE_COLOR=1 ablate run`: the run completes through the compiled colour, under the id the
    grid gives without the switch (how, not what, is computed), and its provenance records it."""
    import json
    import os

    from cli_helpers import run_ablate

    from ablate.cli import load_and_plan

    (tmp_path / "grid.yaml").write_text(ONE_RUN_GRID)
    (planned,) = load_and_plan(str(tmp_path / "grid.yaml"), [])[1]
    process = run_ablate("run", "grid.yaml", "--quiet", cwd=tmp_path, env={**os.environ, "ABLATE_COMPILE_COLOR": "1"})
    assert process.returncode == 0, process.stderr
    result = json.loads((tmp_path / "results" / "compiled" / planned.run_id / "result.json").read_text())
    assert result["status"] == "completed" and result["provenance"]["color"] == "compiled (torch.compile)"
    assert 0 <= result["metrics"]["linear_top1"] <= 100

"""`ablate bench train` / `augment` on the CPU: the numbers hang together and the tables are written."""

from __future__ import annotations

import types

import pytest
import torch

from ablate import bench
from ablate.bench_common import torchvision_simclr_views
from ablate.cli import main


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_device_mode_runs_the_training_loop_and_derives_its_figures(tmp_path):
    results = bench.device_benchmark("cpu", arch="small_cnn", batch_size=8, dataset_size=40, compile_model=False,
                                     warmup_steps=1, augment_repeats=1)
    assert results["steps"] == 5 and results["settings"]["compile"] is False
    assert results["ms_per_step"] == pytest.approx(1000 * results["epoch_seconds"] / 5)
    assert results["images_per_second"] == pytest.approx(5 * 8 / results["epoch_seconds"])
    # 3 (forward + backward) × 2 views × batch × forward FLOPs per view, per step
    assert results["achieved_tflops"] == pytest.approx(6 * 8 * results["gflops_per_view"] * 1e9 / (results["ms_per_step"] / 1000) / 1e12)
    assert results["augment_fraction"] == pytest.approx(results["augment_ms"] / results["ms_per_step"])
    assert results["mfu"] is None and results["peak_tflops"] is None  # no peak for a CPU
    assert torch.isfinite(torch.tensor(results["final_loss"]))
    text = bench.write_markdown(results, tmp_path / "train.md").read_text()
    assert "| one CIFAR-10 epoch (5 steps of 8) |" in text and "| MFU vs dense bf16 peak (unknown device) | n/a |" in text
    assert "| torch |" in text and "| kornia |" in text and "| cpu |" in text


def test_cpu_mode_compares_with_a_torchvision_dataloader():
    results = bench.cpu_benchmark(batch_size=16, steps=2, workers=1, dataset_size=64)
    assert results["ablate_images_per_second"] > 0 and results["torchvision_images_per_second"] > 0
    assert results["ratio"] == pytest.approx(results["ablate_images_per_second"] / results["torchvision_images_per_second"])
    text = bench.markdown(results)
    assert "| torchvision DataLoader (1 workers) |" in text and "ratio ablate / torchvision" in text


def test_torchvision_views_match_ablates_operators():
    spec = bench.cpu_spec(16)
    pipeline = bench.torchvision_views(spec)  # the train benchmark's DataLoader side
    view = pipeline(torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8))
    assert view.shape == (3, 32, 32) and view.dtype == torch.float32 and 0 <= float(view.min()) <= float(view.max()) <= 1
    names = [type(t).__name__ for t in pipeline.transforms]
    assert names == ["RandomResizedCrop", "RandomHorizontalFlip", "RandomApply", "RandomGrayscale", "ToDtype"]


def test_cli_bench_train_writes_the_table(tmp_path, capsys):
    out = tmp_path / "train-cpu.md"
    assert main(["bench", "train", "--device", "cpu", "--batch", "16", "--steps", "2", "--out", str(out)]) == 0
    assert out.read_text().startswith("# Training benchmark (CPU)")
    assert f"written to {out}" in capsys.readouterr().out


def test_cli_bench_augment_calls_the_augment_benchmark(tmp_path, monkeypatch, capsys):
    calls = []
    fake = types.SimpleNamespace(run_benchmark=lambda device, batch, repeats: calls.append((str(device), batch, repeats)) or {"x": 1},
                                 markdown=lambda results: "# Augmentation benchmark\n")
    monkeypatch.setattr(bench, "load_augment_benchmark", lambda: fake)
    out = tmp_path / "augment.md"
    assert main(["bench", "augment", "--device", "cpu", "--batch", "64", "--repeats", "3", "--out", str(out)]) == 0
    assert calls == [("cpu", 64, 3)] and out.read_text() == "# Augmentation benchmark\n"


@pytest.mark.parametrize("flag", [False, True])
def test_bench_augment_keeps_freed_memory_only_when_asked(tmp_path, monkeypatch, flag):
    applied = []
    fake = types.SimpleNamespace(run_benchmark=lambda device, batch, repeats: {}, markdown=lambda results: "x\n")
    monkeypatch.setattr(bench, "load_augment_benchmark", lambda: fake)
    monkeypatch.setattr(bench, "keep_freed_memory", lambda: applied.append(True) or True)
    argv = ["bench", "augment", "--device", "cpu", "--out", str(tmp_path / "a.md")] + (["--keep-freed-memory"] if flag else [])
    assert main(argv) == 0
    assert applied == ([True] if flag else [])


def test_the_augment_benchmarks_machine_table_names_the_allocator(monkeypatch):
    from ablate import bench_common

    module = bench.load_augment_benchmark()
    monkeypatch.setattr(bench_common, "freed_memory_kept", lambda: False)
    assert module.machine(torch.device("cpu"))["malloc"] == "default"
    monkeypatch.setattr(bench_common, "freed_memory_kept", lambda: True)
    assert module.machine(torch.device("cpu"))["malloc"].startswith("glibc, freed memory kept")


def test_the_augment_benchmark_script_is_found():
    module = bench.load_augment_benchmark()
    assert callable(module.run_benchmark) and callable(module.markdown)


def test_torchvision_pipeline_takes_its_ranges_from_ablates_operators():
    from ablate.augment.blur import Blur
    from ablate.augment.color import Color
    from ablate.augment.crop import Crop

    crop, color, blur = Crop(scale=(0.3, 0.9), ratio=(0.5, 2.0), flip_p=0.25), Color(strength=0.5, jitter_p=0.7, grayscale_p=0.1), Blur(sigma=(0.2, 1.0), p=0.4)
    resize, flip, jitter, gray, blurring = torchvision_simclr_views(32, crop, color, blur, to_float=False).transforms
    assert resize.scale == (0.3, 0.9) and resize.ratio == (0.5, 2.0) and flip.p == 0.25
    # strength 0.5: factors in [1 - 0.4, 1 + 0.4], hue in [-0.1, 0.1] of a turn (the paper's definition).
    (colour_jitter,) = jitter.transforms
    assert jitter.p == 0.7 and gray.p == 0.1
    for factors in (colour_jitter.brightness, colour_jitter.contrast, colour_jitter.saturation):
        assert factors == pytest.approx((0.6, 1.4))
    assert colour_jitter.hue == pytest.approx((-0.1, 0.1))
    (gaussian,) = blurring.transforms
    assert blurring.p == 0.4 and list(gaussian.sigma) == pytest.approx([0.2, 1.0]) and list(gaussian.kernel_size) == [3, 3]


def test_bench_augment_outside_a_checkout_is_one_line_and_exit_2(monkeypatch, capsys):
    monkeypatch.setattr(bench, "augment_script_candidates", lambda: [])
    assert main(["bench", "augment", "--device", "cpu"]) == 2
    assert capsys.readouterr().err == (
        "ablate: benchmarks/bench_augment.py not found: run `ablate bench augment` from an ablate checkout\n")


def test_ablates_stages_add_up_to_its_pair_of_views():
    """The stage breakdown times the real pipeline: its last stage returns ViewMaker.pair's views (same seed)."""
    module = bench.load_augment_benchmark()
    images = torch.rand((16, 3, 32, 32), generator=torch.Generator().manual_seed(3))
    stages = module.ablate_stages(images)
    assert list(stages) == ["draw parameters", "crop", "color", "blur"]
    view1, view2 = stages["blur"]()
    expected1, expected2 = module.ablate_maker().pair(images, torch.Generator().manual_seed(0))
    assert torch.equal(view1, expected1) and torch.equal(view2, expected2)
    assert not torch.equal(view1, view2)


def test_the_benchmarks_colour_switch_is_its_own_not_the_environments(monkeypatch):
    module = bench.load_augment_benchmark()
    monkeypatch.setenv("ABLATE_COMPILE_COLOR", "1")
    assert [getattr(op, "compile", None) for op in module.ablate_maker().ops] == [None, False, None]
    monkeypatch.setenv("ABLATE_COMPILE_COLOR", "0")
    assert [getattr(op, "compile", None) for op in module.ablate_maker(compile_color=True).ops] == [None, True, None]


def test_augment_markdown_shows_the_stages_and_the_30x_budget():
    module = bench.load_augment_benchmark()
    results = {"batch": 256, "repeats": 20, "machine": {"cores": "2"}, "load before": "0.1", "load after": "0.2",
               "ms": {"ablate": 12.0, module.COMPILED: 7.5, "kornia.augmentation": 48.0, "torchvision DataLoader": 210.0},
               "ms best": {"ablate": 10.0, module.COMPILED: 7.0, "kornia.augmentation": 45.0, "torchvision DataLoader": 200.0},
               "compile s": 2.25, "compile failure": None,
               "ms per stage": {"eager": {"draw parameters": 0.5, "crop": 2.0, "color": 6.5, "blur": 1.0},
                                "compiled": {"draw parameters": 0.5, "crop": 2.0, "color": 2.0, "blur": 1.0}}}
    text = module.markdown(results)
    assert "| kornia.augmentation | 48.00 | 45.00 | 4.0× (4.5×) | 6.4× (6.4×) |" in text
    assert "| torchvision DataLoader | 210.00 | 200.00 | 17.5× (20.0×) | 28.0× (28.6×) |" in text
    assert "| color | 6.50 | 2.00 |" in text and "| sum | 10.00 | 5.50 |" in text
    assert "would have to take at most 7.00 ms" in text and "compiling took 2.2 s" in text
    assert "ran eagerly" not in text
    results["compile failure"] = "InvalidCxxCompiler: No working C++ compiler"
    assert "torch.compile failed here (InvalidCxxCompiler: No working C++ compiler)" in module.markdown(results)

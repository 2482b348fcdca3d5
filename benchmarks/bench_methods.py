"""Benchmark: one training step of every method against SimCLR's, in one process, on the same data.

    python benchmarks/bench_methods.py [--grid grids/quickstart-methods.yaml] [--device cpu|cuda]
                                       [--steps 8] [--repeats 5] [--out benchmarks/results/methods-cpu-2core.md]

Each method is built as the grid's first run of that method builds it (its heads, queue, prototypes:
by default the CPU quickstart's settings on the small CNN, 32 px, batch 256), and timed through
ablate's real training loop (`ablate.methods.train.train`: views made on the device, forward,
backward, optimiser step, `after_step`'s EMA update) for `--steps` steps after two untimed warm-up
steps. Methods are timed round-robin, `--repeats` times, so that all see the same machine load;
the median and the best repeat are reported, and each method's ratio to SimCLR.

A method with a target network or teacher (MoCo v2, BYOL, DINO: `Method.target_branch`) runs one
more forward pass a step, without gradients. Its cost is timed apart, on the same views, and
subtracted for the "without the target's forward" ratio (the issue's target: ≤ 1.3× SimCLR's step).
On CUDA the methods run with the same fast path as SimCLR (bf16 autocast, channels_last, compile).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import torch  # noqa: E402

from ablate.bench import _timed, machine, say, write_text  # noqa: E402
from ablate.config import RunSpec, load_grid  # noqa: E402
from ablate.cpu_memory import keep_freed_memory  # noqa: E402
from ablate.data import ImageData, load_dataset  # noqa: E402
from ablate.methods.train import ModelForward, device_settings, train  # noqa: E402
from ablate.plan import plan_grid  # noqa: E402
from ablate.run import build_trainable, seed_everything  # noqa: E402

HERE = Path(__file__).resolve().parents[1]


def method_specs(grid_path: Path, batch_size: int, device: torch.device) -> dict[str, RunSpec]:
    """The grid's first run of each method, with the benchmark's batch, one epoch, no checkpoints."""
    specs: dict[str, RunSpec] = {}
    precision = "auto" if device.type == "cuda" else "fp32"
    for run in plan_grid(load_grid(grid_path)):
        name = run.spec.method.name
        if name in specs or name == "supervised":
            continue
        train_spec = run.spec.train.model_copy(update={"batch_size": batch_size, "epochs": 1, "warmup_epochs": 0,
                                                       "precision": precision, "checkpoint_minutes": 10_000})
        specs[name] = run.spec.model_copy(update={"train": train_spec})
    if "simclr" not in specs:
        raise SystemExit(f"{grid_path} has no simclr run to compare with")
    return specs


def benchmark(grid_path: Path, device: torch.device, batch_size: int, steps: int, repeats: int) -> dict:
    if device.type == "cpu":
        keep_freed_memory()  # as ablate's CPU runs do
    specs = method_specs(grid_path, batch_size, device)
    first = next(iter(specs.values()))
    dataset = first.dataset.model_copy(update={"train_size": max(steps, 2) * batch_size, "test_size": 10})
    images = load_dataset(dataset).train.images
    warm = ImageData(images[: 2 * batch_size], torch.zeros(2 * batch_size, dtype=torch.long))
    timed = ImageData(images[: steps * batch_size], torch.zeros(steps * batch_size, dtype=torch.long))
    built = {}
    for name, spec in specs.items():
        seed_everything(0)
        settings = device_settings(spec, device)
        model, step = build_trainable(spec, 10, settings)
        train(model, step, warm, spec, settings)  # warm-up (and compilation on CUDA)
        views = step.make_inputs(images[:batch_size].to(device), torch.zeros(batch_size, dtype=torch.long, device=device),
                                 torch.Generator(device=device).manual_seed(0))
        built[name] = (spec, settings, model, step, torch.cat(views), ModelForward(model, settings))
    step_ms: dict[str, list[float]] = {name: [] for name in specs}
    target_ms: dict[str, list[float]] = {name: [] for name in specs}
    for repeat in range(repeats):
        for name, (spec, settings, model, step, views, forward) in built.items():
            step_ms[name].append(1000 * _timed(device, lambda: train(model, step, timed, spec, settings)) / steps)
            if model.target_branch is not None:
                with torch.no_grad():
                    forward(views, model.target_branch)  # untimed: the first call of this shape
                    target_ms[name].append(1000 * _timed(device, lambda: [forward(views, model.target_branch) for _ in range(steps)]) / steps)
        say(f"repeat {repeat + 1}/{repeats}: " + ", ".join(f"{n} {step_ms[n][-1]:.0f} ms" for n in specs))
    info = machine(device)
    from ablate.bench_common import load_average

    info["load average (1 min, at end)"] = load_average()
    return {"machine": info, "grid": str(grid_path.relative_to(HERE) if grid_path.is_relative_to(HERE) else grid_path),
            "batch_size": batch_size, "steps": steps, "repeats": repeats, "specs": specs, "step_ms": step_ms, "target_ms": target_ms}


def markdown(results: dict) -> str:
    base = statistics.median(results["step_ms"]["simclr"])
    lines = [
        "# One training step of every method, against SimCLR's",
        "",
        f"`python benchmarks/bench_methods.py --grid {results['grid']}`: each method as that grid builds it, batch "
        f"{results['batch_size']}, {results['steps']} steps per repeat through ablate's training loop, {results['repeats']} "
        "repeats round-robin; ms per step (median, best). The target's forward pass (MoCo v2's key encoder, BYOL's target, "
        "DINO's teacher; no gradients) is timed apart on the same 2 x batch views.",
        "",
        *[f"- {key}: {value}" for key, value in results["machine"].items()],
        "",
        "| method | step, median (ms) | best (ms) | × SimCLR | target forward (ms) | step without it (ms) | × SimCLR without it |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, times in results["step_ms"].items():
        median = statistics.median(times)
        target = statistics.median(results["target_ms"][name]) if results["target_ms"][name] else None
        without = median - target if target is not None else median
        lines.append(
            f"| {results['specs'][name].method.label} | {median:.1f} | {min(times):.1f} | {median / base:.2f} | "
            f"{'' if target is None else f'{target:.1f}'} | {without:.1f} | {without / base:.2f} |"
        )
    lines += ["", "Heads per method (the grid's settings): " + "; ".join(
        f"{spec.method.label}: " + ", ".join(f"{k} {v}" for k, v in spec.method.model_dump().items() if k != "name")
        for spec in results["specs"].values()), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=Path, default=HERE / "grids" / "quickstart-methods.yaml")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    out = args.out or HERE / "benchmarks" / "results" / f"methods-{'cpu-2core' if device.type == 'cpu' else device.type}.md"
    results = benchmark(args.grid.resolve(), device, args.batch, args.steps, args.repeats)
    text = markdown(results)
    print(text)
    write_text(out, text)


if __name__ == "__main__":
    main()

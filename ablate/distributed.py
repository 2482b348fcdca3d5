"""One run across several processes with torch.distributed: the process group and the collectives ablate needs.

SimCLR (Chen et al., ICML 2020, §2.2 and Appendix B.1) trains with batch norm over the global batch ("global BN")
and takes the NT-Xent negatives from every device. Here, with world size W > 1:

* every rank takes its own slice of each global batch (`train.batch_size` is the global batch on 1 or W
  processes), and the training loop (`ablate.methods.train`) wraps the method in DistributedDataParallel;
* batch norm sees the global batch: on CUDA through torch's `nn.SyncBatchNorm` (fused statistics kernels);
  on the CPU through `GlobalBatchNorm`, hand-written because SyncBatchNorm refuses CPU tensors and the CPU with
  gloo is where ablate tests several processes; it reduces the per-channel sums with the autograd all-reduce of
  `torch.distributed.nn.functional` (`convert_global_batchnorm`, `wrap_model`);
* SimCLR's loss gathers z1, z2 from every rank with their gradients (`gather_from_ranks`), so negatives come
  from every device and every rank computes the same, global loss.

Why the gradients come out right without any rescaling: each rank's loss L_r is a function of every rank's
tensors through the collectives, whose backward passes sum the gradients of all ranks (all-gather → reduce-scatter,
all-reduce → all-reduce). So each rank's local gradient is that of Σ_r L_r, and DDP's average over ranks gives the
gradient of (1/W) Σ_r L_r. For SimCLR every L_r is the global loss L, so that is ∇L; for a loss that is a mean over
the local slice it is the mean over the global batch. Either way: the single-process gradient on the global batch.

Each rank draws its views from its own generator, reseeded every step from (run seed, rank, step)
(`seed_views`): independent streams per rank, and a resumed run draws the same views with nothing per rank to
checkpoint (only rank 0 writes checkpoints). The shuffling generator stays seeded by the run seed alone, so every
rank has the same permutation.

Every method trains on W ranks with the single-process maths of the global batch, each through functions of
this module that are identities or no-ops on one process:

* losses of batch statistics gather z1, z2 with their gradients and compute the global loss on every rank:
  SimCLR's negatives, Barlow Twins' standardisation and cross-correlation, VICReg's variance and covariance;
* losses that are a mean over samples (supervised cross-entropy, BYOL, SimSiam, MoCo's InfoNCE, DINO) stay the
  mean over the rank's own rows: DDP's average of the ranks' means is the global mean (the argument above);
* MoCo v2's queue takes the global batch's keys, gathered in the one-process order (view 1's of the whole batch,
  then view 2's), so the queue and its pointer are the same on every rank and equal to one process's;
* EMA targets (MoCo's key encoder, BYOL's target, DINO's teacher) need nothing: every rank holds the same weights
  after each DDP step, so every rank's `after_step` makes the same update; their batch norms, run without
  gradients, are global batch norms as well;
* DINO's centre moves by the teacher logits' mean over the global batch (`mean_over_ranks`).

The loss the training loop records is the mean of the ranks' step losses (`mean_over_ranks`), the global batch's.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_functional
from torch import nn

from ablate.config import RunSpec

# torch 2.14 marks these autograd collectives deprecated in favour of a private module (_functional_collectives);
# they remain the public, documented way to keep gradients through a collective, so the notice is silenced.
warnings.filterwarnings("ignore", message=r"torch\.distributed\.nn\.functional\.\w+ is deprecated", category=FutureWarning)


def is_active() -> bool:
    """True inside an initialised process group."""
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_active() else 1


def rank() -> int:
    return dist.get_rank() if is_active() else 0


def is_main() -> bool:
    """Rank 0: the one process that writes checkpoints and results."""
    return rank() == 0


def backend_for(device: torch.device) -> str:
    """NCCL between GPUs, gloo on the CPU."""
    return "nccl" if device.type == "cuda" else "gloo"


def init(rank_: int | None = None, world_size_: int | None = None, master_addr: str | None = None,
         master_port: int | None = None, device: torch.device = torch.device("cpu")) -> None:
    """Join the process group: from explicit arguments, else from the environment torch.distributed.run and
    submitit's TorchDistributedEnvironment set (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT).

    Every collective then waits at most ABLATE_DIST_TIMEOUT_S for the other ranks (`ablate.launch`: a hung
    or dead rank fails the run instead of hanging it)."""
    from ablate.settings import load_settings

    rank_ = int(os.environ["RANK"]) if rank_ is None else rank_
    world_size_ = int(os.environ["WORLD_SIZE"]) if world_size_ is None else world_size_
    os.environ["MASTER_ADDR"] = master_addr or os.environ.get("MASTER_ADDR", "127.0.0.1")
    os.environ["MASTER_PORT"] = str(master_port or os.environ["MASTER_PORT"])
    timeout = dt.timedelta(seconds=load_settings().dist_timeout_s)
    dist.init_process_group(backend_for(device), rank=rank_, world_size=world_size_, timeout=timeout)


def leave() -> None:
    """Leave the process group (once training is done: rank 0 then evaluates alone, as one process)."""
    if is_active():
        dist.destroy_process_group()


def gather_from_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """The rows of every rank's `tensor`, rank 0's first, with gradients flowing back to each rank's own rows;
    `tensor` itself on one process."""
    if world_size() == 1:
        return tensor
    return torch.cat(dist_functional.all_gather(tensor))


def mean_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """The element-wise mean of every rank's `tensor` (same shape on every rank), the same on every rank and
    without gradient; `tensor` itself on one process. With equal slices, the mean of per-rank batch means is the
    global batch's mean (a step's loss, DINO's centre)."""
    if world_size() == 1:
        return tensor
    total = tensor.detach().clone()
    dist.all_reduce(total)
    return total / world_size()


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm whose training statistics are those of the global batch (every rank's slice together).

    On one process (or in eval mode) it is plain batch norm. Two passes (mean, then the mean squared deviation)
    as F.batch_norm does, for the same rounding; every rank's slice has the same size."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not self.training or world_size() == 1:
            return super().forward(input)
        dims = [0, *range(2, input.dim())]
        shape = [1, -1] + [1] * (input.dim() - 2)
        count = input.numel() // input.shape[1] * world_size()
        mean = dist_functional.all_reduce(input.sum(dims)) / count
        centred = input - mean.reshape(shape)
        variance = dist_functional.all_reduce((centred * centred).sum(dims)) / count
        if self.track_running_stats:
            self.num_batches_tracked.add_(1)
            factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            with torch.no_grad():  # running variance unbiased, as F.batch_norm keeps it
                self.running_mean.lerp_(mean.detach(), factor)
                self.running_var.lerp_(variance.detach() * count / (count - 1), factor)
        output = centred * torch.rsqrt(variance + self.eps).reshape(shape)
        if self.affine:
            output = output * self.weight.reshape(shape) + self.bias.reshape(shape)
        return output


def convert_global_batchnorm(module: nn.Module) -> nn.Module:
    """`module` with every BatchNorm replaced by a GlobalBatchNorm sharing its parameters and buffers (the
    state_dict keys stay the same, so checkpoints move between 1 and W processes)."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm):
        converted = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        if module.affine:
            converted.weight, converted.bias = module.weight, module.bias
        converted.running_mean, converted.running_var = module.running_mean, module.running_var
        converted.num_batches_tracked = module.num_batches_tracked
        converted.train(module.training)
        return converted
    for name, child in module.named_children():
        module.add_module(name, convert_global_batchnorm(child))
    return module


def wrap_model(model: nn.Module, device: torch.device) -> nn.parallel.DistributedDataParallel:
    """Batch norm over the global batch in place (SyncBatchNorm on CUDA, GlobalBatchNorm on the CPU), then DDP
    around `model` (the model itself keeps its state_dict keys: checkpoints move between 1 and W processes)."""
    if device.type == "cuda":
        nn.SyncBatchNorm.convert_sync_batchnorm(model)  # converts the children in place; `model` is no batch norm
    else:
        convert_global_batchnorm(model)
    device_ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def check_trainable(spec: RunSpec) -> None:
    """ValueError with one line when the spec cannot train on world_size() processes exactly."""
    world = world_size()
    if spec.train.batch_size % world:
        raise ValueError(f"train.batch_size {spec.train.batch_size} is not divisible by the {world} processes")


def rank_slice(batch_size: int) -> slice:
    """This rank's rows of a global batch of `batch_size` (rank 0 first, as `gather_from_ranks` orders them)."""
    local = batch_size // world_size()
    return slice(rank() * local, (rank() + 1) * local)


def seed_views(generator: torch.Generator, seed: int, step: int) -> None:
    """Reseed this rank's view generator for optimiser step `step` from (run seed, rank, step): numpy's
    SeedSequence mixes the three into one independent 63-bit seed."""
    mixed = np.random.SeedSequence([seed, rank(), step]).generate_state(1, dtype=np.uint64)[0]
    generator.manual_seed(int(mixed) & (2**63 - 1))


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def local_devices(world: int, device: str = "cpu") -> list[str]:
    """The device of each of `world` ranks on this machine: the CPU for all, or one GPU each (cuda:0 … cuda:W-1)."""
    return ["cpu"] * world if device == "cpu" else [f"cuda:{rank_}" for rank_ in range(world)]


def spawn(work: Callable[..., Any], world: int, *args: Any, device: str = "cpu") -> None:
    """Run ``work(device, *args)`` in `world` new processes joined in one process group on this machine
    (gloo on the CPU; NCCL with one GPU per rank for device "cuda"); RuntimeError naming each failed rank
    when one fails. `work` must be a module-level function."""
    from ablate.launch import describe_failure, failed_exits, launch

    failed = failed_exits(launch(work, local_devices(world, device), *args))
    if failed:
        raise RuntimeError(describe_failure({}, world, failed))


def _train_rank(device: torch.device, spec_json: str, run_folder: str, stop_after_steps: int | None) -> None:
    from ablate.data import load_dataset
    from ablate.methods.train import InterruptedForTest, device_settings, train
    from ablate.run import build_trainable, seed_everything

    spec = RunSpec.model_validate_json(spec_json)
    settings = device_settings(spec, device)
    seed_everything(spec.seed)
    data = load_dataset(spec.dataset)
    model, step = build_trainable(spec, len(data.classes), settings)
    try:
        train(model, step, model.pretraining_data(data), spec, settings, Path(run_folder), stop_after_steps=stop_after_steps)
    except InterruptedForTest:
        pass  # the checkpoint is written: a resumed run starts from it


def train_distributed(spec: RunSpec, world: int, run_folder: Path, stop_after_steps: int | None = None, device: str = "cpu") -> None:
    """Only train `spec` on `world` processes of this machine: rank 0 writes checkpoint.pt into `run_folder`,
    which after the last epoch holds the final weights (no evaluation, no result.json)."""
    spawn(_train_rank, world, spec.model_dump_json(), str(run_folder), stop_after_steps, device=device)


def run_rank(device: torch.device, spec_json: str, grid: str, run_id: str, run_folder: str, axes_json: str = "{}",
             logs: tuple[str, ...] = ()) -> None:
    """One rank's share of a whole run: every rank trains; rank 0 then evaluates alone and writes result.json
    (completed, or failed naming every rank's error: `ablate.launch.failures_named` in `execute_run`) and the
    live `logs` (ablate.log kinds)."""
    import json

    from ablate.run import execute_run, placed_on, run_and_store

    spec = RunSpec.model_validate_json(spec_json)
    with placed_on(str(device)):
        if is_main():
            run_and_store(spec, grid, run_id, Path(run_folder), json.loads(axes_json), epoch_lines(run_id, spec, world_size()),
                          logs=logs)
        else:  # trains, writes nothing but its error record
            execute_run(spec, Path(run_folder), device=device, logs=())


def epoch_lines(run_id: str, spec: RunSpec, world: int) -> Callable[[dict[str, Any]], None]:
    """Rank 0's progress: one line per finished epoch on the command's output (the launcher's own progress bar
    sees a run only when it ends, and a run on several GPUs can take hours)."""
    def progress(event: dict[str, Any]) -> None:
        if event["step"] == event["steps_per_epoch"]:
            print(f"{run_id}: epoch {event['epoch']}/{spec.train.epochs} done on {world} processes, "
                  f"loss {event['loss']:.4f}", flush=True)

    return progress


def run_distributed(spec: RunSpec, world: int, grid: str, run_id: str, run_folder: Path, device: str = "cpu",
                    axes: dict[str, Any] | None = None, devices: list[str] | None = None,
                    work: Callable[..., None] = run_rank, logs: tuple[str, ...] = ()) -> dict[str, Any]:
    """The whole run of `spec` (train, evaluate, store) with training on `world` processes of this machine
    (rank r on devices[r]; default `local_devices`), as `ablate.run.run_and_store` does it on one; returns
    the result. Rank 0 writes result.json; when a rank fails, the result is the failed one naming how each
    rank ended, also when rank 0 itself died before it could write it (`settle_result`). `work` is each
    rank's share (`run_rank`; tests wrap it to make a rank fail); rank 0 writes the live `logs` (ablate.log)."""
    import json

    from ablate.launch import clear_records, launch

    devices = devices or local_devices(world, device)
    clear_records(run_folder)  # an earlier attempt's records say nothing about this one
    started = time.time()
    exits = launch(work, devices, spec.model_dump_json(), grid, run_id, str(run_folder), json.dumps(axes or {}), tuple(logs))
    return settle_result(spec, grid, run_id, Path(run_folder), axes or {}, exits, started)


def settle_result(spec: RunSpec, grid: str, run_id: str, run_folder: Path, axes: dict[str, Any], exits: list,
                  started: float) -> dict[str, Any]:
    """The run's result once its processes (launched at `started`, time.time()) have ended: rank 0's when every
    rank ended well or rank 0's is completed (a completed result is never replaced); otherwise a failed result
    whose error names how each rank ended (exit status, signal, hung) and what each raised, written over rank 0's
    failed one or in place of the one it never wrote (a failed result of an earlier attempt is not this one's)."""
    from ablate.launch import RanksFailed, describe_failure, failed_exits, read_records
    from ablate.run import failed_result
    from ablate.store import RESULT_FILE, CorruptResult, read_result, write_result

    failed = failed_exits(exits)
    try:
        result = read_result(run_folder)
    except CorruptResult:
        result = None
    if result is not None and result["status"] != "completed" and (run_folder / RESULT_FILE).stat().st_mtime < started:
        result = None  # an earlier attempt's failure (--retry-failed): this attempt's rank 0 wrote none
    if result is not None and (result["status"] == "completed" or not failed):
        return result
    error = RanksFailed(describe_failure(read_records(run_folder), len(exits), failed))
    if result is None:
        result = failed_result(spec, grid, run_id, axes, error)
    else:  # rank 0 named the ranks as it saw them; the launcher also knows how each process ended
        result["error"] = {**result["error"], "type": type(error).__name__, "message": str(error)}
    write_result(run_folder, result)
    return read_result(run_folder)  # as stored (schema version included), as rank 0's own would be

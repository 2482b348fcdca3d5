"""Live logs of a run's training, besides its result.json: `ablate run GRID --log tensorboard`.

A TensorBoard log is written under each run's folder, results/<grid>/<run_id>/tensorboard/, while
the run trains: `loss/step` (the loss every few steps, when the loop reports its progress; step =
optimiser step) and, per epoch (step = epoch, counted from 1), `loss/epoch`, `lr` and, at the epochs
the monitor measures, `monitor/knn_top1`: the same numbers as result.json's curves (stored as 32-bit
floats, as TensorBoard stores every scalar). A resumed run appends a new event file to the folder;
TensorBoard reads them together. `tensorboard --logdir results/<grid>` shows every run of a grid.

Which logs to write is not part of a run's spec (its id does not change): it is chosen for a whole
`ablate run` with `logging_to`, which `run_and_store` reads; an executor that trains in other
processes carries the choice to them (`chosen_logs()`, passed to joblib workers and pickled with each
SLURM job). TensorBoard's writer comes from the optional extra, `pip install -e '.[tensorboard]'`;
`check_logs` says so before any run starts. Nothing here imports torch until a log is opened.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ablate.methods.train import EpochEnd

LOG_KINDS = ("tensorboard",)
TENSORBOARD_FOLDER = "tensorboard"
INSTALL_HINT = "pip install -e '.[tensorboard]'"

_chosen: tuple[str, ...] = ()  # the logs of the `ablate run` this process serves (logging_to)


class LogUnavailable(RuntimeError):
    """A log was asked for whose package is not installed; the message is one line saying what to install."""


def check_logs(kinds: Sequence[str]) -> None:
    """Raise LogUnavailable when a log in `kinds` cannot be written here (unknown, or its package missing)."""
    for kind in kinds:
        if kind not in LOG_KINDS:
            raise LogUnavailable(f"unknown log {kind!r}; expected one of {', '.join(LOG_KINDS)}")
        if kind == "tensorboard" and importlib.util.find_spec("tensorboard") is None:
            raise LogUnavailable(f"--log tensorboard needs the tensorboard package: {INSTALL_HINT}")


def chosen_logs() -> tuple[str, ...]:
    """The logs chosen for the runs this process trains (empty: none)."""
    return _chosen


@contextmanager
def logging_to(kinds: Sequence[str]) -> Iterator[None]:
    """Runs trained inside the block (`ablate.run.run_and_store`) write the logs `kinds`; restored after."""
    global _chosen
    before, _chosen = _chosen, tuple(dict.fromkeys(kinds))  # each kind once, in the order given
    try:
        yield
    finally:
        _chosen = before


class TensorBoardLog:
    """One run's scalars in TensorBoard event files under `folder`."""

    def __init__(self, folder: Path):
        check_logs(["tensorboard"])  # a SLURM node without the extra: the run fails saying what to install
        from torch.utils.tensorboard import SummaryWriter

        self.folder = folder
        self.writer = SummaryWriter(log_dir=str(folder))

    def step_loss(self, event: dict[str, Any]) -> None:
        """A progress event of the training loop (epoch, step, steps_per_epoch, loss) as `loss/step`."""
        global_step = (event["epoch"] - 1) * event["steps_per_epoch"] + event["step"]
        self.writer.add_scalar("loss/step", event["loss"], global_step)

    def epoch(self, end: EpochEnd, measured: dict[str, float]) -> None:
        """An epoch's loss, learning rate and monitor values, flushed so TensorBoard shows them while the run trains."""
        self.writer.add_scalar("loss/epoch", end.loss, end.epoch)
        self.writer.add_scalar("lr", end.lr, end.epoch)
        for name, value in measured.items():
            self.writer.add_scalar(f"monitor/{name}", value, end.epoch)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


@contextmanager
def run_logs(kinds: Sequence[str], run_folder: Path | None) -> Iterator[TensorBoardLog | None]:
    """The run's TensorBoard log when `kinds` has it and the run has a folder, else None; closed after."""
    if "tensorboard" not in kinds or run_folder is None:
        yield None
        return
    log = TensorBoardLog(run_folder / TENSORBOARD_FOLDER)
    try:
        yield log
    finally:
        log.close()


Progress = Callable[[dict[str, Any]], None]


def with_step_losses(progress: Progress | None, log: TensorBoardLog | None) -> Progress | None:
    """The loop's progress callback, also writing each reported loss to `log` (unchanged without one)."""
    if log is None:
        return progress

    def report(event: dict[str, Any]) -> None:
        log.step_loss(event)
        if progress is not None:
            progress(event)

    return report

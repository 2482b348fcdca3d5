"""Every ``ABLATE_*`` environment variable, read and validated in one place.

`load_settings()` reads the environment each time it is called (tests and SLURM jobs change it),
and a bad value raises `SettingsError` with one line that names the variable, what it holds and
what is expected; the CLI prints that line and exits with status 2 before any work. Nothing here
imports torch: checking whether a named CUDA device exists is left to the code that uses it
(`ablate.run.parse_device`), so that `ablate --help` and a grid with a typo start fast.

| variable | meaning | default |
|---|---|---|
| ABLATE_DATA | folder holding the datasets' folders (`$ABLATE_DATA/<name>`) | `./data` |
| ABLATE_DATA_MIRROR | base address archives are fetched from instead of their official ones (`ablate.data.fetch`) | unset |
| ABLATE_CACHE | folder for decoded and generated datasets | `~/.cache/ablate` |
| ABLATE_DEVICE | device of every run (`cpu`, `cuda`, `cuda:1`) | CUDA when present, else CPU |
| ABLATE_EXECUTOR | default of `ablate run --executor` (`auto`, `local`, `slurm`) | `auto` |
| ABLATE_SLURM_GRACE_S | seconds a finished SLURM job may take to show its result.json | 30 |
| ABLATE_COMPILE_COLOR | `1`: colour distortion through torch.compile (`ablate.augment.compiled`) | `0` |
| ABLATE_KEEP_FREED_MEMORY | `0`: leave glibc's allocator as it is on CPU runs (`ablate.cpu_memory`) | `1` |
| ABLATE_MONITOR_EVERY | epochs between online kNN measurements (`ablate.evaluate.monitor`); `0`: off | `auto` |
| ABLATE_STREAM_BUDGET_GB | decoded size (GB) above which an image folder streams under `dataset.stream: auto` (`ablate.data.stream`) | half the available memory |
| ABLATE_STREAM_WORKERS | DataLoader worker processes of a streamed folder; `0`: read in the training process | one per core (at most 16), shared by a run's ranks on the machine |
| ABLATE_STREAM_GPU_DECODE | `1`: a streamed folder's JPEGs decoded by nvJPEG on the run's CUDA device (`ablate.data.stream`) | `0` |
| ABLATE_DIST_TIMEOUT_S | seconds a rank of a run on several processes waits in a collective for the others before the run fails (`ablate.distributed`) | 600 |
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

EXECUTORS = ("auto", "local", "slurm")
DEVICE_PATTERN = re.compile(r"(cpu|cuda)(:\d+)?\Z")
# torch's other device types: torch.device accepts them, so they get "ablate runs on cpu or cuda";
# any other word is "not a device name", as torch.device says.
OTHER_TORCH_DEVICES = ("mps", "xpu", "hip", "meta", "xla", "lazy", "vulkan", "ipu", "hpu", "mtia", "maia", "ve", "fpga",
                       "ideep", "mkldnn", "opengl", "opencl", "privateuseone")


class SettingsError(ValueError):
    """A bad ABLATE_* value; the message is one line naming the variable."""


class Settings(BaseModel):
    """The validated environment; fields are named after the variables without the prefix."""

    model_config = ConfigDict(frozen=True)

    data: Path | None = None
    data_mirror: str | None = None  # http(s) base address: archives fetched from <mirror>/<archive name>
    cache: Path
    device: str | None = None
    executor: Literal["auto", "local", "slurm"] | None = None  # None: unset (the CLI's default applies)
    slurm_grace_s: float = 30.0
    compile_color: bool = False
    keep_freed_memory: bool = True
    monitor_every: int | None = None  # None: auto (ablate.evaluate.monitor.auto_interval); 0: off
    stream_budget_gb: float | None = None  # None: half the available memory (ablate.data.stream.memory_budget_bytes)
    stream_workers: int | None = None  # None: one per core
    stream_gpu_decode: bool = False
    dist_timeout_s: float = 600.0  # torch's own NCCL default; a hung or dead rank fails the run after this long


def _text(env: Mapping[str, str], name: str) -> str | None:
    """The variable's value, stripped; None when unset or empty (an empty variable means 'not given')."""
    value = env.get(name, "").strip()
    return value or None


def _switch(env: Mapping[str, str], name: str, default: bool, meaning: str) -> bool:
    value = _text(env, name)
    if value is None:
        return default
    if value not in ("0", "1"):
        raise SettingsError(f"{name} is {value!r}; expected 1 ({meaning}) or 0")
    return value == "1"


def _device(env: Mapping[str, str]) -> str | None:
    """The device's name when it is one ablate can run on; whether this machine has it is checked where it is used."""
    value = _text(env, "ABLATE_DEVICE")
    if value is None or DEVICE_PATTERN.match(value):
        return value
    if re.fullmatch(rf"({'|'.join(OTHER_TORCH_DEVICES)})(:\d+)?", value):  # a device torch knows, not ablate
        raise SettingsError(f"ABLATE_DEVICE: {value!r}: ablate runs on cpu or cuda")
    raise SettingsError(f"ABLATE_DEVICE: {value!r} is not a device name; expected e.g. cpu or cuda")


def _executor(env: Mapping[str, str]) -> str | None:
    value = _text(env, "ABLATE_EXECUTOR")
    if value is not None and value not in EXECUTORS:
        raise SettingsError(f"ABLATE_EXECUTOR is {value!r}; expected one of {', '.join(EXECUTORS)}")
    return value


def _grace(env: Mapping[str, str]) -> float:
    value = _non_negative(env, "ABLATE_SLURM_GRACE_S", "seconds")
    return 30.0 if value is None else value


def _dist_timeout(env: Mapping[str, str]) -> float:
    """Seconds above 0 (a timeout of 0 would fail every collective at once); 600 when not set."""
    try:
        value = _non_negative(env, "ABLATE_DIST_TIMEOUT_S", "seconds")
    except SettingsError:
        value = 0.0
    if value == 0:
        raise SettingsError(f"ABLATE_DIST_TIMEOUT_S is {_text(env, 'ABLATE_DIST_TIMEOUT_S')!r}; expected a number of "
                            "seconds above 0")
    return 600.0 if value is None else value


def _non_negative(env: Mapping[str, str], name: str, unit: str) -> float | None:
    """A number of `unit`, 0 or more, or None when the variable is not set."""
    text = _text(env, name)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 0:  # also refuses nan
        raise SettingsError(f"{name} is {text!r}; expected a number of {unit}, 0 or more")
    return value


def _monitor_every(env: Mapping[str, str]) -> int | None:
    """Epochs between the kNN monitor's measurements: None for auto, 0 for off."""
    value = _text(env, "ABLATE_MONITOR_EVERY")
    if value is None or value == "auto":
        return None
    if not re.fullmatch(r"[0-9]+", value):  # also refuses signs, fractions, spaces inside and non-ASCII digits
        raise SettingsError(f"ABLATE_MONITOR_EVERY is {value!r}; expected auto, 0 (off) or a whole number of epochs")
    return int(value)


def _data_mirror(env: Mapping[str, str]) -> str | None:
    value = _text(env, "ABLATE_DATA_MIRROR")
    if value is not None and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
        raise SettingsError(f"ABLATE_DATA_MIRROR is {value!r}; expected an http:// or https:// address")
    return value


def _stream_budget_gb(env: Mapping[str, str]) -> float | None:
    return _non_negative(env, "ABLATE_STREAM_BUDGET_GB", "gigabytes")


def _stream_workers(env: Mapping[str, str]) -> int | None:
    value = _text(env, "ABLATE_STREAM_WORKERS")
    if value is None:
        return None
    if not re.fullmatch(r"[0-9]+", value) or int(value) > 256:
        raise SettingsError(f"ABLATE_STREAM_WORKERS is {value!r}; expected a whole number of processes from 0 to 256")
    return int(value)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """The ABLATE_* variables of `env` (default: this process's environment), validated."""
    env = os.environ if env is None else env
    data = _text(env, "ABLATE_DATA")
    cache = _text(env, "ABLATE_CACHE")
    return Settings(
        data=Path(data).expanduser() if data else None,
        data_mirror=_data_mirror(env),
        cache=Path(cache).expanduser() if cache else Path.home() / ".cache" / "ablate",
        device=_device(env),
        executor=_executor(env),
        slurm_grace_s=_grace(env),
        compile_color=_switch(env, "ABLATE_COMPILE_COLOR", False, "compile the colour distortion"),
        keep_freed_memory=_switch(env, "ABLATE_KEEP_FREED_MEMORY", True, "keep freed memory in CPU runs"),
        monitor_every=_monitor_every(env),
        stream_budget_gb=_stream_budget_gb(env),
        stream_workers=_stream_workers(env),
        stream_gpu_decode=_switch(env, "ABLATE_STREAM_GPU_DECODE", False, "decode streamed JPEGs on the CUDA device"),
        dist_timeout_s=_dist_timeout(env),
    )

"""torch.compile for the augmentation hot path, opt-in (ABLATE_COMPILE_COLOR=1), eager where it cannot compile.

Why opt-in: compiling costs time once per process, and again for a second batch shape (an epoch's
last, smaller batch), less once torch's on-disk cache holds them; a short laptop run would not win
that back, and it needs a C++ compiler (CPU) or Triton (GPU). What it buys, and what the compile
costs: benchmarks/results/augment-cpu-2core.md and benchmarks/README.md.
It has been run on CPUs only; on CUDA, torch.compile makes Triton kernels of the same function,
which no GPU has run here yet.

Why an environment variable and not a grid field: it changes how the numbers are computed (float
rounding, ~1e-6), not what is computed, like ABLATE_DEVICE; so run ids stay the same with or
without it, and each result records what was done (provenance "color": eager, compiled, or
eager after a failed compile, with the reason).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch

from ablate.settings import load_settings

ENVIRONMENT_VARIABLE = "ABLATE_COMPILE_COLOR"


def color_compile_requested() -> bool:
    """ABLATE_COMPILE_COLOR: '1' compiles the colour distortion, '0' or unset does not; other values are refused
    (`ablate.settings.SettingsError`, a ValueError)."""
    return load_settings().compile_color


def color_compile_status(uses_color: bool = True) -> str:
    """How this process computes the colour distortion, for a result's provenance.

    A run without a ``color`` operator computes no colour distortion: 'eager' whatever the switch
    says, since nothing compiled touched its numbers (reports count the compiled ones).
    """
    from ablate.augment.color import COMPILED_COLOR  # noqa: PLC0415 - color.py imports this module

    try:
        requested = color_compile_requested()
    except ValueError as err:  # the CLI refuses such a value before any run; a direct caller gets it written down
        return str(err)
    if not requested or not uses_color:
        return "eager"
    if COMPILED_COLOR.failure is not None:
        return f"eager: torch.compile failed ({COMPILED_COLOR.failure})"
    return "compiled (torch.compile)"


class Compiled:
    """``fn`` through torch.compile, compiled on its first call; None instead of a result where compiling fails.

    A machine without a working C++ compiler (or Triton on a GPU) makes torch.compile raise on the
    first call (BackendCompilerFailed); then the caller's eager path is used for the rest of the
    process, said once as a warning rather than failing the run. Other errors (of ``fn`` itself,
    or a graph break, which ``fullgraph`` turns into an error) are raised as they are.
    """

    def __init__(self, fn: Callable[..., torch.Tensor], what: str) -> None:
        self.fn = fn
        self.what = what
        self.failure: str | None = None
        self._compiled: Callable[..., torch.Tensor] | None = None

    def __call__(self, *args: torch.Tensor) -> torch.Tensor | None:
        if self.failure is not None:
            return None
        if self._compiled is None:
            # fullgraph: the function is plain tensor code; a graph break would be a bug here, not a fallback.
            self._compiled = torch.compile(self.fn, fullgraph=True)
        try:
            return self._compiled(*args)
        except torch._dynamo.exc.BackendCompilerFailed as error:  # no working C++ compiler / Triton, or it failed
            self.failure = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            warnings.warn(
                f"{ENVIRONMENT_VARIABLE}: torch.compile of {self.what} failed ({self.failure}); it runs eagerly",
                RuntimeWarning,
                stacklevel=2,
            )
            return None

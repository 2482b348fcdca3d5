"""Training methods: one file each, one line each in `METHODS` (what a method declares: `base.Method`).

The names are those of `ablate.config.methods.METHOD_SPECS`, in the same order (a test checks it);
the spec models live there, apart from these torch modules, so that validating a grid file does not
import torch.
"""

from __future__ import annotations

from ablate.methods.base import Method, MethodContext, ProbeFeatures
from ablate.methods.simclr import SimCLR
from ablate.methods.supervised import Supervised

METHODS: dict[str, type[Method]] = {
    "simclr": SimCLR,
    "supervised": Supervised,
}

__all__ = ["METHODS", "Method", "MethodContext", "ProbeFeatures", "SimCLR", "Supervised"]

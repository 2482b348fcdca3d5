"""Training methods: one file each, one line each in `METHODS` (what a method declares: `base.Method`).

The names are those of `ablate.config.methods.METHOD_SPECS`, in the same order (a test checks it);
the spec models live there, apart from these torch modules, so that validating a grid file does not
import torch.
"""

from __future__ import annotations

from ablate.methods.barlow_twins import BarlowTwins
from ablate.methods.base import Method, MethodContext, ProbeFeatures
from ablate.methods.byol import BYOL
from ablate.methods.dino import DINO
from ablate.methods.moco_v2 import MoCoV2
from ablate.methods.simclr import SimCLR
from ablate.methods.simsiam import SimSiam
from ablate.methods.supervised import Supervised
from ablate.methods.vicreg import VICReg

METHODS: dict[str, type[Method]] = {
    "simclr": SimCLR,
    "moco_v2": MoCoV2,
    "byol": BYOL,
    "simsiam": SimSiam,
    "barlow_twins": BarlowTwins,
    "vicreg": VICReg,
    "dino": DINO,
    "supervised": Supervised,
}

__all__ = ["METHODS", "BYOL", "DINO", "BarlowTwins", "Method", "MethodContext", "MoCoV2", "ProbeFeatures", "SimCLR",
           "SimSiam", "Supervised", "VICReg"]

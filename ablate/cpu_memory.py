"""Keep freed memory inside the process (Linux, glibc), so CPU tensors reuse pages instead of faulting in new ones.

Why: glibc serves a large allocation (above its mmap threshold: 128 KiB at start, raised on the
fly) with fresh pages from the kernel, and hands freed memory back once the free top of the heap
exceeds its trim threshold. A CPU training step allocates dozens of batch-sized tensors (3 MiB each
for 256 images of 3×32×32 floats), and every fresh page costs a page fault when first written.
With these settings a pair of SimCLR views no longer faults in fresh pages (tests/test_cpu_memory.py
counts them), and a run's numbers are unchanged (only where memory comes from changes). What it
does to speed: benchmarks/results/augment-cpu-2core-freed-memory-kept.md against
benchmarks/results/augment-cpu-2core.md, and benchmarks/README.md.
PyTorch's CPU performance guide recommends replacing the allocator (jemalloc, tcmalloc)
for the same reason; these two glibc settings remove the faults without preloading another library.

The cost: a process keeps up to its peak heap size until it exits, which a training process
reaches anyway. Elsewhere (macOS, Windows, musl) nothing is changed, and ABLATE_KEEP_FREED_MEMORY=0
turns it off (e.g. to measure the difference).
"""

from __future__ import annotations

import ctypes
import sys

from ablate.settings import load_settings

# mallopt parameter numbers, from glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# Allocations up to this size come from the heap: glibc's own ceiling for the threshold on 64-bit
# systems (DEFAULT_MMAP_THRESHOLD_MAX, 32 MiB); mallopt refuses larger values.
MMAP_THRESHOLD = 32 * 1024 * 1024
# Free memory at the top of the heap is returned to the kernel only beyond this much.
TRIM_THRESHOLD = 1024 * 1024 * 1024

_applied = False


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process (and the processes it forks). True when applied."""
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux") or not load_settings().keep_freed_memory:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process already uses
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # musl's mallopt is a stub that returns 0: then nothing is claimed.
    _applied = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _applied


def freed_memory_kept() -> bool:
    """Whether keep_freed_memory has been applied in this process (for benchmark reports)."""
    return _applied

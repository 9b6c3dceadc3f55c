"""The C allocator during training: a step's large buffers reused instead of page-faulted.

A CPU training step allocates and frees several buffers of ``(arms, cells, genes)`` floats (16
MB each for 1,024 cells and 2,000 genes: decoder outputs, the NB kernel's gradients). glibc's
``malloc`` serves such sizes from ``mmap`` or returns the freed memory to the system at the top
of its heap, so every step touches fresh pages: on 200,000 cells about 5,000 page faults per step
cost 12-17% of the step (``benchmarks/results/speed.md``). PyTorch's CPU performance guide
recommends another allocator for this reason; without changing the user's process,
:func:`steady_heap` sets glibc's thresholds for the duration of a training phase only, so that
those buffers come from the heap and stay there, and afterwards sets them to the steady state
that glibc's own dynamic thresholds reach in a NumPy-heavy process (allocations above 32 MB are
``mmap``-ed, and more than 64 MB free at the top of the heap is returned), then returns the free
memory (``malloc_trim``). Elsewhere than glibc (macOS, musl, Windows) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from contextlib import contextmanager
from functools import lru_cache

#: ``mallopt`` parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: during training: buffers up to this size come from the heap ...
TRAINING_MMAP_THRESHOLD = 512 * 2**20
#: ... and this much free memory at its top is kept
TRAINING_TRIM_THRESHOLD = 2**30
#: afterwards: the maxima of glibc's dynamic thresholds (64-bit)
STEADY_MMAP_THRESHOLD = 32 * 2**20
STEADY_TRIM_THRESHOLD = 64 * 2**20


@lru_cache(maxsize=1)
def _glibc():
    """glibc's ``mallopt`` and ``malloc_trim``, or ``None`` elsewhere."""
    name = ctypes.util.find_library("c")
    if name is None:  # pragma: no cover - no C library found
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.gnu_get_libc_version  # noqa: B018 - glibc only
        return libc.mallopt, libc.malloc_trim
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        return None


@contextmanager
def steady_heap():
    """Keep a training phase's large buffers on the heap (glibc only; see the module)."""
    fns = _glibc()
    if fns is None:  # pragma: no cover - not glibc
        yield
        return
    mallopt, malloc_trim = fns
    mallopt(_M_MMAP_THRESHOLD, TRAINING_MMAP_THRESHOLD)
    mallopt(_M_TRIM_THRESHOLD, TRAINING_TRIM_THRESHOLD)
    try:
        yield
    finally:
        mallopt(_M_MMAP_THRESHOLD, STEADY_MMAP_THRESHOLD)
        mallopt(_M_TRIM_THRESHOLD, STEADY_TRIM_THRESHOLD)
        malloc_trim(0)

"""Small numba kernels of the CPU training path: compiled once, cached on disk where possible."""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np
import torch


def njit_cached(fn, **options):
    """``fn`` compiled by numba (``nogil``; ``options`` as :func:`numba.njit`'s), cached on
    disk where numba finds a writable cache directory (next to the source file, or numba's
    user-wide cache) so that later processes load it; compiled per process when none is
    writable. ``None`` without numba."""
    try:
        import numba
    except ImportError:  # pragma: no cover - numba comes with scanpy
        return None
    try:
        return numba.njit(nogil=True, cache=True, **options)(fn)
    except RuntimeError:  # pragma: no cover - no writable cache location: compile per process
        return numba.njit(nogil=True, **options)(fn)


def chunks(n: int, min_size: int = 16) -> list[tuple[int, int]]:
    """``[lo, hi)`` ranges covering ``range(n)``, one per PyTorch thread (each at least
    ``min_size`` long)."""
    parts = max(1, min(torch.get_num_threads(), n // min_size))
    bounds = np.linspace(0, n, parts + 1).astype(int)
    return [(int(lo), int(hi)) for lo, hi in itertools.pairwise(bounds)]


def split_work(n: int, fn, min_size: int = 16) -> None:
    """``fn(lo, hi)`` for every range of :func:`chunks`, in parallel threads (for kernels
    that release the GIL, as :func:`njit_cached`'s do)."""
    parts = chunks(n, min_size)
    if len(parts) == 1:
        fn(*parts[0])
        return
    for future in [_pool().submit(fn, lo, hi) for lo, hi in parts]:
        future.result()


@lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=max(1, torch.get_num_threads()),
                              thread_name_prefix="cplmix-kernel")

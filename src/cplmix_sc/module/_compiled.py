"""Small numba kernels of the CPU training path: compiled once, cached on disk where possible."""

from __future__ import annotations


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

"""On-device perturbations that give each arm its own copy of a cell (supplement sec. A, F).

``"learned"``: the copies come from a trained, frozen :class:`AugmenterModule` (sec. F) held
by the CplMixVAE module (:meth:`CplMixVAEModule.make_copies`). ``"simple"`` and ``"none"``
are cheap and label-free.

Binomial thinning on the CPU
----------------------------
``torch.binomial`` costs about 33 ns per matrix entry on the CPU, on one thread: it was about
half of a training step (``benchmarks/step_time.py``). On the CPU, :func:`thin_counts`
therefore samples with a small compiled (numba) kernel instead: the number of *dropped* UMIs
of an entry with count ``n <= SMALL_COUNT`` is drawn by inversion of the exact
``Binomial(n, 1 - keep)`` CDF (a table computed once per ``keep``, with a guide table so that
the search starts next to the answer), larger counts by numba's ``np.random.binomial``, and
zeros cost a comparison. The samples are exact (up to the double-precision CDF; counts are
read as float32, or float64 for float64 input) and seeded from PyTorch's generator, so
``scvi.settings.seed`` makes them reproducible. On a GPU ``torch.binomial`` is used.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from .._validation import check_number
from ._compiled import njit_cached

AUGMENTATIONS = ("simple", "learned", "none")

#: counts up to this are thinned by table inversion on the CPU; larger ones by a sampler
SMALL_COUNT = 64
#: guide-table cells per count: the search starts within one CDF step of the answer
_GUIDE = 4 * (SMALL_COUNT + 1)


def thin_counts(x: torch.Tensor, n_copies: int, keep: float) -> torch.Tensor:
    """Binomial thinning: each UMI is kept with probability ``keep``, independently per copy.

    Thinning is type-preserving (it mimics a shallower sequencing of the same cell) and gives
    different copies for different arms. Non-integer inputs are rounded first (on the CPU,
    negative and non-finite entries, and counts above 1e18, count as 0). ``keep = 1`` returns
    the input unchanged. Returns ``(n_copies, B, G)``.
    """
    keep = check_number("thinning", float(keep), low=0.0, high=1.0)
    if keep == 1.0:
        return x.unsqueeze(0).expand(n_copies, *x.shape).clone()
    if x.device.type == "cpu" and _kernel() is not None:
        return _thin_cpu(x, n_copies, keep)
    return _thin_torch(x, n_copies, keep)


def _thin_torch(x: torch.Tensor, n_copies: int, keep: float) -> torch.Tensor:
    """The device path: ``torch.binomial`` (what a GPU runs)."""
    xs = x.unsqueeze(0).expand(n_copies, *x.shape)
    return torch.binomial(xs.round().clamp_min(0), torch.full_like(xs, keep))


def _thin_cpu(x: torch.Tensor, n_copies: int, keep: float) -> torch.Tensor:
    cdf, guide = _drop_tables(keep)
    work = torch.float64 if x.dtype == torch.float64 else torch.float32  # exact above 2**24
    src = x.detach().to(work).contiguous().numpy().ravel()
    out = np.empty((n_copies, src.size), dtype=src.dtype)
    # one 63-bit seed from PyTorch's generator: reproducible under scvi.settings.seed
    seed = int(torch.randint(0, 2**62, (1,), dtype=torch.int64))
    _kernel()(src, cdf, guide, 1.0 - keep, seed, out)
    return torch.from_numpy(out).view(n_copies, *x.shape).to(x.dtype)


@lru_cache(maxsize=8)
def _drop_tables(keep: float) -> tuple[np.ndarray, np.ndarray]:
    """CDF of the dropped count, ``P(Binomial(n, 1 - keep) <= k)`` for ``n, k <= SMALL_COUNT``,
    and its guide table: ``guide[n, j]`` is the smallest ``k`` with ``cdf[n, k] > j / _GUIDE``.
    """
    from scipy.stats import binom

    n = np.arange(SMALL_COUNT + 1)[:, None]
    k = np.arange(SMALL_COUNT + 1)[None, :]
    cdf = np.where(k >= n, 1.0, binom.cdf(k, n, 1.0 - keep))
    grid = np.arange(_GUIDE) / _GUIDE
    guide = np.stack([np.searchsorted(row, grid, side="right") for row in cdf])
    return np.ascontiguousarray(cdf), np.ascontiguousarray(guide.astype(np.int64))


@lru_cache(maxsize=1)
def _kernel():
    """The compiled CPU sampler, or None without numba.

    Compiled on first use (about 1.5 s) and cached on disk where numba finds a writable cache
    directory (next to this file, or numba's user-wide cache), so later processes load it.
    """
    return njit_cached(_thin_kernel)


def _thin_kernel(src, cdf, guide, drop, seed, out):  # pragma: no cover - compiled by numba
    """Thin ``src`` (flat counts) into ``out`` ``(n_copies, size)``; see the module docstring."""
    # numba compiles the legacy global generator (per thread), for counts > SMALL_COUNT
    np.random.seed(seed & 0xFFFFFFFF)  # noqa: NPY002
    n_small = cdf.shape[0] - 1
    n_guide = guide.shape[1]
    state = np.uint64(seed)
    golden = np.uint64(0x9E3779B97F4A7C15)
    m1, m2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
    s30, s27, s31, s11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
    scale = 1.0 / 9007199254740992.0  # 2**-53
    for c in range(out.shape[0]):
        for i in range(src.size):
            v = src[i]
            if not 0.5 < v < 1e18:  # zero, negative, NaN or infinite
                out[c, i] = 0.0
                continue
            n = int(np.rint(v))
            if n <= n_small:
                state += golden  # splitmix64: one uniform in [0, 1)
                z = state
                z = (z ^ (z >> s30)) * m1
                z = (z ^ (z >> s27)) * m2
                z = z ^ (z >> s31)
                u = float(z >> s11) * scale
                k = guide[n, int(u * n_guide)]
                while u >= cdf[n, k]:
                    k += 1
                out[c, i] = n - k
            else:
                out[c, i] = n - np.random.binomial(n, drop)  # noqa: NPY002


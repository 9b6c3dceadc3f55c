"""Dropout on the encoders' input, drawn by a compiled kernel on the CPU.

PyTorch's CPU dropout draws its Bernoulli mask with ``bernoulli_``, one entry at a time: on
the ``(arms, cells, genes)`` input of the encoders that was a large part of a training step
(figures: ``benchmarks/results/speed.md``). The input is a function of the data
only (it needs no gradient), and most of it is zero for single-cell counts, where dropout
changes nothing. On the CPU, :class:`InputDropout` therefore draws a uniform number per
non-zero entry with a splitmix64 generator in a small numba kernel, seeded from PyTorch's
generator (so ``scvi.settings.seed`` makes it reproducible): each entry is kept with
probability ``1 - p`` and scaled by ``1 / (1 - p)``, independently, as ``nn.Dropout`` does
(the same distribution, other random numbers). Everywhere else (a GPU, an input that needs
a gradient, float64, evaluation) it is ``nn.Dropout``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch import nn

from ._compiled import njit_cached


class InputDropout(nn.Dropout):
    """:class:`torch.nn.Dropout` whose CPU training path uses the compiled kernel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (not self.training or self.p == 0.0 or x.requires_grad or x.device.type != "cpu"
                or x.dtype != torch.float32 or self.inplace or _kernel() is None):
            return super().forward(x)
        src = x.contiguous().numpy().ravel()
        out = np.empty_like(src)
        seed = int(torch.randint(0, 2**62, (1,), dtype=torch.int64))
        scale = np.float32(1.0) / np.float32(1.0 - self.p)
        _kernel()(src, out, float(self.p), scale, seed)
        return torch.from_numpy(out).view(x.shape)


@lru_cache(maxsize=1)
def _kernel():
    """The compiled kernel (cached on disk by numba where it can), or None without numba."""
    return njit_cached(_dropout_kernel)


def _dropout_kernel(src, out, p, scale, seed):  # pragma: no cover - compiled by numba
    """``out = src * mask / (1 - p)``, the mask drawn only where ``src`` is not zero."""
    state = np.uint64(seed)
    golden = np.uint64(0x9E3779B97F4A7C15)
    m1, m2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
    s30, s27, s31, s11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
    unit = 1.0 / 9007199254740992.0  # 2**-53
    zero = np.float32(0.0)
    for i in range(src.size):
        v = src[i]
        if v == 0.0:
            out[i] = v
            continue
        state += golden  # splitmix64: one uniform in [0, 1)
        z = state
        z = (z ^ (z >> s30)) * m1
        z = (z ^ (z >> s27)) * m2
        z = z ^ (z >> s31)
        # a dropped entry is v * 0 (NaN and inf stay NaN, as in nn.Dropout)
        out[i] = v * (zero if float(z >> s11) * unit < p else scale)

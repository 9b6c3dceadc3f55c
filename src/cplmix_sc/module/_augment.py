"""On-device perturbations that give each arm its own copy of a cell (supplement sec. A, F).

``"learned"``: the copies come from a trained, frozen :class:`AugmenterModule` (sec. F) held
by the CplMixVAE module (:meth:`CplMixVAEModule.make_copies`). ``"simple"`` and ``"none"``
are cheap and label-free.
"""

from __future__ import annotations

import torch

AUGMENTATIONS = ("simple", "learned", "none")


def thin_counts(x: torch.Tensor, n_copies: int, keep: float) -> torch.Tensor:
    """Binomial thinning: each UMI is kept with probability ``keep``, independently per copy.

    Thinning is type-preserving (it mimics a shallower sequencing of the same cell) and gives
    different copies for different arms. Non-integer inputs are rounded first. Returns
    ``(n_copies, B, G)``.
    """
    xs = x.unsqueeze(0).expand(n_copies, *x.shape)
    if keep >= 1.0:
        return xs.clone()
    probs = torch.full_like(xs, keep)
    return torch.binomial(xs.round().clamp_min(0), probs)

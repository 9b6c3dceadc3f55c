"""Log-normalisation of counts: the one definition every network and the start use."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

#: counts per cell after normalisation (CP10k), for the encoders' input and the Gaussian target
NORM_SCALE = 1e4


def log_normalise(x: torch.Tensor, library: torch.Tensor) -> torch.Tensor:
    """``log1p(x / library * 1e4)``: the encoders' input and the Gaussian likelihood's target."""
    return torch.log1p(x / library.clamp_min(1.0) * NORM_SCALE)


def log_normalise_rows(x) -> np.ndarray:
    """Dense float32 :func:`log_normalise` of a matrix's rows (NumPy, SciPy sparse or torch),
    each normalised by its own total."""
    if sp.issparse(x):
        x = x.toarray()
    x = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x, dtype=torch.float32)
    return log_normalise(x, x.sum(-1, keepdim=True)).numpy()

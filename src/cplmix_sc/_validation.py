"""Checks on user input that raise errors naming the problem and the fix."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from anndata import AnnData


def check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {list(choices)}, got {value!r}.")


def check_counts(adata: AnnData, layer: str | None) -> None:
    """Refuse matrices that cannot be UMI/read counts: non-numeric, non-finite, negative."""
    if layer is not None and layer not in adata.layers:
        raise KeyError(
            f"Layer {layer!r} is not in adata.layers (available: {list(adata.layers)}). "
            "Pass the layer that holds the raw counts, or layer=None to use adata.X."
        )
    x = adata.X if layer is None else adata.layers[layer]
    where = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
    if x is None:
        raise ValueError(f"{where} is empty; CplMixVAE needs a cells x genes count matrix.")
    values = x.data if sp.issparse(x) else np.asarray(x)
    if not np.issubdtype(values.dtype, np.number):
        raise TypeError(f"{where} has dtype {values.dtype}; it must hold numeric counts.")
    if values.size == 0:
        return
    sample = values.ravel()
    if not np.all(np.isfinite(sample)):
        raise ValueError(f"{where} contains NaN or infinite values; CplMixVAE needs counts.")
    if sample.min() < 0:
        raise ValueError(
            f"{where} contains negative values (min {sample.min():.3g}); it looks scaled or "
            "centred. Pass raw counts (e.g. layer='counts')."
        )
    if not np.allclose(sample[: 100_000], np.round(sample[: 100_000])):
        raise ValueError(
            f"{where} holds non-integer values, so it looks normalised or log-transformed. "
            "CplMixVAE normalises internally and needs raw counts: pass the layer with counts "
            "(e.g. layer='counts') or restore them (e.g. round(expm1(x)) for log1p UMIs)."
        )

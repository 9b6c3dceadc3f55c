"""Clustering scores: ARI, AMI, NMI and accuracy after Hungarian matching."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from ._matching import match_table


def _labelled(true, pred) -> tuple[np.ndarray, np.ndarray]:
    true = pd.Series(np.asarray(true, dtype=object))
    pred = pd.Series(np.asarray(pred, dtype=object))
    if len(true) != len(pred):
        raise ValueError(f"true and pred differ in length: {len(true)} vs {len(pred)}.")
    keep = (~true.isna()).to_numpy() & (~pred.isna()).to_numpy()
    return true[keep].astype(str).to_numpy(), pred[keep].astype(str).to_numpy()


def hungarian_accuracy(true, pred) -> float:
    """Fraction of cells whose predicted type maps to their true type.

    Predicted and true types are matched one-to-one to maximise the matched cells
    (Hungarian algorithm); a predicted type left without a partner counts as wrong.
    """
    true, pred = _labelled(true, pred)
    if len(true) == 0:
        return float("nan")
    table = pd.crosstab(pred, true).to_numpy()
    rows, cols = match_table(table)
    return float(table[rows, cols].sum() / len(true))


def clustering_scores(true, pred) -> dict[str, float]:
    """ARI, AMI, NMI and Hungarian accuracy of ``pred`` against ``true``.

    Cells whose true (or predicted) label is missing (``NaN``/``None``) are ignored.

    Returns
    -------
    dict with keys ``ari``, ``ami``, ``nmi``, ``accuracy``, ``n_cells``.
    """
    t, p = _labelled(true, pred)
    return {
        "ari": float(skm.adjusted_rand_score(t, p)),
        "ami": float(skm.adjusted_mutual_info_score(t, p)),
        "nmi": float(skm.normalized_mutual_info_score(t, p)),
        "accuracy": hungarian_accuracy(t, p),
        "n_cells": len(t),
    }


def state_recovery(true_state, inferred_state, groups, min_cells: int = 10) -> dict[str, float]:
    """How well an inferred state follows a known 1-D state within each group (type).

    Within each group the inferred state (``n_cells x S``) is projected on its main axis (the
    first principal component, since the state's coordinates are only defined up to rotation),
    and the absolute Spearman correlation with the true state is taken.

    Parameters
    ----------
    true_state
        ``(n_cells,)`` ground-truth state.
    inferred_state
        ``(n_cells, S)`` inferred state, e.g. ``adata.obsm["X_cpl_state"]``.
    groups
        ``(n_cells,)`` group of each cell (e.g. the true type); groups with fewer than
        ``min_cells`` cells are skipped.

    Returns
    -------
    ``{group: |Spearman|}``.
    """
    from scipy.stats import spearmanr

    true_state = np.asarray(true_state, dtype=float)
    inferred = np.asarray(inferred_state, dtype=float)
    if inferred.ndim == 1:
        inferred = inferred[:, None]
    groups = np.asarray(groups)
    out = {}
    for g in pd.unique(groups):
        m = groups == g
        if m.sum() < min_cells:
            continue
        s = inferred[m] - inferred[m].mean(0)
        axis = np.linalg.svd(s, full_matrices=False)[2][0]
        out[str(g)] = float(abs(spearmanr(s @ axis, true_state[m]).statistic))
    return out

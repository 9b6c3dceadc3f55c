"""One-to-one matching of two labellings by maximal overlap (Hungarian algorithm)."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


def match_table(table) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of a contingency table matched one-to-one, maximising matched counts."""
    return linear_sum_assignment(-np.asarray(table))


def match_labels(reference, labels) -> dict:
    """Map each category of ``reference`` to its partner in ``labels`` (same cells, maximal
    overlap, one-to-one); categories left without a partner are absent from the mapping."""
    ref_cats, ref_idx = np.unique(np.asarray(reference), return_inverse=True)
    cats, idx = np.unique(np.asarray(labels), return_inverse=True)
    table = np.zeros((len(ref_cats), len(cats)))
    np.add.at(table, (ref_idx, idx), 1)
    rows, cols = match_table(table)
    return dict(zip(ref_cats[rows].tolist(), cats[cols].tolist(), strict=True))

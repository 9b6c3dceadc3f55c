"""Agreement between arms: per cell (:func:`arm_consensus`) and per category
(:func:`category_consensus_from_labels`, the one definition used for pruning and choosing K)."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd


def arm_consensus(labels) -> float:
    """Mean fraction of cells on which two arms agree, over all arm pairs.

    Parameters
    ----------
    labels
        ``(n_arms, n_cells)`` argmax categories, or a trained
        :class:`~cplmix_sc.CplMixVAE` (its arms' labels on its AnnData).
        Categories are compared by index: the coupling makes index ``k`` mean the same type
        in every arm. One arm gives ``1.0``.
    """
    if hasattr(labels, "get_arm_labels"):
        labels = labels.get_arm_labels()
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError("labels must be (n_arms, n_cells).")
    pairs = list(combinations(range(labels.shape[0]), 2))
    if not pairs:
        return 1.0
    return float(np.mean([np.mean(labels[a] == labels[b]) for a, b in pairs]))


def category_consensus_from_labels(
    arm_labels: np.ndarray, n_categories: int, active: np.ndarray | None = None
) -> pd.DataFrame:
    """Per-category consensus of the arms' argmax labels.

    For category ``k`` and arms ``a, b`` the consensus is the Jaccard index of the cells each
    arm puts in ``k``: ``|A_k ∩ B_k| / |A_k ∪ B_k|``; with more than two arms it is averaged
    over arm pairs (Sec. D's coupling makes index ``k`` mean the same type in every arm). It is
    1 when the arms agree on exactly which cells form the category and 0 when no cell is
    shared. A category that no arm uses has consensus 0 (nothing supports it). One arm gives 1.

    Parameters
    ----------
    arm_labels
        ``(n_arms, n_cells)`` argmax category of each arm.
    n_categories
        Number of categories ``K``.
    active
        Boolean mask of the categories to report (default all).

    Returns
    -------
    DataFrame indexed by ``category`` with ``n_cells`` (cells whose *consensus* label, the
    most common arm label with ties to the first arm, is ``k``), ``n_cells_any_arm``
    and ``consensus``.
    """
    arm_labels = np.asarray(arm_labels)
    if arm_labels.ndim != 2:
        raise ValueError("arm_labels must be (n_arms, n_cells).")
    a, _ = arm_labels.shape
    cats = np.arange(n_categories)
    onehot = arm_labels[:, :, None] == cats[None, None, :]  # (A, N, K)
    pairs = list(combinations(range(a), 2))
    if pairs:
        jac = []
        for i, j in pairs:
            inter = (onehot[i] & onehot[j]).sum(0)
            union = (onehot[i] | onehot[j]).sum(0)
            jac.append(np.divide(inter, union, out=np.zeros(n_categories), where=union > 0))
        consensus = np.mean(jac, axis=0)
    else:
        consensus = np.where(onehot[0].sum(0) > 0, 1.0, 0.0)
    votes = onehot.sum(0)  # (N, K)
    first = onehot[0].astype(float) * 0.5  # ties go to arm 0's label
    label = (votes + first).argmax(1)
    df = pd.DataFrame(
        {
            "n_cells": np.bincount(label, minlength=n_categories),
            "n_cells_any_arm": onehot.any(0).sum(0),
            "consensus": consensus,
        },
        index=pd.Index(cats, name="category"),
    )
    if active is not None:
        df = df[np.asarray(active, dtype=bool)]
    return df

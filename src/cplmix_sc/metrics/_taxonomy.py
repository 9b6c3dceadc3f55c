"""Types against a reference taxonomy: accuracy at coarser levels (Fig. S10) and silhouettes
(supplement sec. M, Fig. S14)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.cluster.hierarchy import fcluster, linkage
from sklearn.metrics import adjusted_rand_score, silhouette_samples

from ._clustering import _labelled


def reference_tree(
    data: np.ndarray,
    labels: Sequence,
    method: str = "average",
    metric: str = "correlation",
) -> tuple[np.ndarray, list[str]]:
    """Dendrogram of reference types built from their centroids.

    Parameters
    ----------
    data
        ``(n_cells, n_features)`` representation, e.g. log-normalised expression or PCs.
    labels
        Reference type per cell; missing values (NaN/None) are ignored.
    method, metric
        Passed to :func:`scipy.cluster.hierarchy.linkage` (``metric="correlation"`` on
        centroids of expression is the usual transcriptomic-taxonomy choice).

    Returns
    -------
    ``(Z, names)``: the scipy linkage matrix over type centroids and the type names in
    the linkage's leaf numbering.
    """
    lab = pd.Series(np.asarray(labels, dtype=object))
    ok = lab.notna().to_numpy()
    names = sorted(lab[ok].astype(str).unique())
    if len(names) < 2:
        raise ValueError("A taxonomy needs at least two reference types.")
    data = np.asarray(data, dtype=float)
    lab_ok = lab[ok].astype(str).to_numpy()
    centroids = np.stack([data[ok][lab_ok == n].mean(0) for n in names])
    return linkage(centroids, method=method, metric=metric), names


def _merge_maps(tree, names: list[str] | None, n_groups: Sequence[int] | None):
    """``{level name: {fine type: coarse group}}`` from a mapping or a linkage."""
    if isinstance(tree, Mapping):
        return {"mapping": {str(k): str(v) for k, v in tree.items()}}
    if names is None:
        raise ValueError("Pass `names` (the leaf names) with a linkage matrix.")
    z = np.asarray(tree)
    n = len(names)
    if z.shape != (n - 1, 4):
        raise ValueError(f"Linkage of shape {z.shape} does not match {n} names.")
    levels = sorted(set(n_groups if n_groups is not None else range(1, n + 1)), reverse=True)
    out = {}
    for g in levels:
        if not 1 <= g <= n:
            raise ValueError(f"n_groups must be in [1, {n}], got {g}.")
        cut = fcluster(z, t=g, criterion="maxclust")
        out[g] = {names[i]: f"g{cut[i]}" for i in range(n)}
    return out


def taxonomy_accuracy(
    reference: Sequence,
    predicted: Sequence,
    tree: Mapping | np.ndarray,
    names: list[str] | None = None,
    n_groups: Sequence[int] | None = None,
) -> pd.DataFrame:
    """Accuracy of learned types at coarser levels of a reference taxonomy (Fig. S10).

    Each learned type takes the label of the reference type it shares most cells with; then
    reference and learned labels are both merged up the taxonomy, and the accuracy is the
    fraction of cells whose merged labels agree. At the finest level this is the majority
    (purity-style) accuracy; it rises as types merge.

    Parameters
    ----------
    reference, predicted
        Reference types and learned types per cell; cells with a missing reference are
        ignored.
    tree
        Either a mapping fine type -> coarse group (e.g. Zeisel ``level2`` -> ``level1``),
        giving one row, or a linkage matrix (e.g. from :func:`reference_tree`) with
        ``names``, giving one row per number of groups.
    names
        Leaf names of the linkage.
    n_groups
        Levels of the linkage to report (numbers of merged groups); default all.

    Returns
    -------
    DataFrame with ``level`` (the number of groups, or ``"mapping"``), ``n_groups``,
    ``accuracy`` and ``ari`` (between merged labels).
    """
    ref, pred = _labelled(reference, predicted)
    ref = ref.astype(str)
    pred = pred.astype(str)
    table = pd.crosstab(pred, ref)
    majority = table.idxmax(axis=1).to_dict()
    pred_as_ref = np.array([majority[p] for p in pred])
    rows = []
    for level, mapping in _merge_maps(tree, names, n_groups).items():
        missing = sorted(set(ref) - set(mapping))
        if missing:
            raise KeyError(f"Reference types missing from the taxonomy: {missing[:10]}.")
        r = np.array([mapping[x] for x in ref])
        p = np.array([mapping[x] for x in pred_as_ref])
        rows.append(
            {"level": level, "n_groups": len(set(mapping.values())),
             "accuracy": float((r == p).mean()), "ari": float(adjusted_rand_score(r, p))}
        )
    return pd.DataFrame(rows)


def silhouette_by_pcs(
    pcs: np.ndarray,
    labelings: Mapping[str, Sequence],
    n_pcs: Sequence[int] = (5, 10, 15, 20),
    per_label: bool = False,
) -> pd.DataFrame:
    """Silhouette of several labellings on the top PCs (supplement sec. M, Fig. S14).

    Parameters
    ----------
    pcs
        ``(n_cells, >= max(n_pcs))`` principal components, in order.
    labelings
        Name -> labels per cell (e.g. ``{"cpl-mixVAE": obs["cpl_type"], "reference": ...}``);
        cells with a missing label in *any* labelling are left out so that all labellings
        are scored on the same cells. Singleton labels get silhouette 0 (sklearn).
    n_pcs
        Numbers of leading PCs to use.
    per_label
        If ``True``, one row per label (mean silhouette of its cells, as Fig. S14) instead of
        one overall mean per labelling.

    Returns
    -------
    DataFrame with ``labeling, n_pcs, silhouette`` (and ``label, n_cells`` if
    ``per_label``).
    """
    pcs = np.asarray(pcs, dtype=float)
    if max(n_pcs) > pcs.shape[1]:
        raise ValueError(f"`pcs` has {pcs.shape[1]} columns; n_pcs asks for {max(n_pcs)}.")
    labs = {k: pd.Series(np.asarray(v, dtype=object)) for k, v in labelings.items()}
    ok = np.ones(len(pcs), dtype=bool)
    for k, v in labs.items():
        if len(v) != len(pcs):
            raise ValueError(f"Labelling {k!r} has {len(v)} entries for {len(pcs)} cells.")
        ok &= v.notna().to_numpy()
    rows = []
    for name, v in labs.items():
        lab = v[ok].astype(str).to_numpy()
        if len(np.unique(lab)) < 2:
            raise ValueError(f"Labelling {name!r} has fewer than two labels.")
        for n in n_pcs:
            s = silhouette_samples(pcs[ok, :n], lab)
            if per_label:
                df = pd.DataFrame({"label": lab, "s": s}).groupby("label")["s"]
                df = df.agg(["mean", "size"])
                for label, row in df.iterrows():
                    rows.append({"labeling": name, "n_pcs": n, "label": label,
                                 "silhouette": float(row["mean"]), "n_cells": int(row["size"])})
            else:
                rows.append({"labeling": name, "n_pcs": n, "silhouette": float(s.mean())})
    return pd.DataFrame(rows)


def level_mapping(fine: Sequence, coarse: Sequence) -> dict[str, str]:
    """Fine -> coarse label mapping from two annotation levels of the same cells.

    Each fine label maps to the coarse label most of its cells carry (e.g. Zeisel's
    ``level2`` subclasses to ``level1`` classes), for :func:`taxonomy_accuracy`.
    """
    f, c = _labelled(fine, coarse)
    if len(f) == 0:
        raise ValueError("No cell has both a fine and a coarse label.")
    return pd.crosstab(f, c).idxmax(axis=1).astype(str).to_dict()

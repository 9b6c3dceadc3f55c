"""Latent traversals of the type-dependent state, and the genes they reveal (supplement sec. K)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy.stats import rankdata
from scvi import REGISTRY_KEYS

from ..metrics._matching import match_labels

#: pseudo-count (per 10,000 counts) added before taking log2 of decoded expression
PSEUDOCOUNT = 1.0


@dataclass
class Traversal:
    """Result of :func:`traversal`.

    Attributes
    ----------
    expression
        ``(n_runs, n_types, n_steps, n_genes)`` decoded expression per 10,000 counts (NaN where
        a run has no match for a type).
    state_values
        ``(n_runs, n_types, n_steps)`` coordinate along each type's state axis (state units,
        0 at the mean state of the type's cells).
    cell_types
        Type labels (category indices as strings, as in ``obs["cpl_type"]``; for several runs,
        the first run's labels).
    genes
        Gene names (columns of ``expression``).
    scores
        One row per run, type and gene: ``mean_expression``, ``log2_fc`` (end vs start of the
        sweep, signed), ``log2_range`` (max - min of ``log2(expression + 1)``),
        ``monotonicity`` (Spearman correlation of expression with the state coordinate) and
        ``score = log2_range * |monotonicity|``.
    axes
        One row per run and type: cells used, the sweep's bounds ``lo``/``hi``, the fraction
        of the type's state variance along the axis (``explained``) and, for several runs,
        the matched category of that run (``category``).
    """

    expression: np.ndarray
    state_values: np.ndarray
    cell_types: list[str]
    genes: pd.Index
    scores: pd.DataFrame
    axes: pd.DataFrame
    n_runs: int = field(default=1)

    @cached_property
    def profiles(self) -> pd.DataFrame:
        """Tidy table: ``run, cell_type, step, position, state_value, gene, expression``.

        ``position`` runs from 0 (start of the sweep) to 1 (end).
        """
        r, t, n, g = self.expression.shape
        idx = np.indices((r, t, n, g)).reshape(4, -1)
        df = pd.DataFrame(
            {
                "run": idx[0],
                "cell_type": pd.Categorical(
                    np.asarray(self.cell_types)[idx[1]], categories=self.cell_types
                ),
                "step": idx[2],
                "position": idx[2] / max(n - 1, 1),
                "state_value": self.state_values.reshape(-1).repeat(g),
                "gene": pd.Categorical(np.asarray(self.genes)[idx[3]], categories=self.genes),
                "expression": self.expression.reshape(-1),
            }
        )
        return df.dropna(subset=["expression"]).reset_index(drop=True)


def _batch_codes(model, adata: AnnData) -> np.ndarray | None:
    if not model._has_batch:
        return None
    manager = model.get_anndata_manager(adata, required=True)
    return np.asarray(manager.get_from_registry(REGISTRY_KEYS.BATCH_KEY)).ravel()


def _state_axis(states: np.ndarray, percentiles: tuple[float, float]):
    """Mean, unit main axis (sign fixed: largest component positive) and sweep bounds."""
    center = states.mean(0)
    centred = states - center
    if states.shape[1] == 1:
        direction = np.ones(1)
        explained = 1.0
    else:
        _, sing, vt = np.linalg.svd(centred, full_matrices=False)
        direction = vt[0] * np.sign(vt[0][np.argmax(np.abs(vt[0]))])
        total = float((sing**2).sum())
        explained = float(sing[0] ** 2 / total) if total > 0 else 1.0
    proj = centred @ direction
    lo, hi = np.percentile(proj, percentiles)
    return center, direction, float(lo), float(hi), explained


def _gene_scores(expr: np.ndarray) -> dict[str, np.ndarray]:
    """Scores of ``(n_steps, n_genes)`` profiles (see :class:`Traversal`)."""
    logx = np.log2(expr + PSEUDOCOUNT)
    # Spearman correlation with the step index: Pearson on ranks (constant genes get 0)
    ranks = rankdata(expr, axis=0)
    ranks = ranks - ranks.mean(0)
    steps = np.arange(expr.shape[0], dtype=float)
    steps -= steps.mean()
    denom = np.sqrt((ranks**2).sum(0) * (steps**2).sum())
    rho = np.divide(steps @ ranks, denom, out=np.zeros(expr.shape[1]), where=denom > 0)
    log_range = logx.max(0) - logx.min(0)
    return {
        "mean_expression": expr.mean(0),
        "log2_fc": logx[-1] - logx[0],
        "log2_range": log_range,
        "monotonicity": rho,
        "score": log_range * np.abs(rho),
    }


def traversal(
    model,
    adata: AnnData | None = None,
    cell_types: Sequence[str | int] | None = None,
    genes: Sequence[str] | None = None,
    n_steps: int = 25,
    percentiles: tuple[float, float] = (5.0, 95.0),
    arm: int = 0,
    min_cells: int = 10,
    batch_size: int | None = None,
) -> Traversal:
    """Sweep each type's state and decode expression with the type fixed (Figs. S11, S12).

    For every type, the cells assigned to it (consensus type) give a cloud of inferred
    states ``q(s|x, c)``; the sweep runs along the main axis of that cloud (its first principal
    direction; the only one when ``n_state=1``) between the ``percentiles`` of the cells'
    positions, so it stays where the type's cells actually are. At ``n_steps`` points the
    decoder of arm ``arm`` gives the expected expression per 10,000 counts, ``E[x|s, c]``,
    with ``c`` fixed to the type. Genes that follow the state change along the sweep; marker
    genes, if the state is truly type-dependent and not a second type axis, stay flat.

    The sign of a state axis is arbitrary (it is fixed so that its largest component is
    positive); for several runs, each run's axis is flipped to agree with the first run's.

    Parameters
    ----------
    model
        A trained :class:`~cplmix_sc.CplMixVAE`, or a list of them trained on the same genes
        (e.g. different seeds) for the robustness view of Fig. S11: each run's categories are
        matched to the first run's by maximal cell overlap (Hungarian matching).
    adata
        Cells that define the types' state ranges; defaults to the model's AnnData.
    cell_types
        Types to sweep (labels as in ``obs["cpl_type"]``); default: every type with at least
        ``min_cells`` cells.
    genes
        Genes to keep (names in ``var_names``); default all.
    n_steps
        Points along each sweep.
    percentiles
        Bounds of the sweep, as percentiles of the cells' positions along the axis.
    arm
        Whose state coordinates and decoder to use (arms' state spaces are not aligned).
    min_cells
        Types with fewer cells are skipped (their state range is not defined).
    batch_size
        Cells per inference batch.

    Returns
    -------
    :class:`Traversal` with the profiles (``.profiles``, a tidy DataFrame; ``.expression``,
    an array) and per-gene scores (``.scores``).
    """
    models, adata, gene_idx = _check_traversal(model, adata, genes, n_steps, percentiles, arm)
    first = models[0]
    var_names = first.adata.var_names
    posts = [m._posterior(adata, batch_size=batch_size) for m in models]
    labels = [p["log_probs"].exp().mean(0).argmax(-1).numpy() for p in posts]
    states = [p["state"][arm].numpy() for p in posts]
    counts = np.bincount(labels[0], minlength=first.module.n_categories)
    chosen = _chosen_types(cell_types, counts, min_cells)
    batches = _batch_codes(first, adata)

    n_r, n_t, n_g = len(models), len(chosen), len(gene_idx)
    expression = np.full((n_r, n_t, n_steps, n_g), np.nan)
    values = np.full((n_r, n_t, n_steps), np.nan)
    axes_rows, score_rows = [], []
    for r, m in enumerate(models):
        match = {c: c for c in chosen} if r == 0 else match_labels(labels[0], labels[r])
        for ti, c in enumerate(chosen):
            cat = match.get(c)
            cells = np.flatnonzero(labels[r] == cat) if cat is not None else np.array([])
            if len(cells) < min_cells:
                warnings.warn(
                    f"Run {r}: no category matches type {c} with >= {min_cells} cells; skipped.",
                    stacklevel=2,
                )
                continue
            batch = None if batches is None else np.bincount(batches[cells]).argmax()
            expr, lam, explained = _sweep(m, states[r][cells], cat, batch, n_steps,
                                          percentiles, arm, gene_idx)
            if r > 0:
                expr, lam = _orient_like(expression[0, ti], expr, lam)
            expression[r, ti] = expr
            values[r, ti] = lam
            axes_rows.append(
                {"run": r, "cell_type": str(c), "category": cat, "n_cells": len(cells),
                 "lo": lam[0], "hi": lam[-1], "explained": explained}
            )
            sc = _gene_scores(expr)
            score_rows.append(
                pd.DataFrame({"run": r, "cell_type": str(c), "gene": var_names[gene_idx], **sc})
            )
    names = [str(c) for c in chosen]
    scores = pd.concat(score_rows, ignore_index=True)
    scores["cell_type"] = pd.Categorical(scores["cell_type"], categories=names)
    return Traversal(
        expression=expression,
        state_values=values,
        cell_types=names,
        genes=pd.Index(var_names[gene_idx]),
        scores=scores,
        axes=pd.DataFrame(axes_rows),
        n_runs=n_r,
    )


def _check_traversal(model, adata, genes, n_steps, percentiles, arm):
    """Checked models (a list), AnnData and gene indices of :func:`traversal`."""
    models = list(model) if isinstance(model, list | tuple) else [model]
    if not models:
        raise ValueError("`model` is an empty list; pass a trained CplMixVAE.")
    for m in models:
        if not m.is_trained_:
            raise ValueError("The model is not trained; call `model.train()` first.")
        m._check_arm(arm)
    first = models[0]
    adata = first._validate_anndata(adata)
    if any(not m.adata.var_names.equals(first.adata.var_names) for m in models[1:]):
        raise ValueError("All models must be trained on the same genes (same var_names).")
    if n_steps < 2:
        raise ValueError(f"`n_steps` must be at least 2, got {n_steps}.")
    lo_p, hi_p = percentiles
    if not 0 <= lo_p < hi_p <= 100:
        raise ValueError(f"`percentiles` must satisfy 0 <= lo < hi <= 100, got {percentiles}.")
    var_names = first.adata.var_names
    if genes is None:
        return models, adata, np.arange(len(var_names))
    genes = [genes] if isinstance(genes, str) else list(genes)
    missing = [g for g in genes if g not in var_names]
    if missing:
        raise KeyError(
            f"Genes not in the model's var_names: {missing[:10]}"
            + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        )
    return models, adata, var_names.get_indexer(genes)


def _chosen_types(cell_types, counts: np.ndarray, min_cells: int) -> list[int]:
    """The category indices to sweep: ``cell_types`` checked, or every type with enough cells."""
    if cell_types is None:
        chosen = [int(c) for c in np.flatnonzero(counts >= min_cells)]
        if not chosen:
            raise ValueError(f"No type has at least min_cells={min_cells} cells.")
        return chosen
    cell_types = [cell_types] if isinstance(cell_types, str | int) else list(cell_types)
    chosen = []
    for c in cell_types:
        try:
            ci = int(c)
        except (TypeError, ValueError):
            raise ValueError(f"Unknown cell type {c!r}: labels are category indices.") from None
        if not 0 <= ci < len(counts) or counts[ci] < min_cells:
            raise ValueError(
                f"Type {c!r} has {counts[ci] if 0 <= ci < len(counts) else 0} cells "
                f"(min_cells={min_cells}); types with enough cells: "
                f"{[str(i) for i in np.flatnonzero(counts >= min_cells)]}."
            )
        chosen.append(ci)
    return chosen


def _sweep(model, states, category, batch, n_steps, percentiles, arm, gene_idx):
    """Decoded expression along one type's state axis: ``(expression, positions, explained)``."""
    center, direction, lo, hi, explained = _state_axis(states, percentiles)
    lam = np.linspace(lo, hi, n_steps)
    points = center[None] + lam[:, None] * direction[None]
    batch = None if batch is None else np.full(n_steps, batch)
    expr = model.decode_expression(points, np.full(n_steps, category), batch, arm=arm)
    return expr[:, gene_idx], lam, explained


def _orient_like(reference: np.ndarray, expr: np.ndarray, lam: np.ndarray):
    """Flip a later run's sweep when its log-expression runs against the first run's."""
    ref = np.log2(reference + PSEUDOCOUNT)
    cur = np.log2(expr + PSEUDOCOUNT)
    if np.isfinite(ref).all():
        ref_c, cur_c = ref - ref.mean(0), cur - cur.mean(0)
        if (ref_c * cur_c).sum() < 0:
            return expr[::-1], -lam[::-1]
    return expr, lam


def state_genes(
    model,
    adata: AnnData | None = None,
    cell_types: Sequence[str | int] | None = None,
    min_score: float = 1.0,
    n_top: int | None = None,
    **kwargs,
) -> pd.DataFrame:
    """Genes regulated by the state, ranked per type.

    Runs :func:`traversal` over all genes and keeps, per type, the genes whose decoded
    expression follows the state by at least ``min_score`` (``log2_range * |monotonicity|``:
    the default 1.0 is a two-fold monotone change across the range of the type's cells).

    Parameters
    ----------
    model
        A trained :class:`~cplmix_sc.CplMixVAE`.
    adata
        Cells defining the types' state ranges; defaults to the model's AnnData.
    cell_types
        Types to analyse; default all with enough cells.
    min_score
        Minimum score; 0 keeps every gene (a full ranking).
    n_top
        Keep at most this many genes per type.
    **kwargs
        Passed to :func:`traversal` (``n_steps``, ``percentiles``, ``arm``, ``min_cells``).

    Returns
    -------
    DataFrame with columns ``cell_type``, ``gene``, ``score``, ``log2_fc``, ``log2_range``,
    ``monotonicity``, ``mean_expression``, ``rank`` (rank 1 = strongest), sorted by type and
    rank. A type with no row has no state gene at this threshold.
    """
    res = traversal(model, adata, cell_types=cell_types, **kwargs)
    df = res.scores.drop(columns="run")
    df = df[df["score"] >= min_score].sort_values(["cell_type", "score"], ascending=[True, False])
    df["rank"] = df.groupby("cell_type", observed=True).cumcount() + 1
    if n_top is not None:
        df = df[df["rank"] <= n_top]
    cols = ["cell_type", "gene", "score", "log2_fc", "log2_range", "monotonicity",
            "mean_expression", "rank"]
    return df[cols].reset_index(drop=True)


def marker_genes(
    model,
    adata: AnnData | None = None,
    cell_types: Sequence[str | int] | None = None,
    n_top: int | None = 20,
    min_log2_fc: float = 1.0,
    arm: int = 0,
    min_cells: int = 10,
    batch_size: int | None = None,
) -> pd.DataFrame:
    """Type markers from the decoder: each type's profile at its mean state vs other types.

    Each type's expected expression is decoded at the mean state of its cells
    (``E[x|s̄_c, c]``, per 10,000 counts), so the comparison is between types at their
    typical state, free of sampling noise and library size.

    Parameters
    ----------
    model
        A trained :class:`~cplmix_sc.CplMixVAE`.
    adata
        Cells that define the types; defaults to the model's AnnData.
    cell_types
        Types to report; the comparison always uses every type with ``min_cells`` cells.
    n_top
        Markers per type (``None``: all passing ``min_log2_fc``).
    min_log2_fc
        Minimum ``log2_fc_vs_rest``.
    arm, min_cells, batch_size
        As in :func:`traversal`.

    Returns
    -------
    DataFrame ``cell_type, gene, score, log2_fc_vs_rest, log2_fc_vs_next, expression, rank``:
    ``log2_fc_vs_rest`` compares ``log2(expression + 1)`` with its mean over the other types
    (the score), ``log2_fc_vs_next`` with the highest other type (> 0: highest in this type).
    """
    if not model.is_trained_:
        raise ValueError("The model is not trained; call `model.train()` first.")
    model._check_arm(arm)
    adata = model._validate_anndata(adata)
    post = model._posterior(adata, batch_size=batch_size)
    labels = post["log_probs"].exp().mean(0).argmax(-1).numpy()
    states = post["state"][arm].numpy()
    counts = np.bincount(labels, minlength=model.module.n_categories)
    used = np.flatnonzero(counts >= min_cells)
    if len(used) < 2:
        raise ValueError(
            f"Markers need at least two types with >= min_cells={min_cells} cells; "
            f"found {len(used)}."
        )
    centers = np.stack([states[labels == c].mean(0) for c in used])
    batches = _batch_codes(model, adata)
    batch = None
    if batches is not None:
        batch = np.array([np.bincount(batches[labels == c]).argmax() for c in used])
    expr = model.decode_expression(centers, used, batch, arm=arm)
    logx = np.log2(expr + PSEUDOCOUNT)
    k = len(used)
    rest = (logx.sum(0, keepdims=True) - logx) / (k - 1)
    order = np.argsort(-logx, axis=0)
    top, second = logx[order[0], np.arange(logx.shape[1])], logx[order[1], np.arange(logx.shape[1])]
    best_other = np.where(order[0][None] == np.arange(k)[:, None], second[None], top[None])
    if cell_types is None:
        report = list(range(k))
    else:
        cell_types = [cell_types] if isinstance(cell_types, str | int) else list(cell_types)
        pos = {int(c): i for i, c in enumerate(used)}
        bad = [c for c in cell_types if int(c) not in pos]
        if bad:
            raise ValueError(
                f"Types {bad} have fewer than min_cells={min_cells} cells or do not exist; "
                f"available: {[str(c) for c in used]}."
            )
        report = [pos[int(c)] for c in cell_types]
    genes = model.adata.var_names
    frames = []
    for i in report:
        df = pd.DataFrame(
            {
                "cell_type": str(used[i]),
                "gene": genes,
                "score": logx[i] - rest[i],
                "log2_fc_vs_rest": logx[i] - rest[i],
                "log2_fc_vs_next": logx[i] - best_other[i],
                "expression": expr[i],
            }
        )
        df = df[df["log2_fc_vs_rest"] >= min_log2_fc].sort_values("score", ascending=False)
        df["rank"] = np.arange(1, len(df) + 1)
        frames.append(df.head(n_top) if n_top is not None else df)
    return pd.concat(frames, ignore_index=True)

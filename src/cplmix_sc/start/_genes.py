"""Genes of a continuous state shared by many types, to leave out of the start's PCA
(``init_exclude_genes``): checked user input and the automatic search."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pandas as pd

from ..module import log_normalise_rows
from ..train._progress import progress_line
from ._graph import _knn_graph, _leiden
from ._pca import log_pca

#: a community needs this many cells for its within-community PCs to count
STATE_MIN_CELLS = 30
#: at most this many cells of a community enter its within-community PCA
STATE_MAX_CELLS = 2_000
#: genes are z-scored against genes of similar mean expression, in this many quantile bins
STATE_N_BINS = 20
#: ... of at least this many genes each (fewer bins for small panels)
STATE_MIN_BIN_GENES = 50
#: smallest MAD of a bin's scores (fractions of variance), so a bin of near-silent genes
#: does not turn noise into large z-scores
STATE_MAD_FLOOR = 0.005
#: share of communities (the highest fractions per gene, rounded up) left out of a score
STATE_TRIM = 0.2
#: if more than this share of the genes is flagged, the signal is not a state: use every gene
STATE_MAX_SHARE = 0.3


def state_program_genes(
    x,
    n_pcs: int = 30,
    seed: int = 0,
    resolution: float = 1.0,
    n_state_pcs: int = 2,
    z_threshold: float = 3.0,
    max_iter: int = 5,
    n_neighbors: int = 15,
    max_communities: int | None = None,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Genes that move together *within* many graph communities: a state shared by types.

    A continuous state (activity, stress, cell cycle) moves the same genes in cells of many
    types, while a type's markers differ *between* communities and are flat within them.
    Each round clusters the cells (Leiden on the top ``n_pcs`` PCs of the log-normalised
    counts of the genes still kept), then, in every community of at least
    :data:`STATE_MIN_CELLS` cells, measures the fraction of each gene's within-community
    variance that the community's own top ``n_state_pcs`` PCs explain. A gene's score is that
    fraction averaged over the communities without the gene's highest :data:`STATE_TRIM`
    (at least one fifth, rounded up: a marker varies within a community that holds two
    types), as a robust z-score against the genes of similar mean expression (median and MAD
    within up to :data:`STATE_N_BINS` quantile bins of the mean log-normalised expression, of
    at least :data:`STATE_MIN_BIN_GENES` genes each, the MAD at least
    :data:`STATE_MAD_FLOOR`: the fraction grows with expression, and rarely detected genes
    score near zero); genes above ``z_threshold`` are flagged and left out of the next
    round's PCs, so that communities cut along the state join up and the state's other genes
    show. It stops when a round flags no new gene, or after ``max_iter`` rounds. If more than
    :data:`STATE_MAX_SHARE` of the genes end up flagged, that is not one state's program:
    every gene is kept and ``info["too_many"]`` is set (the caller warns).

    With ``max_communities``, nothing is flagged when the first round (every gene) finds more
    communities than that: the graph start then merges communities down to ``k`` along the
    graph, which joins the pieces of a stretched type already (leaving genes out there
    measured worse: ``docs/model.md``, "Choosing K").

    Parameters
    ----------
    x
        Counts, cells x genes (dense or sparse).
    n_pcs, seed, resolution, n_neighbors
        The PCA and the Leiden clustering of each round (as the graph start).
    n_state_pcs
        Within-community PCs that define a community's state.
    z_threshold
        Robust z-score above which a gene is a state gene.
    max_iter
        Most rounds.
    max_communities
        Flag nothing if every gene gives more communities than this (see above).

    Returns
    -------
    ``(keep, z, info)``: boolean ``(G,)`` mask of the genes that are *not* state genes, the
    z-scores of the last round, and ``info`` (``n_rounds``, ``n_communities`` per round,
    ``skipped``: whether ``max_communities`` stopped it after the first round,
    ``too_many``: the number flagged when more than :data:`STATE_MAX_SHARE` were, so that
    none is left out; else False).
    """
    import scipy.sparse as sp

    n_cells, n_genes = x.shape
    keep = np.ones(n_genes, dtype=bool)
    z = np.zeros(n_genes)
    info = {"n_rounds": 0, "n_communities": [], "skipped": False, "too_many": False}
    if n_cells < 2 * STATE_MIN_CELLS or n_genes < 3:
        return keep, z, info
    x = sp.csr_matrix(x) if sp.issparse(x) else np.asarray(x)
    rng = np.random.default_rng(seed)
    for _ in range(max_iter):
        start = time.perf_counter()
        n_comp = min(n_pcs, int(keep.sum()) - 1, n_cells - 1)
        _, _, pcs = log_pca(x, n_comp, seed, genes=keep)
        labels = _leiden(_knn_graph(pcs, seed, n_neighbors), resolution, seed)
        info["n_rounds"] += 1
        info["n_communities"].append(int(labels.max()) + 1)
        line = (f"start gene search, round {info['n_rounds']}: "
                f"{info['n_communities'][-1]} communities")
        if max_communities is not None and info["n_rounds"] == 1 and (
            info["n_communities"][0] > max_communities
        ):
            info["skipped"] = True
            progress_line(f"{line}, more than {max_communities} categories: every gene kept "
                          f"({time.perf_counter() - start:.0f} s)")
            break
        score, mean = _within_community_scores(x, labels, rng, n_state_pcs, seed)
        if score is None:
            break
        z = _binned_z(score, mean)
        new_keep = keep & (z <= z_threshold)
        progress_line(f"{line}, {int((~new_keep).sum())} of {n_genes} genes left out "
                      f"({time.perf_counter() - start:.0f} s)")
        if (new_keep == keep).all() or new_keep.sum() < 3:
            break
        keep = new_keep
    if (~keep).sum() > STATE_MAX_SHARE * n_genes:
        info["too_many"] = int((~keep).sum())
        keep = np.ones(n_genes, dtype=bool)
    return keep, z, info


def _within_community_scores(x, labels, rng, n_state_pcs: int, seed: int):
    """Each gene's trimmed mean fraction of within-community variance explained by the
    community's top ``n_state_pcs`` PCs, and its mean log-normalised expression over the
    counted cells; ``(None, None)`` if no community has :data:`STATE_MIN_CELLS` cells."""
    from sklearn.utils.extmath import randomized_svd

    fractions, sums, counted = [], np.zeros(x.shape[1]), 0
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        if len(rows) < STATE_MIN_CELLS:
            continue
        if len(rows) > STATE_MAX_CELLS:
            rows = np.sort(rng.choice(rows, STATE_MAX_CELLS, replace=False))
        resid = log_normalise_rows(x[rows]).astype(np.float64)
        sums += resid.sum(0)
        counted += len(rows)
        resid -= resid.mean(0)
        # only the top few PCs are needed: randomized SVD, O(cells x genes) per community
        _, s, vt = randomized_svd(resid, n_state_pcs, random_state=seed)
        explained = ((s[:, None] * vt) ** 2).sum(0)
        fractions.append(explained / np.maximum((resid**2).sum(0), 1e-12))
    if not fractions:
        return None, None
    # a marker varies within a community that holds two types: drop each gene's highest
    # fifth of communities, so that one or two mixed communities do not make a state
    fr = np.sort(np.asarray(fractions), axis=0)
    score = fr[: max(1, len(fr) - int(np.ceil(STATE_TRIM * len(fr))))].mean(0)
    return score, sums / counted


def _binned_z(score: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Robust z-scores of ``score`` within quantile bins of ``mean`` (median, floored MAD)."""
    n_bins = max(1, min(STATE_N_BINS, len(score) // STATE_MIN_BIN_GENES))
    bins = pd.qcut(pd.Series(mean).rank(method="first"), n_bins, labels=False)
    z = np.zeros_like(score)
    for b in np.unique(bins):
        idx = np.flatnonzero(bins.to_numpy() == b)
        median = np.median(score[idx])
        mad = max(float(np.median(np.abs(score[idx] - median))), STATE_MAD_FLOOR)
        z[idx] = (score[idx] - median) / (1.4826 * mad)
    return z


def start_genes(exclude, init: str, var: pd.DataFrame) -> np.ndarray | str | None:
    """The genes the start's PCA uses, from ``train(init_exclude_genes=...)``.

    Returns a boolean mask over ``var`` (``True``: used), ``"auto"`` (the caller runs
    :func:`state_program_genes` on the start's cells) or ``None`` (every gene). ``exclude``
    is ``"auto"``, ``None``, the name of a boolean ``var`` column, a boolean mask or Series
    indexed by the genes, or gene names; every other form is refused with an error naming
    the fix, and names partly missing from ``var.index`` give a warning.
    """
    is_auto = isinstance(exclude, str) and exclude == "auto"
    if exclude is None or (init == "random" and is_auto):
        return None
    if is_auto:
        return "auto"
    if init == "random":
        raise ValueError(
            "`init_exclude_genes` shapes the warm-up's start; init='random' has none. "
            "Use init='leiden' or 'kmeans', or drop `init_exclude_genes`."
        )
    if isinstance(exclude, str):
        drop = _column_mask(exclude, var)
    else:
        drop = _given_mask(exclude, var.index)
    keep = ~np.asarray(drop, dtype=bool)
    if keep.sum() < 2:
        raise ValueError(
            f"`init_exclude_genes` leaves {int(keep.sum())} of {len(var)} genes for the "
            "start; at least 2 are needed."
        )
    return keep


def _column_mask(name: str, var: pd.DataFrame) -> np.ndarray:
    """A boolean ``var`` column named by ``init_exclude_genes``."""
    if name not in var.columns:
        hint = f" {name!r} is a gene: pass it in a list, [{name!r}]." if name in var.index else ""
        raise ValueError(
            f"`init_exclude_genes`={name!r} is not a column of adata.var; pass a "
            "boolean var column, a boolean mask or a list of gene names." + hint
        )
    col = var[name]
    if not pd.api.types.is_bool_dtype(col) or col.isna().any():
        raise ValueError(
            f"adata.var[{name!r}] must be boolean without missing values (True = "
            f"leave out of the start), got dtype {col.dtype}."
        )
    return col.to_numpy(dtype=bool)


def _as_values(exclude, var_names: pd.Index) -> np.ndarray:
    """``init_exclude_genes`` as an array: booleans (a mask) or names; numbers are refused."""
    if isinstance(exclude, pd.Series) and pd.api.types.is_bool_dtype(exclude):
        if not exclude.index.is_unique or not var_names.isin(exclude.index).all():
            raise ValueError(
                "A boolean Series `init_exclude_genes` must be indexed by "
                "adata.var_names, each once (it is aligned to them)."
            )
        exclude = exclude.reindex(var_names)
        if exclude.isna().any():
            raise ValueError("A boolean `init_exclude_genes` must be without missing values.")
        exclude = exclude.to_numpy(dtype=bool)
    if isinstance(exclude, set | frozenset):
        exclude = sorted(exclude, key=str)
    elif not isinstance(exclude, np.ndarray | pd.Index | pd.Series | list | tuple):
        exclude = list(exclude)  # any other iterable of names, e.g. a generator
    if isinstance(exclude, list | tuple):  # numpy would turn True into "True"
        exclude = np.array(exclude, dtype=object)
    values = np.asarray(exclude)
    numbers = values.dtype.kind in "iuf"
    if values.dtype == object:  # booleans in an object array: a mask; mixed: refuse
        is_bool = np.array([isinstance(v, bool | np.bool_) for v in values.ravel()])
        numbers = any(isinstance(v, int | float | np.integer | np.floating)
                      for v, b in zip(values.ravel(), is_bool, strict=True) if not b)
        if is_bool.all():
            values = values.astype(bool)
        elif is_bool.any() and not numbers:
            raise ValueError(
                "`init_exclude_genes` mixes booleans and gene names; pass either a "
                "boolean mask over the genes or a list of names."
            )
    if values.size == 0:
        raise ValueError(
            "`init_exclude_genes` is an empty list; pass None to use every gene "
            "(an empty `cplmix_sc.genesets.match` result means no gene matched)."
        )
    if numbers:
        raise ValueError(
            "`init_exclude_genes` must hold gene names or booleans, got numbers; "
            "for positions use `adata.var_names[positions]`."
        )
    return values


def _given_mask(exclude, var_names: pd.Index) -> np.ndarray:
    """Genes to leave out, from a boolean mask or gene names."""
    values = _as_values(exclude, var_names)
    if values.dtype == bool:
        if values.shape != (len(var_names),):
            raise ValueError(
                f"A boolean `init_exclude_genes` must have one entry per gene "
                f"({len(var_names)}), got shape {values.shape}."
            )
        return values
    names = pd.Index(values.ravel().astype(str))
    found = names.isin(var_names)
    if not found.any():
        raise ValueError(
            f"None of the {len(names)} genes in `init_exclude_genes` is in "
            f"adata.var_names (e.g. {list(names[:3])}); match the spelling with "
            "`cplmix_sc.genesets.match`."
        )
    if not found.all():
        warnings.warn(
            f"{int((~found).sum())} of the {len(names)} genes in "
            f"`init_exclude_genes` are not in adata.var_names and are ignored "
            f"(e.g. {list(names[~found][:3])}).",
            UserWarning,
            stacklevel=5,
        )
    return var_names.isin(names)

"""Graph clustering used as a starting point (``CplMixVAE.train(init="leiden")``)."""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
from anndata import AnnData


@contextmanager
def _keep_torch_threads():
    """Restore PyTorch's thread count afterwards.

    scanpy's neighbour graph runs UMAP's numba-parallel code, and numba's OpenMP threading
    layer shares libgomp with PyTorch: its first parallel call sets the OpenMP thread count to
    all cores, silently overriding ``torch.set_num_threads`` / ``OMP_NUM_THREADS``. Two
    trainings on a 2-core machine then ran 2 threads each and were 10x slower.
    """
    import torch

    n = torch.get_num_threads()
    try:
        yield
    finally:
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)


def _knn_graph(rep: np.ndarray, seed: int, n_neighbors: int) -> AnnData:
    import scanpy as sc

    try:
        import igraph  # noqa: F401
    except ImportError as err:  # pragma: no cover - igraph is a dependency
        raise ImportError("init='leiden' needs python-igraph: pip install igraph") from err
    g = AnnData(np.zeros((rep.shape[0], 1), dtype=np.float32))
    g.obsm["rep"] = np.asarray(rep, dtype=np.float32)
    # transformer="sklearn": scanpy 1.11 + scipy 1.17 break the default above 8,192 cells
    with _keep_torch_threads():
        sc.pp.neighbors(g, use_rep="rep", n_neighbors=min(n_neighbors, rep.shape[0] - 1),
                        random_state=seed, transformer="sklearn")
    return g


def _leiden(g: AnnData, resolution: float, seed: int) -> np.ndarray:
    import scanpy as sc

    with _keep_torch_threads():
        sc.tl.leiden(g, resolution=resolution, random_state=seed, flavor="igraph",
                     n_iterations=2, directed=False)
    return g.obs["leiden"].cat.codes.to_numpy().copy()


def _largest_first(labels: np.ndarray) -> np.ndarray:
    sizes = np.bincount(labels)
    order = np.argsort(-sizes, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[labels]


def leiden_n_clusters(rep: np.ndarray, k: int, seed: int = 0, n_neighbors: int = 15) -> np.ndarray:
    """Leiden on a kNN graph of ``rep``, resolution bisected to give about ``k`` clusters.

    Returns labels in ``[0, k)``, largest cluster first. If no resolution gives exactly ``k``
    clusters, the closest count is used; clusters beyond the ``k`` largest join the nearest of
    those (by centroid).
    """
    g = _knn_graph(rep, seed, n_neighbors)
    lo, hi, best = 1e-3, 20.0, None
    for _ in range(25):
        res = float(np.sqrt(lo * hi))
        labels = _leiden(g, res, seed)
        n = labels.max() + 1
        if best is None or abs(n - k) < abs(best.max() + 1 - k):
            best = labels
        if n == k:
            break
        lo, hi = (res, hi) if n < k else (lo, res)
    labels = _largest_first(best)
    if labels.max() >= k:
        centroids = np.stack([rep[labels == c].mean(0) for c in range(k)])
        extra = labels >= k
        d = ((rep[extra, None, :] - centroids[None]) ** 2).sum(-1)
        labels[extra] = d.argmin(1)
    return labels


def merge_communities(connectivities, labels: np.ndarray, k: int) -> np.ndarray:
    """Greedily merge graph communities down to ``k``, most over-connected pair first.

    Two communities ``i``, ``j`` are joined when the edge weight between them, ``W_ij``, is
    the largest against what their degrees predict (``W_ij * 2m / (d_i d_j)``, the ratio in
    the modularity of Newman & Girvan 2004), recomputed after every merge. Pieces of one type
    that a continuous state stretches along the graph touch each other and merge first;
    communities without edges between them merge last.
    """
    import scipy.sparse as sp

    n = int(labels.max()) + 1
    onehot = sp.csr_matrix(
        (np.ones(len(labels)), (labels, np.arange(len(labels)))), shape=(n, len(labels))
    )
    weights = np.asarray((onehot @ connectivities @ onehot.T).todense(), dtype=float)
    member = np.arange(n)
    while weights.shape[0] > k:
        degree = weights.sum(1)
        ratio = weights * degree.sum() / np.maximum(np.outer(degree, degree), 1e-12)
        np.fill_diagonal(ratio, -np.inf)
        i, j = sorted(np.unravel_index(np.argmax(ratio), ratio.shape))
        weights[i] += weights[j]
        weights[:, i] += weights[:, j]
        weights = np.delete(np.delete(weights, j, 0), j, 1)
        member[member == j] = i
        member[member > j] -= 1
    return member[labels]


def graph_start(
    rep: np.ndarray, k: int, seed: int = 0, n_neighbors: int = 15, resolution: float = 1.0
) -> np.ndarray:
    """Leiden communities at a fixed resolution, merged along the graph down to at most ``k``.

    Leiden at ``resolution`` (scanpy's default 1.0) finds the graph's own communities. If
    there are at most ``k`` of them they are returned as they are (the remaining categories
    start empty). If there are more, they are merged by :func:`merge_communities`, so that
    the pieces of one type that a strong continuous state stretches along the graph are
    joined before distinct types are. Returns labels in ``[0, k)``, largest cluster first.
    """
    if rep.shape[0] < 3:  # no neighbour graph on 1-2 cells (scanpy needs 2 neighbours)
        return np.arange(rep.shape[0]) % k
    g = _knn_graph(rep, seed, n_neighbors)
    labels = _leiden(g, resolution, seed)
    if labels.max() + 1 > k:
        labels = merge_communities(g.obsp["connectivities"], labels, k)
    return _largest_first(labels)


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
    graph, which joins the pieces of a stretched type already, and leaving genes out there
    measured worse (Zeisel at 7 categories: ARI 0.66 instead of 0.75, 3 seeds).

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
    from sklearn.utils.extmath import randomized_svd

    from ._pca import _log_rows, log_pca

    n_cells, n_genes = x.shape
    keep = np.ones(n_genes, dtype=bool)
    z = np.zeros(n_genes)
    info = {"n_rounds": 0, "n_communities": [], "skipped": False, "too_many": False}
    if n_cells < 2 * STATE_MIN_CELLS or n_genes < 3:
        return keep, z, info
    x = sp.csr_matrix(x) if sp.issparse(x) else np.asarray(x)
    rng = np.random.default_rng(seed)
    for _ in range(max_iter):
        n_comp = min(n_pcs, int(keep.sum()) - 1, n_cells - 1)
        _, _, pcs = log_pca(x, n_comp, seed, genes=keep)
        labels = _leiden(_knn_graph(pcs, seed, n_neighbors), resolution, seed)
        info["n_rounds"] += 1
        info["n_communities"].append(int(labels.max()) + 1)
        if max_communities is not None and info["n_rounds"] == 1 and (
            info["n_communities"][0] > max_communities
        ):
            info["skipped"] = True
            break
        fractions, sums, counted = [], np.zeros(n_genes), 0
        for c in np.unique(labels):
            rows = np.flatnonzero(labels == c)
            if len(rows) < STATE_MIN_CELLS:
                continue
            if len(rows) > STATE_MAX_CELLS:
                rows = np.sort(rng.choice(rows, STATE_MAX_CELLS, replace=False))
            resid = _log_rows(x[rows]).astype(np.float64)
            sums += resid.sum(0)
            counted += len(rows)
            resid -= resid.mean(0)
            # only the top few PCs are needed: randomized SVD, O(cells x genes) per community
            _, s, vt = randomized_svd(resid, n_state_pcs, random_state=seed)
            explained = ((s[:, None] * vt) ** 2).sum(0)
            fractions.append(explained / np.maximum((resid**2).sum(0), 1e-12))
        if not fractions:
            break
        # a marker varies within a community that holds two types: drop each gene's highest
        # fifth of communities, so that one or two mixed communities do not make a state
        fr = np.sort(np.asarray(fractions), axis=0)
        score = fr[: max(1, len(fr) - int(np.ceil(STATE_TRIM * len(fr))))].mean(0)
        z = _binned_z(score, sums / counted)
        new_keep = keep & (z <= z_threshold)
        if (new_keep == keep).all() or new_keep.sum() < 3:
            break
        keep = new_keep
    if (~keep).sum() > STATE_MAX_SHARE * n_genes:
        info["too_many"] = int((~keep).sum())
        keep = np.ones(n_genes, dtype=bool)
    return keep, z, info


def _binned_z(score: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Robust z-scores of ``score`` within quantile bins of ``mean`` (median, floored MAD)."""
    import pandas as pd

    n_bins = max(1, min(STATE_N_BINS, len(score) // STATE_MIN_BIN_GENES))
    bins = pd.qcut(pd.Series(mean).rank(method="first"), n_bins, labels=False)
    z = np.zeros_like(score)
    for b in np.unique(bins):
        idx = np.flatnonzero(bins.to_numpy() == b)
        median = np.median(score[idx])
        mad = max(float(np.median(np.abs(score[idx] - median))), STATE_MAD_FLOOR)
        z[idx] = (score[idx] - median) / (1.4826 * mad)
    return z

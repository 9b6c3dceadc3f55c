"""Graph clustering of the start (``init="leiden"``): kNN graph, Leiden, merging along the graph."""

from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache

import numpy as np
from anndata import AnnData


@contextmanager
def keep_torch_threads():
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


@lru_cache(maxsize=1)
def cache_umap_kernels() -> bool:
    """Let numba cache the UMAP kernels behind scanpy's neighbour graph on disk.

    ``sc.pp.neighbors`` weights the kNN graph with ``umap``'s ``fuzzy_simplicial_set``, whose
    numba kernels (``smooth_knn_dist``, ``compute_membership_strengths``) are compiled
    without numba's on-disk cache: every new process compiled them again, the larger part of
    the graph start's time on a few cores. With the cache, a process compiles them once and
    later processes load them (the same machine code, so the same graph). Returns whether the
    cache could be switched on (no writable cache directory: compiled per process, as before).
    """
    try:
        from umap import umap_

        for kernel in (umap_.smooth_knn_dist, umap_.compute_membership_strengths):
            kernel.enable_caching()  # numba's Dispatcher: cache=True after the fact
    except Exception:  # pragma: no cover - another umap layout or no cache location
        return False
    return True


def _knn_graph(rep: np.ndarray, seed: int, n_neighbors: int) -> AnnData:
    import scanpy as sc

    try:
        import igraph  # noqa: F401
    except ImportError as err:  # pragma: no cover - igraph is a dependency
        raise ImportError("init='leiden' needs python-igraph: pip install igraph") from err
    g = AnnData(np.zeros((rep.shape[0], 1), dtype=np.float32))
    g.obsm["rep"] = np.asarray(rep, dtype=np.float32)
    cache_umap_kernels()
    # transformer="sklearn": scanpy 1.11 + scipy 1.17 break the default above 8,192 cells
    with keep_torch_threads():
        sc.pp.neighbors(g, use_rep="rep", n_neighbors=min(n_neighbors, rep.shape[0] - 1),
                        random_state=seed, transformer="sklearn")
    return g


def _leiden(g: AnnData, resolution: float, seed: int) -> np.ndarray:
    import scanpy as sc

    with keep_torch_threads():
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
    rep: np.ndarray,
    k: int,
    seed: int = 0,
    n_neighbors: int = 15,
    resolution: float = 1.0,
    merge_rep: np.ndarray | None = None,
) -> np.ndarray:
    """Leiden communities at a fixed resolution, merged along a graph down to at most ``k``.

    Leiden at ``resolution`` (scanpy's default 1.0) on a kNN graph of ``rep`` finds the
    graph's own communities. If there are at most ``k`` of them they are returned as they are
    (the remaining categories start empty). If there are more, they are merged by
    :func:`merge_communities` on the kNN graph of ``merge_rep`` (default: ``rep``'s graph),
    so that the pieces of one type that a strong continuous state stretches along the graph
    are joined before distinct types are. ``merge_rep`` is for a representation without the
    state's genes (``fit_start``'s ``"auto"`` genes): there a type's pieces along the state
    lie next to each other, while on ``rep``'s graph they meet only through the cells of the
    types the state leaves alone, which then draw every type into one category
    (``benchmarks/results/quality.md``, "Merging without the state's genes"). Returns labels
    in ``[0, k)``, largest cluster first.
    """
    if rep.shape[0] < 3:  # no neighbour graph on 1-2 cells (scanpy needs 2 neighbours)
        return np.arange(rep.shape[0]) % k
    g = _knn_graph(rep, seed, n_neighbors)
    labels = _leiden(g, resolution, seed)
    if labels.max() + 1 > k:
        if merge_rep is not None:
            g = _knn_graph(merge_rep, seed, n_neighbors)
        labels = merge_communities(g.obsp["connectivities"], labels, k)
    return _largest_first(labels)

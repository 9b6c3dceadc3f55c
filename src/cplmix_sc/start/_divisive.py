"""Divisive clustering in local Pearson residuals: a start with exactly ``k`` categories.

Types in a taxonomy differ at several scales: classes by many strong markers, sister types by
a few modest ones. One global PCA is dominated by the class and subclass markers, so flat
clusterings (k-means, Leiden at ``k`` clusters) split large classes along noise before they
separate sister types. Splitting top-down, with the genes and PCs chosen again *inside* each
cluster, lets each split see the markers that vary there (as iterative taxonomies such as
scrattch.hicat do).
"""

from __future__ import annotations

import heapq
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA

#: genes chosen again inside each cluster (by Pearson residual variance)
SPLIT_GENES = 500
#: PCs of those genes a split is made in
SPLIT_PCS = 15
#: inverse overdispersion of the residuals (Lause et al. 2021, ``sc.experimental.pp``)
THETA = 100.0
#: a cluster with fewer cells is not split; a split leaving fewer than 5 cells on a side is
#: refused
MIN_SPLIT_CELLS = 20
#: matrix entries turned dense (float64) at a time
CHUNK_ENTRIES = 2_000_000


def _rows(x, rows, genes=None) -> np.ndarray:
    sub = x if isinstance(rows, slice) and rows == slice(None) else x[rows]  # no copy of all
    sub = sub if genes is None else sub[:, genes]
    return np.asarray(sub.toarray() if sp.issparse(sub) else sub, dtype=np.float64)


def pearson_residuals(x, idx: np.ndarray, n_genes: int) -> np.ndarray:
    """Clipped Pearson residuals of cells ``idx`` on their ``n_genes`` most variable genes.

    Expected counts are ``n_i p_g`` with ``p_g`` the genes' share of the cells' total counts,
    the variance ``μ + μ² / θ`` (:data:`THETA`); residuals are clipped to ``±sqrt(n)``
    (analytic Pearson residuals, Lause, Berens & Kobak 2021). Genes are ranked by their
    residual variance over these cells. ``x`` may be sparse; only ``len(idx)`` rows are made
    dense, a chunk at a time. Returns ``(len(idx), min(n_genes, G))`` float32.
    """
    if len(idx) < x.shape[0] or np.any(idx != np.arange(x.shape[0])):
        x = x[idx]  # these cells' rows, taken once (still sparse for a sparse x)
    totals = np.asarray(x.sum(1)).ravel().astype(np.float64)
    gene_sum = np.asarray(x.sum(0)).ravel().astype(np.float64)
    p = gene_sum / max(gene_sum.sum(), 1e-12)
    clip = np.sqrt(len(idx))
    step = max(CHUNK_ENTRIES // x.shape[1], 1)

    def residuals(rows, cols=slice(None)):
        mu = totals[rows, None] * p[None, cols]
        z = _rows(x, rows, None if isinstance(cols, slice) else cols) - mu
        return np.clip(z / np.sqrt(mu + mu**2 / THETA + 1e-12), -clip, clip)

    s1, s2 = np.zeros(x.shape[1]), np.zeros(x.shape[1])
    for start in range(0, len(idx), step):
        z = residuals(slice(start, start + step))
        s1 += z.sum(0)
        s2 += (z**2).sum(0)
    var = s2 / len(idx) - (s1 / len(idx)) ** 2
    genes = np.sort(np.argsort(-var, kind="stable")[:n_genes])
    return residuals(slice(None), genes).astype(np.float32)


def best_split(x, idx: np.ndarray, seed: int | None, n_genes: int = SPLIT_GENES,
               n_pcs: int = SPLIT_PCS):
    """Split cells ``idx`` in two by 2-means in their local PCs: ``(score, mask)``.

    The score is the share of the local PCs' variance that the split explains, times the
    number of cells (large clusters that split cleanly go first); ``(-inf, None)`` when the
    cluster is too small or a side would hold fewer than 5 cells.
    """
    if len(idx) < MIN_SPLIT_CELLS:
        return -np.inf, None
    z = pearson_residuals(x, idx, n_genes)
    pcs = PCA(min(n_pcs, z.shape[0] - 1, z.shape[1]), random_state=seed).fit_transform(z)
    km = KMeans(2, n_init=3, random_state=seed).fit(pcs)
    side = km.labels_ == 1
    if min(side.sum(), (~side).sum()) < 5:
        return -np.inf, None
    total = float(((pcs - pcs.mean(0)) ** 2).sum())
    return (total - km.inertia_) / max(total, 1e-12) * len(idx), side


def divisive_start(x, k: int, seed: int | None = 0, n_genes: int = SPLIT_GENES,
                   n_pcs: int = SPLIT_PCS) -> np.ndarray:
    """Top-down clustering of counts into ``k`` clusters, each split in its own residuals.

    Starting from one cluster of all cells, the cluster whose best split (:func:`best_split`)
    scores highest is split, until there are ``k`` clusters or none can be split. Each split
    chooses its own genes (the ``n_genes`` with the largest Pearson residual variance inside
    the cluster) and its own ``n_pcs`` PCs, so sister types are told apart by their own
    markers. Returns labels in ``[0, k)``, largest cluster first (fewer than ``k`` distinct
    labels only when no cluster can be split further).
    """
    labels = np.zeros(x.shape[0], dtype=np.int64)
    heap: list = []
    counter = 0

    def split(c: int):
        return best_split(x, np.flatnonzero(labels == c), seed, n_genes, n_pcs)

    def push(c: int, found) -> None:
        nonlocal counter
        score, side = found
        if np.isfinite(score):
            heapq.heappush(heap, (-score, counter, c, side))
            counter += 1

    push(0, split(0))
    n = 1
    # the two halves of a split are scored in two threads (NumPy, SciPy and scikit-learn
    # release the GIL in their heavy parts); the heap receives them in the same order
    with ThreadPoolExecutor(max_workers=2) as pool:
        while n < k and heap:
            _, _, c, side = heapq.heappop(heap)
            idx = np.flatnonzero(labels == c)
            labels[idx[side]] = n
            both = list(pool.map(split, (c, n)))
            push(c, both[0])
            push(n, both[1])
            n += 1
    sizes = np.bincount(labels)
    rank = np.empty(len(sizes), dtype=np.int64)
    rank[np.argsort(-sizes, kind="stable")] = np.arange(len(sizes))
    return rank[labels]

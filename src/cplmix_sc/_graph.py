"""Graph clustering used as a starting point (``CplMixVAE.train(init="leiden")``)."""

from __future__ import annotations

import numpy as np
from anndata import AnnData


def leiden_n_clusters(rep: np.ndarray, k: int, seed: int = 0, n_neighbors: int = 15) -> np.ndarray:
    """Leiden on a kNN graph of ``rep``, resolution bisected to give about ``k`` clusters.

    Returns labels in ``[0, k)``, largest cluster first. If no resolution gives exactly ``k``
    clusters, the closest count is used; clusters beyond the ``k`` largest join the nearest of
    those (by centroid).
    """
    import scanpy as sc

    try:
        import igraph  # noqa: F401
    except ImportError as err:  # pragma: no cover - igraph is a dependency
        raise ImportError("init='leiden' needs python-igraph: pip install igraph") from err
    g = AnnData(np.zeros((rep.shape[0], 1), dtype=np.float32))
    g.obsm["rep"] = np.asarray(rep, dtype=np.float32)
    # transformer="sklearn": scanpy 1.11 + scipy 1.17 break the default above 8,192 cells
    sc.pp.neighbors(g, use_rep="rep", n_neighbors=min(n_neighbors, rep.shape[0] - 1),
                    random_state=seed, transformer="sklearn")
    lo, hi, best = 1e-3, 20.0, None
    for _ in range(25):
        res = float(np.sqrt(lo * hi))
        sc.tl.leiden(g, resolution=res, random_state=seed, flavor="igraph", n_iterations=2,
                     directed=False)
        labels = g.obs["leiden"].cat.codes.to_numpy()
        n = labels.max() + 1
        if best is None or abs(n - k) < abs(best.max() + 1 - k):
            best = labels.copy()
        if n == k:
            break
        lo, hi = (res, hi) if n < k else (lo, res)
    sizes = np.bincount(best)
    order = np.argsort(-sizes, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    labels = rank[best]  # 0 = largest
    if labels.max() >= k:
        centroids = np.stack([rep[labels == c].mean(0) for c in range(k)])
        extra = labels >= k
        d = ((rep[extra, None, :] - centroids[None]) ** 2).sum(-1)
        labels[extra] = d.argmin(1)
    return labels

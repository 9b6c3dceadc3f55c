"""Top PCs of log-normalised counts without densifying a large matrix (the start's PCA)."""

from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA

from ..module import log_normalise_rows

#: matrices with at most this many entries are densified whole (exactly the historical path)
MAX_DENSE_ENTRIES = 25_000_000
#: rows densified at a time when projecting a large matrix
CHUNK_ENTRIES = 8_000_000


def log_pca(
    x,
    n_pcs: int,
    seed: int | None,
    max_fit_cells: int | None = None,
    genes: np.ndarray | None = None,
    rows: np.ndarray | None = None,
):
    """PCA of log-normalised counts: ``(mean, components, pcs)``.

    ``mean`` is ``(G,)``, ``components`` ``(n_pcs, G)`` and ``pcs`` ``(n_cells, n_pcs)``.
    ``genes`` (boolean, ``(G,)``) restricts the PCA to some genes: cells are still normalised
    by their total over all genes (as ``module.log_normalise``), and the left-out genes get
    zero loadings and zero mean, so ``(log_normalise(x) - mean) @ components.T`` gives the same
    ``pcs`` for every cell. ``rows`` (indices): ``pcs`` of these cells only,
    ``(len(rows), n_pcs)``, the same values as ``pcs[rows]`` without projecting the others
    (the fit does not change). A
    matrix of at most :data:`MAX_DENSE_ENTRIES` entries is densified and given to
    :class:`sklearn.decomposition.PCA` whole (as the teacher always did). A larger one is
    never densified whole: the PCA is fitted on a random sample of cells (as many as fit in
    :data:`MAX_DENSE_ENTRIES` entries, at least ``max_fit_cells``) and all cells are projected
    a chunk of rows at a time.
    """
    n, g = x.shape
    keep = slice(None) if genes is None else np.asarray(genes, dtype=bool)
    if n * g <= MAX_DENSE_ENTRIES:
        logx = log_normalise_rows(x)[:, keep]
        pca = PCA(n_pcs, random_state=seed).fit(logx)
        pcs = pca.transform(logx)
        pcs = pcs if rows is None else pcs[rows]
    else:
        n_fit = min(n, max(MAX_DENSE_ENTRIES // g, max_fit_cells or 0))
        rng = np.random.default_rng(seed)
        sample = np.sort(rng.choice(n, n_fit, replace=False))
        pca = PCA(n_pcs, random_state=seed).fit(log_normalise_rows(x[sample])[:, keep])
        n_out = n if rows is None else len(rows)
        pcs = np.empty((n_out, pca.n_components_), dtype=np.float32)
        step = max(CHUNK_ENTRIES // g, 1)
        for start in range(0, n_out, step):
            part = slice(start, start + step)
            chunk = log_normalise_rows(x[part] if rows is None else x[rows[part]])
            pcs[part] = pca.transform(chunk[:, keep])
    if genes is None:
        return pca.mean_, pca.components_, pcs
    mean = np.zeros(g, dtype=pca.mean_.dtype)
    mean[keep] = pca.mean_
    components = np.zeros((pca.n_components_, g), dtype=pca.components_.dtype)
    components[:, keep] = pca.components_
    return mean, components, pcs

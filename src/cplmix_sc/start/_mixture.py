"""A multinomial mixture fitted by EM: the counts model of the types without a state.

Used to refine a start (``init="mixture"``) and as a baseline in ``benchmarks/fine_types.py``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def multinomial_em(
    x,
    labels: np.ndarray,
    k: int,
    n_iter: int = 100,
    alpha: float = 1e-2,
    genes: np.ndarray | None = None,
) -> np.ndarray:
    """Fit a mixture of ``k`` multinomials to counts by EM from hard starting ``labels``.

    ``log p(x_i | c) = sum_g x_ig log θ_cg`` (the multinomial coefficient does not depend on
    ``c``) with mixing weights ``π_c``. The E-step computes soft responsibilities; the M-step
    sets ``θ_c ∝ alpha + sum_i r_ic x_i`` and ``π_c`` to the mean responsibility. Iterates
    until no cell changes its argmax, or ``n_iter`` times.

    Parameters
    ----------
    x
        ``(n_cells, n_genes)`` counts, dense or sparse (never densified).
    labels
        ``(n_cells,)`` starting categories in ``[0, k)``; ``-1`` (no label) starts uniform.
    k
        Number of categories.
    n_iter
        Most EM iterations.
    alpha
        Pseudo-count per gene and category in the M-step.
    genes
        Optional boolean ``(n_genes,)`` mask: the mixture is fitted on these genes only.

    Returns
    -------
    ``(n_cells,)`` integer array: each cell's most likely category at the end.
    """
    x = sp.csr_matrix(x, dtype=np.float64) if sp.issparse(x) else np.asarray(x, np.float64)
    if genes is not None:
        x = x[:, np.asarray(genes, dtype=bool)]
    labels = np.asarray(labels)
    if labels.shape != (x.shape[0],):
        raise ValueError(f"`labels` has shape {labels.shape}; expected ({x.shape[0]},).")
    r = np.full((x.shape[0], k), 1.0 / k)
    known = labels >= 0
    r[known] = np.eye(k)[labels[known]]
    prev = None
    for _ in range(n_iter):
        theta = np.asarray(x.T @ r).T + alpha  # (k, G): x.T @ r keeps a sparse x sparse
        log_theta = np.log(theta / theta.sum(1, keepdims=True))
        ll = np.asarray(x @ log_theta.T) + np.log(r.mean(0) + 1e-12)
        ll -= ll.max(1, keepdims=True)
        r = np.exp(ll)
        r /= r.sum(1, keepdims=True)
        pred = r.argmax(1)
        if prev is not None and np.array_equal(pred, prev):
            break
        prev = pred
    return r.argmax(1)

"""Negative binomial likelihood of counts, computed where the counts are.

scvi-tools' :func:`~scvi.distributions._negative_binomial.log_nb_positive` evaluates three
``lgamma`` terms on every entry of the ``(arms, cells, genes)`` tensor. They cancel where the
count is zero (``lgamma(0 + θ) - lgamma(θ) - lgamma(1) = 0``), and single-cell matrices are
mostly zeros, so on the CPU they are evaluated on the non-zero entries only. The result is
the same log-likelihood (to float rounding) and the same gradients. On accelerators, where
finding the non-zero entries would synchronise with the host every step, the dense formula
is used.
"""

from __future__ import annotations

import torch

EPS = 1e-8  # as scvi-tools


def nb_nll(
    x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor, sparse: bool | None = None
) -> torch.Tensor:
    """``-log NB(x | mu, theta)`` summed over genes.

    Parameters
    ----------
    x
        Counts ``(B, G)``, the same for every leading index of ``mu``.
    mu
        Means ``(..., B, G)``.
    theta
        Inverse dispersions, broadcastable to ``mu`` with a singleton cell dimension:
        ``(..., 1, G)``.
    sparse
        Evaluate the ``lgamma`` terms on the non-zero counts only; default: on the CPU.

    Returns
    -------
    ``(..., B)`` negative log-likelihood per cell.
    """
    log_theta_mu = torch.log(theta + mu + EPS)
    dense = theta * (torch.log(theta + EPS) - log_theta_mu) + x * (
        torch.log(mu + EPS) - log_theta_mu
    )
    ll = dense.sum(-1)
    if sparse is None:
        sparse = x.device.type == "cpu"
    if not sparse:
        terms = torch.lgamma(x + theta) - torch.lgamma(theta) - torch.lgamma(x + 1)
        return -(ll + terms.sum(-1))
    cells, genes = x.nonzero(as_tuple=True)
    values = x[cells, genes]
    th = theta.squeeze(-2)[..., genes]  # (..., nnz)
    terms = torch.lgamma(values + th) - torch.lgamma(th) - torch.lgamma(values + 1)
    per_cell = terms.new_zeros(*terms.shape[:-1], x.shape[0]).index_add_(-1, cells, terms)
    return -(ll + per_cell)

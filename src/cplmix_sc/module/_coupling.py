"""Distances on the simplex that couple the categorical posteriors of two arms.

Both take log-probabilities ``(..., K)`` and return the squared distance ``(...)``.
"""

from __future__ import annotations

import math

import torch

#: probabilities below this are treated as this value; bounds d² when posteriors are confident
LOG_PROB_FLOOR = math.log(1e-4)


def clr(log_p: torch.Tensor) -> torch.Tensor:
    """Centred log-ratio transform, Eq. 48: ``log p_k - mean_j log p_j``."""
    log_p = log_p.clamp_min(LOG_PROB_FLOOR)
    return log_p - log_p.mean(dim=-1, keepdim=True)


def aitchison_sq(log_p_a: torch.Tensor, log_p_b: torch.Tensor) -> torch.Tensor:
    """Squared Aitchison distance, Eqs. 47-48: ``||clr(p_a) - clr(p_b)||²``.

    Probabilities are floored at ``1e-4`` before the log so that two confident posteriors that
    disagree cost a bounded amount (``~2 log(1e4)²``) instead of an unbounded one.
    """
    return (clr(log_p_a) - clr(log_p_b)).pow(2).sum(dim=-1)


def sigma_sq(
    log_p_a: torch.Tensor, log_p_b: torch.Tensor, sigma_floor: float = 0.1
) -> torch.Tensor:
    """Variance-normalised distance d_σ² of Prop. 3 (the reference code's coupling).

    ``sum_k (log p_ak / σ_ak - log p_bk / σ_bk)²`` where σ is the per-category standard
    deviation of ``log p`` over the mini-batch (dimension ``-2``). The reference divides by σ
    unguarded, so a category that is nearly constant in a batch makes the loss explode
    (~1e8); here σ is floored at ``sigma_floor`` and the result is divided by ``K`` so that
    its scale is comparable with :func:`aitchison_sq`.
    """
    log_p_a = log_p_a.clamp_min(LOG_PROB_FLOOR)
    log_p_b = log_p_b.clamp_min(LOG_PROB_FLOOR)
    sa = log_p_a.std(dim=-2, keepdim=True).clamp_min(sigma_floor)
    sb = log_p_b.std(dim=-2, keepdim=True).clamp_min(sigma_floor)
    return (log_p_a / sa - log_p_b / sb).pow(2).sum(dim=-1) / log_p_a.shape[-1]


def jensen_shannon(log_p_a: torch.Tensor, log_p_b: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence, bounded by ``log 2`` (a bounded distance)."""
    p_a, p_b = log_p_a.exp(), log_p_b.exp()
    log_m = torch.logaddexp(log_p_a, log_p_b) - math.log(2.0)
    kl_a = (p_a * (log_p_a - log_m)).nan_to_num().sum(dim=-1)
    kl_b = (p_b * (log_p_b - log_m)).nan_to_num().sum(dim=-1)
    return 0.5 * (kl_a + kl_b)


def detached_kl(log_p_a: torch.Tensor, log_p_b: torch.Tensor) -> torch.Tensor:
    """Each arm pulled towards the other's detached posterior (its value: the symmetric KL).

    ``KL(sg(p_b) || p_a) + KL(sg(p_a) || p_b)`` with ``sg`` stop-gradient: arm a's gradient is
    the cross-entropy of ``q(c|x_a)`` against the other arm's posterior taken as a fixed target
    (for more than two arms summed over pairs, i.e. towards the mean of the others). Unlike the
    distances above, an arm cannot lower the term by moving the *other* arm, so the cheapest way
    to agree is no longer to flatten both posteriors onto the coarse level.
    """
    la = log_p_a.clamp_min(LOG_PROB_FLOOR)
    lb = log_p_b.clamp_min(LOG_PROB_FLOOR)
    pa, pb = la.exp().detach(), lb.exp().detach()
    return (pb * (lb.detach() - la)).sum(dim=-1) + (pa * (la.detach() - lb)).sum(dim=-1)


def agreement_nll(log_p_a: torch.Tensor, log_p_b: torch.Tensor) -> torch.Tensor:
    """``-log P(c_a = c_b) = -log sum_k p_ak p_bk``: the negative log-probability that the arms'
    categories agree (the constraint of Prop. 1 as a likelihood). Head-dominated; its gradient
    pulls each arm towards the normalised product ``p_a p_b`` (the arms' joint posterior).
    Floored at ``1e-8`` (two confident, disagreeing arms cost ``log 1e8``)."""
    return -torch.logsumexp(log_p_a + log_p_b, dim=-1).clamp_min(2 * LOG_PROB_FLOOR)


COUPLINGS = {
    "aitchison": aitchison_sq,
    "sigma": sigma_sq,
    "detached": detached_kl,
    "js": jensen_shannon,
    "agreement": agreement_nll,
}

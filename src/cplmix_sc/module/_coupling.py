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


def sym_kl(log_p_a: torch.Tensor, log_p_b: torch.Tensor) -> torch.Tensor:
    """Symmetric KL ``KL(p_a||p_b) + KL(p_b||p_a) = sum_k (p_ak - p_bk)(log p_ak - log p_bk)``.

    Dominated by the categories where the posteriors put their mass (the head), not by the
    floored tail that dominates :func:`aitchison_sq`; floored at ``1e-4`` like it.
    """
    log_p_a = log_p_a.clamp_min(LOG_PROB_FLOOR)
    log_p_b = log_p_b.clamp_min(LOG_PROB_FLOOR)
    return ((log_p_a.exp() - log_p_b.exp()) * (log_p_a - log_p_b)).sum(dim=-1)


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


def detached_ce_hard(log_p_a: torch.Tensor, log_p_b: torch.Tensor) -> torch.Tensor:
    """Each arm's cross-entropy against the other arm's detached argmax (agreement on hard
    assignments): ``-log p_a[argmax p_b] - log p_b[argmax p_a]``, floored at ``1e-4``."""
    la = log_p_a.clamp_min(LOG_PROB_FLOOR)
    lb = log_p_b.clamp_min(LOG_PROB_FLOOR)
    ta = la.detach().argmax(-1, keepdim=True)
    tb = lb.detach().argmax(-1, keepdim=True)
    return -(la.gather(-1, tb) + lb.gather(-1, ta)).squeeze(-1)


def aitchison_top(log_p_a: torch.Tensor, log_p_b: torch.Tensor, top: int = 3) -> torch.Tensor:
    """:func:`aitchison_sq` over each cell's top categories only (the union of both arms'
    ``top`` most probable ones, chosen without gradient): the tail is left out."""
    la = log_p_a.clamp_min(LOG_PROB_FLOOR)
    lb = log_p_b.clamp_min(LOG_PROB_FLOOR)
    top = min(top, la.shape[-1])
    mask = torch.zeros_like(la, dtype=torch.bool)
    mask.scatter_(-1, la.detach().topk(top, dim=-1).indices, True)
    mask.scatter_(-1, lb.detach().topk(top, dim=-1).indices, True)
    m = mask.to(la.dtype)
    n = m.sum(-1, keepdim=True)
    ca = la - (la * m).sum(-1, keepdim=True) / n
    cb = lb - (lb * m).sum(-1, keepdim=True) / n
    return ((ca - cb).pow(2) * m).sum(dim=-1)


def agreement_nll(log_p_a: torch.Tensor, log_p_b: torch.Tensor) -> torch.Tensor:
    """``-log P(c_a = c_b) = -log sum_k p_ak p_bk``: the negative log-probability that the arms'
    categories agree (the constraint of Prop. 1 as a likelihood). Head-dominated; its gradient
    pulls each arm towards the normalised product ``p_a p_b`` (the arms' joint posterior).
    Floored at ``1e-8`` (two confident, disagreeing arms cost ``log 1e8``)."""
    return -torch.logsumexp(log_p_a + log_p_b, dim=-1).clamp_min(2 * LOG_PROB_FLOOR)


COUPLINGS = {
    "agreement": agreement_nll,
    "aitchison_top": aitchison_top,
    "aitchison": aitchison_sq,
    "sigma": sigma_sq,
    "skl": sym_kl,
    "js": jensen_shannon,
    "detached": detached_kl,
    "detached_hard": detached_ce_hard,
}

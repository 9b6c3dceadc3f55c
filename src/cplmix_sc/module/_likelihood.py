"""Negative binomial likelihood of counts: the torch formula and a fused CPU kernel.

scvi-tools' :func:`~scvi.distributions._negative_binomial.log_nb_positive` evaluates three
``lgamma`` terms on every entry of the ``(arms, cells, genes)`` tensor. They cancel where the
count is zero (``lgamma(0 + θ) - lgamma(θ) - lgamma(1) = 0``), and single-cell matrices are
often mostly zeros, so ``sparse=True`` evaluates them on the non-zero entries only: the same
log-likelihood (to float rounding) and the same gradients. Measured on 2 cores
(``benchmarks/step_time.py``): about 1.7x faster at 5% non-zero, even at 30%, slower above
(Zeisel's 2,000 variable genes are 66% non-zero). The model chooses it once, from the
density of its data (at most ``MAX_SPARSE_DENSITY`` non-zero), and only on the CPU: on an
accelerator finding the non-zero entries would synchronise with the host every step.

The model's loss calls :func:`nb_nll_logits`. On the CPU it runs one compiled kernel: per arm
and cell, the decoder's logits, the softmax, the NB terms and their gradients in one pass
over the genes (the backward pass is then a product and a batched matrix product), with the
``lgamma``/``digamma`` terms only where the count is not zero. PyTorch evaluates the same
formula as about twenty separate elementwise operations, each a pass over the
``(arms, cells, genes)`` tensor with its own temporary, and ``digamma`` (the backward of
``lgamma``) one entry at a time; at the Smart-seq shape (two arms of 1,000 cells x 5,032
genes) those were most of a training step. Same value and gradients to float rounding
(``tests/module/test_likelihood.py``, against scvi-tools' NB in float64). Without numba, or
off the CPU, :func:`nb_nll_logits` uses :func:`nb_nll` (with ``sparse`` as chosen above).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from scipy.special import digamma, gammaln

from ._compiled import njit_cached, split_work

EPS = 1e-8  # as scvi-tools
#: above this fraction of non-zero counts the dense formula is faster on the CPU
MAX_SPARSE_DENSITY = 0.25


def nb_nll(
    x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor, sparse: bool = False
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
        Evaluate the ``lgamma`` terms on the non-zero counts only (a host sync on an
        accelerator: use it on the CPU).

    Returns
    -------
    ``(..., B)`` negative log-likelihood per cell.
    """
    log_theta_mu = torch.log(theta + mu + EPS)
    dense = theta * (torch.log(theta + EPS) - log_theta_mu) + x * (
        torch.log(mu + EPS) - log_theta_mu
    )
    ll = dense.sum(-1)
    if not sparse:
        terms = torch.lgamma(x + theta) - torch.lgamma(theta) - torch.lgamma(x + 1)
        return -(ll + terms.sum(-1))
    cells, genes = x.nonzero(as_tuple=True)
    values = x[cells, genes]
    th = theta.squeeze(-2)[..., genes]  # (..., nnz)
    terms = torch.lgamma(values + th) - torch.lgamma(th) - torch.lgamma(values + 1)
    per_cell = terms.new_zeros(*terms.shape[:-1], x.shape[0]).index_add_(-1, cells, terms)
    return -(ll + per_cell)


def nb_nll_logits(
    x: torch.Tensor, decoded: torch.Tensor, log_theta: torch.Tensor, sparse: bool = False
) -> torch.Tensor:
    """``-log NB(x | library * softmax(decoded), exp(log_theta))`` summed over genes.

    The NB reconstruction term of the model's loss: ``library`` is each cell's total count.
    On the CPU (float32, numba available) it runs this module's compiled kernel, split over
    cells across PyTorch's thread count; elsewhere the torch formula (:func:`nb_nll`).

    Parameters
    ----------
    x
        Counts ``(B, G)``, the same for every arm (no gradient).
    decoded
        Decoder logits ``(A, B, G)``.
    log_theta
        Log inverse dispersions ``(A, 1, G)``.
    sparse
        :func:`nb_nll`'s ``sparse``, for the torch formula (without the fused kernel).

    Returns
    -------
    ``(A, B)`` negative log-likelihood per arm and cell.
    """
    fused = (x.device.type == "cpu" and decoded.device.type == "cpu"
             and x.dtype == decoded.dtype == log_theta.dtype == torch.float32
             and decoded.dim() == 3 and log_theta.dim() == 3 and not x.requires_grad
             and _kernel() is not None)
    if not fused:
        mu = x.sum(-1, keepdim=True) * torch.softmax(decoded, dim=-1)
        return nb_nll(x, mu, log_theta.exp(), sparse=sparse)
    return _FusedNB.apply(x, decoded, log_theta)


class _FusedNB(torch.autograd.Function):
    """:func:`nb_nll_logits` by the compiled kernel: the forward pass also computes the
    gradients per cell (they do not depend on the upstream gradient but through a factor per
    arm and cell), so the backward pass is one product and one batched matrix product."""

    @staticmethod
    def forward(ctx, x, decoded, log_theta):
        a, b, g = decoded.shape
        want_grad = decoded.requires_grad or log_theta.requires_grad
        xs = x.detach().contiguous().numpy()
        logits = decoded.detach().contiguous().numpy()
        # per gene in NumPy/SciPy: a few thousand values, not worth PyTorch's thread pool
        theta64 = np.exp(log_theta.detach().numpy().astype(np.float64).reshape(a, g))
        per_gene = np.stack([theta64, np.log(theta64 + EPS), gammaln(theta64),
                             digamma(theta64)])  # (4, A, G) float64
        # theta, log(theta + eps) and the part of d nll / d theta that is per gene
        per_gene_32 = [per_gene[0].astype(np.float32), per_gene[1].astype(np.float32),
                       (per_gene[1] + per_gene[0] / (per_gene[0] + EPS)).astype(np.float32)]
        nll = np.empty((a, b), dtype=np.float64)
        shape = (a, b, g) if want_grad else (0, 0, 0)
        grad_logits = np.empty(shape, dtype=np.float32)
        grad_theta = np.empty(shape, dtype=np.float32)
        kernel = _kernel()
        split_work(b, lambda lo, hi: kernel(xs, logits, per_gene, *per_gene_32, _LGAMMA_INT,
                                        nll, grad_logits, grad_theta, want_grad,
                                        lo, hi))
        if want_grad:
            ctx.save_for_backward(torch.from_numpy(grad_logits), torch.from_numpy(grad_theta),
                                  torch.from_numpy(theta64.astype(np.float32)))
        return torch.from_numpy(nll.astype(np.float32))

    @staticmethod
    def backward(ctx, grad_out):
        grad_logits, grad_theta, theta = ctx.saved_tensors
        grad_out = grad_out.float()
        # not in place: reusing the saved buffer changed the allocator's pattern so that the
        # next forward's buffers page-faulted (1.4x slower kernel, a scratch timing)
        d_logits = grad_logits * grad_out.unsqueeze(-1)
        # d nll / d log_theta = theta * d nll / d theta, summed over cells
        d_log_theta = torch.bmm(grad_out.unsqueeze(1), grad_theta) * theta.unsqueeze(1)
        return None, d_logits, d_log_theta


#: lgamma(k + 1) for integer counts k < 4096 (looked up instead of computed)
_LGAMMA_INT = torch.lgamma(torch.arange(1, 4097, dtype=torch.float64)).numpy()
#: fast-math flags of the kernel: no NaN/inf assumptions (a NaN logit stays NaN)
_FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}


@lru_cache(maxsize=1)
def _kernel():
    """The compiled kernel, or ``None`` without numba."""
    if _lgamma_digamma_jit is None:
        return None
    return njit_cached(_nb_kernel, fastmath=_FASTMATH)


def _lgamma_digamma(z):  # pragma: no cover - compiled by numba
    """``(lgamma(z), digamma(z))`` for z > 0: recurrence up to z >= 10, then Stirling's
    series for both (absolute error below 1e-10)."""
    shift_log = 1.0
    shift_inv = 0.0
    while z < 10.0:
        shift_log *= z
        shift_inv += 1.0 / z
        z += 1.0
    inv = 1.0 / z
    f = inv * inv
    log_z = math.log(z)
    lgamma = ((z - 0.5) * log_z - z + 0.91893853320467274
              + inv * (1.0 / 12 - f * (1.0 / 360 - f * (1.0 / 1260 - f / 1680))))
    digamma = log_z - 0.5 * inv - f * (1.0 / 12 - f * (1.0 / 120 - f * (1.0 / 252 - f / 240)))
    return lgamma - math.log(shift_log), digamma - shift_inv


_lgamma_digamma_jit = njit_cached(_lgamma_digamma, fastmath=_FASTMATH)


def _exp_row(x, shift, out, bits):  # pragma: no cover - compiled by numba
    """``out = exp(x - shift)`` for ``x <= shift`` (0 below ``exp(-87)``): Cephes' ``expf``
    (relative error about 1e-7) written without calls, so that the loop vectorises; ``bits``
    is an int32 scratch row."""
    power = bits.view(np.float32)
    floor = np.float32(-87.0)
    for j in range(x.shape[0]):
        v = x[j] - shift
        keep = v > floor
        v = max(v, floor)
        n = -np.int32(np.float32(0.5) - v * np.float32(1.44269504088896341))  # round(v / ln 2)
        nf = np.float32(n)
        r = v - nf * np.float32(0.693359375) + nf * np.float32(2.12194440e-4)
        y = np.float32(1.9875691500e-4)
        y = y * r + np.float32(1.3981999507e-3)
        y = y * r + np.float32(8.3334519073e-3)
        y = y * r + np.float32(4.1665795894e-2)
        y = y * r + np.float32(1.6666665459e-1)
        y = y * r + np.float32(5.0000001201e-1)
        y = y * (r * r) + r + np.float32(1.0)
        bits[j] = (n + 127) << 23  # 2**n
        out[j] = y * power[j] if keep else np.float32(0.0)


def _log_row(x, out, bits):  # pragma: no cover - compiled by numba
    """``out = log(x)`` for positive finite float32 ``x``: Cephes' ``logf`` (about 1 ulp)
    without calls, so that the loop vectorises; ``bits`` is an int32 scratch row."""
    raw = x.view(np.int32)
    mantissa = bits.view(np.float32)
    for j in range(x.shape[0]):
        b = raw[j]
        e = ((b >> 23) & 0xFF) - 126
        bits[j] = (b & 0x007FFFFF) | 0x3F000000  # the mantissa, in [0.5, 1)
        m = mantissa[j]
        small = m < np.float32(0.707106781186547524)
        e = e - (1 if small else 0)
        m = (m + m if small else m) - np.float32(1.0)
        z = m * m
        y = np.float32(7.0376836292e-2)
        y = y * m + np.float32(-1.1514610310e-1)
        y = y * m + np.float32(1.1676998740e-1)
        y = y * m + np.float32(-1.2420140846e-1)
        y = y * m + np.float32(1.4249322787e-1)
        y = y * m + np.float32(-1.6668057665e-1)
        y = y * m + np.float32(2.0000714765e-1)
        y = y * m + np.float32(-2.4999993993e-1)
        y = y * m + np.float32(3.3333331174e-1)
        ef = np.float32(e)
        y = y * m * z + ef * np.float32(-2.12194440e-4) - np.float32(0.5) * z
        out[j] = m + y + ef * np.float32(0.693359375)


_exp_row_jit = njit_cached(_exp_row, fastmath=_FASTMATH)
_log_row_jit = njit_cached(_log_row, fastmath=_FASTMATH)


def _nb_kernel(x, logits, per_gene, theta32, log_th32, c_th32, lgamma_int, nll,
               grad_logits, grad_theta, want_grad, lo, hi):  # pragma: no cover - numba
    """For cells ``lo <= b < hi`` and every arm: ``nll[a, b]`` and, if ``want_grad``, the
    gradients of ``nll[a, b]`` with respect to ``logits[a, b]`` and θ (per gene).

    Per arm and cell, every gene's terms as if its count were zero run in vectorised loops
    (softmax, ``log(θ + μ)``); the non-zero counts then add their terms in a scalar loop. A
    non-finite logit makes its cell's loss and gradients NaN.
    """
    n_arms, _, n_genes = logits.shape
    n_int = lgamma_int.shape[0]
    eps = np.float32(1e-8)
    prob = np.empty(n_genes, dtype=np.float32)  # softmax
    denom = np.empty(n_genes, dtype=np.float32)  # θ + μ + eps
    log_denom = np.empty(n_genes, dtype=np.float32)
    t = np.empty(n_genes, dtype=np.float32)  # d nll / d μ times μ
    bits = np.empty(n_genes, dtype=np.int32)
    nonzero = np.empty(n_genes, dtype=np.int64)
    for b in range(lo, hi):
        total = 0.0  # the library, in float64
        n_nz = 0
        for j in range(n_genes):
            if x[b, j] != 0.0:
                nonzero[n_nz] = j
                n_nz += 1
                total += x[b, j]
        lib = np.float32(total)
        for a in range(n_arms):
            row = logits[a, b]
            th, log_th, c_th = theta32[a], log_th32[a], c_th32[a]
            m = row[0]
            check = np.float32(0.0)  # NaN if any logit is NaN or infinite
            for j in range(n_genes):
                m = max(m, row[j])
                check += row[j] * np.float32(0.0)
            if check != check:  # the loss says so (NaN) instead of skipping the entry
                nll[a, b] = np.nan
                if want_grad:
                    grad_logits[a, b] = np.nan
                    grad_theta[a, b] = np.nan
                continue
            _exp_row_jit(row, m, prob, bits)
            s = 0.0
            for j in range(n_genes):
                s += prob[j]
            inv_s = np.float32(1.0 / s)
            for j in range(n_genes):
                prob[j] *= inv_s
                denom[j] = th[j] + lib * prob[j] + eps
            _log_row_jit(denom, log_denom, bits)
            acc = 0.0
            for j in range(n_genes):  # every gene, as if its count were zero
                acc += th[j] * (log_th[j] - log_denom[j])
            if want_grad:
                grad_th = grad_theta[a, b]
                for j in range(n_genes):
                    inv = np.float32(1.0) / denom[j]
                    t[j] = th[j] * inv * (lib * prob[j])
                    grad_th[j] = log_denom[j] + th[j] * inv - c_th[j]
            for k in range(n_nz):  # the non-zero counts' own terms
                j = nonzero[k]
                xv = x[b, j]
                mu = lib * prob[j]
                i = int(xv)
                lg_x1 = lgamma_int[i] if i == xv and i < n_int else math.lgamma(xv + 1.0)
                lg, dg = _lgamma_digamma_jit(float(xv) + per_gene[0, a, j])
                acc += (xv * (math.log(mu + eps) - log_denom[j])
                          + (lg - per_gene[2, a, j] - lg_x1))
                if want_grad:
                    inv = np.float32(1.0) / denom[j]
                    t[j] += xv * inv * mu - xv * mu / (mu + eps)
                    grad_theta[a, b, j] -= dg - per_gene[3, a, j] - xv * inv
            nll[a, b] = -acc
            if want_grad:
                total = 0.0
                for j in range(n_genes):
                    total += t[j]
                total32 = np.float32(total)
                out = grad_logits[a, b]
                for j in range(n_genes):
                    out[j] = t[j] - prob[j] * total32

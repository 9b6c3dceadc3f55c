"""The fused NB kernel (:func:`cplmix_sc.module._likelihood.nb_nll_logits`) against scvi-tools."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scvi.distributions import NegativeBinomial

from cplmix_sc.module import _likelihood as lik


def _reference(x, logits, log_theta):
    """scvi-tools' NB log-likelihood in float64, negated and summed over genes."""
    mu = x.double().sum(-1, keepdim=True) * torch.softmax(logits.double(), -1)
    return -NegativeBinomial(mu=mu, theta=log_theta.double().exp()).log_prob(x.double()).sum(-1)


def _data(n_cells=40, n_genes=70, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.poisson(torch.rand(n_cells, n_genes, generator=gen) * 4.0)
    x *= torch.rand(n_cells, n_genes, generator=gen) < 0.6
    x[1] *= 500.0  # read-like counts, beyond the lgamma(k + 1) table
    x[2, :5] = torch.tensor([0.5, 2.25, 7000.0, 1.0, 3.0])  # non-integer and huge counts
    x[3] = 0.0  # a cell without counts
    x[:, 0] = 0.0  # a gene without counts
    logits = (torch.randn(2, n_cells, n_genes, generator=gen) * 2).requires_grad_()
    log_theta = (torch.randn(2, 1, n_genes, generator=gen) * 3).requires_grad_()  # θ 1e-4..1e4
    return x, logits, log_theta


@pytest.mark.parametrize("threads", [1, 2])
def test_fused_nb_matches_scvi_tools_in_value_and_gradient(threads):
    assert lik._kernel() is not None  # numba comes with scanpy: the fused path must run
    x, logits, log_theta = _data()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        got = lik.nb_nll_logits(x, logits, log_theta)
    finally:
        torch.set_num_threads(before)
    ref = _reference(x, logits, log_theta)
    assert got.shape == (2, 40) and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), ref, rtol=1e-5, atol=1e-3)
    weights = torch.randn(2, 40, generator=torch.Generator().manual_seed(1))
    params = [logits, log_theta]
    fused = torch.autograd.grad((got * weights).sum(), params)
    exact = torch.autograd.grad((ref * weights.double()).sum(), params)
    # the float32 torch formula (the path without numba) sets the tolerance: d log θ carries
    # float32 rounding times θ (up to 1e4 here)
    mu = x.sum(-1, keepdim=True) * torch.softmax(logits, -1)
    torch_f32 = torch.autograd.grad((lik.nb_nll(x, mu, log_theta.exp()) * weights).sum(), params)
    for f, e, t in zip(fused, exact, torch_f32, strict=True):
        err, err_torch = (f.double() - e).abs().max(), (t.double() - e).abs().max()
        # within a few times float32 rounding of the gradient's scale, as the torch formula
        assert err <= max(4 * err_torch, 2e-6 * e.abs().max()) + 1e-4, (
            float(err), float(err_torch), float(e.abs().max()))
        torch.testing.assert_close(f.double(), e.double(), rtol=1e-3, atol=1e-2)


def test_fused_nb_without_gradients_and_with_nan():
    x, logits, log_theta = _data()
    with torch.no_grad():
        got = lik.nb_nll_logits(x, logits, log_theta)
    torch.testing.assert_close(got.double(), _reference(x, logits, log_theta).detach(),
                               rtol=1e-5, atol=1e-3)
    bad = logits.detach().clone()
    bad[0, 5, 7] = float("nan")
    bad[1, 6, 8] = float("inf")
    out = lik.nb_nll_logits(x, bad, log_theta.detach())
    assert torch.isnan(out[0, 5]) and torch.isnan(out[1, 6])  # NaN and inf are not hidden
    assert torch.isfinite(out[0, 6]) and torch.isfinite(out[1, 5])


def test_fused_nb_falls_back_to_the_torch_formula_off_float32():
    x, logits, log_theta = _data()
    got = lik.nb_nll_logits(x.double(), logits.double(), log_theta.double())
    torch.testing.assert_close(got, _reference(x, logits, log_theta), rtol=1e-6, atol=1e-6)


def test_lgamma_and_digamma_of_the_kernel():
    z = np.geomspace(1e-4, 1e6, 400)
    got = np.array([lik._lgamma_digamma_jit(float(v)) for v in z])
    zt = torch.as_tensor(z)
    np.testing.assert_allclose(got[:, 0], torch.lgamma(zt).numpy(), rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(got[:, 1], torch.digamma(zt).numpy(), rtol=1e-12, atol=1e-9)


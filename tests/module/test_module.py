import itertools
import math

import numpy as np
import pytest
import torch
from scvi import REGISTRY_KEYS

from cplmix_sc.module import ArmLinear, CplMixVAEModule, aitchison_sq, clr, sigma_sq
from cplmix_sc.module._coupling import COUPLINGS, detached_kl, jensen_shannon


def test_arm_linear_is_independent_linear_maps():
    torch.manual_seed(0)
    layer = ArmLinear(3, 5, 4)
    x = torch.randn(3, 7, 5)
    y = layer(x)
    for a in range(3):
        expected = x[a] @ layer.weight[a] + layer.bias[a]
        torch.testing.assert_close(y[a], expected)


def test_aitchison_matches_eq47_pairwise_form():
    torch.manual_seed(0)
    p = torch.softmax(torch.randn(6, 5), -1)
    q = torch.softmax(torch.randn(6, 5), -1)
    lp, lq = p.log(), q.log()
    k = p.shape[-1]
    eq47 = sum(
        ((lp[:, i] - lp[:, j]) - (lq[:, i] - lq[:, j])) ** 2
        for i, j in itertools.combinations(range(k), 2)
    ) / k
    torch.testing.assert_close(aitchison_sq(lp, lq), eq47)
    assert torch.allclose(clr(lp).sum(-1), torch.zeros(6), atol=1e-5)
    assert torch.allclose(aitchison_sq(lp, lp), torch.zeros(6))


def test_couplings_stay_finite_for_confident_and_constant_posteriors():
    k = 10
    one_hot_a = torch.full((4, k), -1e9).index_fill_(1, torch.tensor([0]), 0.0)
    one_hot_b = torch.full((4, k), -1e9).index_fill_(1, torch.tensor([1]), 0.0)
    lp_a = torch.log_softmax(one_hot_a, -1)
    lp_b = torch.log_softmax(one_hot_b, -1)
    d_ait = aitchison_sq(lp_a, lp_b)
    assert torch.isfinite(d_ait).all() and (d_ait > 0).all()
    assert d_ait.max() <= 2 * math.log(1e4) ** 2 + 1e-3
    # every category constant over the batch: the reference's d_σ divides by zero here
    d_sig = sigma_sq(lp_a, lp_b)
    assert torch.isfinite(d_sig).all()


@pytest.mark.parametrize("name", sorted(COUPLINGS))
def test_every_coupling_is_zero_at_agreement_and_finite_when_confident(name):
    torch.manual_seed(0)
    f = COUPLINGS[name]
    lp = torch.log_softmax(torch.randn(16, 12), -1)
    if name != "agreement":  # zero only for confident agreement
        torch.testing.assert_close(f(lp, lp), torch.zeros(16), atol=1e-5, rtol=0)
    hot_a = torch.log_softmax(torch.full((4, 12), -1e9).index_fill_(1, torch.tensor([0]), 0), -1)
    hot_b = torch.log_softmax(torch.full((4, 12), -1e9).index_fill_(1, torch.tensor([1]), 0), -1)
    d = f(hot_a, hot_b)
    assert torch.isfinite(d).all() and (d > 0).all()
    assert (f(lp, lp.roll(1, 0)) >= -1e-6).all()


def test_detached_coupling_pulls_each_arm_only_towards_the_other():
    torch.manual_seed(0)
    za = torch.randn(8, 6, requires_grad=True)
    zb = torch.randn(8, 6, requires_grad=True)
    la, lb = torch.log_softmax(za, -1), torch.log_softmax(zb, -1)
    # value: the symmetric KL; gradient of arm a: cross-entropy towards sg(p_b)
    sym_kl = ((la.exp() - lb.exp()) * (la - lb)).sum(-1)
    torch.testing.assert_close(detached_kl(la, lb), sym_kl, rtol=1e-4, atol=1e-5)
    detached_kl(la, lb).sum().backward()
    pa, pb = la.exp().detach(), lb.exp().detach()
    torch.testing.assert_close(za.grad, pa - pb)  # d CE(p_b, softmax(z_a)) / d z_a
    torch.testing.assert_close(zb.grad, pb - pa)
    # with arm b fixed, arm a's term alone gives arm b no gradient
    za.grad, zb.grad = None, None
    la, lb = torch.log_softmax(za, -1), torch.log_softmax(zb, -1)
    (lb.exp().detach() * (lb.detach() - la)).sum().backward()
    assert zb.grad is None


def test_jensen_shannon_is_bounded_by_log2():
    hot_a = torch.log_softmax(torch.full((3, 50), -1e9).index_fill_(1, torch.tensor([0]), 0), -1)
    hot_b = torch.log_softmax(torch.full((3, 50), -1e9).index_fill_(1, torch.tensor([7]), 0), -1)
    torch.testing.assert_close(jensen_shannon(hot_a, hot_b), torch.full((3,), math.log(2.0)))


def _batch(n=32, g=20, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.poisson(torch.full((n, g), 3.0), generator=gen)
    return {REGISTRY_KEYS.X_KEY: x, REGISTRY_KEYS.BATCH_KEY: torch.zeros(n, 1)}


def test_loss_is_eq46_with_paper_settings():
    torch.manual_seed(0)
    m = CplMixVAEModule(20, n_categories=4, n_arms=3, entropy_weight=-1.0, usage_weight=0.0,
                        augmentation="none", input_dropout=0.0)
    m.eval()  # deterministic pass (posterior means) so the terms can be recomputed
    tensors = _batch()
    inf, gen, out = m(tensors)
    x = tensors[REGISTRY_KEYS.X_KEY]
    nll = m.reconstruction_nll(x, gen["decoded"])
    kl = 0.5 * (inf["qs_m"] ** 2 + inf["qs_v"] - inf["qs_v"].log() - 1).sum(-1)
    lp = inf["log_probs"]
    h = -(lp.exp() * lp).sum(-1)
    a = 3
    pairs = 0
    for i, j in itertools.combinations(range(a), 2):
        pairs = pairs + h[i] + h[j] - aitchison_sq(lp[i], lp[j])
    eq46 = ((a - 1) * (-nll - kl)).sum(0) + pairs
    torch.testing.assert_close(out.loss, -eq46.mean(), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("likelihood", ["nb", "gaussian"])
@pytest.mark.parametrize("coupling", sorted(COUPLINGS))
def test_gradients_reach_every_arm(likelihood, coupling):
    torch.manual_seed(0)
    m = CplMixVAEModule(20, n_batch=2, n_categories=4, n_arms=2, likelihood=likelihood,
                        coupling=coupling)
    m.train()
    tensors = _batch()
    tensors[REGISTRY_KEYS.BATCH_KEY] = torch.randint(0, 2, (32, 1)).float()
    _, _, out = m(tensors)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    for name in ("encoder.layers.0.weight", "category_head.weight", "decoder_out.weight"):
        grad = dict(m.named_parameters())[name].grad
        assert grad is not None
        assert (grad.flatten(1).abs().sum(1) > 0).all(), f"{name}: an arm gets no gradient"


def test_simple_augmentation_gives_each_arm_its_own_copy():
    m = CplMixVAEModule(20, n_arms=3, thinning=0.5)
    x = _batch()[REGISTRY_KEYS.X_KEY]
    m.train()
    copies = m.make_copies(x)
    assert copies.shape == (3, 32, 20)
    assert not torch.equal(copies[0], copies[1])
    assert (copies <= x).all()
    assert copies.sum() == pytest.approx(0.5 * 3 * x.sum().item(), rel=0.05)
    m.eval()
    assert torch.equal(m.make_copies(x)[2], x)


@pytest.mark.parametrize("keep", [0.8, 0.3])
@pytest.mark.parametrize("path", ["cpu_kernel", "torch"])
def test_thinning_draws_exact_binomial_counts(keep, path):
    """Both samplers (the CPU kernel and the GPU's torch.binomial) give Binomial(n, keep)."""
    from scipy.stats import binom, chisquare

    from cplmix_sc.module._augment import SMALL_COUNT, _kernel, _thin_torch, thin_counts

    if path == "cpu_kernel":
        assert _kernel() is not None  # numba is a dependency: the compiled sampler must run
    counts = [1, 2, 7, SMALL_COUNT, SMALL_COUNT + 1, 400]  # both sides of the table's range
    x = torch.tensor(counts, dtype=torch.float32).repeat(4000, 1)
    torch.manual_seed(0)
    sample = (thin_counts if path == "cpu_kernel" else _thin_torch)(x, 2, keep)
    assert sample.shape == (2, 4000, len(counts))
    for j, n in enumerate(counts):
        draws = sample[:, :, j].flatten().numpy().astype(int)
        assert draws.min() >= 0 and draws.max() <= n
        expected = binom.pmf(range(n + 1), n, keep) * draws.size
        seen = np.bincount(draws, minlength=n + 1)
        ok = expected > 5  # the chi-square test's usual validity condition
        stat = chisquare(seen[ok], expected[ok] * seen[ok].sum() / expected[ok].sum())
        assert stat.pvalue > 1e-3, (n, keep, path, stat)
        se = math.sqrt(n * keep * (1 - keep) / draws.size)
        assert abs(draws.mean() - n * keep) < 4 * se, (n, keep, path, draws.mean())


def test_thinning_rounds_counts_and_is_reproducible_per_seed():
    from cplmix_sc.module._augment import thin_counts

    x = torch.tensor([[2.6, -3.0, float("nan"), 0.0, 1.0, 1000.0]])  # 1000: past the table
    torch.manual_seed(0)
    a = thin_counts(x.repeat(500, 1), 2, 0.5)
    assert a[..., 0].max() == 3  # 2.6 counts as 3 UMIs
    assert (a[..., 1:4] == 0).all()  # negative, NaN and zero: nothing to keep
    torch.manual_seed(0)
    assert torch.equal(a, thin_counts(x.repeat(500, 1), 2, 0.5))
    assert not torch.equal(a[0], a[1])
    assert not torch.equal(a, thin_counts(x.repeat(500, 1), 2, 0.5))  # a fresh draw per call
    big = torch.tensor([[2.0**24 + 1]], dtype=torch.float64)  # float64 stays exact
    assert thin_counts(big, 1, 1.0 - 1e-12).item() == 2.0**24 + 1
    assert torch.equal(thin_counts(x[:, :2], 2, 1.0)[1], x[:, :2])  # keep 1: the input


def test_input_dropout_on_the_cpu_is_dropout():
    """The compiled CPU input dropout: each non-zero entry kept with probability 1 - p and
    scaled by 1 / (1 - p), zeros untouched, reproducible per seed; nn.Dropout elsewhere."""
    from cplmix_sc.module._dropout import InputDropout

    drop = InputDropout(0.25).train()
    x = torch.rand(2, 400, 500) + 0.01
    x[:, :, :100] = 0.0
    torch.manual_seed(0)
    y = drop(x)
    assert (y[:, :, :100] == 0).all()
    kept = y[:, :, 100:] != 0
    assert abs(kept.float().mean().item() - 0.75) < 0.005  # 320,000 draws: sd 0.0008
    torch.testing.assert_close(y[:, :, 100:][kept], x[:, :, 100:][kept] / 0.75)
    torch.manual_seed(0)
    assert torch.equal(y, drop(x))
    assert not torch.equal(y, drop(x))  # a fresh draw per call
    odd = drop(torch.tensor([float("nan"), float("inf")]).repeat(200))
    assert odd.isnan().sum() + odd.isinf().sum() == 400  # as nn.Dropout: nothing turns finite
    assert torch.equal(drop.eval()(x), x)
    drop.train()
    w = x.clone().requires_grad_(True)  # an input with a gradient: nn.Dropout's path
    drop(w).sum().backward()
    assert w.grad is not None


@pytest.mark.parametrize("bad", [0.0, -0.5, 1.5])
def test_thinning_outside_zero_one_is_refused(bad):
    from cplmix_sc.module._augment import thin_counts

    with pytest.raises(ValueError, match=r"`thinning` must be in \(0.0, 1.0\]"):
        CplMixVAEModule(20, thinning=bad)
    with pytest.raises(ValueError, match=r"`thinning` must be in \(0.0, 1.0\]"):
        thin_counts(torch.ones(2, 3), 2, bad)  # the sampler checks it too (direct callers)


def test_linear_decoder_is_profile_plus_state_slopes_per_category():
    torch.manual_seed(0)
    a, b, k, s, g = 2, 5, 3, 2, 7
    m = CplMixVAEModule(g, n_batch=2, n_categories=k, n_state=s, n_arms=a, decoder="linear")
    with torch.no_grad():
        m.type_profile.normal_()
        m.batch_profile.normal_()
    m.eval()
    cats = torch.randint(0, k, (a, b))
    onehot = torch.nn.functional.one_hot(cats, k).float()
    state = torch.randn(a, b, s)
    batch = torch.tensor([0, 1, 1, 0, 1]).view(-1, 1)
    out = m.generative(state, onehot, torch.zeros(a, b, 10), batch)["decoded"]
    slopes = m.state_loadings.view(a, k, s, g)
    for ai in range(a):
        for bi in range(b):
            c = cats[ai, bi]
            expected = (m.type_profile[ai, c] + state[ai, bi] @ slopes[ai, c]
                        + m.batch_profile[ai, batch[bi, 0]])
            torch.testing.assert_close(out[ai, bi], expected)


def test_module_rejects_unknown_options():
    with pytest.raises(ValueError, match="decoder"):
        CplMixVAEModule(10, decoder="conv")
    with pytest.raises(ValueError, match="coupling"):
        CplMixVAEModule(10, coupling="euclid")


@pytest.mark.parametrize("sparse", [True, False])
def test_nb_nll_matches_scvi_tools_in_value_and_gradient(sparse):
    from scvi.distributions import NegativeBinomial

    from cplmix_sc.module._likelihood import nb_nll

    gen = torch.Generator().manual_seed(0)
    x = torch.poisson(torch.rand(50, 30, generator=gen) * 2.0)
    x[0] = 0.0  # a cell with no counts at all
    x[:, 0] = 0.0  # and a gene with none
    mu = (torch.rand(2, 50, 30, generator=gen) * 3 + 0.01).requires_grad_()
    log_theta = torch.randn(2, 1, 30, generator=gen).requires_grad_()
    ref = -NegativeBinomial(mu=mu, theta=log_theta.exp()).log_prob(x).sum(-1)
    got = nb_nll(x, mu, log_theta.exp(), sparse=sparse)
    assert got.shape == (2, 50)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-4)
    for a, b in zip(torch.autograd.grad(got.sum(), [mu, log_theta]),
                    torch.autograd.grad(ref.sum(), [mu, log_theta]), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_model_picks_the_sparse_nb_path_from_its_data_density(monkeypatch):
    """The torch formula's two paths (used without numba) agree, and the CPU's fused kernel
    gives the same loss."""
    import anndata
    import numpy as np

    import cplmix_sc.module._likelihood as lik
    from cplmix_sc import CplMixVAE

    rng = np.random.default_rng(0)
    for density, sparse in ((0.05, True), (0.6, False)):
        x = (rng.random((300, 80)) < density) * rng.poisson(3.0, (300, 80)).clip(1)
        x[:, 0] = 1  # no empty cells
        adata = anndata.AnnData(x.astype(np.float32))
        CplMixVAE.setup_anndata(adata)
        model = CplMixVAE(adata, n_categories=3)
        assert model.module.sparse_likelihood is sparse
        # both paths give the same loss
        t = {"X": torch.as_tensor(x[:64], dtype=torch.float32), "batch": torch.zeros(64, 1)}
        model.module.eval()
        torch.manual_seed(0)
        fused = model.module(t)[2].loss
        with monkeypatch.context() as m:
            m.setattr(lik, "_kernel", lambda: None)  # the torch formula, both paths
            torch.manual_seed(0)
            a = model.module(t)[2].loss
            model.module.sparse_likelihood = not sparse
            torch.manual_seed(0)
            b = model.module(t)[2].loss
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-3)
        torch.testing.assert_close(fused, a, rtol=1e-5, atol=1e-3)


def test_warmup_coupling_off_leaves_the_coupling_out_of_the_warmup_only():
    torch.manual_seed(0)
    tensors = _batch()
    losses = {}
    for on in (True, False):
        torch.manual_seed(0)
        m = CplMixVAEModule(20, n_categories=4, n_arms=2, augmentation="none",
                            input_dropout=0.0, warmup_coupling=on)
        m.eval()
        m.teacher_labels = lambda x: torch.zeros(x.shape[0], dtype=torch.long)
        for phase in ("warmup", "mixture"):
            m.phase = phase
            _, _, out = m(tensors)
            losses[on, phase] = (float(out.loss), float(out.extra_metrics["coupling"]))
    assert losses[True, "mixture"] == losses[False, "mixture"]
    assert losses[False, "warmup"][1] == 0.0 and losses[True, "warmup"][1] > 0
    assert losses[False, "warmup"][0] < losses[True, "warmup"][0]


def _all_arms_expression(module, state, types, batch, arm):
    """The former ``expected_expression``: every arm decoded, one kept."""
    n, a = state.shape[0], module.n_arms
    category = torch.nn.functional.one_hot(types, module.n_categories).float()
    out = module.generative(
        state=state.unsqueeze(0).expand(a, -1, -1),
        category=category.unsqueeze(0).expand(a, -1, -1),
        bottleneck=state.new_zeros(a, n, 1),
        batch_index=batch.view(-1, 1),
    )["decoded"][arm]
    if module.likelihood == "nb":
        return 1e4 * torch.softmax(out, -1)
    return torch.expm1(out).clamp_min(0.0)


@pytest.mark.parametrize(
    ("decoder", "likelihood", "n_batch"),
    [("mlp", "nb", 0), ("mlp", "nb", 3), ("linear", "nb", 2), ("mlp", "gaussian", 0)],
)
def test_expected_expression_decodes_one_arm_as_all_arms_did(decoder, likelihood, n_batch):
    torch.manual_seed(0)
    module = CplMixVAEModule(n_input=30, n_batch=n_batch, n_categories=4, n_arms=3,
                             decoder=decoder, likelihood=likelihood)
    # non-trivial batch-normalisation statistics, as after training
    for name, buf in module.named_buffers():
        if name.endswith("running_mean"):
            buf.normal_()
        elif name.endswith("running_var"):
            buf.uniform_(0.5, 2.0)
    module.train()
    state = torch.randn(9, module.n_state)
    types = torch.randint(0, 4, (9,))
    batch = torch.randint(0, max(n_batch, 1), (9,))
    calls = []
    generative = module.generative
    module.generative = lambda **kw: calls.append(1) or generative(**kw)
    for arm in range(3):
        got = module.expected_expression(state, types, batch if n_batch else None, arm=arm)
        assert not calls  # the all-arms generative() is not run
        module.eval()
        with torch.no_grad():
            expected = _all_arms_expression(module, state, types, batch, arm)
        calls.clear()
        module.train()
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert module.training  # the mode is restored


def test_state_posterior_one_arm_matches_every_arms_state():
    torch.manual_seed(0)
    module = CplMixVAEModule(n_input=30, n_categories=4, n_arms=3).eval()
    bottleneck = torch.randn(3, 7, 10)
    types = torch.randint(0, 4, (7,))
    with torch.no_grad():
        every = module.state_given_category(bottleneck, types)
        for arm in range(3):
            mean, var = module.state_posterior_one_arm(bottleneck[arm], types, arm)
            torch.testing.assert_close(mean, every[arm])
            assert mean.shape == var.shape == (7, module.n_state) and (var > 0).all()
    with pytest.raises(RuntimeError, match="eval"):
        module.train().state_posterior_one_arm(bottleneck[0], types, 0)

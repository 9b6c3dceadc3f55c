"""scvi-tools' inference names on CplMixVAE (model/_ecosystem.py): one small model per module."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import scvi
import torch

import cplmix_sc
from cplmix_sc import CplMixVAE

FAST = {"pretrain_epochs": 2, "batch_size": 128, "init": "kmeans",
        "init_exclude_genes": None, "enable_progress_bar": False}


def _sim(seed=1):
    return cplmix_sc.datasets.synthetic(
        n_cells=400, n_genes=200, n_types=4, n_markers=15, n_activity=30, n_housekeeping=20,
        marker_effect=2.5, state_effect=1.5, seed=seed,
    )


@pytest.fixture(scope="module")
def trained():
    scvi.settings.seed = 0
    adata = _sim()
    CplMixVAE.setup_anndata(adata)
    model = CplMixVAE(adata, n_categories=4)
    model.train(max_epochs=20, **FAST)
    return model


@pytest.fixture(scope="module")
def batched():
    scvi.settings.seed = 0
    adata = _sim(seed=2)
    adata.obs["batch"] = pd.Categorical(np.where(np.arange(adata.n_obs) % 2, "b", "a"))
    CplMixVAE.setup_anndata(adata, batch_key="batch")
    model = CplMixVAE(adata, n_categories=4)
    model.train(max_epochs=2, **FAST)
    return model


def test_untrained_model_is_refused():
    adata = _sim()
    CplMixVAE.setup_anndata(adata)
    model = CplMixVAE(adata, n_categories=4)
    calls = [
        model.get_latent_representation, model.get_normalized_expression,
        model.differential_expression, model.get_elbo, model.get_reconstruction_error,
        model.posterior_predictive_sample,
    ]
    for call in calls:
        with pytest.raises(ValueError, match=r"not trained: call `model.train\(\)` first"):
            call()


def test_latent_representations(trained):
    n = trained.adata.n_obs
    bott = trained.get_latent_representation()
    assert bott.shape == (n, 10)  # n_bottleneck
    state = trained.get_latent_representation(representation="state", arm=1)
    np.testing.assert_allclose(state, trained.get_state(arm=1), rtol=1e-5, atol=1e-6)
    probs = trained.get_latent_representation(representation="type_probabilities")
    np.testing.assert_allclose(probs, trained.get_type_probabilities(), rtol=1e-5, atol=1e-6)
    idx = [5, 0, 17]
    np.testing.assert_allclose(
        trained.get_latent_representation(indices=idx), bott[idx], rtol=1e-5, atol=1e-6
    )
    with pytest.raises(ValueError, match="representation"):
        trained.get_latent_representation(representation="z")
    with pytest.raises(ValueError, match="arm"):
        trained.get_latent_representation(arm=2)


def test_normalized_expression(trained):
    adata = trained.adata
    expr = trained.get_normalized_expression()
    assert isinstance(expr, pd.DataFrame) and expr.shape == adata.shape
    assert (expr.columns == adata.var_names).all() and (expr.index == adata.obs_names).all()
    np.testing.assert_allclose(expr.sum(1), 1.0, rtol=1e-4)
    per10k = trained.get_normalized_expression(library_size=1e4, return_numpy=True)
    np.testing.assert_allclose(per10k.sum(1), 1e4, rtol=1e-4)
    # the consensus type and arm 0's state, decoded as decode_expression does
    types, state = trained.predict(), trained.get_state()
    np.testing.assert_allclose(per10k, trained.decode_expression(state, types), rtol=1e-3,
                               atol=1e-3)
    latent = trained.get_normalized_expression(library_size="latent", return_numpy=True)
    np.testing.assert_allclose(latent.sum(1), np.asarray(adata.X.sum(1)).ravel(), rtol=1e-4)
    genes = ["Mk1_0", "Ieg3", "Hkg0"]
    sub = trained.get_normalized_expression(indices=[3, 1], gene_list=genes)
    assert list(sub.columns) == sorted(genes, key=list(adata.var_names).index)
    assert list(sub.index) == list(adata.obs_names[[3, 1]])
    np.testing.assert_allclose(sub.to_numpy(), expr.iloc[[3, 1]][sub.columns].to_numpy(),
                               rtol=1e-5)
    samples = trained.get_normalized_expression(indices=[0, 1], n_samples=5, return_mean=False)
    assert samples.shape == (5, 2, adata.n_vars)
    np.testing.assert_allclose(samples.sum(-1), 1.0, rtol=1e-4)
    overall = trained.get_normalized_expression(indices=range(10), n_samples_overall=50)
    assert overall.shape == (50, adata.n_vars)
    with pytest.raises(ValueError, match=r"not in adata\.var_names"):
        trained.get_normalized_expression(gene_list=["Mk1_0", "NoSuchGene"])
    with pytest.raises(ValueError, match="library_size"):
        trained.get_normalized_expression(library_size=0)


def test_elbo_matches_training_loss(trained):
    mod = trained.module
    mod.eval()
    idx = np.arange(50)
    loader = trained._make_data_loader(adata=trained.adata, indices=idx, batch_size=50)
    tensors = next(iter(loader))
    with torch.inference_mode():
        _, _, losses = mod(tensors)
    rec = losses.reconstruction_loss
    rec = rec["reconstruction_loss"] if isinstance(rec, dict) else rec
    kl = losses.kl_local
    kl = kl["kl_local"] if isinstance(kl, dict) else kl
    w_a = max(mod.n_arms - 1, 1) * mod.n_arms
    expected = -(rec + kl).numpy() / w_a
    elbo = trained.get_elbo(indices=idx, return_mean=False)
    np.testing.assert_allclose(elbo, expected, rtol=1e-4)
    assert trained.get_elbo(indices=idx) == pytest.approx(expected.mean(), rel=1e-4)
    nll = trained.get_reconstruction_error(indices=idx)["reconstruction_loss"]
    assert nll == pytest.approx(rec.numpy().mean() / w_a, rel=1e-4)
    assert -trained.get_elbo(indices=idx) >= nll  # the KL is non-negative


def test_differential_expression_table_and_errors(trained):
    adata = trained.adata
    groups = adata.obs["cpl_type"].cat.categories
    de = trained.differential_expression(group1=groups[0], silent=True)
    for col in ("lfc_mean", "bayes_factor", "proba_de", "is_de_fdr_0.05", "raw_mean1"):
        assert col in de.columns
    assert len(de) == adata.n_vars and set(de["group1"]) == {groups[0]}
    pair = trained.differential_expression(group1=int(groups[0]), group2=groups[1], silent=True)
    assert set(pair["group1"]) == {groups[0]}  # a number for a "0", "1", ... label
    assert set(pair["group2"]) == {groups[1]}
    by_idx = trained.differential_expression(idx1=np.arange(50), idx2=np.arange(50, 120),
                                             silent=True, all_stats=False)
    assert len(by_idx) == adata.n_vars
    with pytest.raises(ValueError, match="not found"):
        trained.differential_expression(group1="no-such-type")
    with pytest.raises(ValueError, match="not a column"):
        trained.differential_expression(groupby="no_such_column")


def test_mean_log_ratio_compares_means_of_disjoint_sets():
    from cplmix_sc.model._ecosystem import mean_log_ratio

    rng = np.random.default_rng(0)
    x, y = rng.gamma(1.0, size=(250, 6)), rng.gamma(2.0, size=(260, 6))
    out = mean_log_ratio(100)(x, y, 1e-3)
    assert out.shape == (2, 6)  # 250 rows: two full sets of 100
    expected = np.log2(x[100:200].mean(0) + 1e-3) - np.log2(y[100:200].mean(0) + 1e-3)
    np.testing.assert_allclose(out[1], expected, rtol=1e-5)
    # one sample per set: scvi-tools' per-pair log-fold change
    np.testing.assert_allclose(mean_log_ratio(1)(x, y, 1e-3)[:5],
                               np.log2(x[:5] + 1e-3) - np.log2(y[:5] + 1e-3), rtol=1e-5)
    assert mean_log_ratio(1000)(x, y, 0.0).shape == (1, 6)  # fewer rows than a set


def test_differential_expression_encodes_each_cell_once(trained, monkeypatch):
    """DE samples types and states from posteriors computed once, not once per group."""
    adata = trained.adata
    seen = []
    inference = trained.module.inference
    monkeypatch.setattr(trained.module, "inference",
                        lambda x, **kw: seen.append(x.shape[0]) or inference(x, **kw))
    de = trained.differential_expression(silent=True, all_stats=False)
    assert de["group1"].nunique() >= 2
    assert sum(seen) == adata.n_obs


def test_differential_expression_lfc_is_the_log_ratio_of_mean_expression(trained):
    """``lfc_mean`` follows the groups' mean decoded expression (the log of the mean, not
    the mean of per-cell logs), and ``cells_per_change=1`` gives scvi-tools' per-cell lfc."""
    adata = trained.adata
    group = adata.obs["cpl_type"].cat.categories[0]
    inside = (adata.obs["cpl_type"] == group).to_numpy()
    rho = trained.get_normalized_expression(n_samples=20, return_mean=False)  # posterior
    of_means = np.log2(rho[:, inside].mean((0, 1))) - np.log2(rho[:, ~inside].mean((0, 1)))
    of_logs = np.log2(rho[:, inside]).mean((0, 1)) - np.log2(rho[:, ~inside]).mean((0, 1))
    scvi.settings.seed = 0
    de = trained.differential_expression(group1=group, silent=True, all_stats=False)
    per_cell = trained.differential_expression(group1=group, silent=True, all_stats=False,
                                               cells_per_change=1)
    lfc = de["lfc_mean"].reindex(adata.var_names).to_numpy()
    lfc1 = per_cell["lfc_mean"].reindex(adata.var_names).to_numpy()
    assert np.abs(lfc - of_means).mean() < np.abs(lfc - of_logs).mean()
    assert np.abs(lfc1 - of_logs).mean() < np.abs(lfc1 - of_means).mean()
    assert np.corrcoef(lfc, of_means)[0, 1] > 0.95
    with pytest.raises(ValueError, match="cells_per_change"):
        trained.differential_expression(group1=group, cells_per_change=0)


def test_differential_expression_default_groupby_computes_types(trained):
    adata = trained.adata
    saved = adata.obs.pop("cpl_type")
    try:
        de = trained.differential_expression(silent=True, all_stats=False)
        assert "cpl_type" in adata.obs
        pd.testing.assert_series_equal(adata.obs["cpl_type"], saved)
    finally:
        adata.obs["cpl_type"] = saved
    assert set(de["group1"]) == set(adata.obs["cpl_type"].cat.categories)


def _true_lfc(adata) -> pd.DataFrame:
    """log2 fold change of each true type against the rest, means averaged over the state."""
    s = np.linspace(-1.0, 1.0, 201)[:, None, None]
    log_mu = (adata.var["base"].to_numpy()[None, None] + adata.varm["type_effects"].T[None]
              + s * adata.varm["slopes"].T[None])  # (state, type, gene)
    prop = np.exp(log_mu - log_mu.max(-1, keepdims=True))
    mean = (prop / prop.sum(-1, keepdims=True)).mean(0)  # (type, gene)
    rest = (mean.sum(0, keepdims=True) - mean) / (mean.shape[0] - 1)
    return pd.DataFrame(np.log2(mean / rest), index=adata.obs["type"].cat.categories,
                        columns=adata.var_names)


def _recovery(model) -> tuple[float, float, int]:
    """The issue's check: for found types >= 80% one true type, the fraction of the top 10
    genes by ``lfc_mean`` among the true type's 20 largest true log-fold changes (mean over
    such types); the same for the empirical log-fold change of normalised counts; and the
    number of such types."""
    adata = model.adata
    truth = _true_lfc(adata)
    de = model.differential_expression(silent=True, all_stats=False)
    x = np.asarray(sp.csr_matrix(adata.X).multiply(1.0 / adata.X.sum(1)).todense())
    tab = pd.crosstab(adata.obs["cpl_type"], adata.obs["type"])
    model_hits, empirical_hits = [], []
    for found, row in tab.iterrows():
        if row.max() < 0.8 * row.sum():
            continue
        true_top = set(truth.loc[row.idxmax()].nlargest(20).index)
        top = de[de["group1"] == found]["lfc_mean"].nlargest(10).index
        model_hits.append(len(true_top.intersection(top)) / 10)
        inside = (adata.obs["cpl_type"] == found).to_numpy()
        emp = np.log2(x[inside].mean(0) + 1e-6) - np.log2(x[~inside].mean(0) + 1e-6)
        emp_top = adata.var_names[np.argsort(-emp)[:10]]
        empirical_hits.append(len(true_top.intersection(emp_top)) / 10)
    assert model_hits, "no found type is at least 80% one true type"
    return float(np.mean(model_hits)), float(np.mean(empirical_hits)), len(model_hits)


def test_differential_expression_recovers_the_simulated_truth(trained):
    """The issue's check on the small, well separated simulator of this module."""
    hits, empirical, n = _recovery(trained)
    print(f"top-10 recovery: DE {hits:.2f}, empirical {empirical:.2f} ({n} types)")
    assert hits >= 0.55


@pytest.mark.slow
def test_differential_expression_recovers_the_default_simulator():
    """The issue's check on ``synthetic()``'s defaults (12 types, weak markers, strong state),
    with ``train()``'s defaults: at least 0.7 (0.93 at seed 0, ``benchmarks/results/de.md``).
    Before the few-type start merged Leiden communities on the graph without the state's
    genes, the found types were slices of true types along the state and one mixed type, and
    both DE and the found types' own empirical log-fold change scored 0.66. It also guards
    that DE's log-fold change tracks the found types' own empirical one (within 0.1; 0.92
    against 0.98 here, 9 pure types)."""
    scvi.settings.seed = 0
    adata = cplmix_sc.datasets.synthetic()
    CplMixVAE.setup_anndata(adata)
    model = CplMixVAE(adata, n_categories=12)
    model.train(enable_progress_bar=False)
    hits, empirical, n = _recovery(model)
    print(f"top-10 recovery: DE {hits:.2f}, empirical {empirical:.2f} ({n} types)")
    assert hits >= 0.7 and hits >= empirical - 0.1


def test_posterior_predictive_sample(trained):
    adata = trained.adata
    one = trained.posterior_predictive_sample(indices=[0, 1, 2])
    assert one.shape == (3, adata.n_vars)
    many = trained.posterior_predictive_sample(n_samples=3, gene_list=["Mk0_0", "Ieg1"])
    assert many.shape == (adata.n_obs, 2, 3)
    dense = many.todense()
    assert (dense >= 0).all() and np.array_equal(dense, np.round(dense))


@pytest.mark.slow
def test_posterior_predictive_check_runs(trained):
    from scvi.criticism import PosteriorPredictiveCheck

    raw = trained.adata.copy()
    raw.X = sp.csr_matrix(raw.X).astype(np.int32)  # scvi 1.4.2 fails on sparse floats
    ppc = PosteriorPredictiveCheck(raw, {"cpl": trained}, n_samples=2)
    ppc.coefficient_of_variation("cells")
    ppc.zero_fraction()
    assert {"cv_gene", "zero_fraction"} <= set(ppc.metrics)
    assert np.isfinite(ppc.metrics["zero_fraction"]["cpl"]).all()


def test_batch_handling(batched):
    adata = batched.adata
    expr = batched.get_normalized_expression(return_numpy=True)
    assert expr.shape == adata.shape
    a = batched.get_normalized_expression(transform_batch="a", return_numpy=True)
    b = batched.get_normalized_expression(transform_batch="b", return_numpy=True)
    both = batched.get_normalized_expression(transform_batch=["a", "b"], return_numpy=True)
    np.testing.assert_allclose(both, (a + b) / 2, rtol=1e-4, atol=1e-7)
    own = np.where((adata.obs["batch"] == "a").to_numpy()[:, None], a, b)
    np.testing.assert_allclose(expr, own, rtol=1e-4, atol=1e-7)
    assert not np.allclose(a, b)
    with pytest.raises(ValueError, match="not a valid batch"):
        batched.get_normalized_expression(transform_batch="c")
    pp = batched.posterior_predictive_sample(transform_batch="a", indices=[0, 1])
    assert pp.shape == (2, adata.n_vars)
    de = batched.differential_expression(
        group1=adata.obs["cpl_type"].cat.categories[0], batch_correction=True, silent=True,
        all_stats=False,
    )
    assert np.isfinite(de["lfc_mean"]).all()

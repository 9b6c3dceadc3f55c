"""The divisive start and the multinomial mixture (cplmix_sc.start._divisive / _mixture)."""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.cluster import KMeans

import cplmix_sc
import cplmix_sc.start._divisive as div_mod
from cplmix_sc.metrics import clustering_scores
from cplmix_sc.start import divisive_start, log_pca, multinomial_em


@pytest.fixture(scope="module")
def hierarchy():
    """24 types in a class > subclass > type hierarchy, 10x-like (a tuning seed)."""
    return cplmix_sc.datasets.synthetic_hierarchy(1, n_types=24, n_cells=1200, n_genes=500)


def test_divisive_start_finds_sister_types_better_than_kmeans(hierarchy):
    a = hierarchy
    truth = a.obs["type"].to_numpy()
    labels = divisive_start(a.X, 24, seed=0)
    sizes = np.bincount(labels)
    assert len(sizes) == 24 and np.all(np.diff(sizes) <= 0)  # k clusters, largest first
    km = KMeans(24, n_init=10, random_state=0).fit_predict(log_pca(a.X, 30, 0)[2])
    ours, theirs = (clustering_scores(truth, p)["ari"] for p in (labels, km))
    assert ours > 0.55 and ours > theirs + 0.15


def test_divisive_start_stops_when_nothing_can_be_split():
    x = sp.csr_matrix(np.random.default_rng(0).poisson(5.0, (30, 50)))
    labels = divisive_start(x, 10, seed=0)  # 30 cells: one split at most (20-cell minimum)
    assert labels.max() + 1 < 10 and np.bincount(labels).min() >= 5


def test_pearson_residuals_sparse_in_chunks_match_the_formula(monkeypatch):
    rng = np.random.default_rng(0)
    x = rng.poisson(rng.gamma(1.0, 2.0, (1, 40)), (60, 40)).astype(float)
    idx = np.arange(5, 55)
    monkeypatch.setattr(div_mod, "CHUNK_ENTRIES", 7 * 40)  # 7 rows at a time
    z = div_mod.pearson_residuals(sp.csr_matrix(x), idx, n_genes=40)
    sub = x[idx]
    mu = sub.sum(1, keepdims=True) * sub.sum(0, keepdims=True) / sub.sum()
    expected = (sub - mu) / np.sqrt(mu + mu**2 / div_mod.THETA + 1e-12)
    expected = np.clip(expected, -np.sqrt(50), np.sqrt(50))
    np.testing.assert_allclose(z, expected, rtol=1e-5, atol=1e-5)
    top = div_mod.pearson_residuals(x, idx, n_genes=5)
    assert top.shape == (50, 5)
    var = expected.var(0)
    np.testing.assert_allclose(np.sort(top.var(0)), np.sort(var)[-5:], rtol=1e-4)


def test_multinomial_em_sparse_dense_and_errors(hierarchy):
    a = hierarchy
    truth = a.obs["type"].cat.codes.to_numpy()
    noisy = truth.copy()
    noisy[::5] = -1  # a fifth of the cells start without a label
    dense = multinomial_em(a.X.toarray(), noisy, 24)
    np.testing.assert_array_equal(multinomial_em(a.X, noisy, 24), dense)
    assert clustering_scores(truth, dense)["ari"] > 0.6  # EM drifts from the truth, but keeps most
    with pytest.raises(ValueError, match=r"expected \(1200,\)"):
        multinomial_em(a.X, truth[:10], 24)


def test_init_divisive_teaches_every_category(easy_sim):
    """``train(init="divisive")`` fills all ``n_categories`` (the graph start of these 4
    types would leave most of 8 empty) and each training cell is taught its own cluster."""
    import scvi
    from conftest import QUICK

    from cplmix_sc import CplMixVAE

    scvi.settings.seed = 0
    adata = easy_sim
    CplMixVAE.setup_anndata(adata)
    model = CplMixVAE(adata, n_categories=8)
    model.train(init="divisive", annotate=False, **QUICK)
    taught = model.module.start_point_labels.numpy()
    assert len(taught) == adata.n_obs and set(np.unique(taught)) == set(range(8))
    kept = ~adata.var_names.isin(model.init_excluded_genes_)  # a shared state's genes out
    expected = divisive_start(adata.X[:, kept], 8, seed=0)
    np.testing.assert_array_equal(taught, expected)


def test_divisive_start_leaves_a_shared_states_genes_out(hierarchy):
    """``fit_start(init="divisive", genes="auto")`` finds the genes of the state shared by the
    types (:func:`state_program_genes`), leaves them out of the splits and the PCA, and
    recovers the sister types far better than the same splits on every gene."""
    from cplmix_sc.start import fit_start

    a = hierarchy
    truth = a.obs["type"].to_numpy()
    start = fit_start(a.X, "divisive", 24, 30, 0, genes="auto")
    left = ~start.genes
    is_state = (a.var["role"] == "state").to_numpy()
    assert left.sum() >= 20 and (left & is_state).sum() >= 0.8 * left.sum()
    assert start.init == "divisive" and len(np.unique(start.labels)) == 24
    ours = clustering_scores(truth, start.labels)["ari"]
    every_gene = clustering_scores(truth, divisive_start(a.X, 24, seed=0))["ari"]
    assert ours > 0.85 and ours > every_gene + 0.2

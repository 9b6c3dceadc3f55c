import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import scvi
import torch
from conftest import QUICK

import cplmix_sc
from cplmix_sc import CplMixVAE


def _setup(adata, **kw):
    CplMixVAE.setup_anndata(adata, **kw)
    return adata


def test_train_writes_documented_keys_and_nothing_else(easy_sim):
    adata = _setup(easy_sim)
    x_before = adata.X.copy()
    obs_before = adata.obs.copy()
    model = CplMixVAE(adata, n_categories=4, n_arms=2)
    model.train(**QUICK)
    n = adata.n_obs
    assert isinstance(adata.obs["cpl_type"].dtype, pd.CategoricalDtype)
    assert adata.obs["cpl_type_confidence"].between(0, 1).all()
    assert set(np.unique(adata.obs["cpl_arm_agreement"])) <= {0.0, 0.5, 1.0}
    assert adata.obsm["X_cpl_state"].shape == (n, 2)
    probs = adata.obsm["cpl_type_probs"]
    assert probs.shape == (n, 4)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    assert adata.uns["cpl"]["params"]["n_categories"] == 4
    assert 0 <= adata.uns["cpl"]["arm_consensus"] <= 1
    # the usage target is the k-means start's proportions
    weights = model.module.usage_prior
    assert weights.sum().item() == pytest.approx(1.0)
    assert weights.max() > weights.min()
    # the user's data is untouched
    assert (adata.X != x_before).nnz == 0
    pd.testing.assert_frame_equal(adata.obs[obs_before.columns], obs_before)
    # API agrees with what annotate wrote
    np.testing.assert_array_equal(
        model.predict(), adata.obs["cpl_type"].astype(int).to_numpy()
    )
    np.testing.assert_allclose(model.get_state(), adata.obsm["X_cpl_state"], rtol=1e-5)
    assert model.get_type_probabilities(arm=1).shape == (n, 4)
    assert model.get_arm_labels().shape == (2, n)


def test_save_load_round_trip_and_retrain(easy_sim, tmp_path):
    adata = _setup(easy_sim)
    model = CplMixVAE(adata, n_categories=4)
    model.train(**QUICK)
    probs = model.get_type_probabilities()
    state = model.get_state()
    model.save(tmp_path / "m", overwrite=True)
    loaded = CplMixVAE.load(tmp_path / "m", adata=adata)
    np.testing.assert_allclose(loaded.get_type_probabilities(), probs, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(loaded.get_state(), state, rtol=1e-5, atol=1e-6)
    # retraining after load runs in train mode (scvi 1.4.2 leaves eval mode) and changes weights
    before = loaded.module.category_head.weight.detach().clone()
    bn_before = loaded.module.encoder.layers[1].bn.running_mean.clone()
    loaded.train(max_epochs=1, batch_size=128, enable_progress_bar=False, annotate=False)
    assert not torch.equal(before, loaded.module.category_head.weight)
    # batch-norm statistics only move in train mode
    assert not torch.equal(bn_before, loaded.module.encoder.layers[1].bn.running_mean)


def test_same_seed_same_result(easy_sim):
    out = []
    for _ in range(2):
        scvi.settings.seed = 7
        adata = _setup(easy_sim.copy())
        model = CplMixVAE(adata, n_categories=4)
        model.train(**QUICK)
        out.append((
            adata.obs["cpl_type"].to_numpy(), adata.obsm["X_cpl_state"].copy(),
            model.module.state_dict(),
        ))
    np.testing.assert_array_equal(out[0][0], out[1][0])
    # on the CPU the same seed gives bitwise the same run (docs/robustness.md: determinism)
    np.testing.assert_array_equal(out[0][1], out[1][1])
    for name, value in out[0][2].items():
        assert torch.equal(value, out[1][2][name]), name


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_arms": 1},
        {"n_arms": 3, "coupling": "sigma"},
        {"likelihood": "gaussian", "coupling": "aitchison"},
        {"augmentation": "none", "n_state": 1},
        {"decoder": "linear", "usage_target": "uniform"},
    ],
)
def test_variants_train(easy_sim, kwargs):
    adata = _setup(easy_sim)
    model = CplMixVAE(adata, n_categories=4, **kwargs)
    model.train(**QUICK)
    assert adata.obsm["X_cpl_state"].shape == (adata.n_obs, kwargs.get("n_state", 2))
    assert model.get_arm_labels().shape == (kwargs.get("n_arms", 2), adata.n_obs)
    assert np.isfinite(model.history["reconstruction_loss_train"].to_numpy(dtype=float)).all()


def test_dense_layer_and_batch_key(easy_sim):
    adata = easy_sim
    adata.layers["counts"] = adata.X.toarray()
    adata.X = sp.csr_matrix(np.log1p(adata.layers["counts"]))  # a typical log-normalised X
    adata.obs["batch"] = np.where(np.arange(adata.n_obs) % 2 == 0, "b1", "b2")
    _setup(adata, layer="counts", batch_key="batch")
    model = CplMixVAE(adata, n_categories=4)
    assert model.module.n_batch == 2
    model.train(**QUICK, init="random")
    assert adata.obs["cpl_type"].notna().all()


def test_annotate_new_data_with_key_added(easy_sim):
    adata = _setup(easy_sim)
    model = CplMixVAE(adata, n_categories=4)
    model.train(**QUICK, annotate=False)
    assert "cpl_type" not in adata.obs
    other = easy_sim[:50].copy()
    model.annotate(other, key_added="mine")
    assert other.obs["mine_type"].shape == (50,)
    assert other.obsm["X_mine_state"].shape == (50, 2)


def test_clear_errors(easy_sim):
    adata = easy_sim
    with pytest.raises(ValueError, match="view"):
        CplMixVAE.setup_anndata(adata[:10])
    bad = adata.copy()
    bad.X = bad.X.toarray() * 0.5
    CplMixVAE.setup_anndata(bad)  # non-integer values: only the NB likelihood refuses them
    with pytest.raises(ValueError, match=r"non-integer.*likelihood='gaussian'"):
        CplMixVAE(bad, n_categories=4)
    CplMixVAE(bad, n_categories=4, likelihood="gaussian")
    bad.X = -np.ones(bad.shape, dtype=np.float32)
    with pytest.raises(ValueError, match="negative"):
        CplMixVAE.setup_anndata(bad)
    bad.X = np.full(bad.shape, np.nan, dtype=np.float32)
    with pytest.raises(ValueError, match="NaN"):
        CplMixVAE.setup_anndata(bad)
    with pytest.raises(KeyError, match=r"not in adata\.layers"):
        CplMixVAE.setup_anndata(adata, layer="missing")
    with pytest.raises(KeyError, match="batch_key"):
        CplMixVAE.setup_anndata(adata, batch_key="missing")
    _setup(adata)
    with pytest.raises(ValueError, match="at least 2"):
        CplMixVAE(adata, n_categories=1)
    with pytest.raises(ValueError, match="n_arms"):
        CplMixVAE(adata, n_arms=0)
    with pytest.raises(ValueError, match="likelihood"):
        CplMixVAE(adata, likelihood="poisson")
    with pytest.raises(ValueError, match="usage_target"):
        CplMixVAE(adata, usage_target="equal")
    with pytest.raises(ValueError, match="decoder"):
        CplMixVAE(adata, decoder="conv")
    with pytest.raises(ValueError, match="fewer categories than cells"):
        CplMixVAE(adata, n_categories=adata.n_obs + 1)
    model = CplMixVAE(adata, n_categories=4)
    with pytest.raises(ValueError, match="batch_size"):
        model.train(max_epochs=1, batch_size=10_000)
    with pytest.raises(ValueError, match="init"):
        model.train(max_epochs=1, init="gmm")


@pytest.mark.slow
def test_recovers_types_and_state_on_simulated_data():
    """The point of the package: types and the type-dependent state come back."""
    scvi.settings.seed = 0
    adata = cplmix_sc.datasets.synthetic(
        n_cells=1000, n_genes=200, n_types=4, n_markers=15, n_activity=30, n_housekeeping=20,
        marker_effect=2.5, state_effect=3.0, seed=1,
    )
    _setup(adata)
    model = CplMixVAE(adata, n_categories=4)
    model.train(max_epochs=60, batch_size=128, enable_progress_bar=False)
    scores = cplmix_sc.metrics.clustering_scores(adata.obs["type"], adata.obs["cpl_type"])
    assert scores["ari"] >= 0.9, scores
    rho = cplmix_sc.metrics.state_recovery(
        adata.obs["state"], adata.obsm["X_cpl_state"], adata.obs["type"]
    )
    responsive = adata.uns["simulation"]["responsive_types"]
    assert min(rho[t] for t in responsive) >= 0.8, rho
    unresponsive = set(rho) - set(responsive)
    assert unresponsive and max(rho[t] for t in unresponsive) < 0.3, rho


@pytest.mark.slow
def test_coupling_warmup_schedule_reaches_the_loss_and_resets(easy_sim):
    from lightning.pytorch.callbacks import Callback

    from cplmix_sc.train import CouplingWarmup

    assert [CouplingWarmup(8, 0.5).scale(e) for e in range(8)] == [0, 0, 0.3, 0.3, 1, 1, 1, 1]
    assert {CouplingWarmup(8, 0.0).scale(e) for e in range(8)} == {1.0}

    seen = []

    class Spy(Callback):  # runs after the warm-up callback: records what each epoch trains with
        def on_train_epoch_end(self, trainer, pl_module):
            seen.append((pl_module.module.phase, pl_module.module.coupling_scale))

    scvi.settings.seed = 0
    CplMixVAE.setup_anndata(easy_sim)
    model = CplMixVAE(easy_sim, n_categories=4)
    model.train(**{**QUICK, "max_epochs": 8, "warmup_epochs": 1}, callbacks=[Spy()])
    assert seen == [("warmup", 1.0)] + [("mixture", s) for s in (0, 0, 0.3, 0.3, 1, 1, 1, 1)]
    assert model.module.coupling_scale == 1.0  # saved models use full coupling
    seen.clear()  # a second train() (as prune()'s fine-tuning) keeps full coupling throughout
    model.train(**{**QUICK, "max_epochs": 4}, callbacks=[Spy()])
    assert seen == [("mixture", 1.0)] * 4
    with pytest.raises(ValueError, match="coupling_warmup"):
        model.train(**QUICK, coupling_warmup=1.5)



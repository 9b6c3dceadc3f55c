"""Consensus between arms and pruning of categories."""

import numpy as np
import pytest
import scvi
from conftest import QUICK

import cplmix_sc
from cplmix_sc import CplMixVAE


def test_category_consensus_definition():
    arms = np.array([
        [0, 0, 0, 1, 1, 2, 2, 2],
        [0, 0, 1, 1, 1, 2, 2, 0],
    ])
    df = cplmix_sc.tl.category_consensus_from_labels(arms, n_categories=4)
    # category 0: arm0 {0,1,2}, arm1 {0,1,7} -> 2 / 4; category 1: {3,4} vs {2,3,4} -> 2 / 3
    np.testing.assert_allclose(df["consensus"], [0.5, 2 / 3, 2 / 3, 0.0])
    assert df.loc[3, "n_cells"] == 0 and df["n_cells"].sum() == 8
    three = cplmix_sc.tl.category_consensus_from_labels(np.vstack([arms, arms[0]]), 4)
    # pairs (0,1), (0,2), (1,2): category 0 -> (0.5 + 1 + 0.5) / 3
    assert three.loc[0, "consensus"] == pytest.approx(2 / 3)
    one = cplmix_sc.tl.category_consensus_from_labels(arms[:1], 4)
    assert one["consensus"].tolist() == [1.0, 1.0, 1.0, 0.0]
    active = cplmix_sc.tl.category_consensus_from_labels(arms, 4, active=[1, 1, 0, 0])
    assert active.index.tolist() == [0, 1]


@pytest.fixture
def trained6(easy_sim, tmp_path):
    scvi.settings.seed = 0
    CplMixVAE.setup_anndata(easy_sim)
    model = CplMixVAE(easy_sim, n_categories=6)
    model.train(**QUICK)
    return model, easy_sim


def test_prune_masks_categories_keeps_labels_and_saves(trained6, tmp_path):
    model, adata = trained6
    before = adata.obs["cpl_type"].astype(str).to_numpy()
    hist = model.prune(min_consensus=1.0, n_prune=2, max_rounds=1, fine_tune_epochs=1,
                       batch_size=128, enable_progress_bar=False)
    assert list(hist.columns[:6]) == [
        "round", "n_categories", "mean_consensus", "min_consensus", "log_ratio",
        "reconstruction",
    ]
    removed = sorted(c for r in hist["removed"] for c in r)
    assert removed and len(model.active_categories) == 6 - len(removed)
    assert set(model.active_categories).isdisjoint(removed)
    assert hist.loc[0, "n_categories"] == 6
    assert np.isfinite(hist["reconstruction"]).all()
    probs = model.get_type_probabilities()
    assert probs.shape == (adata.n_obs, 6)
    assert (probs[:, removed] == 0).all()
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    pred = model.predict()
    assert set(np.unique(pred)) <= set(model.active_categories)
    # labels are not renumbered: cells of surviving categories mostly keep their label
    after = adata.obs["cpl_type"].astype(str).to_numpy()
    kept = np.isin(before.astype(int), model.active_categories)
    assert (after[kept] == before[kept]).mean() > 0.5
    assert adata.uns["cpl"]["active_categories"] == model.active_categories.tolist()
    # training again after pruning keeps the mask; save/load keeps it too
    model.train(max_epochs=1, batch_size=128, enable_progress_bar=False)
    assert set(np.unique(model.predict())) <= set(model.active_categories)
    model.save(tmp_path / "m", overwrite=True)
    loaded = CplMixVAE.load(tmp_path / "m", adata=adata)
    np.testing.assert_array_equal(loaded.active_categories, model.active_categories)
    np.testing.assert_array_equal(loaded.predict(), model.predict())
    assert loaded.prune_history_ is not None and len(loaded.prune_history_) == len(hist)


def test_prune_stops_when_consensus_reached(trained6):
    model, _ = trained6
    hist = model.prune(min_consensus=0.0, fine_tune_epochs=1, batch_size=128,
                       enable_progress_bar=False)
    assert len(hist) == 1  # nothing below 0: only unused categories can go
    assert all(c not in model.active_categories for c in hist.loc[0, "removed"])


def test_prune_errors(easy_sim):
    CplMixVAE.setup_anndata(easy_sim)
    model = CplMixVAE(easy_sim, n_categories=4)
    with pytest.raises(ValueError, match="Train the model"):
        model.prune()
    model.train(**QUICK)
    with pytest.raises(ValueError, match="min_consensus"):
        model.prune(min_consensus=2)
    one = CplMixVAE(easy_sim, n_categories=4, n_arms=1)
    one.train(**QUICK)
    with pytest.raises(ValueError, match="two arms"):
        one.prune()

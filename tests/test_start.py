"""The start package: given labels (init_labels), the schedule of defaults."""

import numpy as np
import pandas as pd
import pytest
import scvi

import cplmix_sc
from cplmix_sc import CplMixVAE
from cplmix_sc.start import NO_LABEL, start_labels_from

QUICK = {"max_epochs": 3, "warmup_epochs": 2, "batch_size": 128, "enable_progress_bar": False}


def test_start_labels_from_every_form():
    obs = pd.DataFrame({"lab": pd.Categorical(["b", "a", None, "b"], categories=["b", "a", "z"])},
                       index=[f"c{i}" for i in range(4)])
    codes, names = start_labels_from("lab", obs, 3)
    np.testing.assert_array_equal(codes, [0, 1, NO_LABEL, 0])  # categorical order, unused out
    assert list(names) == ["b", "a"]
    codes, names = start_labels_from(["y", "x", np.nan, "y"], obs, 2)
    np.testing.assert_array_equal(codes, [1, 0, NO_LABEL, 1])  # sorted
    shuffled = pd.Series(["x", "y", "y", None], index=["c1", "c0", "c3", "c2"])
    codes, _ = start_labels_from(shuffled, obs, 2)
    np.testing.assert_array_equal(codes, [1, 0, NO_LABEL, 1])  # aligned to obs_names
    with pytest.raises(ValueError, match="one label per cell \\(4\\)"):
        start_labels_from([1, 2, 3], obs, 3)
    with pytest.raises(ValueError, match="2 distinct labels but the model has n_categories=1"):
        start_labels_from("lab", obs, 1)
    with pytest.raises(ValueError, match=r"'leiden' is not a column of adata\.obs.*`init=`"):
        start_labels_from("leiden", obs, 3)
    with pytest.raises(ValueError, match=r"indexed by adata\.obs_names"):
        start_labels_from(pd.Series(["a"] * 4, index=list("wxyz")), obs, 3)
    with pytest.raises(ValueError, match="all missing"):
        start_labels_from([None] * 4, obs, 3)


def test_init_labels_start_keeps_the_true_types_and_ignores_unlabelled(easy_sim):
    """From the true types (a third of the cells unlabelled), the warm-up teaches exactly the
    given categories and the model ends on them; the labels travel through a resume."""
    scvi.settings.seed = 0
    adata = easy_sim
    truth = adata.obs["type"].astype(str).to_numpy()
    partial = pd.Series(truth, index=adata.obs_names).where(np.arange(adata.n_obs) % 3 != 0)
    adata.obs["given"] = partial
    before = adata.obs.copy()
    CplMixVAE.setup_anndata(adata)
    model = CplMixVAE(adata, n_categories=6)
    model.train(**{**QUICK, "max_epochs": 12, "warmup_epochs": 4}, init_labels="given")
    assert list(model.init_label_names_) == sorted(set(truth))
    m = model.module
    labelled = m.start_point_labels.numpy()
    assert (labelled == NO_LABEL).sum() == (np.arange(adata.n_obs) % 3 == 0).sum()
    assert m.start_partial
    ari = cplmix_sc.metrics.clustering_scores(truth, adata.obs["cpl_type"])["ari"]
    assert ari > 0.9
    pd.testing.assert_frame_equal(adata.obs[before.columns], before)
    with pytest.raises(ValueError, match="already trained"):
        model.train(**QUICK, init_labels="given")
    with pytest.raises(ValueError, match="init='random' has no warm-up"):
        CplMixVAE(adata, n_categories=6).train(**QUICK, init="random", init_labels="given")
    with pytest.raises(ValueError, match="7 distinct labels but the model has n_categories=6"):
        CplMixVAE(adata, n_categories=6).train(**QUICK, init_labels=np.arange(adata.n_obs) % 7)


def test_warmup_ce_ignores_cells_without_a_label():
    """The warm-up's cross-entropy averages over labelled cells only, and is 0 without any."""
    import torch

    m = cplmix_sc.module.CplMixVAEModule(n_input=5, n_categories=3)
    m.start_partial = True
    log_p = torch.log_softmax(torch.randn(2, 4, 3), -1)
    target = torch.tensor([0, -100, 2, -100]).expand(2, -1)
    want = -(log_p[:, 0, 0].sum() + log_p[:, 2, 2].sum()) / 4
    torch.testing.assert_close(m._warmup_ce(log_p, target), want)
    assert float(m._warmup_ce(log_p, torch.full((2, 4), -100))) == 0.0


def test_pretrain_epochs_is_a_deprecated_name_for_warmup_epochs(easy_sim):
    CplMixVAE.setup_anndata(easy_sim)
    model = CplMixVAE(easy_sim, n_categories=4)
    with pytest.warns(FutureWarning, match="now called `warmup_epochs`"):
        model.train(max_epochs=2, pretrain_epochs=1, batch_size=128, enable_progress_bar=False,
                    annotate=False)

"""The defaults that depend on the number of categories (cplmix_sc.model._defaults)."""

import numpy as np
import pytest
import scvi
from conftest import QUICK
from sklearn.cluster import KMeans

import cplmix_sc
from cplmix_sc import CplMixVAE
from cplmix_sc.metrics import clustering_scores
from cplmix_sc.model._defaults import MANY_TYPES, resolve_coupling, resolve_init
from cplmix_sc.start import log_pca


@pytest.fixture(scope="module")
def hierarchy():
    """24 types in a class > subclass > type hierarchy, 10x-like (a tuning seed)."""
    adata = cplmix_sc.datasets.synthetic_hierarchy(1, n_types=24, n_cells=1200, n_genes=500)
    CplMixVAE.setup_anndata(adata)
    return adata


def test_resolution_switches_at_many_types():
    assert MANY_TYPES == 24
    kwargs = {}
    assert resolve_coupling("auto", 23, kwargs) == "aitchison" and kwargs == {}
    assert resolve_coupling("auto", 24, kwargs) == "detached"
    assert kwargs == {"warmup_coupling": False, "start_weight": 10.0}
    given = {"start_weight": 0.0}
    assert resolve_coupling("sigma", 100, given) == "sigma"  # explicit values win
    assert given == {"start_weight": 0.0, "warmup_coupling": False}
    assert resolve_init("auto", 23) == "leiden" and resolve_init("auto", 24) == "divisive"
    assert resolve_init("kmeans", 100) == "kmeans"


def test_model_resolves_auto_and_keeps_it_through_save_and_load(hierarchy, tmp_path):
    few = CplMixVAE(hierarchy, n_categories=10).module
    assert (few.coupling, few.warmup_coupling, few.start_weight) == ("aitchison", True, 0.0)
    model = CplMixVAE(hierarchy, n_categories=24)
    m = model.module
    assert (m.coupling, m.warmup_coupling, m.start_weight) == ("detached", False, 10.0)
    own = CplMixVAE(hierarchy, n_categories=24, coupling="aitchison", start_weight=0.0).module
    assert (own.coupling, own.start_weight) == ("aitchison", 0.0)
    scvi.settings.seed = 0
    model.train(annotate=False, **QUICK)
    assert model.init_ == "divisive"
    model.save(tmp_path / "m")
    loaded = CplMixVAE.load(tmp_path / "m", adata=hierarchy).module
    assert (loaded.coupling, loaded.warmup_coupling, loaded.start_weight) == (
        "detached", False, 10.0)
    labelled = CplMixVAE(hierarchy, n_categories=24)
    labelled.train(init_labels="type", annotate=False, **QUICK)
    assert labelled.init_ == "labels"


@pytest.mark.slow
def test_defaults_keep_24_sister_types_and_beat_kmeans(hierarchy):
    """The default train() with as many categories as true types uses at least 75% of them
    and is more accurate than k-means at the same K (issue 17's criteria, on a small draw)."""
    scvi.settings.seed = 0
    adata = hierarchy.copy()
    CplMixVAE.setup_anndata(adata)
    model = CplMixVAE(adata, n_categories=24)
    model.train(enable_progress_bar=False)
    labels = adata.obs["cpl_type"].to_numpy()
    used = (np.unique(labels, return_counts=True)[1] >= 10).sum()
    truth = adata.obs["type"].to_numpy()
    ours = clustering_scores(truth, labels)["ari"]
    km = KMeans(24, n_init=10, random_state=0).fit_predict(log_pca(adata.X, 30, 0)[2])
    assert used >= 18
    assert ours > clustering_scores(truth, km)["ari"] + 0.1

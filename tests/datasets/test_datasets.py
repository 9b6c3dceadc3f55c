import numpy as np
import pytest
import scipy.sparse as sp

import cplmix_sc


def test_zeisel2015_is_the_published_data():
    adata = cplmix_sc.datasets.zeisel2015()
    assert adata.shape == (3005, 4000)
    x = adata.X.data if sp.issparse(adata.X) else adata.X
    assert np.array_equal(x, np.round(x)) and x.min() >= 0
    assert adata.obs["level1"].nunique() == 7
    assert adata.obs["level2"].nunique() == 47
    assert adata.obs["level2"].isna().sum() == 189
    assert "(none)" not in set(adata.obs["level2"].dropna())
    # a fresh object each call
    adata.obs["x"] = 1
    assert "x" not in cplmix_sc.datasets.zeisel2015().obs


def test_synthetic_ground_truth_and_roles():
    a = cplmix_sc.datasets.synthetic(n_cells=300, n_genes=300, n_types=5, seed=3)
    assert a.shape == (300, 300)
    assert set(a.var["role"]) == {"marker", "activity", "housekeeping", "background"}
    assert a.obs["type"].nunique() == 5
    assert a.obs["state"].between(-1, 1).all()
    slopes = a.varm["slopes"]  # genes x types
    responsive = [int(t[1:]) for t in a.uns["simulation"]["responsive_types"]]
    unresponsive = sorted(set(range(5)) - set(responsive))
    assert unresponsive, "some types must be unresponsive"
    assert np.all(slopes[:, unresponsive] == 0)
    act = (a.var["role"] == "activity").to_numpy()
    assert np.all(np.abs(slopes[act][:, responsive]).sum(0) > 0)
    assert np.all(slopes[(a.var["role"] == "marker").to_numpy()] == 0)
    # type-dependent: different responsive types move the activity genes differently
    assert not np.allclose(slopes[act, responsive[0]], slopes[act, responsive[1]])
    b = cplmix_sc.datasets.synthetic(n_cells=300, n_genes=300, n_types=5, seed=3)
    assert (a.X != b.X).nnz == 0


def test_synthetic_state_moves_activity_genes_in_responsive_types():
    a = cplmix_sc.datasets.synthetic(n_cells=2000, n_genes=300, n_types=4, seed=0)
    x = np.log1p(a.X.toarray())
    act = (a.var["role"] == "activity").to_numpy()
    t = a.uns["simulation"]["responsive_types"][0]
    m = (a.obs["type"] == t).to_numpy()
    s = a.obs["state"].to_numpy()[m]
    corr = [np.corrcoef(s, x[m][:, j])[0, 1] for j in np.flatnonzero(act)]
    assert np.nanmax(np.abs(corr)) > 0.5


def test_synthetic_rejects_too_few_genes():
    with pytest.raises(ValueError, match="too small"):
        cplmix_sc.datasets.synthetic(n_genes=50, n_types=10)


def test_synthetic_hierarchy_shapes_and_hierarchy():
    a = cplmix_sc.datasets.synthetic_hierarchy(3, n_types=30, n_cells=900, n_genes=400)
    assert a.shape == (900, 400)
    assert sp.issparse(a.X) and np.issubdtype(a.X.dtype, np.integer) and a.X.min() >= 0
    assert a.obs["type"].nunique() == 30
    assert a.obs["type"].value_counts().min() >= 15
    # every type sits in one subclass, every subclass in one class
    assert (a.obs.groupby("type", observed=True)["subclass"].nunique() == 1).all()
    assert (a.obs.groupby("subclass", observed=True)["class"].nunique() == 1).all()
    assert 2 <= a.obs["class"].nunique() <= a.obs["subclass"].nunique() <= 30
    assert a.obs["state"].between(-1, 1).all()
    resp = set(a.uns["simulation"]["responsive_types"])
    assert 0 < len(resp) < 30
    assert (a.obs["responsive"] == a.obs["type"].isin(resp)).all()
    slopes = a.varm["slopes"]  # genes x types
    unresp = [int(t[1:]) for t in a.obs["type"].cat.categories if t not in resp]
    assert np.all(slopes[:, unresp] == 0)
    assert np.all(np.abs(slopes[:, [int(t[1:]) for t in resp]]).sum(0) > 0)


def test_synthetic_hierarchy_draws_its_structure_and_is_reproducible():
    a = cplmix_sc.datasets.synthetic_hierarchy(5, n_genes=400, max_cells=3000)
    b = cplmix_sc.datasets.synthetic_hierarchy(5, n_genes=400, max_cells=3000)
    assert 24 <= a.uns["simulation"]["n_types"] <= 120
    assert (a.X != b.X).nnz == 0 and a.obs.equals(b.obs)
    c = cplmix_sc.datasets.synthetic_hierarchy(6, n_genes=400, max_cells=3000)
    assert a.shape != c.shape or (a.X != c.X).nnz > 0
    assert a.uns["simulation"] != c.uns["simulation"]


@pytest.mark.parametrize("platform", ["10x", "smartseq"])
def test_synthetic_hierarchy_depth_by_platform(platform):
    a = cplmix_sc.datasets.synthetic_hierarchy(
        0, n_types=24, n_cells=600, n_genes=400, platform=platform
    )
    total = np.median(np.asarray(a.X.sum(1)).ravel())
    if platform == "10x":
        assert 1000 < total < 20000
    else:  # reads: amplified molecules
        assert total > 30000
    with pytest.raises(ValueError, match="platform"):
        cplmix_sc.datasets.synthetic_hierarchy(0, platform="dropseq")

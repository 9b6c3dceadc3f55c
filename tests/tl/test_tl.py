"""Traversals, state genes and markers on a simulator with known truth, and their plots."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import scvi

import cplmix_sc
from cplmix_sc import CplMixVAE


@pytest.fixture(scope="module")
def trained():
    """Four types (three respond to the state), recovered exactly by the model (ARI 1)."""
    scvi.settings.seed = 0
    adata = cplmix_sc.datasets.synthetic(
        n_cells=1000, n_genes=200, n_types=4, n_markers=15, n_activity=30, n_housekeeping=20,
        marker_effect=2.5, state_effect=3.0, seed=1,
    )
    CplMixVAE.setup_anndata(adata)
    model = CplMixVAE(adata, n_categories=4)
    model.train(max_epochs=60, batch_size=128, enable_progress_bar=False)
    # learned type -> true type, by majority
    truth = adata.obs.groupby("cpl_type", observed=True)["type"].agg(
        lambda s: s.value_counts().index[0]
    )
    return model, adata, truth.to_dict()


def test_state_genes_are_the_true_activity_genes(trained):
    model, adata, truth = trained
    role = adata.var["role"]
    responsive = set(adata.uns["simulation"]["responsive_types"])
    genes = cplmix_sc.tl.state_genes(model, min_score=0)
    assert list(genes.columns[:3]) == ["cell_type", "gene", "score"]
    n_state_genes = {}
    for t, df in genes.groupby("cell_type", observed=True):
        assert (np.diff(df["score"].to_numpy()) <= 0).all()  # ranked
        assert df["rank"].tolist() == list(range(1, len(df) + 1))
        top = role[df.head(20)["gene"]].to_numpy()
        n_state_genes[truth[t]] = int((df["score"] >= 1.0).sum())
        if truth[t] in responsive:
            # activity genes carry the state; housekeeping genes have small slopes too
            assert (top == "activity").mean() >= 0.75, (t, top)
            assert np.isin(top, ["activity", "housekeeping"]).all(), (t, top)
    unresponsive = set(truth.values()) - responsive
    assert unresponsive
    for t in unresponsive:
        assert n_state_genes[t] == 0, n_state_genes
    for t in responsive:
        assert n_state_genes[t] >= 20, n_state_genes
    default = cplmix_sc.tl.state_genes(model, n_top=5)
    assert default.groupby("cell_type", observed=True).size().max() <= 5
    assert (default["score"] >= 1.0).all()


def test_traversal_markers_flat_and_profiles_tidy(trained):
    model, adata, truth = trained
    markers = adata.var_names[adata.var["role"] == "marker"][:5].tolist()  # of type T0
    activity = adata.var_names[adata.var["role"] == "activity"][:5].tolist()
    res = cplmix_sc.tl.traversal(model, genes=markers + activity, n_steps=11)
    assert res.expression.shape == (1, 4, 11, 10)
    assert np.all(np.diff(res.state_values[0], axis=1) > 0)
    prof = res.profiles
    assert len(prof) == 4 * 11 * 10
    assert set(prof.columns) == {
        "run", "cell_type", "step", "position", "state_value", "gene", "expression"
    }
    assert prof["position"].min() == 0 and prof["position"].max() == 1
    sc = res.scores.set_index(["cell_type", "gene"])["log2_range"]
    # markers move far less along the state than activity genes of responsive types (the
    # simulator normalises means over genes, so markers are not exactly flat in truth: their
    # mean log2 expression differs by up to 0.56 between cells with s < -0.5 and s > 0.5,
    # against 2-10 for the activity genes shown)
    responsive = {t for t, v in truth.items() if v in adata.uns["simulation"]["responsive_types"]}
    for t in responsive:
        assert sc.loc[t].loc[markers].max() < 1.5
        assert sc.loc[t].loc[activity].max() > 2.0
        assert sc.loc[t].loc[markers].max() < 0.25 * sc.loc[t].loc[activity].max()
    t0 = next(t for t, v in truth.items() if v == "T0")  # markers in their own type
    assert sc.loc[t0].loc[markers].max() < 1.0
    # the sweep covers the cells' state range (5th-95th percentile along the main axis)
    ax = res.axes.set_index("cell_type")
    assert (ax["lo"] < 0).all() and (ax["hi"] > 0).all()
    assert (ax["n_cells"] >= 10).all()


def test_traversal_several_runs_aligns_types_and_signs(trained):
    model, _adata, _ = trained
    res = cplmix_sc.tl.traversal([model, model], n_steps=7)
    assert res.n_runs == 2
    np.testing.assert_allclose(res.expression[0], res.expression[1], rtol=1e-5)
    assert (res.axes.query("run == 1")["category"].astype(str).tolist()
            == res.cell_types)


def test_traversal_errors(trained):
    model, adata, _ = trained
    with pytest.raises(KeyError, match="not in the model's var_names"):
        cplmix_sc.tl.traversal(model, genes=["no_such_gene"])
    with pytest.raises(ValueError, match="n_steps"):
        cplmix_sc.tl.traversal(model, n_steps=1)
    with pytest.raises(ValueError, match="percentiles"):
        cplmix_sc.tl.traversal(model, percentiles=(90, 10))
    with pytest.raises(ValueError, match="min_cells"):
        cplmix_sc.tl.traversal(model, cell_types=["0"], min_cells=10_000)
    with pytest.raises(ValueError, match="arm"):
        cplmix_sc.tl.traversal(model, arm=5)
    untrained = CplMixVAE(adata, n_categories=4)
    with pytest.raises(ValueError, match="not trained"):
        cplmix_sc.tl.traversal(untrained)


def test_marker_genes_recover_simulated_markers(trained):
    model, adata, truth = trained
    mk = cplmix_sc.tl.marker_genes(model, n_top=10)
    assert mk.groupby("cell_type").size().tolist() == [10] * 4
    for t, df in mk.groupby("cell_type"):
        true_idx = int(truth[t][1:])  # "T3" -> 3
        marker_of = adata.var.loc[df["gene"], "marker_of"].to_numpy()
        assert (marker_of == true_idx).all(), (t, df["gene"].tolist())
        assert (df["log2_fc_vs_next"] > 0).all()
    one = cplmix_sc.tl.marker_genes(model, cell_types=["1"], n_top=3)
    assert one["cell_type"].unique().tolist() == ["1"] and len(one) == 3
    with pytest.raises(ValueError, match="available"):
        cplmix_sc.tl.marker_genes(model, cell_types=["99"])


def test_decode_expression_checks_shapes(trained):
    model, _, _ = trained
    out = model.decode_expression(np.zeros((3, 2)), [0, 1, 2])
    assert out.shape == (3, 200)
    np.testing.assert_allclose(out.sum(1), 1e4, rtol=1e-4)  # per 10,000 counts
    with pytest.raises(ValueError, match="shape"):
        model.decode_expression(np.zeros((3, 5)), [0, 1, 2])
    with pytest.raises(ValueError, match="category indices"):
        model.decode_expression(np.zeros((1, 2)), [7])


def test_plots_draw_the_traversal(trained):
    model, adata, _ = trained
    genes = adata.var_names[[0, 1, 60]].tolist()
    res = cplmix_sc.tl.traversal(model, genes=genes, n_steps=9)
    fig = cplmix_sc.pl.traversal(res, genes, show=False)
    assert len(fig.axes) == 3
    assert [ax.get_title() for ax in fig.axes] == genes
    for ax in fig.axes:
        assert len(ax.lines) == 4  # one line per type
        g = genes.index(ax.get_title())
        np.testing.assert_allclose(ax.lines[0].get_ydata(), res.expression[0, 0, :, g])
    fig2 = cplmix_sc.pl.traversal(res, genes[:1], cell_types=["0", "2"], log=True, show=False)
    assert len(fig2.axes[0].lines) == 2
    heat = cplmix_sc.pl.traversal_heatmap(res, genes, order="given", show=False)
    panels = heat.axes[:3]
    for ax, g in zip(panels, genes, strict=True):
        img = ax.get_images()[0].get_array()
        assert img.shape == (9, 4)  # steps x types
        assert np.isclose(np.nanmax(img), 1.0)
        expect = res.expression[0, :, :, genes.index(g)].T
        np.testing.assert_allclose(img, expect / expect.max(), rtol=1e-5)
    assert heat.axes[-1].get_ylabel() == "normalised expression"
    with pytest.raises(KeyError, match="not in the traversal"):
        cplmix_sc.pl.traversal(res, ["nope"], show=False)
    plt.close("all")


def test_state_plot_panels_per_type(trained, tmp_path):
    _model, adata, _ = trained
    gene = adata.var_names[60]
    fig = cplmix_sc.pl.state(adata, color=gene, save=tmp_path / "state.png", show=False)
    panels = [ax for ax in fig.axes if ax.get_title().startswith("type")]
    counts = adata.obs["cpl_type"].value_counts()
    assert len(panels) == 4
    for ax in panels:
        t = ax.get_title().split()[1]
        assert len(ax.collections[0].get_offsets()) == counts[t]
    assert (tmp_path / "state.png").stat().st_size > 0
    with pytest.raises(KeyError, match="annotate"):
        cplmix_sc.pl.state(adata, key_added="other", show=False)
    plt.close("all")


def test_taxonomy_accuracy_and_silhouette():
    rng = np.random.default_rng(0)
    fine = np.repeat(["a1", "a2", "b1", "b2"], 50)
    coarse_map = {"a1": "A", "a2": "A", "b1": "B", "b2": "B"}
    centres = {"a1": [0, 0], "a2": [0, 3], "b1": [20, 0], "b2": [20, 3]}
    x = np.array([centres[f] for f in fine], dtype=float) + rng.normal(0, 0.3, (200, 2))
    # predicted: a1/a2 confused (merged), b1/b2 right
    pred = np.array(["p0" if f.startswith("a") else f for f in fine])
    res = cplmix_sc.metrics.taxonomy_accuracy(fine, pred, coarse_map)
    assert res.loc[0, "accuracy"] == 1.0 and res.loc[0, "n_groups"] == 2
    z, names = cplmix_sc.metrics.reference_tree(x, fine, metric="euclidean")
    levels = cplmix_sc.metrics.taxonomy_accuracy(fine, pred, z, names=names)
    acc = levels.set_index("n_groups")["accuracy"]
    assert acc[4] == 0.75 and acc[2] == 1.0 and acc[1] == 1.0
    assert cplmix_sc.metrics.level_mapping(fine, [coarse_map[f] for f in fine]) == coarse_map
    with pytest.raises(KeyError, match="missing from the taxonomy"):
        cplmix_sc.metrics.taxonomy_accuracy(fine, pred, {"a1": "A"})
    sil = cplmix_sc.metrics.silhouette_by_pcs(
        np.hstack([x, rng.normal(0, 0.1, (200, 3))]),
        {"fine": fine, "coarse": [coarse_map[f] for f in fine], "random": rng.permutation(fine)},
        n_pcs=(2, 5),
    )
    s = sil.set_index(["labeling", "n_pcs"])["silhouette"]
    assert s["fine", 2] > 0.5 and s["random", 2] < 0.05
    per = cplmix_sc.metrics.silhouette_by_pcs(x, {"fine": fine}, n_pcs=(2,), per_label=True)
    assert set(per["label"]) == set(coarse_map) and (per["n_cells"] == 50).all()
    with pytest.raises(ValueError, match="n_pcs"):
        cplmix_sc.metrics.silhouette_by_pcs(x, {"fine": fine}, n_pcs=(5,))
    labels_with_nan = pd.Series(fine, dtype=object)
    labels_with_nan[:10] = None
    out = cplmix_sc.metrics.silhouette_by_pcs(x, {"fine": labels_with_nan}, n_pcs=(2,))
    assert len(out) == 1

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


def test_leiden_start_teaches_each_cell_its_graph_cluster(easy_sim):
    """init="leiden": the start is a per-cell Leiden labelling, looked up exactly."""
    from cplmix_sc.start._graph import leiden_n_clusters

    scvi.settings.seed = 0
    _setup(easy_sim)
    model = CplMixVAE(easy_sim, n_categories=4)
    model._fit_start("leiden", 1.0, None)
    m = model.module
    assert m.start_points.shape[0] == easy_sim.n_obs
    x = torch.as_tensor(easy_sim.X.toarray(), dtype=torch.float32)
    np.testing.assert_array_equal(m.start_labels(x).numpy(), m.start_point_labels.numpy())
    truth = easy_sim.obs["type"].to_numpy()
    assert cplmix_sc.metrics.clustering_scores(truth, m.start_point_labels.numpy())["ari"] > 0.9
    model.train(init="leiden", max_epochs=20, warmup_epochs=3, batch_size=128,
                enable_progress_bar=False)
    scores = cplmix_sc.metrics.clustering_scores(truth, easy_sim.obs["cpl_type"])
    assert scores["ari"] >= 0.9, scores
    labels = leiden_n_clusters(np.random.default_rng(0).normal(size=(60, 3)), k=3, seed=0)
    assert labels.min() >= 0 and labels.max() <= 2


def test_graph_start_joins_the_pieces_of_stretched_types():
    """Three long parallel types: Leiden cuts each into pieces, the merge rejoins them.

    k-means cuts across the types here (ARI ~0); merging the Leiden communities by their
    over-connection recovers the types exactly, and with room for more categories the
    communities are kept as they are.
    """
    from sklearn.cluster import KMeans

    from cplmix_sc.start._graph import _knn_graph, _leiden, graph_start

    rng = np.random.default_rng(0)
    along = rng.uniform(0, 20, size=600)
    types = np.repeat(np.arange(3), 200)
    rep = np.c_[along, 2.0 * types, np.zeros((600, 2))] + rng.normal(0, 0.2, size=(600, 4))
    score = cplmix_sc.metrics.clustering_scores
    assert score(types, KMeans(3, n_init=10, random_state=0).fit_predict(rep))["ari"] < 0.1
    n_communities = _leiden(_knn_graph(rep, 0, 15), 1.0, 0).max() + 1
    assert n_communities >= 9  # each type in at least three pieces
    labels = graph_start(rep, 3, seed=0)
    assert score(types, labels)["ari"] == 1.0
    assert np.array_equal(np.bincount(labels), [200, 200, 200])
    loose = graph_start(rep, 40, seed=0)
    assert loose.max() + 1 == n_communities
    assert all(len(set(types[loose == c])) == 1 for c in range(n_communities))  # all pure


def test_init_resolution_reaches_the_graph_start(easy_sim, monkeypatch):
    """train(init_resolution=...) sets the Leiden resolution of the start, and a lower one
    gives fewer starting categories; it is checked like every other argument."""
    import cplmix_sc.start._fit as mm
    from cplmix_sc.start._graph import graph_start

    seen = []

    def spy(rep, k, seed=0, n_neighbors=15, resolution=1.0):
        labels = graph_start(rep, k, seed=seed, n_neighbors=n_neighbors, resolution=resolution)
        seen.append((resolution, len(np.unique(labels))))
        return labels

    monkeypatch.setattr(mm, "graph_start", spy)
    CplMixVAE.setup_anndata(easy_sim)
    for res in (2.0, 0.05):
        scvi.settings.seed = 0
        CplMixVAE(easy_sim, n_categories=20).train(**QUICK, init_resolution=res, annotate=False)
    (hi, n_hi), (lo, n_lo) = seen
    assert (hi, lo) == (2.0, 0.05)
    assert n_lo < n_hi
    with pytest.raises(ValueError, match=r"`init_resolution` must be in \(0.0, inf\)"):
        CplMixVAE(easy_sim, n_categories=4).train(**QUICK, init_resolution=0)


@pytest.mark.parametrize("state_effect", [3.0, 0.0])
@pytest.mark.parametrize("n_silent", [0, 600])
def test_state_program_genes_finds_the_state_not_the_markers(state_effect, n_silent):
    """The "auto" start finds the genes a state moves within many types (the simulator's
    activity genes), keeps the markers, and finds next to nothing without a state, also when
    most genes are near-silent (z-scores are taken against genes of similar expression)."""
    from cplmix_sc.start import state_program_genes

    adata = cplmix_sc.datasets.synthetic(
        n_cells=1000, n_genes=400, n_types=6, n_markers=15, n_activity=40, n_housekeeping=20,
        marker_effect=1.5, state_effect=state_effect, seed=0,
    )
    silent = np.random.default_rng(0).poisson(0.005, (1000, n_silent)).astype(np.float32)
    x = sp.hstack([adata.X, sp.csr_matrix(silent)], format="csr")
    roles = np.array([*adata.var["role"], *["silent"] * n_silent])
    keep, z, info = state_program_genes(x, seed=0)
    flagged = pd.Series(roles[~keep]).value_counts()
    assert keep.shape == z.shape == (400 + n_silent,)
    assert flagged.get("marker", 0) <= 5  # of 90
    assert flagged.get("silent", 0) <= 0.01 * max(n_silent, 1) + 2
    # (the bounds hold for data seeds 0-2; the test runs seed 0)
    if state_effect:
        assert flagged["activity"] >= 25  # of 40
        # the start's communities join up as the state genes leave (6 types)
        assert info["n_communities"][-1] < info["n_communities"][0]
        assert info["n_communities"][-1] <= 12
    else:
        assert flagged.get("activity", 0) == 0
        assert (~keep).sum() <= 0.03 * (400 + n_silent)  # the z > 3 tail


def test_init_exclude_genes_keeps_state_genes_out_of_the_start(monkeypatch):
    """Leaving the state's genes out of the start's PCA stops the graph start from cutting
    types along the state: fewer starting communities, closer to the types; the left-out
    genes get zero start loadings; every form of the argument is checked."""
    import cplmix_sc
    import cplmix_sc.start._fit as mm
    from cplmix_sc.metrics import clustering_scores
    from cplmix_sc.start._graph import graph_start

    adata = cplmix_sc.datasets.synthetic(
        n_cells=400, n_genes=300, n_types=4, n_markers=15, n_activity=40, n_housekeeping=20,
        marker_effect=1.5, state_effect=3.0, seed=0,
    )
    starts = []

    def spy(rep, k, seed=0, n_neighbors=15, resolution=1.0):
        labels = graph_start(rep, k, seed=seed, n_neighbors=n_neighbors, resolution=resolution)
        starts.append(labels)
        return labels

    monkeypatch.setattr(mm, "graph_start", spy)
    CplMixVAE.setup_anndata(adata)
    state_genes = (adata.var["role"] == "activity").to_numpy()
    adata.var["state_gene"] = state_genes
    models = []
    for exclude in (None, list(adata.var_names[state_genes]), state_genes, "state_gene"):
        scvi.settings.seed = 0
        m = CplMixVAE(adata, n_categories=20)
        m.train(**QUICK, init_exclude_genes=exclude, annotate=False)
        models.append(m)
    full, *without = starts
    for labels in without[1:]:  # names, mask and var column: the same start
        np.testing.assert_array_equal(labels, without[0])
    truth = adata.obs["type"]
    assert len(np.unique(without[0])) < len(np.unique(full))
    assert (clustering_scores(truth, without[0])["ari"]
            > clustering_scores(truth, full)["ari"] + 0.1)
    loadings = models[1].module.start_loadings
    assert torch.count_nonzero(loadings[torch.as_tensor(state_genes)]) == 0
    assert torch.count_nonzero(loadings[torch.as_tensor(~state_genes)]) > 0
    assert torch.count_nonzero(models[0].module.start_loadings[torch.as_tensor(state_genes)])

    model = CplMixVAE(adata, n_categories=4)
    with pytest.warns(UserWarning, match="1 of the 2 genes .* are not in adata.var_names"):
        model.train(**QUICK, annotate=False, init_exclude_genes=["Ieg0", "NotAGene"])
    # a nullable boolean column, a boolean Series (aligned by name) and a set of names
    adata.var["state_nullable"] = adata.var["state_gene"].astype("boolean")
    shuffled = adata.var["state_gene"].sample(frac=1.0, random_state=0)
    object_mask = np.array(state_genes, dtype=object)
    generator = (g for g in adata.var_names[state_genes])
    for exclude in ("state_nullable", shuffled, set(adata.var_names[state_genes]), object_mask,
                    generator):
        scvi.settings.seed = 0
        CplMixVAE(adata, n_categories=20).train(**QUICK, init_exclude_genes=exclude,
                                                annotate=False)
        np.testing.assert_array_equal(starts[-1], without[0])
    cases = [
        (np.arange(3), "must hold gene names or booleans, got numbers"),
        ([True, "Ieg0"], "mixes booleans and gene names"),
        ([0, 1], "must hold gene names or booleans, got numbers"),
        (pd.Series([True] * 299 + [None], index=adata.var_names, dtype="boolean"),
         "must be without missing values"),
        ("Ieg0", r"'Ieg0' is a gene: pass it in a list, \['Ieg0'\]"),
        (["NotAGene"], "None of the 1 genes in `init_exclude_genes` is in adata.var_names"),
        ([], "`init_exclude_genes` is an empty list; pass None"),
        (np.ones(3, dtype=bool), r"one entry per gene \(300\), got shape \(3,\)"),
        ("nope", "'nope' is not a column of adata.var"),
        ("role", r"adata.var\['role'\] must be boolean without missing values"),
        (np.ones(300, dtype=bool), "leaves 0 of 300 genes for the start"),
    ]
    for exclude, message in cases:
        with pytest.raises(ValueError, match=message):
            CplMixVAE(adata, n_categories=4).train(**QUICK, init_exclude_genes=exclude)
    with pytest.raises(ValueError, match="init='random' has none"):
        CplMixVAE(adata, n_categories=4).train(
            **QUICK, init="random", init_exclude_genes=["Ieg0"]
        )
    # the default, "auto": finds state genes, not markers, and a coarser start
    scvi.settings.seed = 0
    auto = CplMixVAE(adata, n_categories=20)
    auto.train(**QUICK, annotate=False)
    found = adata.var.loc[auto.init_excluded_genes_, "role"]
    assert (found == "activity").sum() >= 20 and (found == "marker").sum() <= 2  # of 60
    assert len(np.unique(starts[-1])) < len(np.unique(full))
    assert not models[0].init_excluded_genes_.size  # None: every gene
    # fewer categories than communities: the start merges along the graph, with every gene
    few = CplMixVAE(adata, n_categories=2)
    few.train(**QUICK, annotate=False)
    assert len(np.unique(starts[-1])) == 2 and not few.init_excluded_genes_.size
    # too many genes flagged for one state: every gene, with a warning naming the way out
    import cplmix_sc.start._genes as graph

    monkeypatch.setattr(graph, "STATE_MAX_SHARE", 0.0)
    capped = CplMixVAE(adata, n_categories=20)
    with pytest.warns(UserWarning, match="too many for one program: the start uses every gene"):
        capped.train(**QUICK, annotate=False)
    assert not capped.init_excluded_genes_.size
    random_start = CplMixVAE(adata, n_categories=4)
    random_start.train(**QUICK, init="random", annotate=False)  # "auto" has nothing to do
    assert random_start.init_excluded_genes_ is None


def test_graph_start_leaves_torch_thread_count_alone():
    # numba's OpenMP layer (UMAP connectivities inside sc.pp.neighbors) used to reset PyTorch
    # to all cores, overriding torch.set_num_threads(1) for the rest of the process
    from cplmix_sc.start._graph import graph_start

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rep = np.random.default_rng(0).normal(size=(200, 5)).astype(np.float32)
        graph_start(rep, 3, seed=0)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


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


def test_graph_start_on_one_or_two_cells():
    # found by the property test: scanpy's neighbour graph fails with a single neighbour
    from cplmix_sc.start._graph import graph_start

    rep = np.random.default_rng(0).normal(size=(2, 3)).astype(np.float32)
    assert graph_start(rep, 3, seed=0).tolist() == [0, 1]
    assert graph_start(rep[:1], 3, seed=0).tolist() == [0]

"""Bad input, failures mid-training, resume and the user's data kept safe (docs/robustness.md)."""


import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import scvi
import torch
from lightning.pytorch import Callback

from cplmix_sc import CplMixVAE
from cplmix_sc.train import NonFiniteLossError

#: what setup_anndata adds to an AnnData (scvi-tools' registration); nothing else changes
SCVI_OBS = {"_scvi_batch"}
SCVI_UNS = {"_scvi_uuid", "_scvi_manager_uuid"}
ANNOTATE_OBS = {"cpl_type", "cpl_type_confidence", "cpl_arm_agreement"}
ANNOTATE_OBSM = {"X_cpl_state", "cpl_type_probs"}
TINY = {"max_epochs": 1, "warmup_epochs": 1, "batch_size": 16, "enable_progress_bar": False}


def counts(n_cells=40, n_genes=12, seed=0, sparse=True):
    """A small AnnData of Poisson counts with a layer, obs/obsm columns to watch."""
    rng = np.random.default_rng(seed)
    x = rng.poisson(3.0, (n_cells, n_genes)).astype(np.float32)
    x[:, 0] += 1  # no empty cell
    x[0] += 1  # no empty gene
    adata = ad.AnnData(sp.csr_matrix(x) if sparse else x)
    adata.obs_names = [f"cell{i}" for i in range(n_cells)]
    adata.var_names = [f"gene{i}" for i in range(n_genes)]
    adata.layers["counts"] = x.copy()
    adata.obs["batch"] = pd.Categorical(np.where(np.arange(n_cells) % 2, "b1", "b2"))
    adata.obs["qc"] = rng.normal(size=n_cells)
    adata.obsm["X_pca"] = rng.normal(size=(n_cells, 3))
    return adata


def _array_bytes(x):
    if sp.issparse(x):
        return (x.format, x.dtype.str, x.shape, x.data.tobytes(), x.indices.tobytes(),
                x.indptr.tobytes())
    x = np.asarray(x)
    return ("dense", x.dtype.str, x.shape, x.tobytes())


def fingerprint(adata):
    """Everything of the user's data that must stay byte-identical."""
    return {
        "X": _array_bytes(adata.X),
        "layers": {k: _array_bytes(v) for k, v in adata.layers.items()},
        "obs": adata.obs.copy(),
        "obsm": {k: _array_bytes(v) for k, v in adata.obsm.items()},
        "var": adata.var.copy(),
        "names": (list(adata.obs_names), list(adata.var_names)),
        "uns": set(adata.uns),
    }


def assert_unchanged(adata, before, obs_added=(), obsm_added=(), uns_added=()):
    """The data in ``before`` is intact; only the documented keys were added."""
    assert _array_bytes(adata.X) == before["X"]
    assert set(adata.layers) == set(before["layers"])
    for k, v in before["layers"].items():
        assert _array_bytes(adata.layers[k]) == v, k
    assert set(adata.obs.columns) - set(before["obs"].columns) <= set(obs_added)
    pd.testing.assert_frame_equal(adata.obs[before["obs"].columns], before["obs"])
    assert set(adata.obsm) - set(before["obsm"]) <= set(obsm_added)
    for k, v in before["obsm"].items():
        assert _array_bytes(adata.obsm[k]) == v, k
    pd.testing.assert_frame_equal(adata.var, before["var"])
    assert (list(adata.obs_names), list(adata.var_names)) == before["names"]
    assert set(adata.uns) - before["uns"] <= set(uns_added)


# ------------------------------------------------------------------ bad input, one by one
def _with(**changes):
    def make():
        adata = counts()
        for key, value in changes.items():
            value(adata) if callable(value) else setattr(adata, key, value)
        return adata

    return make


def _set_x(fn):
    def change(adata):
        adata.X = fn(adata.X.toarray())

    return change


def _nan(x):
    x[3, 2] = np.nan
    return x


def _inf_sparse(adata):
    adata.X = adata.X.copy()
    adata.X.data[0] = np.inf


def _empty_cell(x):
    x[5] = 0
    return x


def _empty_gene(x):
    x[:, 4] = 0
    return x


# (what is wrong, how to build it, the call that fails, error type, message pattern)
SETUP_CASES = [
    ("NaN in X", _with(x=_set_x(_nan)), {}, ValueError, r"1 NaN or infinite value"),
    ("inf in sparse X", _with(x=_inf_sparse), {}, ValueError, r"NaN or infinite"),
    ("negative values", _with(x=_set_x(lambda x: x - 1)), {}, ValueError,
     r"negative values \(min -1\).*raw counts"),
    ("string X", _with(x=_set_x(lambda x: x.astype(str))), {}, TypeError,
     r"dtype <U32; it must hold numbers"),
    ("object X", _with(x=_set_x(lambda x: x.astype(object))), {}, TypeError,
     r"dtype object"),
    ("all-zero cell", _with(x=_set_x(_empty_cell)), {}, ValueError,
     r"1 of 40 cells have no counts .*cell5.*sc\.pp\.filter_cells\(adata, min_counts=1\)"),
    ("all-zero gene", _with(x=_set_x(_empty_gene)), {}, ValueError,
     r"1 of 12 genes have no counts .*gene4.*sc\.pp\.filter_genes\(adata, min_counts=1\)"),
    ("missing layer", counts, {"layer": "raw"}, KeyError, r"Layer 'raw' is not in adata\.layers"),
    ("missing batch_key", counts, {"batch_key": "donor"}, KeyError,
     r"batch_key 'donor' is not a column of adata\.obs"),
    ("NaN in batch_key", _with(x=lambda a: a.obs.__setitem__("b", ["x", None] * 20)),
     {"batch_key": "b"}, ValueError, r"adata\.obs\['b'\] has 20 missing value"),
    ("duplicated var_names", _with(var_names=["gene0", "gene1", "gene1", *range(3, 12)]), {},
     ValueError, r"adata\.var_names has 1 duplicated gene name\(s\) \(e\.g\. 'gene1'\).*"
     r"adata\.var_names_make_unique\(\)"),
]


@pytest.mark.parametrize(("what", "make", "kwargs", "error", "match"), SETUP_CASES,
                         ids=[c[0] for c in SETUP_CASES])
def test_setup_refuses_bad_input_and_leaves_data_alone(what, make, kwargs, error, match):
    adata = make()
    before = fingerprint(adata)
    with pytest.raises(error, match=match):
        CplMixVAE.setup_anndata(adata, **kwargs)
    assert_unchanged(adata, before)


def test_setup_refuses_view_accepts_backed(tmp_path):
    adata = counts()
    with pytest.raises(ValueError, match=r"is a view.*adata\[mask\]\.copy\(\)"):
        CplMixVAE.setup_anndata(adata[:10])
    adata.write_h5ad(tmp_path / "a.h5ad")
    backed = ad.read_h5ad(tmp_path / "a.h5ad", backed="r")
    CplMixVAE.setup_anndata(backed)  # backed AnnData are read from the file (test_backed.py)
    assert backed.isbacked and "_scvi_batch" in backed.obs
    backed.file.close()


MODEL_CASES = [
    ({"n_categories": 1}, ValueError, r"`n_categories` must be at least 2, got 1"),
    ({"n_categories": 2.5}, TypeError, r"`n_categories` must be an integer, got 2\.5"),
    ({"n_arms": 0}, ValueError, r"`n_arms` must be at least 1, got 0"),
    ({"n_state": 0}, ValueError, r"`n_state` must be at least 1"),
    ({"temperature": 0}, ValueError, r"`temperature` must be in \(0\.0, inf\)"),
    ({"likelihood": "poisson"}, ValueError, r"`likelihood` must be one of \['nb', 'gaussian'\]"),
    ({"coupling": "l2"}, ValueError, r"`coupling` must be one of"),
    ({"augmentation": "heavy"}, ValueError, r"`augmentation` must be one of"),
    ({"usage_target": "equal"}, ValueError, r"`usage_target` must be one of"),
    ({"decoder": "conv"}, ValueError, r"`decoder` must be one of"),
    ({"n_categories": 41}, ValueError, r"40 cells but n_categories=41; use fewer categories"),
    # the loss weights and the architecture, checked by the module
    ({"coupling_weight": float("nan")}, TypeError, r"`coupling_weight` must be a finite number, "
     r"got nan"),
    ({"coupling_weight": -1.0}, ValueError, r"`coupling_weight` must be in \[0\.0, inf\), got -1"),
    ({"usage_weight": float("nan")}, TypeError, r"`usage_weight` must be a finite number, got nan"),
    ({"usage_weight": -0.5}, ValueError, r"`usage_weight` must be in \[0\.0, inf\), got -0\.5"),
    ({"entropy_weight": float("nan")}, TypeError, r"`entropy_weight` must be a finite number"),
    ({"entropy_weight": float("inf")}, TypeError, r"`entropy_weight` must be a finite number"),
    ({"warmup_weight": -1.0}, ValueError, r"`warmup_weight` must be in \[0\.0, inf\), got -1"),
    ({"n_hidden": 0}, ValueError, r"`n_hidden` must be at least 1, got 0"),
    ({"n_hidden": 8.0}, TypeError, r"`n_hidden` must be an integer, got 8\.0 \(float\)"),
    ({"n_layers": 0}, ValueError, r"`n_layers` must be at least 1, got 0"),
    ({"n_bottleneck": 0}, ValueError, r"`n_bottleneck` must be at least 1, got 0"),
    ({"n_start_pcs": 0}, ValueError, r"`n_start_pcs` must be at least 1, got 0"),
    ({"input_dropout": 1.0}, ValueError, r"`input_dropout` must be in \[0\.0, 1\.0\), got 1\.0"),
    ({"state_dropout": -0.1}, ValueError, r"`state_dropout` must be in \[0\.0, 1\.0\)"),
]


@pytest.mark.parametrize(("kwargs", "error", "match"), MODEL_CASES)
def test_model_refuses_bad_arguments(kwargs, error, match):
    adata = counts()
    before = fingerprint(adata)
    CplMixVAE.setup_anndata(adata)
    with pytest.raises(error, match=match):
        CplMixVAE(adata, **kwargs)
    assert_unchanged(adata, before, obs_added=SCVI_OBS, uns_added=SCVI_UNS)


def test_loss_weights_accepted_at_their_bounds():
    """entropy_weight may be negative (-1 rewards the entropy as Eq. 46); zero weights are fine."""
    adata = counts()
    CplMixVAE.setup_anndata(adata)
    model = CplMixVAE(adata, n_categories=3, entropy_weight=-1, coupling_weight=0,
                      usage_weight=0.0, warmup_weight=0, n_hidden=4, n_layers=1)
    assert model.module.entropy_weight == -1.0 and model.module.coupling_weight == 0.0


KEY_ADDED_CASES = [
    ("a/b", ValueError, r"`key_added` must be a non-empty string without '/'.*got 'a/b'; "
     r"pass e\.g\. key_added='cpl'"),
    ("", ValueError, r"`key_added` must be a non-empty string without '/'.*got ''"),
    (5, TypeError, r"`key_added` must be a string .*got 5 \(int\); pass e\.g\. key_added='cpl'"),
    (None, TypeError, r"`key_added` must be a string .*got None \(NoneType\)"),
]


@pytest.mark.parametrize(("key", "error", "match"), KEY_ADDED_CASES)
def test_check_key_added(key, error, match):
    from cplmix_sc._validation import check_key_added

    with pytest.raises(error, match=match):
        check_key_added(key)
    assert check_key_added("cpl") == "cpl" and check_key_added("run_2.b") == "run_2.b"


def test_non_integer_counts_need_a_counts_layer_or_the_gaussian_likelihood():
    adata = counts()
    adata.X = sp.csr_matrix(np.log1p(adata.layers["counts"]))
    before = fingerprint(adata)
    CplMixVAE.setup_anndata(adata)
    with pytest.raises(ValueError, match=r"non-integer values \(e\.g\. 1\.609\).*layer='counts'"
                       r".*likelihood='gaussian'"):
        CplMixVAE(adata)
    CplMixVAE(adata, n_categories=3, likelihood="gaussian")  # the Gaussian likelihood is fine
    CplMixVAE.setup_anndata(adata, layer="counts")
    CplMixVAE(adata, n_categories=3)  # and so is the counts layer
    assert_unchanged(adata, before, obs_added=SCVI_OBS, uns_added=SCVI_UNS)


def test_one_gene_is_refused():
    adata = counts(n_genes=1)
    CplMixVAE.setup_anndata(adata)
    with pytest.raises(ValueError, match=r"1 gene.*at least 2"):
        CplMixVAE(adata, n_categories=2)


TRAIN_CASES = [
    ({"batch_size": 41}, ValueError, r"batch_size=41 is larger than the 40 training cells"),
    ({"batch_size": 30, "train_size": 0.5}, ValueError, r"larger than the 20 training cells"),
    ({"batch_size": 1}, ValueError, r"`batch_size` must be at least 2"),
    ({"lr": -1.0}, ValueError, r"`lr` must be in \(0\.0, inf\)"),
    ({"train_size": 1.5}, ValueError, r"`train_size` must be in \(0\.0, 1\.0\]"),
    ({"max_epochs": 0}, ValueError, r"`max_epochs` must be at least 1"),
    ({"warmup_epochs": -1}, ValueError, r"`warmup_epochs` must be at least 0"),
    ({"init": "gmm"}, ValueError,
     r"`init` must be one of \['auto', 'divisive', 'kmeans', 'leiden', 'random'\]"),
    ({"checkpoint_every": 0}, ValueError, r"`checkpoint_every` must be at least 1"),
    ({"resume": True}, ValueError, r"resume=True needs the checkpoint_dir"),
    ({"resume": "nowhere"}, FileNotFoundError, r"No checkpoint at 'nowhere/last\.ckpt'"),
]


@pytest.mark.parametrize(("kwargs", "error", "match"), TRAIN_CASES)
def test_train_refuses_bad_arguments(kwargs, error, match, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nowhere").mkdir()
    adata = counts()
    CplMixVAE.setup_anndata(adata)
    model = CplMixVAE(adata, n_categories=3)
    before = fingerprint(adata)
    with pytest.raises(error, match=match):
        model.train(**{**TINY, **kwargs})
    assert_unchanged(adata, before)
    assert not model.is_trained_


def test_last_batch_of_one_cell_is_dropped():
    adata = counts(n_cells=33)  # 33 = 2 * 16 + 1: batch norm cannot train on one cell
    CplMixVAE.setup_anndata(adata)
    CplMixVAE(adata, n_categories=3).train(**TINY)
    assert adata.obs["cpl_type"].notna().all()


# ------------------------------------------------------------------ annotate / load
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    scvi.settings.seed = 0
    adata = counts()
    CplMixVAE.setup_anndata(adata)
    model = CplMixVAE(adata, n_categories=3)
    model.train(**TINY, annotate=False)
    path = tmp_path_factory.mktemp("model") / "m"
    model.save(path)
    return model, path


def _query(**kw):
    return counts(n_cells=10, seed=1, **kw)


def _rename(adata):
    adata.var_names = [f"other{i}" for i in range(adata.n_vars)]
    return adata


def _fewer(adata):
    return adata[:, :8].copy()


def _reorder(adata):
    return adata[:, ::-1].copy()


def _log(adata):
    adata.X = sp.csr_matrix(np.log1p(adata.X.toarray()))
    return adata


def _zero_cell(adata):
    x = adata.X.toarray()
    x[2] = 0
    adata.X = sp.csr_matrix(x)
    return adata


def _neg(adata):
    adata.X = sp.csr_matrix(-adata.X.toarray())
    return adata


QUERY_CASES = [
    ("other genes", _rename, r"has 12 genes, the model 12 \(12 of the model's missing, 12 "
     r"others\)\. The model cannot use data without 12 of its genes"),
    ("fewer genes", _fewer, r"has 8 genes, the model 12 \(4 of the model's missing"),
    ("reordered genes", _reorder,
     r"genes in a different order\. Select and order the model's genes with "
     r"adata = adata\[:, model\.adata\.var_names\]\.copy\(\)"),
    ("non-integer", _log, r"non-integer values .*likelihood='gaussian'"),
    ("all-zero cell", _zero_cell, r"1 of 10 cells have no counts"),
    ("negative", _neg, r"negative values"),
]


@pytest.mark.parametrize(("what", "change", "match"), QUERY_CASES,
                         ids=[c[0] for c in QUERY_CASES])
def test_annotate_refuses_other_genes_and_bad_counts(trained, what, change, match):
    model, _ = trained
    query = change(_query())
    before = fingerprint(query)
    with pytest.raises(ValueError, match=match):
        model.annotate(query)
    with pytest.raises(ValueError, match=match):
        model.predict(query)
    assert_unchanged(query, before)


def test_annotate_refuses_a_view_and_writes_only_documented_keys(trained):
    model, _ = trained
    query = _query()
    with pytest.raises(ValueError, match=r"is a view"):
        model.annotate(query[:5])
    before = fingerprint(query)
    model.annotate(query)
    assert_unchanged(query, before, obs_added=SCVI_OBS | ANNOTATE_OBS,
                     obsm_added=ANNOTATE_OBSM, uns_added=SCVI_UNS | {"cpl"})
    assert set(query.obs.columns) - set(before["obs"].columns) == ANNOTATE_OBS | SCVI_OBS


def test_load_refuses_other_genes(trained):
    _, path = trained
    with pytest.raises(ValueError, match=r"12 of the model's missing"):
        CplMixVAE.load(path, adata=_rename(_query()))
    loaded = CplMixVAE.load(path, adata=_query())
    assert loaded.predict().shape == (10,)


# ------------------------------------------------------------------ data safety end to end
@pytest.mark.parametrize("sparse", [True, False])
def test_setup_train_annotate_keep_the_users_data(sparse):
    adata = counts(sparse=sparse)
    before = fingerprint(adata)
    CplMixVAE.setup_anndata(adata, batch_key="batch")
    assert_unchanged(adata, before, obs_added=SCVI_OBS, uns_added=SCVI_UNS)
    model = CplMixVAE(adata, n_categories=3)
    model.train(**TINY)
    assert_unchanged(adata, before, obs_added=SCVI_OBS | ANNOTATE_OBS,
                     obsm_added=ANNOTATE_OBSM, uns_added=SCVI_UNS | {"cpl"})
    # a failed call afterwards changes nothing either
    after = fingerprint(adata)
    with pytest.raises(ValueError):
        model.train(**{**TINY, "batch_size": 1_000})
    assert_unchanged(adata, after)


# ------------------------------------------------------------------ non-finite losses
class CorruptAt(Callback):
    """Puts a NaN into a weight at the start of a given epoch (a stand-in for a blow-up)."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == self.epoch and batch_idx == 1:
            with torch.no_grad():
                pl_module.module.category_head.weight[0, 0, 0] = float("nan")


def test_non_finite_loss_stops_with_epoch_and_keeps_last_good_weights():
    scvi.settings.seed = 0
    adata = counts()
    CplMixVAE.setup_anndata(adata)
    model = CplMixVAE(adata, n_categories=3)
    before = fingerprint(adata)
    msg = (r"Training stopped in epoch 2 of 3 of the mixture phase \(step \d+\): the loss is "
           r"nan\. Likely cause: parameters were already non-finite \(category_head\.weight\)"
           r".*weights from the end of epoch 1 of this phase were restored")
    with pytest.raises(NonFiniteLossError, match=msg):
        model.train(**{**TINY, "max_epochs": 3, "init": "random"}, callbacks=[CorruptAt(1)])
    for name, value in model.module.state_dict().items():
        assert torch.isfinite(value.float()).all(), name
    assert np.isfinite(model.get_type_probabilities()).all()
    assert model.module.phase == "mixture"
    assert_unchanged(adata, before)


def test_non_finite_gradient_names_the_learning_rate():
    scvi.settings.seed = 0
    adata = counts()
    CplMixVAE.setup_anndata(adata)
    model = CplMixVAE(adata, n_categories=3)

    class InfGrad(Callback):
        def on_after_backward(self, trainer, pl_module):
            pl_module.module.gene_param.grad[0, 0, 0] = float("inf")

    msg = (r"epoch 1 of 1 of the warmup phase.*gradient of gene_param is not finite.*"
           r"learning rate too high for these data \(lr=0\.001; try")
    with pytest.raises(NonFiniteLossError, match=msg):
        model.train(**TINY, callbacks=[InfGrad()])
    assert all(torch.isfinite(p).all() for p in model.module.parameters())


# ------------------------------------------------------------------ checkpoints and resume
class StopAt(Callback):
    """Raises at the start of an epoch of a phase: a run killed mid-way."""

    def __init__(self, phase, epoch):
        self.phase, self.epoch = phase, epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if pl_module.module.phase == self.phase and trainer.current_epoch == self.epoch:
            raise RuntimeError("killed")


RESUME_KW = {"max_epochs": 4, "warmup_epochs": 2, "batch_size": 16, "train_size": 0.9,
             "enable_progress_bar": False}


def _fresh_model():
    scvi.settings.seed = 3
    adata = counts(n_cells=64)
    CplMixVAE.setup_anndata(adata)
    return CplMixVAE(adata, n_categories=3)


@pytest.fixture(scope="module")
def uninterrupted():
    model = _fresh_model()
    model.train(**RESUME_KW)
    return model.get_type_probabilities(), model.module.state_dict()


@pytest.mark.parametrize("stop", [("warmup", 1), ("mixture", 0), ("mixture", 3)])
def test_resume_after_a_kill_gives_the_uninterrupted_result(uninterrupted, stop, tmp_path):
    probs, state = uninterrupted
    model = _fresh_model()
    with pytest.raises(RuntimeError, match="killed"):
        model.train(**RESUME_KW, checkpoint_dir=tmp_path, checkpoint_every=1,
                    callbacks=[StopAt(*stop)])
    assert (tmp_path / "last.ckpt").is_file()
    # a new process: build the model as before; phase, epoch, optimiser and RNG come back
    model = _fresh_model()
    model.train(enable_progress_bar=False, train_size=0.9, batch_size=16,
                checkpoint_dir=tmp_path, resume=True)
    # the same operations in the same order on the CPU: identical up to float rounding
    np.testing.assert_allclose(model.get_type_probabilities(), probs, rtol=0, atol=1e-6)
    for name, value in model.module.state_dict().items():
        torch.testing.assert_close(value, state[name], rtol=0, atol=1e-6, msg=name)


def test_resume_refits_the_start_on_the_same_genes(tmp_path):
    """The graph start is refit on resume: with the genes the interrupted run left out
    (kept in the checkpoint), not all genes, so the result is the uninterrupted one's."""
    model = _fresh_model()
    exclude = list(model.adata.var_names[::2])
    model.train(**RESUME_KW, init_exclude_genes=exclude)
    probs = model.get_type_probabilities()
    model = _fresh_model()
    with pytest.raises(RuntimeError, match="killed"):
        model.train(**RESUME_KW, init_exclude_genes=exclude, checkpoint_dir=tmp_path,
                    checkpoint_every=1, callbacks=[StopAt("warmup", 1)])
    model = _fresh_model()
    model.train(enable_progress_bar=False, train_size=0.9, batch_size=16,
                checkpoint_dir=tmp_path, resume=True)
    assert not model.module.start_loadings[::2].any()
    np.testing.assert_allclose(model.get_type_probabilities(), probs, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_resume_with_the_auto_start_keeps_its_genes(tmp_path):
    """init_exclude_genes="auto" (the default) finds genes to leave out; a resumed run uses
    the same genes (kept in the checkpoint, not searched again), lists them in
    ``init_excluded_genes_`` and ends where the uninterrupted run ends."""
    import cplmix_sc

    def fresh():
        scvi.settings.seed = 3
        adata = cplmix_sc.datasets.synthetic(
            n_cells=600, n_genes=300, n_types=4, n_markers=15, n_activity=40,
            n_housekeeping=20, marker_effect=1.5, state_effect=3.0, seed=0,
        )
        CplMixVAE.setup_anndata(adata)
        return CplMixVAE(adata, n_categories=20)

    kw = {"max_epochs": 3, "warmup_epochs": 2, "batch_size": 64, "enable_progress_bar": False}
    model = fresh()
    model.train(**kw)
    probs, excluded = model.get_type_probabilities(), list(model.init_excluded_genes_)
    assert len(excluded) >= 10
    for stop in (("warmup", 1), ("mixture", 1)):
        ckpt = tmp_path / stop[0]
        model = fresh()
        with pytest.raises(RuntimeError, match="killed"):
            model.train(**kw, checkpoint_dir=ckpt, checkpoint_every=1, callbacks=[StopAt(*stop)])
        model = fresh()
        model.train(enable_progress_bar=False, batch_size=64, checkpoint_dir=ckpt, resume=True)
        assert list(model.init_excluded_genes_) == excluded, stop
        np.testing.assert_allclose(model.get_type_probabilities(), probs, rtol=0, atol=1e-6)


def test_resume_refuses_a_checkpoint_of_another_model(tmp_path):
    model = _fresh_model()
    model.train(**{**RESUME_KW, "max_epochs": 1, "warmup_epochs": 1},
                checkpoint_dir=tmp_path, annotate=False)
    other = CplMixVAE(model.adata, n_categories=4)
    with pytest.raises(ValueError, match=r"other arguments \(n_categories=3 there, 4 here\)"):
        other.train(**TINY, checkpoint_dir=tmp_path, resume=True)
    torch.save({"state_dict": {}}, tmp_path / "other.ckpt")
    with pytest.raises(ValueError, match=r"is not a CplMixVAE checkpoint"):
        other.train(**TINY, resume=tmp_path / "other.ckpt")
    # a finished run resumes to the end at once
    again = _fresh_model()
    again.train(enable_progress_bar=False, batch_size=16, train_size=0.9, resume=tmp_path,
                annotate=False)
    torch.testing.assert_close(again.module.state_dict(), model.module.state_dict())


# ---------------------------------------------------------------- issue: no silent failures
def _checkpointed(tmp_path):
    model = _fresh_model()
    model.train(**{**RESUME_KW, "max_epochs": 1, "warmup_epochs": 1},
                checkpoint_dir=tmp_path, annotate=False)
    return model


@pytest.mark.parametrize("change, what", [
    (lambda a: a.var_names.str.replace("gene", "g"), "genes"),       # other names
    (lambda a: a.var_names[::-1], "genes"),                          # same names, other order
    (lambda a: a.obs_names.str.replace("cell", "c"), "cells"),       # other cells
    (lambda a: a.obs_names[::-1], "cells"),                          # cells in another order
])
def test_resume_refuses_other_genes_or_cells(tmp_path, change, what):
    """Same shapes and arguments, other genes or cells (names or order): refused by name."""
    model = _checkpointed(tmp_path)
    adata = model.adata.copy()
    if what == "genes":
        adata.var_names = change(adata)
    else:
        adata.obs_names = change(adata)
    CplMixVAE.setup_anndata(adata)
    before = fingerprint(adata)
    other = CplMixVAE(adata, n_categories=3)
    with pytest.raises(ValueError, match=rf"written for other {what} .*same {what}, same order"):
        other.train(**TINY, checkpoint_dir=tmp_path, resume=True)
    assert_unchanged(adata, before)


def test_resume_of_a_checkpoint_without_identity_warns(tmp_path):
    """A checkpoint written before identities were stored resumes, with a warning."""
    _checkpointed(tmp_path)
    path = tmp_path / "last.ckpt"
    ckpt = torch.load(path, weights_only=False)
    del ckpt["callbacks"]["CplMixResumableCheckpoint"]["meta"]["data"]
    torch.save(ckpt, path)
    with pytest.warns(UserWarning, match="does not record its genes and cells"):
        _fresh_model().train(enable_progress_bar=False, batch_size=16, train_size=0.9,
                             resume=tmp_path, annotate=False)


@pytest.mark.parametrize("content", [b"", b"garbage", None])
def test_broken_checkpoint_and_model_files_get_our_error(trained, tmp_path, content):
    """A truncated or garbage last.ckpt / model.pt names the file and the fix."""
    model, _ = trained
    saved = tmp_path / "saved"
    model.save(saved)
    ckpt = tmp_path / "last.ckpt"
    good = (saved / "model.pt").read_bytes()
    bad = good[: len(good) // 2] if content is None else content
    ckpt.write_bytes(bad)
    (saved / "model.pt").write_bytes(bad)
    with pytest.raises(ValueError, match=r"last\.ckpt' is not a readable checkpoint"):
        _fresh_model().train(**TINY, resume=ckpt)
    with pytest.raises(ValueError, match=r"model\.pt' is not a readable saved model"):
        CplMixVAE.load(saved, adata=model.adata.copy())


def test_load_from_a_folder_without_a_model(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"No saved model at .*model\.pt.*model\.save"):
        CplMixVAE.load(tmp_path)


def test_save_over_a_save_with_data_leaves_no_stale_data(trained, tmp_path):
    """save(overwrite=True) without data removes the earlier save's adata.h5ad, so that load
    never pairs the new weights with old data."""
    model, _ = trained
    model.save(tmp_path / "m", save_anndata=True)
    assert (tmp_path / "m" / "adata.h5ad").exists()
    model.save(tmp_path / "m", overwrite=True)
    assert not (tmp_path / "m" / "adata.h5ad").exists()
    with pytest.raises(ValueError, match=r"holds no saved AnnData.*load\(dir_path, adata=adata\)"):
        CplMixVAE.load(tmp_path / "m")  # not paired with the earlier save's data


def test_untrained_model_refuses_inference():
    adata = counts()
    CplMixVAE.setup_anndata(adata)
    model = CplMixVAE(adata, n_categories=3)
    before = fingerprint(adata)
    for call in (model.annotate, model.predict, model.get_state, model.get_type_probabilities,
                 model.get_arm_labels, lambda: model.decode_expression(np.zeros((1, 2)), [0])):
        with pytest.raises(ValueError, match=r"not trained: call `model.train\(\)` first"):
            call()
    assert_unchanged(adata, before)


@pytest.fixture(scope="module")
def batch_model(tmp_path_factory):
    scvi.settings.seed = 0
    adata = counts()
    CplMixVAE.setup_anndata(adata, batch_key="batch")
    model = CplMixVAE(adata, n_categories=3)
    model.train(**TINY, annotate=False)
    path = tmp_path_factory.mktemp("batch") / "m"
    model.save(path)
    return model, path


@pytest.mark.parametrize("batches, match", [
    (["b1", "new"], r"batches the model was not trained on: new\. .*closest training batch"),
    (["b1", None], r"5 missing value\(s\); set each cell's batch to one of the training"),
])
def test_query_batches_get_clear_errors(batch_model, batches, match):
    """annotate() and load(dir, adata) on cells of unseen, missing or mistyped batches."""
    model, path = batch_model
    query = _query()
    query.obs["batch"] = (batches * query.n_obs)[: query.n_obs]
    before = fingerprint(query)
    with pytest.raises(ValueError, match=match):
        model.annotate(query)
    assert_unchanged(query, before)
    with pytest.raises(ValueError, match=match):
        CplMixVAE.load(path, adata=query)
    assert_unchanged(query, before)
    query.obs["batch"] = "b2"  # a documented choice: map to a training batch
    model.annotate(query)
    assert query.obs["cpl_type"].notna().all()


@pytest.mark.parametrize("kwargs, error, match", [
    ({"key_added": "a/b"}, ValueError, r"without '/'"),
    ({"key_added": 5}, TypeError, r"`key_added` must be a string"),
    ({"plan_kwargs": {"bogus": 1}}, ValueError, r"`plan_kwargs` has unknown keys \['bogus'\]"),
])
def test_train_checks_keys_and_plan_before_training(kwargs, error, match):
    adata = counts()
    CplMixVAE.setup_anndata(adata)
    model = CplMixVAE(adata, n_categories=3)
    before = fingerprint(adata)
    with pytest.raises(error, match=match):
        model.train(**TINY, **kwargs)
    assert not model.is_trained_
    assert_unchanged(adata, before)


def test_checkpoint_dir_that_is_a_file_is_refused_before_training(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    model = _fresh_model()
    with pytest.raises(ValueError, match=r"checkpoint_dir=.*is a file; pass a folder"):
        model.train(**TINY, checkpoint_dir=path)
    assert not model.is_trained_


def test_annotate_checks_key_added(trained):
    model, _ = trained
    query = _query()
    before = fingerprint(query)
    with pytest.raises(ValueError, match="without '/'"):
        model.annotate(query, key_added="a/b")
    assert_unchanged(query, before)


def test_query_batches_of_another_type_name_the_conversion():
    """Batches 1, 2 (int) against a model trained on "1", "2" (str): convert, not 'unseen'."""
    from cplmix_sc._validation import check_query_batches

    query = _query()
    query.obs["batch"] = np.arange(query.n_obs) % 2 + 1
    with pytest.raises(ValueError, match=r"holds \[1, 2\] \(int\) where the model's batches are "
                       r"1, 2 \(str\); convert them.*astype\(str\)"):
        check_query_batches(query, "batch", ["1", "2"])
    check_query_batches(query, "batch", [1, 2])  # same values, same type: accepted

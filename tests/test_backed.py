"""Backed (on-disk) AnnData: trained and annotated without reading the matrix whole."""

import anndata as ad
import conftest
import h5py
import numpy as np
import pytest
import scipy.sparse as sp
import scvi
from anndata._core.sparse_dataset import BaseCompressedSparseDataset
from scvi.data import AnnTorchDataset

import cplmix_sc
from cplmix_sc import CplMixVAE, _backed
from cplmix_sc.model import _inference

QUICK = {**conftest.QUICK, "batch_size": 64}
N_CELLS = 200


def sim():
    return cplmix_sc.datasets.synthetic(
        n_cells=N_CELLS, n_genes=60, n_types=3, n_markers=5, n_activity=10, n_housekeeping=10,
        marker_effect=2.5, seed=0,
    )


@pytest.fixture(params=["csr", "dense"])
def stored(request, tmp_path):
    """``(in-memory AnnData, path of the same data as h5ad)``, X stored as CSR or dense."""
    adata = sim()
    if request.param == "dense":
        adata.X = adata.X.toarray()
    path = tmp_path / f"{request.param}.h5ad"
    adata.write_h5ad(path)
    return adata, path


def fit(adata, **kwargs):
    CplMixVAE.setup_anndata(adata)
    scvi.settings.seed = 0
    model = CplMixVAE(adata, n_categories=3)
    model.train(**{"init": "kmeans", **QUICK, **kwargs})
    return model


def test_backed_inference_equals_in_memory(stored):
    memory, path = stored
    model = fit(memory, annotate=False)
    backed = ad.read_h5ad(path, backed="r")
    assert backed.isbacked
    probs = model.get_type_probabilities(backed)
    np.testing.assert_array_equal(probs, model.get_type_probabilities(memory))
    np.testing.assert_array_equal(model.get_state(backed), model.get_state(memory))
    model.annotate(backed)  # in-memory obs/obsm/uns of a file opened read-only
    np.testing.assert_array_equal(backed.obsm["cpl_type_probs"], probs.astype(np.float32))
    assert (backed.obs["cpl_type"].astype(int).to_numpy() == probs.argmax(1)).all()
    assert backed.uns["cpl"]["n_types_used"] >= 1


def test_backed_training_matches_in_memory(stored, monkeypatch):
    """The loaders' only difference: scvi-tools reads a backed mini-batch in sorted order."""
    memory, path = stored
    backed = ad.read_h5ad(path, backed="r")
    model = fit(backed)  # "auto": scvi-tools' loaders
    assert model.adata is backed and backed.isbacked
    for key in ("cpl_type", "cpl_type_confidence", "cpl_arm_agreement"):
        assert key in backed.obs
    assert backed.obsm["X_cpl_state"].shape == (N_CELLS, 2)
    probs = model.get_type_probabilities()
    assert model.predict().shape == (N_CELLS,)
    np.testing.assert_array_equal(backed.obs["cpl_type"].astype(int), probs.argmax(1))

    getitem = AnnTorchDataset.__getitem__
    monkeypatch.setattr(  # sort each in-memory mini-batch as scvi-tools does a backed one
        AnnTorchDataset, "__getitem__",
        lambda self, idx: getitem(self, np.sort(idx) if isinstance(idx, list | np.ndarray)
                                  else idx),
    )
    reference = fit(memory, data_on_device=False)
    np.testing.assert_array_equal(probs, reference.get_type_probabilities())
    np.testing.assert_array_equal(model.predict(), reference.predict())


def test_backed_on_device_forced_equals_in_memory(stored):
    memory, path = stored
    backed = ad.read_h5ad(path, backed="r")
    model = fit(backed, data_on_device=True, annotate=False)
    reference = fit(memory, data_on_device=True, annotate=False)
    np.testing.assert_array_equal(
        model.get_type_probabilities(), reference.get_type_probabilities()
    )


def test_backed_matrix_never_read_whole(stored, monkeypatch):
    """Setup, the warm-up start, training and inference read at most LIMIT rows at once."""
    _, path = stored
    # of 200 cells: our blocks are 50 rows, training reads 64 (QUICK batch_size) at a time,
    # scvi-tools' count check the first 100 rows and inference 128 (INFERENCE_BATCH_SIZE,
    # set below the number of cells so that a whole read would show)
    limit = 128
    monkeypatch.setattr(_backed, "BLOCK_ENTRIES", 50 * 60)
    monkeypatch.setattr(_inference, "INFERENCE_BATCH_SIZE", 128)
    reads = []

    def n_rows(idx, n):
        if isinstance(idx, tuple):
            idx = idx[0]
        if isinstance(idx, slice):
            return len(range(*idx.indices(n)))
        return np.asarray(idx).size

    def spy(getitem):
        def read(self, idx):
            if getattr(self, "name", "/X") == "/X":
                rows = n_rows(idx, self.shape[0])
                reads.append(rows)
                if rows > limit:
                    raise AssertionError(f"read {rows} rows of the backed matrix at once")
            return getitem(self, idx)
        return read

    monkeypatch.setattr(BaseCompressedSparseDataset, "__getitem__",
                        spy(BaseCompressedSparseDataset.__getitem__))
    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy(h5py.Dataset.__getitem__))

    def no_to_memory(self, *args, **kwargs):
        raise AssertionError("the backed matrix was loaded whole")

    monkeypatch.setattr(BaseCompressedSparseDataset, "to_memory", no_to_memory)
    backed = ad.read_h5ad(path, backed="r")
    model = fit(backed)
    model.predict()
    assert "cpl_type" in backed.obs
    assert reads and max(reads) <= limit


def test_backed_validation_reads_blocks(tmp_path, monkeypatch):
    """The checks of setup_anndata find bad values in any block of a backed matrix."""
    adata = sim()
    x = adata.X.toarray()
    x[N_CELLS - 1, 5] = 0.5  # in the last block only
    adata.X = sp.csr_matrix(x)
    adata.write_h5ad(tmp_path / "half.h5ad")
    x[N_CELLS - 1, 5] = -1.0
    adata.X = x
    adata.write_h5ad(tmp_path / "negative.h5ad")
    x[N_CELLS - 1] = 0.0
    adata.X = x
    adata.write_h5ad(tmp_path / "empty.h5ad")
    monkeypatch.setattr(_backed, "BLOCK_ENTRIES", 50 * 60)  # 4 blocks of 50 cells
    half = ad.read_h5ad(tmp_path / "half.h5ad", backed="r")
    CplMixVAE.setup_anndata(half)  # non-integer values: refused by the NB model
    with pytest.raises(ValueError, match=r"non-integer values \(e\.g\. 0\.5\)"):
        CplMixVAE(half, n_categories=3)
    negative = ad.read_h5ad(tmp_path / "negative.h5ad", backed="r")
    with pytest.raises(ValueError, match=r"negative values \(min -1\)"):
        CplMixVAE.setup_anndata(negative)
    empty = ad.read_h5ad(tmp_path / "empty.h5ad", backed="r")
    with pytest.raises(ValueError, match=rf"1 of {N_CELLS} cells have no counts.*cell"):
        CplMixVAE.setup_anndata(empty)


def test_backed_csc_refused_with_fix(tmp_path):
    adata = sim()
    adata.X = sp.csc_matrix(adata.X)
    adata.write_h5ad(tmp_path / "csc.h5ad")
    backed = ad.read_h5ad(tmp_path / "csc.h5ad", backed="r")
    with pytest.raises(ValueError, match=r"CSC sparse matrix on disk.*tocsr\(\)"):
        CplMixVAE.setup_anndata(backed)


def test_backed_start_reads_only_the_sampled_cells(stored, monkeypatch):
    """Beyond MAX_START_CELLS the warm-up's start reads the in-memory path's sample only."""
    from cplmix_sc.start import _fit as _cplmixvae

    _, path = stored
    monkeypatch.setattr(_cplmixvae, "MAX_START_CELLS", 120)
    read = []
    read_rows = _cplmixvae.read_rows
    monkeypatch.setattr(_cplmixvae, "read_rows",
                        lambda x, rows=None: read.append(rows) or read_rows(x, rows))
    backed = ad.read_h5ad(path, backed="r")
    CplMixVAE.setup_anndata(backed)
    scvi.settings.seed = 0
    model = CplMixVAE(backed, n_categories=3)
    model._fit_start("kmeans", 1.0, None)
    expected = np.sort(np.random.default_rng(0).choice(N_CELLS, 120, replace=False))
    assert len(read) == 1
    np.testing.assert_array_equal(read[0], expected)
    assert model.module.start_loadings.abs().sum() > 0  # the PCA of the sampled rows

"""The device-resident data path, the lean training plan and the sparse-aware start."""

import conftest
import numpy as np
import pytest
import scipy.sparse as sp
import scvi
import torch
from anndata import AnnData
from scvi import REGISTRY_KEYS
from scvi.dataloaders import DataSplitter

import cplmix_sc.start._pca as pca_mod
from cplmix_sc import CplMixVAE
from cplmix_sc.train import DeviceDataSplitter, DeviceMatrix, NonFiniteLossError
from cplmix_sc.train._callbacks import NonFiniteGuard

QUICK = {**conftest.QUICK, "max_epochs": 2, "batch_size": 64}


def counts(n_cells=203, n_genes=40, density=0.3, seed=0, batches=True):
    rng = np.random.default_rng(seed)
    x = rng.poisson(3.0, (n_cells, n_genes)) * (rng.random((n_cells, n_genes)) < density)
    x[:, 0] += 1  # no empty cell
    x[0] += 1  # no empty gene
    adata = AnnData(sp.csr_matrix(x.astype(np.float32)))
    if batches:
        adata.obs["b"] = np.where(np.arange(n_cells) % 3 == 0, "a", "b")
    return adata


@pytest.mark.parametrize("max_dense_bytes", [0, 2**30])
def test_device_matrix_rows_equal_the_data(max_dense_bytes):
    x = counts().X
    m = DeviceMatrix(x, "cpu", max_dense_bytes=max_dense_bytes)
    assert m.is_sparse == (max_dense_bytes == 0)
    idx = torch.tensor([5, 0, 202, 5, 17])
    np.testing.assert_array_equal(m.rows(idx).numpy(), x[idx.numpy()].toarray())
    dense = DeviceMatrix(x.toarray(), "cpu")
    np.testing.assert_array_equal(dense.rows(idx).numpy(), x[idx.numpy()].toarray())


@pytest.mark.parametrize("sparse", [True, False])
def test_device_loader_same_split_and_every_training_cell_once_per_epoch(sparse):
    adata = counts()
    CplMixVAE.setup_anndata(adata, batch_key="b")
    manager = CplMixVAE(adata, n_categories=3).adata_manager
    scvi.settings.seed = 4
    ours = DeviceDataSplitter(manager, train_size=0.8, batch_size=32,
                              max_dense_bytes=0 if sparse else 2**30)
    ours.setup()
    theirs = DataSplitter(manager, train_size=0.8, batch_size=32)
    theirs.setup()
    np.testing.assert_array_equal(ours.train_idx, theirs.train_idx)
    np.testing.assert_array_equal(ours.val_idx, theirs.val_idx)
    loader = ours.train_dataloader()
    assert ours.on_device and ours.matrix.is_sparse == sparse
    x = adata.X.toarray()
    codes = adata.obs["_scvi_batch"].to_numpy()
    orders = []
    for _ in range(2):
        seen = []
        for batch in loader:
            xb, bb = batch[REGISTRY_KEYS.X_KEY].numpy(), batch[REGISTRY_KEYS.BATCH_KEY]
            assert bb.shape == (xb.shape[0], 1) and bb.dtype == torch.int64
            # identify each row: cell indices are recovered from the unique rows
            rows = [int(np.flatnonzero((x == r).all(1))[0]) for r in xb]
            np.testing.assert_array_equal(bb.numpy().ravel(), codes[rows])
            seen += rows
        assert sorted(seen) == sorted(ours.train_idx.tolist())  # each training cell once
        orders.append(seen)
    assert orders[0] != orders[1]  # reshuffled every epoch
    assert len(loader) == int(np.ceil(len(ours.train_idx) / 32))
    val = [b[REGISTRY_KEYS.X_KEY].shape[0] for b in ours.val_dataloader()]
    assert sum(val) == len(ours.val_idx)


def test_ddp_shards_are_disjoint_and_equal():
    adata = counts()
    CplMixVAE.setup_anndata(adata)
    manager = CplMixVAE(adata, n_categories=3).adata_manager
    dm = DeviceDataSplitter(manager, train_size=1.0, batch_size=16)
    dm.setup()
    dm._prepare()
    shards = []
    for rank in range(2):
        torch.manual_seed(0)  # every rank's generator in the same state
        loader = dm._loader(dm.train_idx, shuffle=True, drop_last=False)
        loader.rank, loader.world_size = rank, 2
        loader.n_local = len(loader.indices) // 2
        shards.append(loader.epoch_order().tolist())
    assert len(shards[0]) == len(shards[1]) == 203 // 2
    assert not set(shards[0]) & set(shards[1])


@pytest.mark.parametrize("on_device", [True, False])
def test_train_on_device_or_with_scvi_loaders(on_device):
    scvi.settings.seed = 0
    adata = counts()
    CplMixVAE.setup_anndata(adata, batch_key="b")
    model = CplMixVAE(adata, n_categories=3)
    model.train(**QUICK, train_size=0.9, data_on_device=on_device, check_val_every_n_epoch=1)
    hist = model.history
    # the same metrics, logged once per epoch, on either path
    assert set(hist) == {
        f"{name}_{mode}" for mode in ("train", "validation")
        for name in ("elbo", "reconstruction_loss", "kl_local", "kl_global", "coupling",
                     "entropy", "usage", "warmup_ce")
    } | {"train_loss", "validation_loss"}
    for key, values in hist.items():
        assert np.isfinite(values.to_numpy(dtype=float)).all(), key
    assert adata.obs["cpl_type"].notna().all()
    assert len(model.validation_indices) == 203 - int(np.ceil(203 * 0.9))


def test_sparse_input_is_never_densified_whole(monkeypatch):
    """The data path and the start's PCA densify at most chunks of rows."""
    adata = counts(n_cells=400, n_genes=50)
    n = adata.n_obs
    shapes = []
    original = sp.csr_matrix.toarray

    def spy(self, *args, **kwargs):
        shapes.append(self.shape)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(sp.csr_matrix, "toarray", spy)
    monkeypatch.setattr(sp.csr_array, "toarray", spy, raising=False)
    monkeypatch.setattr(pca_mod, "MAX_DENSE_ENTRIES", 100 * 50)  # "large": 100 cells' worth
    monkeypatch.setattr(pca_mod, "CHUNK_ENTRIES", 64 * 50)
    scvi.settings.seed = 0
    CplMixVAE.setup_anndata(adata)
    model = CplMixVAE(adata, n_categories=3)
    model.train(**QUICK, datasplitter_kwargs={"max_dense_bytes": 0}, annotate=False)
    assert shapes and max(s[0] for s in shapes) <= 100 < n
    assert torch.count_nonzero(model.module.start_loadings) > 0


def test_deferred_non_finite_check_names_the_step_and_restores_weights():
    from lightning.pytorch import Callback

    class CorruptAt(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.current_epoch == 1 and batch_idx == 1:
                with torch.no_grad():
                    pl_module.module.category_head.weight[0, 0, 0] = float("nan")

    class Snap(Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            if trainer.current_epoch == 0:
                self.state = {k: v.clone() for k, v in pl_module.module.state_dict().items()}

    scvi.settings.seed = 0
    adata = counts()
    CplMixVAE.setup_anndata(adata)
    model = CplMixVAE(adata, n_categories=3)
    snap = Snap()
    # the guard is added by train(); force the device-style (deferred) check on the CPU
    import cplmix_sc.model._training as mm

    original = mm.NonFiniteGuard
    mm.NonFiniteGuard = lambda phase, lr: NonFiniteGuard(phase, lr, check="epoch")
    try:
        with pytest.raises(NonFiniteLossError, match=r"epoch 2 of 3 of the mixture phase.*"
                           r"the loss first became non-finite at step 5.*end of epoch 1"):
            model.train(**{**QUICK, "max_epochs": 3, "init": "random"},
                        callbacks=[snap, CorruptAt()])
    finally:
        mm.NonFiniteGuard = original
    for name, value in model.module.state_dict().items():
        assert torch.equal(value, snap.state[name]), name


DDP_SCRIPT = '''
import json, logging, os, sys, warnings
warnings.filterwarnings("ignore")
import numpy as np, scipy.sparse as sp, scvi
from anndata import AnnData
from cplmix_sc import CplMixVAE
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
if __name__ == "__main__":
    out = sys.argv[1]
    scvi.settings.seed = 0
    rng = np.random.default_rng(0)
    group = np.repeat(np.arange(3), 80)
    rate = np.ones((240, 30))
    rate[np.arange(240)[:, None], group[:, None] * 10 + np.arange(10)] = 8.0  # 3 clear types
    x = rng.poisson(rate).astype(np.float32)
    x[:, 0] += 1
    adata = AnnData(sp.csr_matrix(x))
    CplMixVAE.setup_anndata(adata)
    model = CplMixVAE(adata, n_categories=6)
    ddp = {"accelerator": "cpu", "devices": 2, "strategy": "ddp", "enable_progress_bar": False}
    seen = []
    model.annotate = lambda *a, **k: seen.append(1)  # count the writes of this rank
    model.train(max_epochs=2, warmup_epochs=1, batch_size=32, train_size=0.9,
                check_val_every_n_epoch=1, checkpoint_dir=os.path.join(out, "ckpt"), **ddp)
    hist = model.prune(fine_tune_epochs=1, max_rounds=1, min_consensus=1.0, batch_size=32,
                       **ddp)
    rank = int(os.environ.get("LOCAL_RANK", 0))
    w = model.module.category_head.weight.detach().double()
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump({"annotate_calls": len(seen), "wsum": float(w.sum()), "rounds": len(hist),
                   "active": model.active_categories.tolist(),
                   "elbo_validation": "elbo_validation" in model.history}, f)
'''


@pytest.mark.slow
def test_ddp_two_cpu_processes_train_prune_and_annotate_once(tmp_path):
    import json
    import os
    import subprocess
    import sys

    script = tmp_path / "ddp_run.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PL_DISABLE_FORK": "1"}
    proc = subprocess.run([sys.executable, str(script), str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    # DDP keeps the ranks' weights identical; pruning masked the same categories on both
    assert ranks[0]["wsum"] == pytest.approx(ranks[1]["wsum"], abs=1e-6)
    assert ranks[0]["active"] == ranks[1]["active"] and len(ranks[0]["active"]) < 6
    assert ranks[0]["rounds"] == ranks[1]["rounds"] == 2  # a DDP fine-tune between rounds
    # annotate (train's and prune's) ran on rank 0 only; the checkpoint was written once
    assert [r["annotate_calls"] for r in ranks] == [2, 0]
    assert (tmp_path / "ckpt" / "last.ckpt").is_file()
    assert not list((tmp_path / "ckpt").glob(".*.tmp"))
    assert ranks[0]["elbo_validation"]


def test_a_training_step_reads_nothing_back_from_the_device(monkeypatch):
    """No .item()/.cpu()/bool(tensor) in a step (forward, backward, optimiser step).

    On the CPU such reads cost nothing, so the guard checks every step there; this test uses
    the accelerator setting (``check="epoch"``) to check the path a GPU takes. Reads by
    ``torch.optim`` are of its host-side step counters and are not device syncs.
    """
    import sys

    from lightning.pytorch import Callback

    import cplmix_sc.model._training as mm

    reads = []
    active = {"on": False}

    def spy(name):
        original = getattr(torch.Tensor, name)

        def wrapper(self, *args, **kwargs):
            caller = sys._getframe(1).f_code.co_filename
            if active["on"] and "torch/optim" not in caller:
                reads.append((name, caller, sys._getframe(1).f_lineno))
            return original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, wrapper)

    for name in ("item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__"):
        spy(name)

    class Watch(Callback):
        def on_train_batch_start(self, *args):
            active["on"] = True

        def on_train_batch_end(self, *args):
            active["on"] = False

    monkeypatch.setattr(mm, "NonFiniteGuard",
                        lambda phase, lr: NonFiniteGuard(phase, lr, check="epoch"))
    # a GPU thins with torch.binomial; the CPU's compiled sampler reads its batch on the host
    import cplmix_sc.module._augment as aug

    monkeypatch.setattr(aug, "_thin_cpu", aug._thin_torch)
    # ... and the CPU's input-dropout kernel too: a GPU runs nn.Dropout
    import cplmix_sc.module._dropout as drop

    monkeypatch.setattr(drop, "_kernel", lambda: None)
    # ... and the CPU's fused NB kernel: a GPU runs the torch formula
    import cplmix_sc.module._likelihood as lik

    monkeypatch.setattr(lik, "_kernel", lambda: None)
    scvi.settings.seed = 0
    adata = counts()
    CplMixVAE.setup_anndata(adata, batch_key="b")
    model = CplMixVAE(adata, n_categories=3)
    model.train(**QUICK, callbacks=[Watch()], annotate=False)
    assert reads == []


def _train_watching_the_table(warmup_epochs: int = 2):
    """Train with ``warmup_epochs`` warm-up epochs; keep the start-label table and the first
    mini-batch of the warm-up as the loss saw them."""
    from lightning.pytorch import Callback

    seen = {}

    class Watch(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            module = pl_module.module
            if module.phase != "warmup" or "table" in seen:
                return
            seen["table"] = module.start_cell_labels.clone()
            seen["batch"] = (batch["X"].clone(), batch[REGISTRY_KEYS.INDICES_KEY].clone())

    scvi.settings.seed = 0
    adata = counts(batches=False)
    CplMixVAE.setup_anndata(adata)
    model = CplMixVAE(adata, n_categories=4)
    model.train(**{**QUICK, "warmup_epochs": warmup_epochs}, init="leiden",
                callbacks=[Watch()], annotate=False)
    return seen, model, adata


def test_start_labels_are_looked_up_per_cell_during_training():
    """StartLabelTable: with two epochs pulled towards the start, the table holds the search's
    label of every cell, the loss reads it by the mini-batch's indices, and it is dropped when
    fitting ends (one pulled epoch: no table, the search is as cheap)."""
    seen, model, adata = _train_watching_the_table()
    module = model.module
    assert module.start_cell_labels.numel() == 0  # dropped when fitting ended
    assert "start_cell_labels" not in module.state_dict()  # and never saved
    table = seen["table"]
    assert table.shape == (adata.n_obs,)
    x_all = torch.as_tensor(adata.X.toarray() if sp.issparse(adata.X) else adata.X,
                            dtype=torch.float32)
    # the table is the nearest-reference search, cell by cell
    torch.testing.assert_close(table, module.start_labels(x_all))
    x, idx = seen["batch"]
    module.set_cell_start_labels(table)
    torch.testing.assert_close(module.start_labels(x, idx), module.start_labels(x))
    module.set_cell_start_labels(None)
    seen, _, _ = _train_watching_the_table(warmup_epochs=QUICK["warmup_epochs"])
    assert seen["table"].numel() == 0


def test_start_label_table_of_a_sampled_start(monkeypatch):
    """With more cells than the start is fit on, the sampled cells take their own labels and
    the others a search among their nearest categories' reference cells: with every category
    a candidate that is the full search, with two it agrees on most cells."""
    import cplmix_sc.module._start as start_module
    import cplmix_sc.start._fit as fit

    monkeypatch.setattr(fit, "MAX_START_CELLS", 70)
    seen, model, adata = _train_watching_the_table()
    module = model.module
    assert module.start_points.shape[0] == 70 < adata.n_obs
    x_all = torch.as_tensor(adata.X.toarray() if sp.issparse(adata.X) else adata.X,
                            dtype=torch.float32)
    full = module.start_labels(x_all)
    sample = fit.start_cells(adata.n_obs, 0)
    assert torch.equal(seen["table"][sample], module.start_point_labels)  # their own labels
    assert torch.equal(full[sample], module.start_point_labels)  # = the search's
    assert (seen["table"] == full).float().mean() > 0.9
    monkeypatch.setattr(start_module, "GROUP_CANDIDATES", 4)
    assert torch.equal(module.start_labels_grouped(x_all), full)

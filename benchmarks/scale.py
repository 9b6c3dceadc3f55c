"""Scale: time per epoch and peak memory on simulated sparse data, never densified whole.

    python benchmarks/scale.py                          # 100k and 1M cells x 2,000 genes
    python benchmarks/scale.py --cells 100000 --steps 0 # a full epoch of 100k cells
    python benchmarks/scale.py --cells 2000 --steps 5   # a quick dry run
    python benchmarks/scale.py --cells 200000 --density 0.045 --default-path   # what users run
    python benchmarks/scale.py --cells 200000 --density 0.045 --label-table    # table's search

Each size runs in its own subprocess. The counts are simulated directly as a CSR matrix
(about 5% non-zero, float32 values, int32 indices, types with their own marker genes), so
that the full matrix never exists densely. The script prints the size of the sparse matrix,
the time per training step and per epoch (``--steps N``: the epoch time is projected from N
steps at the same batch size, and says so; ``--steps 0``: a full epoch is run), the time of
the start's PCA (:func:`cplmix_sc.start.log_pca`, sparse-aware), the time of the
start's search for a shared state's genes on the start's sample of at most 20,000 cells
(:func:`cplmix_sc.start.state_program_genes`, ``init_exclude_genes="auto"``), the peak resident
memory of the whole process (``ru_maxrss``, simulation included) and the peak during
training, both also as a multiple of the sparse matrix's size, with the device and the load.
Training uses ``init="random"`` (no k-means over all cells) and ``annotate=False``;
``--default-path`` instead times what a user runs, ``train(max_epochs=1, warmup_epochs=1)``
with every other default (the start and its gene search included, then ``annotate``), in a
fresh process that reads the simulated matrix from an .h5ad (``--in-process``: in the
simulating process, whose peak memory then includes the simulation's).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _worker import run_measurement
from speed import PeakRSS, device_name, load

warnings.filterwarnings("ignore")


def simulate_csr(n_cells: int, n_genes: int, density: float = 0.05, n_types: int = 20,
                 seed: int = 0, chunk: int = 100_000):
    """Sparse counts with ``n_types`` types (each raises its own 50 marker genes)."""
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    types = rng.integers(0, n_types, n_cells)
    markers = rng.integers(0, n_genes, (n_types, 50))
    parts = []
    for start in range(0, n_cells, chunk):
        m = min(chunk, n_cells - start)
        nnz_row = rng.binomial(n_genes, density, m)
        nnz_row[nnz_row == 0] = 1
        rows = np.repeat(np.arange(m, dtype=np.int32), nnz_row)
        cols = rng.integers(0, n_genes, rows.size, dtype=np.int32)
        # 30% of a cell's non-zeros are its type's markers
        is_marker = rng.random(rows.size) < 0.3
        which = rng.integers(0, 50, is_marker.sum())
        cols[is_marker] = markers[types[start + rows[is_marker]], which]
        vals = (1 + rng.poisson(1.0, rows.size)).astype(np.float32)
        block = sp.csr_matrix((vals, (rows, cols)), shape=(m, n_genes), dtype=np.float32)
        block.sum_duplicates()
        parts.append(block)
        del rows, cols, vals
    x = sp.vstack(parts, format="csr", dtype=np.float32)
    x.indices = x.indices.astype(np.int32, copy=False)
    # every gene expressed at least once (setup_anndata refuses empty genes)
    empty = np.flatnonzero(np.asarray((x > 0).sum(0)).ravel() == 0)
    if empty.size:
        fix = (np.ones(empty.size, np.float32), (np.arange(empty.size) % n_cells, empty))
        x = (x + sp.csr_matrix(fix, shape=x.shape, dtype=np.float32)).tocsr()
    return x, types


def csr_bytes(x) -> int:
    return x.data.nbytes + x.indices.nbytes + x.indptr.nbytes


def default_path(args) -> dict:
    """What a user runs: ``train(max_epochs=1, warmup_epochs=1)`` with every other default
    (the start ``init="auto"`` picks for ``--k`` categories, the state-gene search, the default
    mini-batch, warm-up, mixture epoch, ``annotate``), timed whole.

    The matrix is simulated, written to an .h5ad and trained on in a fresh process that
    reads it (as a user's process would): the simulation's own memory, which the allocator
    does not always give back, is then not in the peak. ``--in-process`` trains in the
    simulating process (the figure before the speed issue, simulation included).
    """
    import tempfile

    from anndata import AnnData

    x, _ = simulate_csr(args.cells, args.genes, args.density)
    if args.in_process:
        return train_default_path(args, AnnData(x))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "counts.h5ad")
        AnnData(x).write_h5ad(path)
        del x
        cmd = [sys.executable, __file__, "--worker", "--default-path", "--cells",
               str(args.cells), "--k", str(args.k), "--h5ad", path]
        return run_measurement(cmd, f"{args.cells} cells, default path from {path}")


def train_default_path(args, adata) -> dict:
    """Time and peak memory of the default path on ``adata`` (in this process)."""
    import logging

    import scvi

    import cplmix_sc
    from cplmix_sc.train import default_batch_size

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    scvi.settings.seed = 0
    x = adata.X
    out = {"n_cells": adata.n_obs, "n_genes": adata.n_vars, "nnz": int(x.nnz),
           "sparse_gib": round(csr_bytes(x) / 2**30, 6), "device": device_name(),
           "simulation_in_process": args.h5ad is None}
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        cplmix_sc.CplMixVAE.setup_anndata(adata)
        model = cplmix_sc.CplMixVAE(adata, n_categories=args.k)
        model.train(max_epochs=1, warmup_epochs=1, enable_progress_bar=False)
        out["default_path_s"] = round(time.perf_counter() - t0, 1)
    out.update(peak_gib=round(mem.peak / 2**30, 3),
               max_rss_gib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
               n_types_used=int(adata.uns["cpl"]["n_types_used"]), init=model.init_,
               batch_size=default_batch_size(adata.n_obs), load=load())
    return out


def worker(args) -> dict:
    import logging

    import scvi
    from anndata import AnnData
    from lightning.pytorch import Callback

    import cplmix_sc
    from cplmix_sc.start import log_pca

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    scvi.settings.seed = 0
    t0 = time.perf_counter()
    x, _ = simulate_csr(args.cells, args.genes, args.density)
    out = {"n_cells": args.cells, "n_genes": args.genes, "nnz": int(x.nnz),
           "density": round(x.nnz / (args.cells * args.genes), 4),
           "sparse_gib": round(csr_bytes(x) / 2**30, 6), "device": device_name(),
           "simulate_s": round(time.perf_counter() - t0, 1)}
    adata = AnnData(x)
    cplmix_sc.CplMixVAE.setup_anndata(adata)
    model = cplmix_sc.CplMixVAE(adata, n_categories=args.k)
    with PeakRSS() as mem_pca:
        t0 = time.perf_counter()
        log_pca(x, 30, seed=0)
        out["start_pca_s"] = round(time.perf_counter() - t0, 1)
    out["start_pca_peak_gib"] = round(mem_pca.peak / 2**30, 3)
    from cplmix_sc.start import MAX_START_CELLS, state_program_genes

    rows = np.sort(np.random.default_rng(0).choice(
        args.cells, min(args.cells, MAX_START_CELLS), replace=False))
    with PeakRSS() as mem_state:
        t0 = time.perf_counter()
        keep, _, info = state_program_genes(x[rows], seed=0)
        out["state_genes_s"] = round(time.perf_counter() - t0, 1)
    out.update(state_genes_cells=len(rows), state_genes_left_out=int((~keep).sum()),
               state_genes_rounds=info["n_rounds"],
               state_genes_peak_gib=round(mem_state.peak / 2**30, 3))

    class Clock(Callback):
        def __init__(self):
            self.times = []

        def on_train_batch_start(self, *a):
            self.t = time.perf_counter()

        def on_train_batch_end(self, *a):
            self.times.append(time.perf_counter() - self.t)

    clock = Clock()
    kw = {"limit_train_batches": args.steps} if args.steps else {}
    steps_per_epoch = int(np.ceil(args.cells / args.batch_size))
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        model.train(max_epochs=1, init="random", batch_size=args.batch_size, annotate=False,
                    enable_progress_bar=False, callbacks=[clock],
                    data_on_device=args.data_on_device, **kw)
        wall = time.perf_counter() - t0
    step = float(np.median(clock.times[1:] if len(clock.times) > 1 else clock.times))
    out.update(
        batch_size=args.batch_size,
        steps_run=len(clock.times),
        s_per_step=round(step, 4),
        s_per_epoch=round(step * steps_per_epoch, 1) if args.steps else round(wall, 1),
        epoch_projected=bool(args.steps),
        train_wall_s=round(wall, 1),
        peak_train_gib=round(mem.peak / 2**30, 3),
        max_rss_gib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
        load=load(),
    )
    out["peak_train_x_sparse"] = round(out["peak_train_gib"] / out["sparse_gib"], 2)
    out["max_rss_x_sparse"] = round(out["max_rss_gib"] / out["sparse_gib"], 2)
    return out


def label_table_check(args) -> dict:
    """The start-label table's grouped search against the full search, on the cells outside
    the start's sample (``StartLabelTable``), and the start's own seed spread: the full-search
    labels of every cell from starts of seeds 0 and 1 (adjusted Rand index)."""
    import torch
    from sklearn.metrics import adjusted_rand_score

    from cplmix_sc.module import CplMixVAEModule
    from cplmix_sc.start import fit_start
    from cplmix_sc.start._fit import start_cells

    x, _ = simulate_csr(args.cells, args.genes, args.density)

    def start_module(seed):
        start = fit_start(x, "divisive", args.k, 30, seed, genes="auto")
        module = CplMixVAEModule(x.shape[1], n_categories=args.k)
        module.sparse_input = True
        module.set_start(*(torch.as_tensor(a, dtype=torch.float32) for a in (
            start.mean, start.components.T, start.centers)),
            points=torch.as_tensor(start.points, dtype=torch.float32),
            labels=torch.as_tensor(start.labels))
        return module

    def labels(search):
        return torch.cat([search(torch.as_tensor(x[i:i + 8192].toarray()))
                          for i in range(0, x.shape[0], 8192)]).numpy()

    module = start_module(0)
    full, grouped = labels(module.start_labels), labels(module.start_labels_grouped)
    outside = np.ones(x.shape[0], dtype=bool)
    outside[start_cells(x.shape[0], 0)] = False
    return {"n_cells": x.shape[0], "outside_sample": int(outside.sum()),
            "grouped_equals_full_outside": round(float(
                (grouped[outside] == full[outside]).mean()), 4),
            "ari_grouped_full": round(adjusted_rand_score(full, grouped), 4),
            "ari_seed0_seed1_full": round(adjusted_rand_score(
                full, labels(start_module(1).start_labels)), 4)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cells", default="100000,1000000")
    p.add_argument("--genes", type=int, default=2000)
    p.add_argument("--density", type=float, default=0.05)
    p.add_argument("--k", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--steps", type=int, default=30, help="steps to time (0: a full epoch)")
    p.add_argument("--data-on-device", default="auto", type=lambda s: {"true": True,
                   "false": False}.get(s.lower(), s))
    p.add_argument("--default-path", action="store_true",
                   help="time train(max_epochs=1, warmup_epochs=1) with every other default")
    p.add_argument("--in-process", action="store_true",
                   help="--default-path: train in the simulating process (simulation in the peak)")
    p.add_argument("--label-table", action="store_true",
                   help="check the start-label table's grouped search (one --cells size)")
    p.add_argument("--h5ad", default=None, help=argparse.SUPPRESS)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.label_table:
        args.cells = int(args.cells)
        print(json.dumps(label_table_check(args)), flush=True)
        return
    if args.worker:
        args.cells = int(args.cells)
        if args.h5ad:
            import anndata

            result = train_default_path(args, anndata.read_h5ad(args.h5ad))
        else:
            result = default_path(args) if args.default_path else worker(args)
        print("RESULT " + json.dumps(result), flush=True)
        return
    for n in args.cells.split(","):
        cmd = [sys.executable, __file__, "--worker", "--cells", n, "--genes", str(args.genes),
               "--density", str(args.density), "--k", str(args.k),
               "--batch-size", str(args.batch_size), "--steps", str(args.steps),
               "--data-on-device", str(args.data_on_device)]
        if args.default_path:
            r = run_measurement([*cmd, "--default-path", *["--in-process"] * args.in_process],
                                f"{n} cells, default path")
            where = "simulated in the process" if r["simulation_in_process"] else "read from .h5ad"
            print(f"[{r['device']}] {r['n_cells']:,} cells x {r['n_genes']:,} genes "
                  f"({r['nnz']:,} non-zeros): default path {r['default_path_s']} s, peak RSS "
                  f"{r['peak_gib']} GiB (process max {r['max_rss_gib']} GiB, "
                  f"{where})"
                  f" | {r['load']}", flush=True)
            print("    " + json.dumps(r), flush=True)
            continue
        r = run_measurement(cmd, f"{n} cells")
        epoch = f"{r['s_per_epoch']}s" + (" (projected)" if r["epoch_projected"] else "")
        print(f"[{r['device']}] {r['n_cells']:,} cells x {r['n_genes']:,} genes, "
              f"{r['density']:.1%} non-zero, sparse {r['sparse_gib']} GiB: "
              f"batch {r['batch_size']} s/step={r['s_per_step']} epoch={epoch} "
              f"start PCA {r['start_pca_s']}s; peak RSS training {r['peak_train_gib']} GiB "
              f"({r['peak_train_x_sparse']}x sparse), process max {r['max_rss_gib']} GiB "
              f"({r['max_rss_x_sparse']}x) | {r['load']}", flush=True)
        print("    " + json.dumps(r), flush=True)


if __name__ == "__main__":
    main()

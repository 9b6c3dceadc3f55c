"""Speed of CplMixVAE next to scVI, in one run on the same data.

    python benchmarks/speed.py                          # Zeisel demo + Smart-seq shape
    python benchmarks/speed.py --datasets zeisel --smartseq-epochs 3
    python benchmarks/speed.py --quick                  # tiny sizes (a dry run that must not crash)

For every dataset each model is trained in its own subprocess (so that peak memories are
separate) with its defaults, and the script prints, per model: time per epoch (median over
the epochs after the first), total time of the run (CplMixVAE: warm-up + training + annotate;
scVI: training + latent), the final quality (ARI of the consensus types, or of k-means with K
clusters on scVI's 10-dimensional latent, against the reference labels), the time at which
that final quality was first reached (within 0.02 ARI; evaluation time excluded), the peak
resident memory during training and, on a GPU, the peak GPU memory; then the ratios
CplMixVAE / scVI. Every line carries the device name and the load average.

Datasets:

- ``zeisel``: the demo (``cplmix-sc demo``): Zeisel 2015, 2,000 seurat_v3 genes, K = 47,
  ``level2`` labels, default epochs.
- ``zeisel4k``: the reference code's shape for one step (all 4,000 genes, K = 47, batch 1000):
  time per 1,000-cell step only (the issue's reference: 0.29 s on a 2-core CPU).
- ``smartseq``: simulated data of the paper's Smart-seq shape (22,365 cells x 5,032 genes,
  115 types, K = 115, |s| = 2, 2 arms, batch 1000), ``--smartseq-epochs`` epochs (on a CPU
  use a few; the full default is about 400 epochs of 23 steps); batch 1000 for both models,
  or ``--smartseq-batch`` (0: each model's own default, what users run: CplMixVAE 256,
  scVI 128).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import threading
import time
import warnings

import numpy as np
from _worker import run_measurement

warnings.filterwarnings("ignore")


def device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU ({os.cpu_count()} cores, {os.environ.get('OMP_NUM_THREADS', 'all')} threads)"


def load() -> str:
    return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


class PeakRSS:
    """Peak resident memory of this process while the block runs (sampled every 20 ms)."""

    def __enter__(self):
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(0.02)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())


def make_data(name: str, quick: bool):
    import scanpy as sc

    import cplmix_sc

    if name.startswith("zeisel"):
        adata = cplmix_sc.datasets.zeisel2015()
        if quick:
            adata = adata[:400].copy()
            sc.pp.filter_genes(adata, min_counts=1)
        if name == "zeisel":
            hvg = sc.pp.highly_variable_genes(
                adata, n_top_genes=min(2000, adata.n_vars - 1), flavor="seurat_v3",
                inplace=False,
            )
            adata = adata[:, hvg["highly_variable"].to_numpy()].copy()
        return adata, "level2", 47 if not quick else 8
    # the paper's Smart-seq shape: 22,365 cells x 5,032 genes, 115 types
    n_cells, n_genes, k = (22_365, 5_032, 115) if not quick else (600, 300, 6)
    adata = cplmix_sc.datasets.synthetic(
        n_cells=n_cells, n_genes=n_genes, n_types=k, n_markers=10 if not quick else 5,
        library_size=20_000.0, seed=0,
    )
    adata.X = adata.X.astype(np.float32)
    return adata, "type", k


def ari(labels, pred) -> float:
    from cplmix_sc.metrics import clustering_scores

    return clustering_scores(labels, pred)["ari"]  # cells without a label are ignored


def run_worker(args) -> dict:
    import logging

    import scvi
    import torch
    from lightning.pytorch import Callback
    from sklearn.cluster import KMeans

    import cplmix_sc

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("scvi").setLevel(logging.ERROR)
    scvi.settings.seed = 0
    adata, label_key, k = make_data(args.dataset, args.quick)
    labels = adata.obs[label_key].to_numpy()
    out = {"model": args.worker, "dataset": args.dataset, "n_cells": adata.n_obs,
           "n_genes": adata.n_vars, "K": k, "device": device_name()}
    smartseq = args.dataset == "smartseq"
    batch_size = 1000 if args.dataset == "zeisel4k" else None
    if smartseq:
        batch_size = args.smartseq_batch or None
    if args.quick:
        batch_size = 100 if batch_size else None

    class Clock(Callback):
        """Epoch times and quality against wall time (evaluation time excluded)."""

        def __init__(self, evaluate, every):
            self.evaluate, self.every = evaluate, every
            self.epochs, self.curve, self.eval_s = [], [], 0.0
            self.start = None

        def on_train_epoch_start(self, trainer, pl_module):
            self.t0 = time.perf_counter()
            if self.start is None:
                self.start = self.t0

        def on_train_epoch_end(self, trainer, pl_module):
            t = time.perf_counter()
            self.epochs.append(t - self.t0)
            n = len(self.epochs)
            if self.evaluate is not None and self.every and n % self.every == 0:
                was = pl_module.module.training
                score = self.evaluate()
                pl_module.module.train(was)
                self.curve.append((round(t - self.start - self.eval_s, 2), round(score, 4)))
                self.eval_s += time.perf_counter() - t

    if args.worker == "cplmix":
        cplmix_sc.CplMixVAE.setup_anndata(adata)
        model = cplmix_sc.CplMixVAE(adata, n_categories=k)
        out["params"] = sum(p.numel() for p in model.module.parameters())
        kw = {"enable_progress_bar": False, "data_on_device": args.data_on_device}
        if batch_size:
            kw["batch_size"] = batch_size
        if args.dataset == "zeisel4k":
            kw.update(max_epochs=args.step_epochs, warmup_epochs=0, init="random")
        elif smartseq and args.smartseq_epochs:  # 0: the model's default
            kw.update(max_epochs=args.smartseq_epochs,
                      warmup_epochs=max(1, args.smartseq_epochs // 10))
        elif args.quick:
            kw.update(max_epochs=6, warmup_epochs=1)

        def evaluate():
            return ari(labels, model.predict())

        every = args.eval_every if args.dataset != "zeisel4k" else 0
        clock = Clock(evaluate, every)
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            model.train(callbacks=[clock], annotate=True, **kw)
            total = time.perf_counter() - t0
            if args.prune:
                t1 = time.perf_counter()
                hist = model.prune(enable_progress_bar=False,
                                   **({"batch_size": batch_size} if batch_size else {}),
                                   **({"fine_tune_epochs": 2, "max_rounds": 2}
                                      if args.quick else {}))
                out["prune_seconds"] = round(time.perf_counter() - t1, 2)
                out["prune_rounds"] = len(hist)
        final = ari(labels, adata.obs["cpl_type"].to_numpy())
        steps = int(np.ceil(adata.n_obs / (batch_size or 256)))
    else:
        scvi.model.SCVI.setup_anndata(adata)
        model = scvi.model.SCVI(adata, n_latent=10)
        out["params"] = sum(p.numel() for p in model.module.parameters())
        kw = {"enable_progress_bar": False}
        if batch_size:
            kw["batch_size"] = batch_size
        if args.dataset == "zeisel4k":
            kw["max_epochs"] = args.step_epochs
        elif smartseq and args.smartseq_epochs:
            kw["max_epochs"] = args.smartseq_epochs
        elif args.quick:
            kw["max_epochs"] = 6
        if args.scvi_epochs and args.dataset == "zeisel":
            kw["max_epochs"] = args.scvi_epochs

        def evaluate():
            trained, model.is_trained_ = model.is_trained_, True  # scvi refuses otherwise
            z = model.get_latent_representation()
            model.is_trained_ = trained
            return ari(labels, KMeans(k, n_init=1, random_state=0).fit_predict(z))

        every = args.eval_every if args.dataset != "zeisel4k" else 0
        clock = Clock(evaluate, every)
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            model.train(callbacks=[clock], **kw)
            z = model.get_latent_representation()
            total = time.perf_counter() - t0
        final = ari(labels, KMeans(k, n_init=10, random_state=0).fit_predict(z))
        steps = int(np.ceil(0.9 * adata.n_obs / (batch_size or 128)))
    epochs = clock.epochs
    out["batch_size"] = batch_size or (256 if args.worker == "cplmix" else 128)
    out.update(
        epochs=len(epochs),
        steps_per_epoch=steps,
        s_per_epoch=round(float(np.median(epochs[1:] if len(epochs) > 1 else epochs)), 4),
        s_per_step=round(float(np.median(epochs[1:] if len(epochs) > 1 else epochs)) / steps, 4),
        total_s=round(total - clock.eval_s, 2),
        final_ari=round(final, 4),
        curve=clock.curve,
        peak_rss_gib=round(mem.peak / 2**30, 3),
        max_rss_gib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
        load=load(),
    )
    reach = [t for t, s in clock.curve if s >= final - 0.02]
    out["time_to_final_s"] = reach[0] if reach else out["total_s"]

    if torch.cuda.is_available():
        out["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default="zeisel,zeisel4k,smartseq")
    p.add_argument("--models", default="cplmix,scvi")
    p.add_argument("--smartseq-epochs", type=int, default=3,
                   help="epochs on smartseq (0: each model's default)")
    p.add_argument("--smartseq-batch", type=int, default=1000,
                   help="batch size on smartseq (0: each model's default)")
    p.add_argument("--step-epochs", type=int, default=3, help="epochs for zeisel4k")
    p.add_argument("--scvi-epochs", type=int, default=0,
                   help="scVI epochs on zeisel (default 0: scVI's own default, 400)")
    p.add_argument("--eval-every", type=int, default=10, help="epochs between ARI evaluations")
    p.add_argument("--data-on-device", default="auto", type=lambda s: {"true": True,
                   "false": False}.get(s.lower(), s))
    p.add_argument("--prune", action="store_true", help="also prune CplMixVAE (timed)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a dry run")
    p.add_argument("--json", default=None, help="append every result as a JSON line here")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--dataset", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print("RESULT " + json.dumps(run_worker(args)), flush=True)
        return None
    results = {}
    for ds in args.datasets.split(","):
        for model in args.models.split(","):
            cmd = [sys.executable, __file__, "--worker", model, "--dataset", ds,
                   "--smartseq-epochs", str(args.smartseq_epochs),
                   "--smartseq-batch", str(args.smartseq_batch),
                   "--step-epochs", str(args.step_epochs), "--eval-every", str(args.eval_every),
                   "--scvi-epochs", str(args.scvi_epochs),
                   "--data-on-device", str(args.data_on_device)]
            cmd += ["--quick"] * args.quick + ["--prune"] * (args.prune and model == "cplmix")
            r = run_measurement(cmd, f"{model} on {ds}")
            results[(ds, model)] = r
            if args.json:
                with open(args.json, "a") as f:
                    f.write(json.dumps(r) + "\n")
            curve = " ".join(f"{t}s:{s}" for t, s in r["curve"])
            print(f"[{r['device']}] {ds:9s} {model:6s} cells={r['n_cells']} "
                  f"genes={r['n_genes']} K={r['K']} batch={r['batch_size']} params={r['params']:,} "
                  f"epochs={r['epochs']} s/epoch={r['s_per_epoch']} s/step={r['s_per_step']} "
                  f"total={r['total_s']}s final_ARI={r['final_ari']} "
                  f"time_to_final={r['time_to_final_s']}s peak_RSS={r['peak_rss_gib']}GiB"
                  + (f" peak_GPU={r['peak_gpu_gib']}GiB" if "peak_gpu_gib" in r else "")
                  + (f" prune={r['prune_seconds']}s/{r['prune_rounds']} rounds"
                     if "prune_seconds" in r else "")
                  + f" | {r['load']}", flush=True)
            if curve:
                print(f"    ARI vs wall time: {curve}", flush=True)
        c, s = results.get((ds, "cplmix")), results.get((ds, "scvi"))
        if c and s:
            print(f"[{c['device']}] {ds:9s} ratio CplMixVAE/scVI: "
                  f"s/epoch {c['s_per_epoch'] / s['s_per_epoch']:.2f}x, "
                  f"s/step {c['s_per_step'] / s['s_per_step']:.2f}x, "
                  f"total {c['total_s'] / s['total_s']:.2f}x, "
                  f"time to final quality "
                  f"{c['time_to_final_s'] / max(s['time_to_final_s'], 1e-9):.2f}x, "
                  f"peak RSS {c['peak_rss_gib'] / s['peak_rss_gib']:.2f}x | {load()}", flush=True)
    return results


if __name__ == "__main__":
    main()

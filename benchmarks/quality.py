"""Type accuracy of CplMixVAE (defaults) against clustering baselines, and state recovery.

    python benchmarks/quality.py                 # 3 seeds, the tasks and methods below
    python benchmarks/quality.py --seeds 0 --methods cplmix,kmeans
    python benchmarks/quality.py --quick --out /tmp/q.md   # tiny data, a few epochs: runs?

Tasks (``_common.load_task``): Zeisel 2015 with 47 categories vs ``level2`` and 7 vs
``level1`` (2,000 seurat_v3 variable genes), and the simulator (12 types; ``sim:1.2``: marker
effect 1.2, strong type-dependent state). For Zeisel with 47 categories it also reports the
taxonomy-level accuracy (types and ``level2`` merged up to ``level1``, Fig. S10) and the
silhouette of the labels on the top 10 PCs (sec. M). Methods: CplMixVAE with its defaults
(``cplmix``), the single-arm model (``cplmix_1arm``), ``coupling="detached",
warmup_coupling=False`` (``cplmix_detached``), 1.7 x as many categories as reference
types (``cplmix_over``), ``train(init="leiden")`` / ``train(init="kmeans")``
(``cplmix_leiden``, ``cplmix_kmeans``), PCA + Leiden with the resolution searched to give K
clusters (``leiden``), PCA + Leiden at scanpy's default resolution 1 (``leiden_res1``, any
number of clusters), the graph start alone (``graph``: ``fit_start(init="leiden",
genes="auto")`` as ``train()`` fits it, Leiden at resolution 1 merged down to K on the graph
without the shared state's genes; ``train()``'s ``init="auto"`` takes k-means instead where
k-means is stable to leaving those genes out, Zeisel 7 here; ``graph_allgenes``: merged on
the all-gene graph of scanpy's PCA, the start before that change), k-means on 30 PCs
(``kmeans``), scVI (10 latent dims) + Leiden at K (``scvi_leiden``). Writes the table
(mean ± sd over seeds) as the ``runs`` section of ``benchmarks/results/quality.md`` (other
sections of that file are kept) and every run to ``quality_runs.csv``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scvi
from _common import (
    QUICK_TRAIN,
    RESULTS,
    leiden_at_resolution,
    load_task,
    log_pcs,
    mean_state_recovery,
    quiet,
    seed_agreement,
    table,
    write_section,
)
from sklearn.cluster import KMeans

import cplmix_sc
from cplmix_sc.metrics import clustering_scores
from cplmix_sc.start import fit_start, graph_start, leiden_n_clusters

quiet()
CPLMIX = ("cplmix", "cplmix_1arm", "cplmix_over", "cplmix_leiden", "cplmix_kmeans",
          "cplmix_detached", "cplmix_divisive")
TITLE = "# Quality benchmark"


def run(task: str, method: str, seed: int, quick: bool = False) -> dict:
    adata, key, k = load_task(task)
    scvi.settings.seed = seed
    t0 = time.perf_counter()
    state = None
    if method in CPLMIX:
        cplmix_sc.CplMixVAE.setup_anndata(adata)
        # cplmix_over: 1.7 x as many categories as reference types (80 for Zeisel's 47)
        n_cat = round(1.7 * k) if method == "cplmix_over" else k
        # cplmix_detached: the coupling that keeps many types (docs/model.md, "Many types")
        coupling = ({"coupling": "detached", "warmup_coupling": False}
                    if method in ("cplmix_detached", "cplmix_divisive") else {})
        model = cplmix_sc.CplMixVAE(adata, n_categories=n_cat,
                                    n_arms=1 if method == "cplmix_1arm" else 2, **coupling)
        init = {"cplmix_leiden": "leiden", "cplmix_kmeans": "kmeans",
                "cplmix_divisive": "divisive"}.get(method)
        model.train(enable_progress_bar=False, **({"init": init} if init else {}),
                    **(QUICK_TRAIN if quick else {}))
        pred = adata.obs["cpl_type"].to_numpy()
        state = adata.obsm["X_cpl_state"]
    elif method == "kmeans":
        pred = KMeans(k, n_init=10, random_state=seed).fit_predict(log_pcs(adata, seed=seed))
    elif method == "leiden":
        pred = leiden_n_clusters(log_pcs(adata, seed=seed), k, seed)
    elif method == "leiden_res1":  # scanpy's default resolution, as users run it
        pred = leiden_at_resolution(log_pcs(adata, seed=seed), [1.0], seed)[1.0]
    elif method == "graph":  # the start of init="leiden" on its own, as train() fits it
        pred = fit_start(adata.X, "leiden", k, 30, seed, genes="auto").labels
    elif method == "graph_allgenes":  # the graph start merged on the all-gene graph (before)
        pred = graph_start(log_pcs(adata, seed=seed), k, seed)
    elif method == "scvi_leiden":
        scvi.model.SCVI.setup_anndata(adata)
        m = scvi.model.SCVI(adata, n_latent=10)
        m.train(max_epochs=2 if quick else 200, enable_progress_bar=False)
        pred = leiden_n_clusters(m.get_latent_representation(), k, seed)
    else:
        raise ValueError(method)
    seconds = time.perf_counter() - t0
    row = {"task": task, "method": method, "seed": seed, "seconds": seconds,
           "n_types": int(pd.Series(pred).nunique()), **clustering_scores(adata.obs[key], pred)}
    if "state" in adata.obs and state is not None:
        row["state_rho"] = mean_state_recovery(adata, state)
    if task == "zeisel47":
        # taxonomy level (Fig. S10): learned types and level2 subclasses merged to level1
        mapping = cplmix_sc.metrics.level_mapping(adata.obs["level2"], adata.obs["level1"])
        tax = cplmix_sc.metrics.taxonomy_accuracy(adata.obs["level2"], pred, mapping)
        row["level1_acc"] = float(tax.loc[0, "accuracy"])
        # silhouette on the top 10 PCs (sec. M); the reference's own is in the table header
        sil = cplmix_sc.metrics.silhouette_by_pcs(log_pcs(adata, 10, seed=0), {"p": pred},
                                                  n_pcs=(10,))
        row["silhouette_10pc"] = float(sil.loc[0, "silhouette"])
    row["labels"] = np.asarray(pred).astype(str)
    return row


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tasks", default="zeisel47,zeisel7,sim:1.2")
    p.add_argument("--methods", default="cplmix,leiden,leiden_res1,graph,kmeans,scvi_leiden")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--out", default=str(RESULTS / "quality.md"))
    p.add_argument("--quick", action="store_true",
                   help="task 'tiny', seed 0, every method, a few epochs (checks that it runs)")
    args = p.parse_args(argv)
    if args.quick:
        args.tasks, args.seeds = "tiny", "0"
        args.methods = ",".join((*CPLMIX, "leiden", "leiden_res1", "graph", "graph_allgenes",
                                 "kmeans", "scvi_leiden"))
    rows = []
    for task in args.tasks.split(","):
        for method in args.methods.split(","):
            for seed in map(int, args.seeds.split(",")):
                row = run(task, method, seed, args.quick)
                rows.append(row)
                print({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()
                       if k != "labels"}, flush=True)
    runs = pd.DataFrame([{k: v for k, v in r.items() if k != "labels"} for r in rows])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    runs.to_csv(out.with_name(out.stem + "_runs.csv"), index=False)
    text = (f"## Current runs\n\nCommand: `python benchmarks/quality.py --tasks {args.tasks} "
            f"--methods {args.methods} --seeds {args.seeds}` (CPU, {time.strftime('%Y-%m-%d')}); "
            f"every run is a row of `{out.stem}_runs.csv`.\n\n" + table(runs)
            + "\n\nAgreement between seeds (the same method and task):\n\n"
            + seed_agreement(rows))
    write_section(out, "runs", text, TITLE)
    print(text)


if __name__ == "__main__":
    main()

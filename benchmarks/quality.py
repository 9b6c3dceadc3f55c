"""Type accuracy of CplMixVAE (defaults) against clustering baselines, and state recovery.

    python benchmarks/quality.py                 # 3 seeds, all tasks and methods
    python benchmarks/quality.py --seeds 0 --methods cplmix,kmeans

Tasks: Zeisel 2015 with 47 categories vs ``level2`` and 7 vs ``level1`` (2,000 seurat_v3
variable genes), and the simulator (12 types, strong type-dependent state). For Zeisel with 47
categories it also reports the taxonomy-level accuracy (types and ``level2`` merged up to
``level1``, Fig. S10) and the silhouette of the labels on the top 10 PCs (sec. M). Methods:
CplMixVAE with its defaults (2 arms), the single-arm model, CplMixVAE given 1.7 x as many
categories as reference types (``cplmix_over``), CplMixVAE started from its graph start
(``cplmix_leiden``, ``train(init="leiden")``, the default since 2026-11-27) or from k-means
(``cplmix_kmeans``, the default before), PCA + Leiden (resolution searched to give K
clusters), PCA + Leiden at scanpy's default resolution 1 (``leiden_res1``, any number of
clusters), the graph start alone (``graph``: Leiden at resolution 1 merged along the graph down
to K), k-means on 30 PCs, scVI (10 latent dims) + Leiden at K. Writes a markdown
table (mean ± sd over seeds) to ``benchmarks/results/quality.md`` and every run to
``quality_runs.csv``.
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import scanpy as sc
import scvi
from sklearn.cluster import KMeans

import cplmix_sc
from cplmix_sc._graph import (
    _keep_torch_threads,
    _knn_graph,
    _leiden,
    graph_start,
    leiden_n_clusters,
)
from cplmix_sc.metrics import clustering_scores

warnings.filterwarnings("ignore")
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
logging.getLogger("scvi").setLevel(logging.ERROR)
RESULTS = Path(__file__).parent / "results"


def load_task(task: str):
    """``zeisel47``, ``zeisel7``, ``sim``, ``sim:M`` (the simulator with marker_effect M) or
    ``sim:M:S`` (and state_effect S; default 3)."""
    if task.startswith("sim"):
        parts = task.split(":")[1:]
        kw = dict(zip(("marker_effect", "state_effect"), map(float, parts), strict=False))
        adata = cplmix_sc.datasets.synthetic(seed=0, **kw)
        return adata, "type", 12
    adata = cplmix_sc.datasets.zeisel2015()
    with _keep_torch_threads():  # scanpy's numba code would reset torch to all cores
        hvg = sc.pp.highly_variable_genes(adata, n_top_genes=2000, flavor="seurat_v3",
                                          inplace=False)
    adata = adata[:, hvg["highly_variable"].to_numpy()].copy()
    return (adata, "level2", 47) if task == "zeisel47" else (adata, "level1", 7)


def log_pcs(adata, n_pcs=30, seed=0):
    b = adata.copy()
    sc.pp.normalize_total(b, target_sum=1e4)
    sc.pp.log1p(b)
    sc.pp.pca(b, n_comps=n_pcs, random_state=seed)
    return b.obsm["X_pca"]


def state_recovery(adata, state: np.ndarray) -> float:
    """Mean |Spearman| of the state's main axis with the truth, over responsive true types."""
    rho = cplmix_sc.metrics.state_recovery(adata.obs["state"], state, adata.obs["type"])
    return float(np.mean([rho[t] for t in adata.uns["simulation"]["responsive_types"]]))


def run(task: str, method: str, seed: int) -> dict:
    adata, key, k = load_task(task)
    scvi.settings.seed = seed
    t0 = time.perf_counter()
    state = None
    if method in ("cplmix", "cplmix_1arm", "cplmix_over", "cplmix_leiden", "cplmix_kmeans"):
        cplmix_sc.CplMixVAE.setup_anndata(adata)
        # cplmix_over: 1.7 x as many categories as reference types (80 for Zeisel's 47)
        n_cat = round(1.7 * k) if method == "cplmix_over" else k
        model = cplmix_sc.CplMixVAE(adata, n_categories=n_cat,
                                    n_arms=1 if method == "cplmix_1arm" else 2)
        init = {"cplmix_leiden": "leiden", "cplmix_kmeans": "kmeans"}.get(method)
        model.train(enable_progress_bar=False, **({"init": init} if init else {}))
        pred = adata.obs["cpl_type"].to_numpy()
        state = adata.obsm["X_cpl_state"]
    elif method == "kmeans":
        pred = KMeans(k, n_init=10, random_state=seed).fit_predict(log_pcs(adata, seed=seed))
    elif method == "leiden":
        pred = leiden_n_clusters(log_pcs(adata, seed=seed), k, seed)
    elif method == "leiden_res1":  # scanpy's default resolution, as users run it
        pred = _leiden(_knn_graph(log_pcs(adata, seed=seed), seed, 15), 1.0, seed)
    elif method == "graph":  # the start of init="leiden" on its own
        pred = graph_start(log_pcs(adata, seed=seed), k, seed)
    elif method == "scvi_leiden":
        scvi.model.SCVI.setup_anndata(adata)
        m = scvi.model.SCVI(adata, n_latent=10)
        m.train(max_epochs=200, enable_progress_bar=False)
        pred = leiden_n_clusters(m.get_latent_representation(), k, seed)
    else:
        raise ValueError(method)
    seconds = time.perf_counter() - t0
    row = {"task": task, "method": method, "seed": seed, "seconds": seconds,
           "n_types": int(pd.Series(pred).nunique()), **clustering_scores(adata.obs[key], pred)}
    if task.startswith("sim") and state is not None:
        row["state_rho"] = state_recovery(adata, state)
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


def seed_agreement(rows: list[dict]) -> str:
    """Mean ARI between the labels of different seeds, next to the mean ARI with the truth."""
    from itertools import combinations

    from sklearn.metrics import adjusted_rand_score

    lines = ["| task | method | seeds | ARI between seeds (mean) | ARI with the labels (mean) |",
             "|---|---|---|---|---|"]
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["task"], r["method"]), []).append(r)
    for (task, method), rs in groups.items():
        if len(rs) < 2:
            continue
        pairs = [adjusted_rand_score(a["labels"], b["labels"]) for a, b in combinations(rs, 2)]
        lines.append(f"| {task} | {method} | {len(rs)} | {np.mean(pairs):.3f} | "
                     f"{np.mean([r['ari'] for r in rs]):.3f} |")
    return "\n".join(lines)


def table(runs: pd.DataFrame) -> str:
    cols = ["ari", "ami", "accuracy", "n_types", "seconds"] + [
        c for c in ("state_rho", "level1_acc", "silhouette_10pc") if c in runs]
    g = runs.groupby(["task", "method"], sort=False)[cols]
    mean, sd, n = g.mean(), g.std(), g.size()
    lines = ["| task | method | seeds | " + " | ".join(cols) + " |",
             "|" + "---|" * (len(cols) + 3)]
    for idx in mean.index:
        cells = []
        for c in cols:
            m, s = mean.loc[idx, c], sd.loc[idx, c]
            if np.isnan(m):
                cells.append("-")
            elif c in ("seconds", "n_types"):
                cells.append(f"{m:.0f}")
            else:
                cells.append(f"{m:.3f}" + ("" if np.isnan(s) else f" ± {s:.3f}"))
        lines.append(f"| {idx[0]} | {idx[1]} | {n.loc[idx]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tasks", default="zeisel47,zeisel7,sim")
    p.add_argument("--methods", default="cplmix,cplmix_1arm,leiden,kmeans,scvi_leiden")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--out", default=str(RESULTS / "quality.md"))
    args = p.parse_args()
    rows = []
    for task in args.tasks.split(","):
        for method in args.methods.split(","):
            for seed in map(int, args.seeds.split(",")):
                row = run(task, method, seed)
                rows.append(row)
                print({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()
                       if k != "labels"}, flush=True)
    runs = pd.DataFrame([{k: v for k, v in r.items() if k != "labels"} for r in rows])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    runs.to_csv(out.with_name(out.stem + "_runs.csv"), index=False)
    text = (f"# Quality benchmark\n\nCommand: `python benchmarks/quality.py --tasks {args.tasks} "
            f"--methods {args.methods} --seeds {args.seeds}` (CPU, {time.strftime('%Y-%m-%d')})\n\n"
            + table(runs) + "\n\nAgreement between seeds (the same method and task):\n\n"
            + seed_agreement(rows) + "\n")
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()

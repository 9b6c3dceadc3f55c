"""Interpreting the state and the types: the figures and numbers of issue 6.

    python benchmarks/interpret.py            # ~4 min on 2 CPU cores

1. Simulator with known truth (4 types, 3 respond to the state; the model recovers the types):
   precision of ``tl.state_genes``' top 20 per responsive type against the true activity genes,
   number of state genes (score >= 1) in the unresponsive type, and how flat marker genes are.
2. Zeisel 2015 with 47 categories (defaults, seed 0): taxonomy-level accuracy (learned types
   and ``level2`` merged to ``level1``, and along a dendrogram of the 47 subclasses: Fig. S10)
   and silhouettes on the top 5/10/15/20 PCs (sec. M, Fig. S14) for CplMixVAE, k-means,
   Leiden and the reference labels; traversal figures for the three largest types (Zeisel's
   genes are unnamed, so the top state genes and markers of each type are drawn).

Writes ``benchmarks/results/interpret.md`` and figures in ``benchmarks/results/figures/``
(``--results DIR``: elsewhere; ``--quick``: a few epochs, checks that it runs).
"""

from __future__ import annotations

import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pandas as pd
import scvi
from _common import QUICK_TRAIN, RESULTS, load_task, log_pcs, quiet
from sklearn.cluster import KMeans

import cplmix_sc
from cplmix_sc.start import leiden_n_clusters

quiet()


def simulator_section(figures: Path, quick: bool = False) -> list[str]:
    scvi.settings.seed = 0
    adata = cplmix_sc.datasets.synthetic(
        n_cells=1000, n_genes=200, n_types=4, n_markers=15, n_activity=30, n_housekeeping=20,
        marker_effect=2.5, state_effect=3.0, seed=1,
    )
    cplmix_sc.CplMixVAE.setup_anndata(adata)
    model = cplmix_sc.CplMixVAE(adata, n_categories=4)
    model.train(**({**QUICK_TRAIN, "batch_size": 128} if quick else
                   {"max_epochs": 60, "batch_size": 128}), enable_progress_bar=False)
    ari = cplmix_sc.metrics.clustering_scores(adata.obs["type"], adata.obs["cpl_type"])["ari"]
    truth = adata.obs.groupby("cpl_type", observed=True)["type"].agg(
        lambda s: s.value_counts().index[0]).to_dict()
    responsive = set(adata.uns["simulation"]["responsive_types"])
    role = adata.var["role"]
    genes = cplmix_sc.tl.state_genes(model, min_score=0)
    res = cplmix_sc.tl.traversal(model)
    rng = res.scores.set_index(["cell_type", "gene"])["log2_range"]
    lines = [
        "## Simulator (4 types, 1,000 cells, 200 genes; types recovered with ARI "
        f"{ari:.3f})", "",
        "| learned type | true type | responds to state | precision@20 activity | "
        "precision@20 activity+housekeeping | state genes (score >= 1) | "
        "max log2 range of own markers |",
        "|---|---|---|---|---|---|---|",
    ]
    for t, df in genes.groupby("cell_type", observed=True):
        top = role[df.head(20)["gene"]].to_numpy()
        true_t = truth[t]
        own = adata.var_names[(adata.var["marker_of"] == int(true_t[1:])).to_numpy()]
        lines.append(
            f"| {t} | {true_t} | {'yes' if true_t in responsive else 'no'} | "
            f"{(top == 'activity').mean():.2f} | "
            f"{np.isin(top, ['activity', 'housekeeping']).mean():.2f} | "
            f"{int((df['score'] >= 1).sum())} | {rng.loc[t].loc[own].max():.2f} |"
        )
    lines += ["", "Housekeeping genes of the simulator have small type-specific slopes "
              "(a quarter of the activity genes'), so they are true, weaker state genes.", ""]
    act = adata.var_names[role == "activity"][:4].tolist()
    mk = adata.var_names[role == "marker"][:2].tolist()
    cplmix_sc.pl.traversal(res, act + mk, ncols=3, show=False,
                           save=figures / "sim_traversal.png")
    cplmix_sc.pl.traversal_heatmap(res, act + mk, show=False,
                                   save=figures / "sim_traversal_heatmap.png")
    return lines


def zeisel_section(figures: Path, seed: int = 0, quick: bool = False) -> list[str]:
    adata, _key, k = load_task("zeisel47")
    scvi.settings.seed = seed
    t0 = time.perf_counter()
    cplmix_sc.CplMixVAE.setup_anndata(adata)
    model = cplmix_sc.CplMixVAE(adata, n_categories=k)
    model.train(enable_progress_bar=False, **(QUICK_TRAIN if quick else {}))
    seconds = time.perf_counter() - t0
    pcs30 = log_pcs(adata, 30, seed=0)
    labels = {
        "CplMixVAE": adata.obs["cpl_type"].astype(str).to_numpy(),
        "k-means": KMeans(k, n_init=10, random_state=seed).fit_predict(pcs30).astype(str),
        "PCA+Leiden": leiden_n_clusters(pcs30, k, seed).astype(str),
    }
    ref2 = adata.obs["level2"].astype(object).to_numpy()
    mapping = cplmix_sc.metrics.level_mapping(adata.obs["level2"], adata.obs["level1"])
    ok = pd.notna(ref2)
    z, names = cplmix_sc.metrics.reference_tree(pcs30[ok], ref2[ok])
    levels = (47, 20, 10, 7, 2)
    lines = [f"## Zeisel 2015, 47 categories vs `level2` (seed {seed}, CplMixVAE "
             f"{seconds:.0f} s, {adata.obs['cpl_type'].nunique()} types used)", "",
             "Taxonomy-level accuracy: each learned type takes its majority `level2` label, "
             "then both are merged up the taxonomy (Fig. S10). `level1` uses Zeisel's own "
             "classes; the numbered columns cut an average-linkage dendrogram of the "
             "subclass centroids (30 PCs, correlation) into that many groups.", "",
             "| method | n types | ARI vs level2 | accuracy at level1 | "
             + " | ".join(f"{g} groups" for g in levels) + " |",
             "|" + "---|" * (4 + len(levels))]
    for name, lab in labels.items():
        tax = cplmix_sc.metrics.taxonomy_accuracy(ref2, lab, mapping)
        tree = cplmix_sc.metrics.taxonomy_accuracy(ref2[ok], lab[ok], z, names=names,
                                                   n_groups=levels).set_index("n_groups")
        ari = cplmix_sc.metrics.clustering_scores(ref2, lab)["ari"]
        lines.append(f"| {name} | {len(set(lab))} | {ari:.3f} | {tax.loc[0, 'accuracy']:.3f} | "
                     + " | ".join(f"{tree.loc[g, 'accuracy']:.3f}" for g in levels) + " |")
    sil = cplmix_sc.metrics.silhouette_by_pcs(
        log_pcs(adata, 20, seed=0),
        {**labels, "reference level2": ref2, "reference level1":
         adata.obs["level1"].astype(object).to_numpy()},
    )
    wide = sil.pivot(index="labeling", columns="n_pcs", values="silhouette")
    lines += ["", "Silhouette of each labelling on the top PCs of log-normalised counts "
              "(sec. M; cells without a reference label left out for all):", "",
              "| labelling | " + " | ".join(f"{n} PCs" for n in wide.columns) + " |",
              "|" + "---|" * (1 + len(wide.columns))]
    for name, row in wide.iterrows():
        lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in row) + " |")
    # traversal figures for the three largest types
    big = adata.obs["cpl_type"].value_counts().index[:3].tolist()
    res = cplmix_sc.tl.traversal(model, cell_types=big)
    sg = cplmix_sc.tl.state_genes(model, cell_types=big, n_top=3)
    mk = cplmix_sc.tl.marker_genes(model, cell_types=big, n_top=2)
    genes = list(dict.fromkeys(sg["gene"].tolist() + mk["gene"].tolist()))
    cplmix_sc.pl.traversal(res, genes, ncols=4, log=True, show=False,
                           save=figures / "zeisel_traversal.png")
    cplmix_sc.pl.traversal_heatmap(res, genes, show=False,
                                   save=figures / "zeisel_traversal_heatmap.png")
    n_sg = cplmix_sc.tl.state_genes(model, cell_types=big).groupby(
        "cell_type", observed=True).size()
    lines += ["", f"Traversals of the three largest types ({', '.join(big)}): "
              f"state genes with score >= 1 per type: {n_sg.to_dict()}; figures "
              "`figures/zeisel_traversal.png`, `figures/zeisel_traversal_heatmap.png`.", ""]
    return lines


def main(argv=None) -> None:
    import argparse

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--results", default=str(RESULTS), help="folder of interpret.md and figures/")
    p.add_argument("--quick", action="store_true", help="a few epochs (checks that it runs)")
    args = p.parse_args(argv)
    out = Path(args.results)
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    lines = ["# Interpreting types and state", "",
             f"Command: `python benchmarks/interpret.py` (CPU, {time.strftime('%Y-%m-%d')})", ""]
    lines += simulator_section(figures, args.quick)
    lines += zeisel_section(figures, quick=args.quick)
    lines.append(f"Total {time.perf_counter() - t0:.0f} s.")
    text = "\n".join(lines) + "\n"
    (out / "interpret.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()

"""Which representation should ``get_latent_representation`` return by default?

    python benchmarks/latent.py            # ~5 min on 2 CPU cores (2 seeds)

Trains CplMixVAE on Zeisel 2015 with the README's defaults (``n_categories=47``) for seeds 0
and 1 and measures, for every representation, the kNN purity (k = 15, Euclidean) of the
published ``level1`` and ``level2`` labels: the mean over cells of the fraction of a cell's 15
nearest neighbours (itself excluded) that share its label. The model's own types are not
used (the type probabilities would win by construction). Baseline: the top 30 PCs of
log-normalised counts (the start's input). Writes ``benchmarks/results/latent.md``.
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import scvi
from sklearn.neighbors import NearestNeighbors

import cplmix_sc
from cplmix_sc.start import log_pca

warnings.filterwarnings("ignore")
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
RESULTS = Path(__file__).parent / "results"
K = 15
SEEDS = (0, 1)


def knn_purity(rep: np.ndarray, labels: np.ndarray, k: int = K) -> float:
    """Mean fraction of each cell's k nearest neighbours (not itself) with its label."""
    idx = NearestNeighbors(n_neighbors=k + 1).fit(rep).kneighbors(rep, return_distance=False)
    return float((labels[idx[:, 1:]] == labels[:, None]).mean())


def main() -> None:
    rows = []
    for seed in SEEDS:
        scvi.settings.seed = seed
        adata = cplmix_sc.datasets.zeisel2015()
        cplmix_sc.CplMixVAE.setup_anndata(adata)
        model = cplmix_sc.CplMixVAE(adata, n_categories=47)
        start = time.perf_counter()
        model.train(enable_progress_bar=False)
        seconds = time.perf_counter() - start
        reps = {
            "bottleneck (arm 0)": model.get_latent_representation(representation="bottleneck"),
            "bottleneck (arm 1)": model.get_latent_representation(
                representation="bottleneck", arm=1),
            "state (arm 0)": model.get_latent_representation(representation="state"),
            "type_probabilities": model.get_latent_representation(
                representation="type_probabilities"),
            "PCA 30 of log-normalised counts": log_pca(adata.X, 30, seed)[2],
        }
        for name, rep in reps.items():
            rows.append({
                "seed": seed, "representation": name, "dim": rep.shape[1],
                **{lvl: knn_purity(rep, adata.obs[lvl].to_numpy()) for lvl in ("level1",
                                                                                 "level2")},
            })
        print(f"seed {seed}: trained in {seconds:.0f} s", flush=True)
    df = pd.DataFrame(rows)
    table = df.groupby("representation", sort=False).agg(
        dim=("dim", "first"),
        level1=("level1", "mean"), level1_sd=("level1", "std"),
        level2=("level2", "mean"), level2_sd=("level2", "std"),
    ).round(3)
    per_seed = df.pivot_table(index="representation", columns="seed",
                              values=["level1", "level2"], sort=False).round(3)
    text = "\n".join([
        "# Latent representation: kNN purity of the published labels (Zeisel 2015)",
        "",
        "Command: `python benchmarks/latent.py` (2 CPU cores). CplMixVAE with the README's "
        "defaults (`n_categories=47`, `train()` defaults), seeds " + ", ".join(map(str, SEEDS))
        + f". kNN purity (k = {K}): mean over cells of the fraction of the 15 nearest "
        "neighbours (Euclidean, itself excluded) with the cell's published label.",
        "",
        "## Mean (sd) over seeds",
        "",
        table.to_markdown(),
        "",
        "## Per seed",
        "",
        per_seed.to_markdown(),
        "",
    ])
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latent.md").write_text(text)
    print(text)


if __name__ == "__main__":
    print("command: python " + " ".join(sys.argv), flush=True)
    main()

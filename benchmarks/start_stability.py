"""Seed stability of the divisive and the k-means start: an unsupervised criterion.

    python benchmarks/start_stability.py --draws 0,1,2,3,4 --zeisel --seeds 0,1,2

Per data set (TUNE draws of :func:`cplmix_sc.datasets.synthetic_hierarchy` at K = the true
number of types; Zeisel 2015 level2, 2,000 seurat_v3 genes, K = 47): each start fitted as
``train()`` fits it (``fit_start(x, init, K, 30, seed, genes="auto")``) at every seed; prints
the mean ARI against the truth (labelled cells) and ``stab``, the mean ARI between the
labels of every pair of seeds (higher = more reproducible), one JSON line per data set.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from itertools import combinations
from pathlib import Path

import numpy as np
from sklearn.metrics import adjusted_rand_score

import cplmix_sc
from cplmix_sc.start import fit_start

sys.path.insert(0, str(Path(__file__).parent))
from _common import load_task
from start_select import _kmeans_labels

warnings.filterwarnings("ignore")


def evaluate(name, adata, key, k, seeds) -> dict:
    ok = adata.obs[key].notna().to_numpy()
    truth = adata.obs[key].astype(str).to_numpy()[ok]
    row = {"data": name, "K": k}
    for init in ("divisive", "kmeans"):
        labs = []
        for seed in seeds:
            st = fit_start(adata.X, init, k, 30, seed, genes="auto")
            labs.append(st.labels if st.labels is not None else _kmeans_labels(adata, st))
        row[f"{init}_ari"] = float(np.mean([adjusted_rand_score(truth, v[ok]) for v in labs]))
        row[f"{init}_stab"] = float(np.mean([adjusted_rand_score(u, v)
                                             for u, v in combinations(labs, 2)]))
    print(json.dumps({a: round(b, 4) if isinstance(b, float) else b for a, b in row.items()}),
          flush=True)
    return row


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--draws", default="0,1,2,3,4")
    p.add_argument("--zeisel", action="store_true")
    p.add_argument("--seeds", default="0,1,2")
    a = p.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    if a.zeisel:
        evaluate("Zeisel level2", load_task("zeisel47")[0], "level2", 47, seeds)
    for d in map(int, filter(None, a.draws.split(","))):
        ad = cplmix_sc.datasets.synthetic_hierarchy(d)
        evaluate(f"draw {d}", ad, "type", ad.uns["simulation"]["n_types"], seeds)


if __name__ == "__main__":
    main()

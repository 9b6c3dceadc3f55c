"""Zeisel level2 at K = 47: the k-means start (``fit_start``) against fine_types.py's k-means.

    python benchmarks/zeisel_kmeans_spread.py --seed 0,1,2,3,4,5

Per seed: ARI (labelled cells) of ``fine_types.py``'s k-means baseline (top 30 PCs of log1p
CP10k, 10 restarts), of ``fit_start(x, "kmeans", 47, 30, seed, genes=...)`` with
``genes="auto"`` (as ``train(init="kmeans")`` fits it) and ``genes=None`` (every gene), and
of the divisive start (``genes="auto"``). One JSON line per seed, then mean ± sd.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from cplmix_sc.start import fit_start

sys.path.insert(0, str(Path(__file__).parent))
from _common import load_task, log_pcs
from start_select import _kmeans_labels

warnings.filterwarnings("ignore")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seed", default="0,1,2")
    a = p.parse_args()
    adata = load_task("zeisel47")[0]
    ok = adata.obs["level2"].notna().to_numpy()
    truth = adata.obs["level2"].astype(str).to_numpy()[ok]
    rows = []
    for seed in map(int, a.seed.split(",")):
        pcs = log_pcs(adata, n_pcs=30, seed=seed)
        row = {"seed": seed,
               "kmeans_base": KMeans(47, n_init=10, random_state=seed).fit_predict(pcs)}
        for name, init, genes in (("kmeans_auto", "kmeans", "auto"),
                                  ("kmeans_all", "kmeans", None),
                                  ("divisive", "divisive", "auto")):
            st = fit_start(adata.X, init, 47, 30, seed, genes=genes)
            row[name] = st.labels if st.labels is not None else _kmeans_labels(adata, st)
        row = {k: v if k == "seed" else adjusted_rand_score(truth, v[ok]) for k, v in row.items()}
        print(json.dumps({k: round(v, 4) for k, v in row.items()}), flush=True)
        rows.append(row)
    for k in rows[0]:
        if k != "seed":
            v = np.array([r[k] for r in rows])
            print(f"{k}: {v.mean():.3f} ± {v.std(ddof=1):.3f} (n={len(v)})")


if __name__ == "__main__":
    main()

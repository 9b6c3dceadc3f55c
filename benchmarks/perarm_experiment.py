"""Experiment (not a method): each arm starts from its own k-means partition.

    python benchmarks/perarm_experiment.py sim 24      # task, number of categories

Each arm's warm-up teacher is a separate k-means (one initialisation, its own seed) on the
same 30 PCs, with arm a's clusters renamed to arm 0's by Hungarian matching, so that the
arms start from different partitions with comparable indices. Then 100 mixture epochs and
``prune()``. Question: does inter-arm consensus then single out the wrong categories?
Prints ARI / AMI / accuracy and, per used category, cells / consensus / purity. Seed 0.
Figures in ``results/levers.md``.
"""

from __future__ import annotations

import logging
import sys
import warnings

import numpy as np
import pandas as pd
import scvi
import torch
from quality import load_task
from scipy.optimize import linear_sum_assignment
from scvi.model.base import UnsupervisedTrainingMixin
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

import cplmix_sc
from cplmix_sc.metrics import clustering_scores
from cplmix_sc.module import log_normalise

warnings.filterwarnings("ignore")
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)


def per_arm_teacher(model, adata, k0):
    m = model.module
    model._fit_teacher()  # PCA (and the usage prior) of the package's own start
    x = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
    x = torch.as_tensor(x, dtype=torch.float32)
    z = ((log_normalise(x, x.sum(-1, keepdim=True)) - m.teacher_mean) @ m.teacher_loadings)
    labs, cents = [], []
    for a in range(m.n_arms):
        km = KMeans(k0, n_init=1, random_state=17 * a + 3).fit(z.numpy())
        lab, cen = km.labels_, km.cluster_centers_
        if a > 0:
            table = pd.crosstab(labs[0], lab).reindex(
                index=range(k0), columns=range(k0), fill_value=0).to_numpy()
            rows, cols = linear_sum_assignment(-table)
            perm = np.empty(k0, int)
            perm[rows] = cols  # arm 0's category r <- arm a's cluster perm[r]
            inv = np.empty(k0, int)
            inv[perm] = np.arange(k0)
            cen, lab = cen[perm], inv[lab]
        labs.append(lab)
        cents.append(cen)
    centroids = torch.as_tensor(np.stack(cents), dtype=torch.float32)  # (A, K, P)

    def teacher_labels(xb):
        zb = (log_normalise(xb, xb.sum(-1, keepdim=True)) - m.teacher_mean) @ m.teacher_loadings
        return torch.cdist(zb.unsqueeze(0).expand(len(centroids), -1, -1), centroids).argmin(-1)

    m.teacher_labels = teacher_labels
    return labs


def main() -> None:
    task, k0 = sys.argv[1], int(sys.argv[2])
    adata, key, _ = load_task(task)
    scvi.settings.seed = 0
    cplmix_sc.CplMixVAE.setup_anndata(adata)
    model = cplmix_sc.CplMixVAE(adata, n_categories=k0)
    labs = per_arm_teacher(model, adata, k0)
    print("teacher ARI per arm", [round(clustering_scores(adata.obs[key], lab)["ari"], 3)
                                  for lab in labs],
          "arm 0 vs arm 1", round(adjusted_rand_score(labs[0], labs[1]), 3), flush=True)
    m = model.module
    m.phase = "warmup"
    m.train()
    UnsupervisedTrainingMixin.train(model, max_epochs=10, batch_size=256, train_size=1.0,
                                    plan_kwargs={"n_epochs_kl_warmup": None},
                                    enable_progress_bar=False)
    m.phase = "mixture"
    model.is_trained_ = True  # skip the package's own warm-up
    model.train(max_epochs=100, enable_progress_bar=False)
    s = clustering_scores(adata.obs[key], adata.obs["cpl_type"])
    print(f"trained: used {adata.obs['cpl_type'].nunique()} ari {s['ari']:.3f} "
          f"ami {s['ami']:.3f} acc {s['accuracy']:.3f}", flush=True)
    cons = cplmix_sc.tl.category_consensus(model)
    pred = model.predict()
    truth = adata.obs[key]
    rows = []
    for c, row in cons[cons["n_cells"] > 0].iterrows():
        vc = truth[pred == c].value_counts()
        purity = vc.iloc[0] / vc.sum() if vc.sum() else float("nan")
        rows.append(f"{c}:{int(row['n_cells'])}/{row['consensus']:.2f}/{purity:.2f}")
    print("category:cells/consensus/purity", " ".join(rows), flush=True)
    hist = model.prune(enable_progress_bar=False)
    s = clustering_scores(adata.obs[key], adata.obs["cpl_type"])
    print(hist[["round", "n_categories", "mean_consensus", "min_consensus", "removed"]])
    print(f"pruned: K={len(model.active_categories)} ari {s['ari']:.3f} ami {s['ami']:.3f} "
          f"acc {s['accuracy']:.3f}", flush=True)


if __name__ == "__main__":
    main()

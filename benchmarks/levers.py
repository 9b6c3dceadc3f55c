"""Measure one setting (a "lever") of CplMixVAE along its training trajectory.

    python benchmarks/levers.py zeisel47 '{"state_dropout": 0.5}'
    python benchmarks/levers.py sim '{"entropy_weight": 1}' --warmup 10 --epochs 80 --every 20
    python benchmarks/levers.py sim:1.2 --teacher truth     # start from the true types

Data (as in ``quality.py``): ``zeisel47`` (Zeisel vs level2, 47 categories), ``zeisel7`` (vs
level1, 7), ``sim`` (the default simulator, 12 types; also prints state recovery), ``sim:M``
(the simulator with ``marker_effect=M``). The JSON holds CplMixVAE arguments plus ``klw``
(state KL weight) and ``k`` (number of categories). ``--teacher`` picks the warm-up's starting
clustering: ``kmeans`` (the package's own, nearest k-means centroid), ``graph`` (the
package's default start, ``train(init="leiden")``), ``leiden`` (PCA + Leiden at about K
clusters) or ``truth`` (the labels: a diagnostic of whether the objective keeps the
right answer, never a method); the non-default teachers label each cell by its nearest cell
in PC space. After the warm-up and every ``--every`` epochs it prints ARI / AMI / accuracy /
purity against the labels and the number of categories in use, so that a setting's peak and
drift are both visible; at the end the loss per cell (the objective minimised, no
augmentation) and the per-category inter-arm consensus and purity. Single thread.
The figures in ``benchmarks/results/levers.md`` come from this script.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import warnings

import numpy as np
import pandas as pd
import scvi
import torch
from quality import load_task, log_pcs
from scvi.model.base import UnsupervisedTrainingMixin

import cplmix_sc
from cplmix_sc._graph import leiden_n_clusters
from cplmix_sc.metrics import clustering_scores, state_recovery
from cplmix_sc.module import log_normalise
from cplmix_sc.tl import category_consensus

warnings.filterwarnings("ignore")
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("data", help="zeisel47, zeisel7, sim or sim:MARKER_EFFECT")
    p.add_argument("--teacher", choices=["kmeans", "graph", "leiden", "truth"], default="kmeans")
    p.add_argument("kwargs", nargs="?", default="{}")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--epochs", type=int, default=80)
    p.add_argument("--every", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--holdout", type=float, default=0.0,
                   help="fraction of cells held out of training; their NLL is printed (val)")
    args = p.parse_args()
    torch.set_num_threads(1)
    kw = json.loads(args.kwargs)
    scvi.settings.seed = args.seed
    klw = kw.pop("klw", 1.0)
    adata, key, k = load_task(args.data)
    k = kw.pop("k", k)
    cplmix_sc.CplMixVAE.setup_anndata(adata)
    model = cplmix_sc.CplMixVAE(adata, n_categories=k, **kw)
    plan = {"n_epochs_kl_warmup": None, "max_kl_weight": klw}
    t0 = time.perf_counter()

    def fit(n):
        model.module.train()
        UnsupervisedTrainingMixin.train(model, max_epochs=n, batch_size=256,
                                        train_size=1.0 - args.holdout,
                                        plan_kwargs=plan, enable_progress_bar=False)

    def report(tag):
        pred = model.predict()
        s = clustering_scores(adata.obs[key], pred)
        ct = pd.crosstab(pred, adata.obs[key].astype(str).to_numpy())
        line = (f"{tag:>5} ari {s['ari']:.3f} ami {s['ami']:.3f} acc {s['accuracy']:.3f} "
                f"purity {ct.max(1).sum() / ct.to_numpy().sum():.3f} used {len(np.unique(pred))}")
        # label-free signals (candidates for a stopping rule): cell-weighted inter-arm
        # consensus, mean confidence, reconstruction NLL per cell and arm (no augmentation)
        cons = category_consensus(model)
        cons = cons[cons["n_cells"] > 0]
        conf = model.get_type_probabilities().max(1).mean()
        line += (f" | cons {np.average(cons['consensus'], weights=cons['n_cells']):.3f}"
                 f" conf {conf:.3f} nll {recon_nll(model, adata):.1f}")
        if args.holdout:  # same split every fit: scvi-tools seeds it with settings.seed
            line += f" val {recon_nll(model, adata, model.validation_indices):.1f}"
        if args.data.startswith("sim"):
            model.annotate(adata)
            rho = state_recovery(adata.obs["state"], adata.obsm["X_cpl_state"], adata.obs["type"])
            resp = adata.uns["simulation"]["responsive_types"]
            line += f" state_rho {np.mean([rho[t] for t in resp]):.3f}"
        print(line, f"({time.perf_counter() - t0:.0f} s)", flush=True)

    print(args.data, json.dumps(kw), f"klw={klw} k={k} teacher={args.teacher}", flush=True)
    if args.warmup:
        model._fit_teacher("leiden" if args.teacher == "graph" else "kmeans")
        if args.teacher not in ("kmeans", "graph"):
            use_teacher(model, adata, key, k, args.teacher, args.seed)
        model.module.phase = "warmup"
        fit(args.warmup)
        model.module.phase = "mixture"
        report("warm")
    for i in range(args.epochs // args.every):
        fit(args.every)
        report(str((i + 1) * args.every))
    final_report(model, adata, key)


def use_teacher(model, adata, key, k, teacher, seed) -> None:
    """Replace the k-means teacher by per-cell labels, looked up by nearest cell in PC space."""
    m = model.module
    pcs = log_pcs(adata, n_pcs=30, seed=seed)
    if teacher == "truth":
        lab = np.unique(adata.obs[key].astype(str), return_inverse=True)[1]
    else:
        lab = leiden_n_clusters(pcs, k, seed).astype(int)
    lab = np.minimum(lab, k - 1)  # unlabelled cells ("nan") share the last category
    print("teacher", {n: round(v, 3) for n, v in clustering_scores(adata.obs[key], lab).items()},
          flush=True)
    counts = np.bincount(lab, minlength=k)[:k]
    m.usage_prior.copy_(torch.as_tensor((counts + 1.0) / (counts + 1.0).sum()))
    x = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
    x = torch.as_tensor(x, dtype=torch.float32)
    ref = (log_normalise(x, x.sum(-1, keepdim=True)) - m.teacher_mean) @ m.teacher_loadings
    labels = torch.as_tensor(lab, dtype=torch.long)

    def teacher_labels(xb):
        z = (log_normalise(xb, xb.sum(-1, keepdim=True)) - m.teacher_mean) @ m.teacher_loadings
        return labels[torch.cdist(z, ref).argmin(-1)]

    m.teacher_labels = teacher_labels


@torch.no_grad()
def recon_nll(model, adata, indices=None) -> float:
    """Reconstruction NLL per cell and arm (all cells or ``indices``), without augmentation."""
    m = model.module
    m.eval()
    tot, n = 0.0, 0
    for tensors in model._make_data_loader(adata=adata, indices=indices, batch_size=512):
        _, _, lo = m(tensors)
        rec = sum(v.sum() for v in lo.reconstruction_loss.values())  # LossOutput stores a dict
        tot = tot + float(rec) / (m.n_arms * max(m.n_arms - 1, 1))
        n = n + tensors["X"].shape[0]
    return tot / n


@torch.no_grad()
def final_report(model, adata, key) -> None:
    m = model.module
    m.eval()
    tot, n = 0.0, 0
    for tensors in model._make_data_loader(adata=adata, batch_size=512):
        _, _, lo = m(tensors)
        b = tensors["X"].shape[0]
        tot, n = tot + float(lo.loss) * b, n + b
    print(f"final loss per cell {tot / n:.1f}", flush=True)
    cons = category_consensus(model)
    pred = model.predict()
    truth = adata.obs[key].astype(str).to_numpy()
    rows = []
    for c, row in cons[cons["n_cells"] > 0].iterrows():
        vc = pd.Series(truth[pred == c]).value_counts()  # empty: no cell's consensus type
        purity = vc.iloc[0] / vc.sum() if len(vc) else float("nan")
        rows.append(f"{c}:{row['n_cells']}/{row['consensus']:.2f}/{purity:.2f}")
    print("category:cells/consensus/purity", " ".join(rows), flush=True)


if __name__ == "__main__":
    main()

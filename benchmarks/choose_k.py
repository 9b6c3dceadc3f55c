"""Choosing K by pruning: start with more categories than types, prune, see where K lands.

    python benchmarks/choose_k.py sim 24          # simulator with 12 types, from 24
    python benchmarks/choose_k.py zeisel47 80     # Zeisel (47 subclasses), from 80
    python benchmarks/choose_k.py sim:1.2:1.5 24  # simulator with state effect 1.5 (default 3)
    python benchmarks/choose_k.py sim:1.2 24 --curve 6   # force pruning down to 6, one a round
    python benchmarks/choose_k.py sim:1.2:2.0 24 --init-resolution 0.3   # a coarser start
    python benchmarks/choose_k.py sim:1.2 24 --init-exclude-role activity   # start without
                                                   # the simulator's state genes
    python benchmarks/choose_k.py sim:1.2 24 --every-gene   # the start before "auto"
    python benchmarks/choose_k.py sim:1.2 0 --resolutions 0.1,0.2,0.3,0.5,0.7,1
    python benchmarks/choose_k.py tiny 8 --quick    # a few epochs: checks that it runs

Trains CplMixVAE with its defaults and ``n_categories`` = the second argument, then
``model.prune()`` with its defaults, printing the pruning history, the scores against the
labels before and after, and the same scores of a model given the true K. Seed 0 unless
``--seed``.

``--curve K_MIN`` instead keeps pruning past the stopping rule: every round removes the least
consistent category (``prune(min_consensus=1.0, max_rounds=1)``) and fine-tunes, down to
``K_MIN``, printing the round's consensus, log-ratio, reconstruction and the scores against the
labels: what a "largest consensus jump" rule would see.

``--resolutions R1,R2,...`` trains nothing: the number of Leiden communities of the graph
start's kind of graph (15-NN graph of 30 PCs of log1p CP10k, scanpy's PCA) at each
resolution and their ARI / AMI against the labels (seed 0; formerly ``resolution_scan.py``).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import scvi
import torch
from _common import QUICK_TRAIN, leiden_at_resolution, load_task, log_pcs, quiet

import cplmix_sc
from cplmix_sc.metrics import clustering_scores

quiet()


def curve(model, truth, k_min: int) -> None:
    """Prune one category per round down to ``k_min``, printing each round."""
    while True:
        k_before = len(model.active_categories)
        hist = model.prune(min_consensus=1.0, max_rounds=1, min_categories=k_min,
                           annotate=False, enable_progress_bar=False)
        row = hist.iloc[0]
        s = clustering_scores(truth, model.predict())
        print(f"K={row['n_categories']} mean consensus {row['mean_consensus']:.3f} "
              f"(10th percentile {np.quantile(list(row['consensus'].values()), 0.1):.3f}) "
              f"log-ratio {row['log_ratio']:.2f} reconstruction {row['reconstruction']:.1f} "
              f"removed {row['removed']} -> ari {s['ari']:.3f} ami {s['ami']:.3f}", flush=True)
        k_now = len(model.active_categories)
        if k_now == k_before or k_now <= k_min:
            break


def objective(model) -> str:
    """Per-cell means of the training objective's terms over all cells (no augmentation)."""
    model.module.eval()
    sums, n = {}, 0
    with torch.inference_mode():
        for tensors in model._make_data_loader(adata=model.adata, batch_size=1024):
            _, _, lo = model.module(tensors)
            b = tensors["X"].shape[0]
            terms = {"reconstruction": lo.reconstruction_loss["reconstruction_loss"].sum(),
                     "state KL": lo.kl_local["kl_local"].sum(), "loss": lo.loss * b,
                     **{k: v * b for k, v in lo.extra_metrics.items()}}
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            n += b
    return ", ".join(f"{k} {v / n:.2f}" for k, v in sums.items())


def state_ranges(adata, key: str, labels: np.ndarray) -> pd.DataFrame:
    """Per (true type, category) with more than 10 cells: the true state's 10/50/90% points."""
    df = pd.DataFrame({"type": adata.obs[key].astype(str).to_numpy(), "category": labels,
                       "state": adata.obs["state"].to_numpy()})
    g = df.groupby(["type", "category"])["state"]
    out = pd.DataFrame({"n_cells": g.size(), "state_q10": g.quantile(0.1),
                        "state_median": g.median(), "state_q90": g.quantile(0.9)})
    return out[out["n_cells"] > 10].round(2)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("task")
    p.add_argument("k0", type=int)
    p.add_argument("--curve", type=int, default=None, metavar="K_MIN")
    p.add_argument("--seed", type=int, default=0, help="training seed (the data stay seed 0)")
    p.add_argument("--init-resolution", type=float, default=1.0,
                   help="train(init_resolution=...) of the model started from K0 (the figures "
                        "in choose_k.md from before init_exclude_genes='auto' used every gene: "
                        "add --every-gene to reproduce them)")
    p.add_argument("--every-gene", action="store_true",
                   help="train(init_exclude_genes=None): the start uses every gene")
    p.add_argument("--init-exclude-role", default=None, metavar="ROLES",
                   help="simulator only: train(init_exclude_genes=...) with the genes of these "
                        "var['role'] values (comma-separated, e.g. activity)")
    p.add_argument("--resolutions", default=None, metavar="R1,R2",
                   help="only print Leiden's communities at these resolutions (no training)")
    p.add_argument("--quick", action="store_true", help="a few epochs (checks that it runs)")
    args = p.parse_args(argv)
    task, k0 = args.task, args.k0
    adata, key, k_true = load_task(task)
    if args.resolutions:
        res = [float(r) for r in args.resolutions.split(",")]
        for r, labels in leiden_at_resolution(log_pcs(adata, 30, 0), res, 0).items():
            s = clustering_scores(adata.obs[key].astype(str), labels)
            print(f"{task} resolution {r}: {labels.max() + 1} communities, "
                  f"ari {s['ari']:.3f} ami {s['ami']:.3f}", flush=True)
        return
    quick = QUICK_TRAIN if args.quick else {}
    cplmix_sc.CplMixVAE.setup_anndata(adata)
    start = {"init_resolution": args.init_resolution}
    if args.every_gene:
        start["init_exclude_genes"] = None
    if args.init_exclude_role:
        start["init_exclude_genes"] = adata.var["role"].isin(
            args.init_exclude_role.split(",")).to_numpy()
        print(f"start without {int(start['init_exclude_genes'].sum())} genes "
              f"({args.init_exclude_role})")
    scvi.settings.seed = args.seed
    t0 = time.perf_counter()
    model = cplmix_sc.CplMixVAE(adata, n_categories=k0)
    model.train(enable_progress_bar=False, **start, **quick)
    left_out = model.init_excluded_genes_
    roles = ("" if "role" not in adata.var else  # the simulator: which kinds of genes
             f": {adata.var.loc[left_out, 'role'].value_counts().to_dict()}")
    print(f"start left out {len(left_out)} of {adata.n_vars} genes{roles}")
    s0 = clustering_scores(adata.obs[key], adata.obs["cpl_type"])
    print(f"trained K={k0}: used {adata.obs['cpl_type'].nunique()}, ari {s0['ari']:.3f} "
          f"ami {s0['ami']:.3f} acc {s0['accuracy']:.3f} ({time.perf_counter() - t0:.0f} s)")
    if "state" in adata.obs:  # the simulator: where along the true state each category sits
        print(state_ranges(adata, key, model.predict()).to_string())
    if args.curve is not None:
        curve(model, adata.obs[key], args.curve)
        return
    hist = model.prune(enable_progress_bar=False,
                       **({"fine_tune_epochs": 1, "max_rounds": 2} if args.quick else {}))
    s1 = clustering_scores(adata.obs[key], adata.obs["cpl_type"])
    print(hist.drop(columns=["consensus"]).to_string())
    last = hist.iloc[-1]["consensus"]
    survivors = [last[int(c)] for c in model.active_categories if int(c) in last]
    print(f"consensus of the {len(survivors)} surviving categories: mean "
          f"{np.mean(survivors):.3f}, min {np.min(survivors):.3f}; cells on which the arms "
          f"agree: {adata.uns['cpl']['arm_consensus']:.3f}")
    print(f"pruned: K={len(model.active_categories)}, used {adata.obs['cpl_type'].nunique()}, "
          f"ari {s1['ari']:.3f} ami {s1['ami']:.3f} acc {s1['accuracy']:.3f} "
          f"({time.perf_counter() - t0:.0f} s)")
    scvi.settings.seed = args.seed
    ref = cplmix_sc.CplMixVAE(adata, n_categories=k_true)
    ref.train(enable_progress_bar=False, key_added="ref", **quick)
    s2 = clustering_scores(adata.obs[key], adata.obs["ref_type"])
    print(f"true K={k_true}: ari {s2['ari']:.3f} ami {s2['ami']:.3f} acc {s2['accuracy']:.3f}")
    if args.init_exclude_role or args.init_resolution != 1.0 or args.every_gene:
        # the same start at the true K
        scvi.settings.seed = args.seed
        ref2 = cplmix_sc.CplMixVAE(adata, n_categories=k_true)
        ref2.train(enable_progress_bar=False, key_added="ref2", **start, **quick)
        s3 = clustering_scores(adata.obs[key], adata.obs["ref2_type"])
        print(f"true K={k_true}, same start: ari {s3['ari']:.3f} ami {s3['ami']:.3f} "
              f"acc {s3['accuracy']:.3f}")
    # which of the two the objective prefers (per cell and arm-summed, lower is better)
    print(f"objective, pruned model: {objective(model)}")
    print(f"objective, true-K model: {objective(ref)}")


if __name__ == "__main__":
    main()

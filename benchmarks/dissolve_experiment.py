"""Experiment (not a method): dissolve the largest category and fine-tune; does it escape?

    python benchmarks/dissolve_experiment.py sim:1.2 4

Trains CplMixVAE with its defaults on the task (as in ``quality.py``), then per round masks
the category with the most cells (its cells move to the others), fine-tunes 20 epochs and
keeps the move if the loss per cell dropped (uncontrolled: more epochs lower the loss anyway).
Figures in ``results/levers.md``.
"""

from __future__ import annotations

import copy
import logging
import sys
import time
import warnings

import numpy as np
import pandas as pd
import scvi
import torch
from quality import load_task

import cplmix_sc
from cplmix_sc.metrics import clustering_scores, state_recovery

warnings.filterwarnings("ignore")
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)


@torch.no_grad()
def loss_per_cell(model, adata) -> float:
    model.module.eval()
    tot, n = 0.0, 0
    for t in model._make_data_loader(adata=adata, batch_size=512):
        _, _, lo = model.module(t)
        b = t["X"].shape[0]
        tot, n = tot + float(lo.loss) * b, n + b
    return tot / n


def report(tag, model, adata, key, loss, t0) -> None:
    pred = model.predict()
    s = clustering_scores(adata.obs[key], pred)
    line = (f"{tag} loss {loss:.1f} ari {s['ari']:.3f} ami {s['ami']:.3f} "
            f"acc {s['accuracy']:.3f} used {len(np.unique(pred))}")
    if "state" in adata.obs:
        model.annotate(adata)
        rho = state_recovery(adata.obs["state"], adata.obsm["X_cpl_state"], adata.obs["type"])
        resp = adata.uns["simulation"]["responsive_types"]
        line += f" state {np.mean([rho[t] for t in resp]):.3f}"
    print(line, f"({time.perf_counter() - t0:.0f} s)", flush=True)


def main() -> None:
    task, rounds = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 4
    torch.set_num_threads(1)
    adata, key, k = load_task(task)
    scvi.settings.seed = 0
    cplmix_sc.CplMixVAE.setup_anndata(adata)
    model = cplmix_sc.CplMixVAE(adata, n_categories=k)
    t0 = time.perf_counter()
    model.train(enable_progress_bar=False, annotate=False)
    loss = loss_per_cell(model, adata)
    report("trained", model, adata, key, loss, t0)
    for r in range(rounds):
        counts = pd.Series(model.predict()).value_counts()
        c = int(counts.index[0])
        print(f"round {r}: dissolve {c} ({counts.iloc[0]} cells)", flush=True)
        saved = copy.deepcopy(model.module.state_dict())
        mask = model.module.category_mask.clone()
        mask[c] = False
        model.module.set_category_mask(mask)
        model.train(max_epochs=20, enable_progress_bar=False, annotate=False)
        new = loss_per_cell(model, adata)
        report("  after", model, adata, key, new, t0)
        if new < loss:
            print("  accepted", flush=True)
            loss = new
        else:
            print("  rejected", flush=True)
            model.module.load_state_dict(saved)


if __name__ == "__main__":
    main()

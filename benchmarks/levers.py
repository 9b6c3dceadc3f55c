"""Measure one setting (a "lever") of CplMixVAE along its training trajectory.

    python benchmarks/levers.py zeisel47 '{"state_dropout": 0.5}'
    python benchmarks/levers.py sim '{"entropy_weight": 1}' --warmup 10 --epochs 80 --every 20

Data (as in ``quality.py``): ``zeisel47`` (Zeisel vs level2, 47 categories), ``zeisel7`` (vs
level1, 7), ``sim`` (the default simulator, 12 types; also prints state recovery). The JSON
holds CplMixVAE arguments plus ``klw`` (state KL weight). After the k-means warm-up and every
``--every`` epochs it prints ARI / AMI / accuracy against the labels and the number of
categories in use, so that a setting's peak and drift are both visible. Single thread, seed 0.
The figures in ``benchmarks/results/levers.md`` come from this script.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import warnings

import numpy as np
import scvi
import torch
from quality import load_task
from scvi.model.base import UnsupervisedTrainingMixin

import cplmix_sc
from cplmix_sc.metrics import clustering_scores, state_recovery

warnings.filterwarnings("ignore")
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("data", choices=["zeisel47", "zeisel7", "sim"])
    p.add_argument("kwargs", nargs="?", default="{}")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--epochs", type=int, default=80)
    p.add_argument("--every", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(1)
    kw = json.loads(args.kwargs)
    scvi.settings.seed = args.seed
    klw = kw.pop("klw", 1.0)
    adata, key, k = load_task(args.data)
    cplmix_sc.CplMixVAE.setup_anndata(adata)
    model = cplmix_sc.CplMixVAE(adata, n_categories=k, **kw)
    plan = {"n_epochs_kl_warmup": None, "max_kl_weight": klw}
    t0 = time.perf_counter()

    def fit(n):
        model.module.train()
        UnsupervisedTrainingMixin.train(model, max_epochs=n, batch_size=256, train_size=1.0,
                                        plan_kwargs=plan, enable_progress_bar=False)

    def report(tag):
        pred = model.predict()
        s = clustering_scores(adata.obs[key], pred)
        line = (f"{tag:>5} ari {s['ari']:.3f} ami {s['ami']:.3f} acc {s['accuracy']:.3f} "
                f"used {len(np.unique(pred))}")
        if args.data == "sim":
            model.annotate(adata)
            rho = state_recovery(adata.obs["state"], adata.obsm["X_cpl_state"], adata.obs["type"])
            resp = adata.uns["simulation"]["responsive_types"]
            line += f" state_rho {np.mean([rho[t] for t in resp]):.3f}"
        print(line, f"({time.perf_counter() - t0:.0f} s)", flush=True)

    print(args.data, json.dumps(kw), f"klw={klw}", flush=True)
    if args.warmup:
        model._fit_teacher()
        model.module.phase = "warmup"
        fit(args.warmup)
        model.module.phase = "mixture"
        report("warm")
    for i in range(args.epochs // args.every):
        fit(args.every)
        report(str((i + 1) * args.every))


if __name__ == "__main__":
    main()

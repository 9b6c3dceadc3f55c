"""Choosing K by pruning: start with more categories than types, prune, see where K lands.

    python benchmarks/choose_k.py sim 24          # simulator with 12 types, from 24
    python benchmarks/choose_k.py zeisel47 80     # Zeisel (47 subclasses), from 80

Trains CplMixVAE with its defaults and ``n_categories`` = the second argument, then
``model.prune()`` with its defaults, printing the pruning history, the scores against the
labels before and after, and the same scores of a model given the true K. Seed 0.
"""

from __future__ import annotations

import sys
import time
import warnings

import scvi
from quality import load_task

import cplmix_sc
from cplmix_sc.metrics import clustering_scores

warnings.filterwarnings("ignore")


def main() -> None:
    task, k0 = sys.argv[1], int(sys.argv[2])
    adata, key, k_true = load_task(task)
    cplmix_sc.CplMixVAE.setup_anndata(adata)
    scvi.settings.seed = 0
    t0 = time.perf_counter()
    model = cplmix_sc.CplMixVAE(adata, n_categories=k0)
    model.train(enable_progress_bar=False)
    s0 = clustering_scores(adata.obs[key], adata.obs["cpl_type"])
    print(f"trained K={k0}: used {adata.obs['cpl_type'].nunique()}, ari {s0['ari']:.3f} "
          f"ami {s0['ami']:.3f} acc {s0['accuracy']:.3f} ({time.perf_counter() - t0:.0f} s)")
    hist = model.prune(enable_progress_bar=False)
    s1 = clustering_scores(adata.obs[key], adata.obs["cpl_type"])
    print(hist.drop(columns=["consensus"]).to_string())
    print(f"pruned: K={len(model.active_categories)}, used {adata.obs['cpl_type'].nunique()}, "
          f"ari {s1['ari']:.3f} ami {s1['ami']:.3f} acc {s1['accuracy']:.3f} "
          f"({time.perf_counter() - t0:.0f} s)")
    scvi.settings.seed = 0
    ref = cplmix_sc.CplMixVAE(adata, n_categories=k_true)
    ref.train(enable_progress_bar=False, key_added="ref")
    s2 = clustering_scores(adata.obs[key], adata.obs["ref_type"])
    print(f"true K={k_true}: ari {s2['ari']:.3f} ami {s2['ami']:.3f} acc {s2['accuracy']:.3f}")


if __name__ == "__main__":
    main()

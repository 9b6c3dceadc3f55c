"""Do label-free scores pick the better of several runs? (seeds x defaults on Zeisel, 47)

    python benchmarks/selection.py --seeds 0,1,2

For every seed it prints ARI against level2 next to three label-free scores a user could
compute: inter-arm consensus, mean consensus confidence, and the final training ELBO.
"""

from __future__ import annotations

import argparse

import numpy as np
import scvi
from quality import load_task

import cplmix_sc
from cplmix_sc.metrics import clustering_scores


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seeds", default="0,1,2")
    args = p.parse_args()
    for seed in map(int, args.seeds.split(",")):
        adata, key, k = load_task("zeisel47")
        scvi.settings.seed = seed
        cplmix_sc.CplMixVAE.setup_anndata(adata)
        model = cplmix_sc.CplMixVAE(adata, n_categories=k)
        model.train(enable_progress_bar=False)
        s = clustering_scores(adata.obs[key], adata.obs["cpl_type"])
        elbo = float(np.asarray(model.history["elbo_train"], dtype=float).ravel()[-1])
        print(f"seed {seed}: ARI {s['ari']:.3f} AMI {s['ami']:.3f} | arm consensus "
              f"{adata.uns['cpl']['arm_consensus']:.3f} confidence "
              f"{adata.obs['cpl_type_confidence'].mean():.3f} ELBO {elbo:.1f} "
              f"types {adata.uns['cpl']['n_types_used']}", flush=True)


if __name__ == "__main__":
    main()

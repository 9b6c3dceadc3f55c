"""Posterior predictive checks (scvi.criticism) of CplMixVAE against scVI on Zeisel 2015.

    python benchmarks/ppc.py            # ~8 min on 2 CPU cores

Trains CplMixVAE (README defaults, ``n_categories=47``) and scVI (scvi-tools' defaults) on
the bundled Zeisel data (seed 0), times ``differential_expression()`` on its defaults,
then runs ``scvi.criticism.PosteriorPredictiveCheck``
with 5 posterior predictive samples per cell and reports its coefficient-of-variation
(per gene across cells, ``cv_gene``; per cell across genes, ``cv_cell``) and zero-fraction
metrics: each model's value against the raw data's, per gene (or cell), as Spearman
correlation and mean absolute error. Writes ``benchmarks/results/ppc.md``.
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import scvi
from scipy.stats import spearmanr
from scvi.criticism import PosteriorPredictiveCheck

import cplmix_sc

warnings.filterwarnings("ignore")
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
RESULTS = Path(__file__).parent / "results"
N_SAMPLES = 5  # x 3,005 cells x 4,000 genes x 2 models, 57% non-zero: memory
SEED = 0


def main() -> None:
    scvi.settings.seed = SEED
    adata = cplmix_sc.datasets.zeisel2015()
    cplmix_sc.CplMixVAE.setup_anndata(adata)
    models, seconds = {}, {}
    start = time.perf_counter()
    models["CplMixVAE"] = cplmix_sc.CplMixVAE(adata, n_categories=47)
    models["CplMixVAE"].train(enable_progress_bar=False)
    seconds["CplMixVAE"] = time.perf_counter() - start
    start = time.perf_counter()
    de = models["CplMixVAE"].differential_expression(silent=True)
    de_seconds = time.perf_counter() - start
    sdata = adata.copy()
    scvi.model.SCVI.setup_anndata(sdata)
    start = time.perf_counter()
    models["scVI"] = scvi.model.SCVI(sdata)
    models["scVI"].train(enable_progress_bar=False)
    seconds["scVI"] = time.perf_counter() - start
    # scvi-tools 1.4.2's integer check fails on a sparse float matrix: give it integer counts
    raw = adata.copy()
    raw.X = sp.csr_matrix(raw.X).astype(np.int32)
    start = time.perf_counter()
    ppc = PosteriorPredictiveCheck(raw, models, n_samples=N_SAMPLES)
    ppc_seconds = time.perf_counter() - start
    ppc.coefficient_of_variation("cells")  # per gene, across cells
    ppc.coefficient_of_variation("features")  # per cell, across genes
    ppc.zero_fraction()
    rows = []
    for metric in ("cv_gene", "cv_cell", "zero_fraction"):
        df = ppc.metrics[metric]
        for name in models:
            ok = np.isfinite(df[name]) & np.isfinite(df["Raw"])
            rows.append({
                "metric": metric,
                "model": name,
                "spearman vs raw": spearmanr(df[name][ok], df["Raw"][ok]).statistic,
                "MAE vs raw": float(np.abs(df[name][ok] - df["Raw"][ok]).mean()),
                "model mean": float(df[name][ok].mean()),
                "raw mean": float(df["Raw"][ok].mean()),
            })
    table = pd.DataFrame(rows).round(3)
    text = "\n".join([
        "# Posterior predictive checks on Zeisel 2015: CplMixVAE vs scVI",
        "",
        "Command: `python benchmarks/ppc.py` (2 CPU cores, seed 0). "
        "`scvi.criticism.PosteriorPredictiveCheck` with "
        f"{N_SAMPLES} samples per cell on all {adata.n_obs} cells x {adata.n_vars} genes. "
        "CplMixVAE: `n_categories=47`, `train()` defaults "
        f"({seconds['CplMixVAE']:.0f} s); its samples draw a type from the consensus q(c|x), "
        "a state from arm 0's q(s|x,c) and counts from arm 0's negative binomial with the "
        f"cell's library size. scVI: scvi-tools defaults ({seconds['scVI']:.0f} s). "
        f"Sampling took {ppc_seconds:.0f} s. `differential_expression()` with its defaults (each "
        f"of the {de['group1'].nunique()} types against the rest, all genes) took "
        f"{de_seconds:.0f} s.",
        "",
        "`cv_gene`: per gene, coefficient of variation across cells; `cv_cell`: per cell, "
        "across genes; `zero_fraction`: per gene, fraction of cells with a non-zero count "
        "(scvi-tools' definition). Each is averaged over the samples and compared with the "
        "raw data's value, gene by gene (cell by cell): Spearman correlation and mean absolute "
        "error (closer to the raw data is better).",
        "",
        table.to_markdown(index=False),
        "",
    ])
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ppc.md").write_text(text)
    print(text)


if __name__ == "__main__":
    print("command: python " + " ".join(sys.argv), flush=True)
    main()

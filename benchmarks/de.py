"""Differential expression of CplMixVAE: time on Zeisel 2015, recovery on the simulator.

    python benchmarks/de.py --zeisel-model DIR --sim-model DIR   # ~6 min on 2 CPU cores
    python benchmarks/de.py --quick --out de.md                  # tiny data: does it run

1. Zeisel: ``CplMixVAE(adata, n_categories=47).train()`` (README defaults, seed 0; loaded from
   ``--zeisel-model`` if saved there, else trained and saved there), then the wall time of
   ``differential_expression(silent=True)`` with its defaults (each type against the rest,
   all genes, raw-count statistics), with the torch threads and the load average.
2. Simulator (issue 18's check): ``synthetic()`` defaults, ``n_categories=12``, ``train()``
   defaults (seed 0; ``--sim-model`` as above). For each found type whose cells are at least
   80% one true type: the fraction of its top 10 genes by ``lfc_mean`` among the 20 largest
   true log2 fold changes of that true type against the mean of the other types (the
   simulator's means averaged over the state), averaged over such types; for the default
   DE, for ``cells_per_change=1`` (scvi-tools' per-cell log ratios) and for the found types'
   empirical log fold change of normalised counts. Also how many (type, gene) pairs each DE
   calls at FDR 0.05, and for the pure types, the precision and recall of these calls
   against the true type's |log2 fold change| >= 0.25 (the default ``delta``).

Writes ``benchmarks/results/de.md`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import scvi
import torch
from _common import RESULTS, quiet

import cplmix_sc
from cplmix_sc import CplMixVAE


def _model(adata, path: str | None, n_categories: int, train_kwargs: dict) -> CplMixVAE:
    if path and (Path(path) / "model.pt").exists():
        return CplMixVAE.load(path)
    scvi.settings.seed = 0
    CplMixVAE.setup_anndata(adata)
    model = CplMixVAE(adata, n_categories=n_categories)
    model.train(enable_progress_bar=False, **train_kwargs)
    if path:
        model.save(path, save_anndata=True, overwrite=True)
    return model


def true_lfc(adata) -> pd.DataFrame:
    """log2 fold change of each true type against the mean of the others, the simulator's
    means averaged over the state (uniform on [-1, 1])."""
    s = np.linspace(-1.0, 1.0, 201)[:, None, None]
    log_mu = (adata.var["base"].to_numpy()[None, None] + adata.varm["type_effects"].T[None]
              + s * adata.varm["slopes"].T[None])
    prop = np.exp(log_mu - log_mu.max(-1, keepdims=True))
    mean = (prop / prop.sum(-1, keepdims=True)).mean(0)
    rest = (mean.sum(0, keepdims=True) - mean) / (mean.shape[0] - 1)
    return pd.DataFrame(np.log2(mean / rest), index=adata.obs["type"].cat.categories,
                        columns=adata.var_names)


def time_zeisel(args) -> str:
    adata = cplmix_sc.datasets.zeisel2015()
    if args.quick:
        adata = adata[:400, :300].copy()
    model = _model(adata, args.zeisel_model, 10 if args.quick else 47,
                   {"max_epochs": 4, "warmup_epochs": 1} if args.quick else {})
    scvi.settings.seed = 0
    start = time.perf_counter()
    de = model.differential_expression(silent=True)
    seconds = time.perf_counter() - start
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    return (f"| Zeisel 2015, n_categories={model.module.n_categories} | "
            f"{de['group1'].nunique()} | {torch.get_num_threads()} | {seconds:.1f} | {load} |")


def recovery(args) -> list[str]:
    adata = cplmix_sc.datasets.synthetic(**({"n_cells": 600, "n_genes": 300} if args.quick
                                            else {}))
    model = _model(adata, args.sim_model, 12,
                   {"max_epochs": 4, "warmup_epochs": 1} if args.quick else {})
    adata = model.adata
    truth = true_lfc(adata)
    tab = pd.crosstab(adata.obs["cpl_type"], adata.obs["type"])
    pure = [(f, row.idxmax()) for f, row in tab.iterrows() if row.max() >= 0.8 * row.sum()]
    x = np.asarray(sp.csr_matrix(adata.X).multiply(1.0 / adata.X.sum(1)).todense())
    variants = {"default": {}}
    if "cells_per_change" in inspect.signature(model.differential_expression).parameters:
        variants["cells_per_change=1"] = {"cells_per_change": 1}
    rows = []
    for name, kw in variants.items():
        scvi.settings.seed = 0
        de = model.differential_expression(silent=True, all_stats=False, **kw)
        hits = [len(set(truth.loc[t].nlargest(20).index)
                    & set(de[de["group1"] == f]["lfc_mean"].nlargest(10).index)) / 10
                for f, t in pure]
        # calls of the pure types against |true lfc| >= delta (0.25) of their true type
        called = np.concatenate([np.zeros(0, bool)] + [
            de[de["group1"] == f]["is_de_fdr_0.05"].reindex(adata.var_names).to_numpy(bool)
            for f, _ in pure])
        real = np.concatenate([np.zeros(0, bool)] + [
            np.abs(truth.loc[t].to_numpy()) >= 0.25 for _, t in pure])
        rows.append(f"| DE, {name} | {np.mean(hits) if hits else np.nan:.3f} | "
                    f"{int(de['is_de_fdr_0.05'].sum())} of {len(de)} | "
                    f"{(called & real).sum() / max(called.sum(), 1):.2f} | "
                    f"{(called & real).sum() / max(real.sum(), 1):.2f} |")
    hits = []
    for f, t in pure:
        inside = (adata.obs["cpl_type"] == f).to_numpy()
        emp = np.log2(x[inside].mean(0) + 1e-6) - np.log2(x[~inside].mean(0) + 1e-6)
        top = adata.var_names[np.argsort(-emp)[:10]]
        hits.append(len(set(truth.loc[t].nlargest(20).index) & set(top)) / 10)
    rows.append(f"| empirical lfc of the found types | {np.mean(hits) if hits else np.nan:.3f}"
                " | - | - | - |")
    rows.append(f"\n{len(pure)} of {len(tab)} found types are at least 80% one true type.")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zeisel-model", default=None)
    parser.add_argument("--sim-model", default=None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(RESULTS / "de.md"))
    args = parser.parse_args()
    quiet()
    text = "\n".join([
        "# Differential expression",
        "",
        f"Command: `python benchmarks/de.py {' '.join(sys.argv[1:])}` (seed 0; "
        "CPU, torch threads as set by OMP_NUM_THREADS).",
        "",
        "| data | groups | torch threads | DE seconds | load average (1, 5, 15 min) |",
        "|---|---|---|---|---|",
        time_zeisel(args),
        "",
        "Recovery on `synthetic()` (issue 18's check; the target is 0.7):",
        "",
        "| log fold change | top-10 recovery | DE at FDR 0.05 | precision | recall |",
        "|---|---|---|---|---|",
        *recovery(args),
        "",
    ])
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()

"""Command line: ``cplmix-sc demo`` trains on the bundled Zeisel data and writes results."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _select_genes(adata, n_top_genes: int):
    import scanpy as sc

    if n_top_genes <= 0 or n_top_genes >= adata.n_vars:
        return adata
    hvg = sc.pp.highly_variable_genes(
        adata, n_top_genes=n_top_genes, flavor="seurat_v3", inplace=False
    )
    return adata[:, hvg["highly_variable"].to_numpy()].copy()


def demo(
    out: str | Path = "cplmix_demo",
    n_categories: int = 47,
    max_epochs: int | None = None,
    n_top_genes: int = 2000,
    seed: int = 0,
    n_cells: int | None = None,
    progress: bool = True,
) -> dict:
    """Train CplMixVAE on Zeisel 2015 and write ``.h5ad``, ``metrics.json`` and a figure.

    Parameters
    ----------
    out
        Output folder (created).
    n_categories
        Number of categories (47: the published subclasses).
    max_epochs
        Training epochs (default: the model's default).
    n_top_genes
        Highly variable genes kept (seurat_v3 on counts); ``0`` keeps all 4,000.
    seed
        Random seed (``scvi.settings.seed``).
    n_cells
        Train on a random subset of this many cells (quick checks).
    progress
        Print one line per training phase (:class:`~cplmix_sc.train.PhaseSummary`) and per
        step of the start's gene search (:func:`~cplmix_sc.train.progress_line`); Lightning's
        messages, warnings and per-phase progress bars are silenced either way.

    Returns
    -------
    The metrics written to ``metrics.json``.
    """
    import numpy as np
    import scvi

    from . import CplMixVAE, datasets, metrics
    from .pl import demo_figure
    from .train import PhaseSummary
    from .train._progress import quiet_lightning, quiet_progress

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with quiet_lightning():
        scvi.settings.seed = seed
    adata = datasets.zeisel2015()
    if n_cells is not None and n_cells < adata.n_obs:
        rng = np.random.default_rng(seed)
        adata = adata[np.sort(rng.choice(adata.n_obs, n_cells, replace=False))].copy()
    adata = _select_genes(adata, n_top_genes)
    CplMixVAE.setup_anndata(adata)
    model = CplMixVAE(adata, n_categories=n_categories)
    start = time.perf_counter()
    with quiet_lightning(), quiet_progress(not progress):
        model.train(max_epochs=max_epochs, enable_progress_bar=False,
                    callbacks=[PhaseSummary()] if progress else None)
    seconds = time.perf_counter() - start
    result = {
        "dataset": "zeisel2015",
        "n_cells": int(adata.n_obs),
        "n_genes": int(adata.n_vars),
        "n_categories": n_categories,
        "seed": seed,
        "train_seconds": round(seconds, 1),
        "n_types_used": int(adata.uns["cpl"]["n_types_used"]),
        "arm_consensus": adata.uns["cpl"]["arm_consensus"],
        "vs_level2": metrics.clustering_scores(adata.obs["level2"], adata.obs["cpl_type"]),
        "vs_level1": metrics.clustering_scores(adata.obs["level1"], adata.obs["cpl_type"]),
    }
    adata.write_h5ad(out / "zeisel_cplmix.h5ad", compression="gzip")
    (out / "metrics.json").write_text(json.dumps(result, indent=2))
    demo_figure(adata, reference_key="level1", save=out / "zeisel_cplmix.png", show=False)
    model.save(out / "model", overwrite=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cplmix-sc", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="train on the bundled Zeisel 2015 data and write results")
    p.add_argument("--out", default="cplmix_demo", help="output folder (default: %(default)s)")
    p.add_argument("--n-categories", type=int, default=47)
    p.add_argument("--max-epochs", type=int, default=None)
    p.add_argument("--n-top-genes", type=int, default=2000)
    p.add_argument("--n-cells", type=int, default=None, help="train on a random subset")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "demo":
        res = demo(
            out=args.out,
            n_categories=args.n_categories,
            max_epochs=args.max_epochs,
            n_top_genes=args.n_top_genes,
            seed=args.seed,
            n_cells=args.n_cells,
            progress=not args.no_progress,
        )
        l2, l1 = res["vs_level2"], res["vs_level1"]
        print(
            f"{res['n_types_used']} types on {res['n_cells']} cells in {res['train_seconds']} s; "
            f"vs level2: ARI {l2['ari']:.3f} AMI {l2['ami']:.3f} accuracy {l2['accuracy']:.3f}; "
            f"vs level1: ARI {l1['ari']:.3f}; arm consensus {res['arm_consensus']:.3f}\n"
            f"results in {Path(args.out).resolve()}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

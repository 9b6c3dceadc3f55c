"""Shared by the benchmarks: tasks, baselines' PCs, result tables and results files.

Not a benchmark. Every benchmark imports the package's public API only; what it needs beyond
that (a PCA of log-normalised counts, Leiden at a fixed resolution) is written here with
scanpy.
"""

from __future__ import annotations

import logging
import re
import warnings
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

import cplmix_sc
from cplmix_sc.start import keep_torch_threads

RESULTS = Path(__file__).parent / "results"
# --quick: tiny data and a few epochs, to check that a benchmark runs (tests/test_benchmarks_dry.py)
QUICK_TRAIN = {"max_epochs": 4, "warmup_epochs": 1}


def quiet() -> None:
    """Silence warnings and Lightning's / scvi-tools' progress logs."""
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("scvi").setLevel(logging.ERROR)
    logging.getLogger("cplmix_sc").setLevel(logging.WARNING)  # the package's progress lines


def load_task(task: str):
    """``(adata, label key, number of reference types)`` of a task.

    ``zeisel47`` (Zeisel 2015, 2,000 seurat_v3 genes, vs ``level2``), ``zeisel7`` (vs
    ``level1``), ``sim``, ``sim:M`` (the simulator with marker_effect M) or ``sim:M:S`` (and
    state_effect S; default 3), ``tiny`` (300 cells x 200 genes, 4 types: quick checks only).
    """
    import scanpy as sc

    if task == "tiny":
        adata = cplmix_sc.datasets.synthetic(n_cells=300, n_genes=200, n_types=4, n_markers=15,
                                             n_activity=20, n_housekeeping=20, marker_effect=2.5,
                                             seed=0)
        return adata, "type", 4
    if task.startswith("sim"):
        parts = task.split(":")[1:]
        kw = dict(zip(("marker_effect", "state_effect"), map(float, parts), strict=False))
        adata = cplmix_sc.datasets.synthetic(seed=0, **kw)
        return adata, "type", 12
    adata = cplmix_sc.datasets.zeisel2015()
    with keep_torch_threads():
        hvg = sc.pp.highly_variable_genes(adata, n_top_genes=2000, flavor="seurat_v3",
                                          inplace=False)
    adata = adata[:, hvg["highly_variable"].to_numpy()].copy()
    return (adata, "level2", 47) if task == "zeisel47" else (adata, "level1", 7)


def log_pcs(adata, n_pcs=30, seed=0) -> np.ndarray:
    """Top PCs of log1p CP10k (scanpy), the baselines' representation."""
    import scanpy as sc

    b = adata.copy()
    sc.pp.normalize_total(b, target_sum=1e4)
    sc.pp.log1p(b)
    with keep_torch_threads():
        sc.pp.pca(b, n_comps=min(n_pcs, min(b.shape) - 1), random_state=seed)
    return b.obsm["X_pca"]


def leiden_at_resolution(rep: np.ndarray, resolutions, seed: int = 0,
                         n_neighbors: int = 15) -> dict[float, np.ndarray]:
    """Leiden on a kNN graph of ``rep`` at each resolution (scanpy, as the graph start runs it)."""
    import scanpy as sc
    from anndata import AnnData

    g = AnnData(np.zeros((rep.shape[0], 1), dtype=np.float32))
    g.obsm["rep"] = np.asarray(rep, dtype=np.float32)
    out = {}
    with keep_torch_threads():
        sc.pp.neighbors(g, use_rep="rep", n_neighbors=min(n_neighbors, rep.shape[0] - 1),
                        random_state=seed, transformer="sklearn")
        for res in resolutions:
            sc.tl.leiden(g, resolution=res, random_state=seed, flavor="igraph", n_iterations=2,
                         directed=False)
            out[res] = g.obs["leiden"].cat.codes.to_numpy().copy()
    return out


def mean_state_recovery(adata, state: np.ndarray) -> float:
    """Mean |Spearman| of the state's main axis with the truth, over responsive true types."""
    rho = cplmix_sc.metrics.state_recovery(adata.obs["state"], state, adata.obs["type"])
    return float(np.mean([rho[t] for t in adata.uns["simulation"]["responsive_types"]]))


def table(runs: pd.DataFrame) -> str:
    """Markdown table of mean ± sd over seeds per (task, method)."""
    cols = ["ari", "ami", "accuracy", "n_types", "seconds"] + [
        c for c in ("state_rho", "level1_acc", "silhouette_10pc") if c in runs]
    g = runs.groupby(["task", "method"], sort=False)[cols]
    mean, sd, n = g.mean(), g.std(), g.size()
    lines = ["| task | method | seeds | " + " | ".join(cols) + " |",
             "|" + "---|" * (len(cols) + 3)]
    for idx in mean.index:
        cells = []
        for c in cols:
            m, s = mean.loc[idx, c], sd.loc[idx, c]
            if np.isnan(m):
                cells.append("-")
            elif c in ("seconds", "n_types"):
                cells.append(f"{m:.0f}")
            else:
                cells.append(f"{m:.3f}" + ("" if np.isnan(s) else f" ± {s:.3f}"))
        lines.append(f"| {idx[0]} | {idx[1]} | {n.loc[idx]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def seed_agreement(rows: list[dict]) -> str:
    """Mean ARI between the labels of different seeds, next to the mean ARI with the truth."""
    from sklearn.metrics import adjusted_rand_score

    lines = ["| task | method | seeds | ARI between seeds (mean) | ARI with the labels (mean) |",
             "|---|---|---|---|---|"]
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["task"], r["method"]), []).append(r)
    for (task, method), rs in groups.items():
        if len(rs) < 2:
            continue
        pairs = [adjusted_rand_score(a["labels"], b["labels"]) for a, b in combinations(rs, 2)]
        lines.append(f"| {task} | {method} | {len(rs)} | {np.mean(pairs):.3f} | "
                     f"{np.mean([r['ari'] for r in rs]):.3f} |")
    return "\n".join(lines)


def write_section(path: Path, name: str, text: str, title: str) -> None:
    """Write ``text`` as section ``name`` of the results file ``path``, keeping its others.

    A results file is one per benchmark; each part of the benchmark owns a section between
    ``<!-- section NAME -->`` and ``<!-- end NAME -->``. A missing file starts with ``title``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    block = f"<!-- section {name} -->\n{text.strip()}\n<!-- end {name} -->"
    old = path.read_text() if path.exists() else f"{title}\n"
    pattern = re.compile(rf"<!-- section {re.escape(name)} -->.*?<!-- end {re.escape(name)} -->",
                         re.S)
    new = pattern.sub(lambda _: block, old) if pattern.search(old) else (
        old.rstrip("\n") + "\n\n" + block)
    path.write_text(new.rstrip("\n") + "\n")

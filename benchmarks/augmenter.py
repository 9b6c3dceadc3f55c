"""The learned augmenter: type preservation (supplement F.1/F.2) and the Table S1 ablation.

    python benchmarks/augmenter.py --part quality     # Zeisel: train, classify copies, distances
    python benchmarks/augmenter.py --part ablation    # learned / simple / none / one arm
    python benchmarks/augmenter.py --part ablation --tasks sim --seeds 0

``quality``: an Augmenter with its defaults is trained on ``zeisel47`` (2,000 seurat_v3 HVGs),
one copy of every cell is drawn, and a classifier fit on *real* cells only (80% of the
labelled cells; logistic regression and 15-NN on 50 PCs of log1p CP10k, PCA fit on real
cells) labels held-out real cells and the copies of the same held-out cells. Distances in
the same PC space: copy to its source cell vs each real cell to its nearest real neighbour
of the same ``level2`` type. Binomial thinning (``augmentation="simple"``'s distribution, drawn
with NumPy) is scored the same way for comparison. Writes the ``quality`` section of
``results/augmenter.md`` (``--figure``: also the figure).

``ablation``: CplMixVAE (defaults, K = reference types) with ``augmentation="learned"``
(one augmenter per task, trained with its defaults and ``scvi.settings.seed = 0``),
``"simple"``, ``"none"`` and a single arm (``n_arms=1``, default augmentation), per seed.
Runs are seed-major and every finished run is appended to ``results/augmenter_runs.csv`` at
once (so an interrupted run keeps what it did); the ``ablation`` section of
``results/augmenter.md`` is written from the CSV.

``--quick``: the ``tiny`` task, seed 0, a few epochs, no figure; writes under ``--results``
(checks that it runs: ``tests/test_benchmarks_dry.py``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scvi
import torch
from _common import (
    QUICK_TRAIN,
    RESULTS,
    load_task,
    mean_state_recovery,
    quiet,
    table,
    write_section,
)
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors

import cplmix_sc
from cplmix_sc.metrics import clustering_scores

quiet()
TITLE = "# The learned augmenter: type preservation and ablation"
VARIANTS = ("learned", "simple", "none", "one_arm")


def lognorm(x) -> np.ndarray:
    x = np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=np.float64)
    return np.log1p(x / np.maximum(x.sum(1, keepdims=True), 1) * 1e4)


def train_augmenter(adata, task: str, cache: str, seed: int = 0, quick: bool = False):
    """An Augmenter with its defaults for ``task``; trained once, then loaded from ``cache``."""
    adata = adata.copy()
    adata.uns.clear()
    path = Path(cache) / f"{task}_seed{seed}"
    if (path / "model.pt").exists() and not quick:
        aug = cplmix_sc.Augmenter.load(str(path), adata=adata)
        return aug, json.loads((path / "seconds.json").read_text())["seconds"]
    scvi.settings.seed = seed
    cplmix_sc.Augmenter.setup_anndata(adata)
    aug = cplmix_sc.Augmenter(adata)
    t0 = time.perf_counter()
    aug.train(enable_progress_bar=False, **({"max_epochs": 2} if quick else {}))
    seconds = time.perf_counter() - t0
    aug.save(str(path), overwrite=True)
    (path / "seconds.json").write_text(json.dumps({"seconds": seconds}))
    aug.history["train_loss"].to_csv(path / "history.csv")
    return aug, seconds


def preservation(real, copies: dict[str, np.ndarray], labels, seed: int = 0) -> pd.DataFrame:
    """F.1: classifier fit on real cells; accuracy on held-out real cells vs their copies."""
    ok = labels != "(none)"
    idx = np.flatnonzero(ok)
    rng = np.random.default_rng(seed)
    rng.shuffle(idx)
    tr, te = idx[: int(0.8 * len(idx))], idx[int(0.8 * len(idx)):]
    xr = lognorm(real)
    pca = PCA(50, random_state=seed).fit(xr[tr])
    pr = pca.transform(xr)
    # nearest real neighbour of the same type (all labelled cells), in the same PCs
    nn = NearestNeighbors(n_neighbors=30).fit(pr[idx])
    dist, ind = nn.kneighbors(pr[te])
    same = labels[idx][ind] == labels[te][:, None]
    same[:, 0] = False  # the cell itself
    nn_same = np.array([d[s][0] if s.any() else np.nan for d, s in zip(dist, same, strict=True)])
    rows = []
    for clf_name, clf in (("logreg", LogisticRegression(max_iter=3000, C=0.1)),
                          ("knn15", KNeighborsClassifier(15))):
        clf.fit(pr[tr], labels[tr])
        acc_real = float((clf.predict(pr[te]) == labels[te]).mean())
        for name, xc in copies.items():
            pc = pca.transform(lognorm(xc[te]))
            acc = float((clf.predict(pc) == labels[te]).mean())
            d = np.linalg.norm(pc - pr[te], axis=1)
            rows.append({"copies": name, "classifier": clf_name, "acc_real": acc_real,
                         "acc_copies": acc, "ratio": acc / acc_real,
                         "median_dist_copy_source": float(np.median(d)),
                         "median_dist_nn_same_type": float(np.nanmedian(nn_same))})
    return pd.DataFrame(rows)


def part_quality(args) -> None:
    task = "tiny" if args.quick else "zeisel47"
    adata, key, _ = load_task(task)
    aug, seconds = train_augmenter(adata, task, args.cache, quick=args.quick)
    x = np.asarray(adata.X.toarray() if hasattr(adata.X, "toarray") else adata.X)
    copies = {
        "learned": aug.augment(adata_for(aug, adata), seed=0).X,
        "learned (2nd copy)": aug.augment(adata_for(aug, adata), seed=1).X,
        "simple (thinning 0.8)": np.random.default_rng(0).binomial(
            np.rint(x).astype(np.int64), 0.8).astype(np.float32),
        "none (the cell)": adata.X,
    }
    labels = adata.obs[key].astype(str).to_numpy()
    res = preservation(adata.X, copies, labels)
    # the noise path alone: expected expression of x_n vs x_¬n (log1p CP10k, mean sq. per gene)
    h = aug.history if aug.history else {}
    lines = [
        "## Type preservation on Zeisel (F.1 / F.2)", "",
        f"Command: `python benchmarks/augmenter.py --part quality` (CPU, "
        f"{time.strftime('%Y-%m-%d')}, OMP_NUM_THREADS={args.threads})", "",
        f"Augmenter training (defaults, 3,005 cells x 2,000 genes): {seconds:.0f} s (wall "
        "clock on a shared 2-core machine).", "",
        "Classifier fit on 80% of the labelled real cells (level2, 47 types; 50 PCs of log1p "
        "CP10k); accuracy on the other 20% (real) and on one copy of each of those cells. "
        "Distances in the same 50 PCs: copy to its source cell; real cell to its nearest real "
        "neighbour of the same level2 type (medians).", "",
        res.to_markdown(index=False, floatfmt=".3f"), "",
        "Last-epoch training terms: " + ", ".join(
            f"{c.removesuffix('_train')} {float(h[c].iloc[-1, 0]):.4g}"
            for c in ("reconstruction_loss_train", "triplet_train", "closeness_train",
                      "generator_adv_train", "discriminator_loss_train") if c in h),
    ]
    write_section(Path(args.results) / "augmenter.md", "quality", "\n".join(lines), TITLE)
    print("\n".join(lines))
    if args.figure and not args.quick:
        part_figure(args)


def part_figure(args) -> None:
    """F.2 figure: genes of three kinds (Fig. S5) and the shared 2-D map (Fig. S3)."""
    adata, key, _ = load_task("zeisel47")
    aug, _ = train_augmenter(adata, "zeisel47", args.cache)
    copies = aug.augment(adata_for(aug, adata), seed=0)
    real = adata.copy()
    cplmix_sc.tl.embed_augmented(real, copies)
    # the bundled genes are unnamed: pick markers (most variable between level2 types),
    # the most highly expressed genes (housekeeping-like) and two mid-expressed ones
    x = lognorm(real.X)
    labelled = real.obs[key].astype(str) != "(none)"
    means = pd.DataFrame(x[labelled.to_numpy()]).groupby(
        real.obs[key].astype(str)[labelled].to_numpy()).mean()
    order_marker = np.argsort(-means.var(0).to_numpy())
    order_mean = np.argsort(-x.mean(0))
    picks = list(dict.fromkeys([*order_marker[:3], *order_mean[:3], *order_mean[[500, 1000]]]))
    genes = [str(real.var_names[i]) for i in picks]
    out = RESULTS / "figures" / "zeisel_augmentation.png"
    cplmix_sc.pl.augmentation(real, copies, genes=genes, color=key, show=False, save=out)
    print("figure", out, "genes (3 markers, 3 highest mean, 2 mid):", genes)


def adata_for(aug, adata):
    """``adata`` registered for the augmenter (a copy, so the caller's registration stays)."""
    a = adata.copy()
    a.uns.clear()
    aug._validate_anndata(a)
    return a


def run_variant(task: str, variant: str, seed: int, aug, quick: bool = False) -> dict:
    adata, key, k = load_task(task)
    scvi.settings.seed = seed
    cplmix_sc.CplMixVAE.setup_anndata(adata)
    kw = {"n_arms": 1} if variant == "one_arm" else {}
    if variant == "learned":
        kw["augmenter"] = aug
    elif variant in ("simple", "none"):
        kw["augmentation"] = variant
    t0 = time.perf_counter()
    model = cplmix_sc.CplMixVAE(adata, n_categories=k, **kw)
    model.train(enable_progress_bar=False, **(QUICK_TRAIN if quick else {}))
    row = {"task": task, "method": variant, "seed": seed,
           "seconds": time.perf_counter() - t0,
           "n_types": int(adata.obs["cpl_type"].nunique()),
           **clustering_scores(adata.obs[key], adata.obs["cpl_type"].to_numpy())}
    if "state" in adata.obs:
        row["state_rho"] = mean_state_recovery(adata, adata.obsm["X_cpl_state"])
    return row


def part_ablation(args) -> None:
    runs_csv = Path(args.results) / "augmenter_runs.csv"
    done = pd.read_csv(runs_csv) if runs_csv.exists() and args.resume else None
    tasks = args.tasks.split(",")
    augs = {}
    for task in tasks:
        adata, _, _ = load_task(task)
        augs[task], sec = train_augmenter(adata, task, args.cache, quick=args.quick)
        print({"task": task, "augmenter_seconds": round(sec, 1)}, flush=True)
    for seed in map(int, args.seeds.split(",")):
        for task in tasks:
            for variant in args.variants.split(","):
                if done is not None and ((done.task == task) & (done.method == variant)
                                         & (done.seed == seed)).any():
                    continue
                row = run_variant(task, variant, seed, augs[task], args.quick)
                # rewrite the whole CSV: rows of the simulator carry an extra column
                runs = pd.DataFrame([row])
                if runs_csv.exists():
                    runs = pd.concat([pd.read_csv(runs_csv), runs], ignore_index=True)
                runs.to_csv(runs_csv, index=False)
                print({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()},
                      flush=True)
                write_table(runs_csv, args)


def write_table(runs_csv: Path, args) -> None:
    runs = pd.read_csv(runs_csv)
    text = ("## Ablation: learned augmenter vs simple perturbation vs none vs one arm\n\n"
            "Command: `python benchmarks/augmenter.py --part ablation [--tasks ...] [--variants "
            "...] [--seeds ...] --resume` (each finished run is a row of "
            f"`augmenter_runs.csv`; the `seeds` column says how many runs each mean has; CPU, "
            f"{time.strftime('%Y-%m-%d')}). CplMixVAE defaults, K = number of reference types; "
            "one augmenter per task (defaults, seed 0). `seconds` is wall clock on a shared, "
            "heavily loaded 2-core machine.\n\n" + table(runs))
    write_section(runs_csv.parent / "augmenter.md", "ablation", text, TITLE)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--part", default="quality",
                   choices=("quality", "ablation", "table", "figure"))
    p.add_argument("--tasks", default="zeisel47,sim")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--resume", action="store_true", help="skip runs already in the CSV")
    p.add_argument("--figure", action="store_true", help="also draw the F.2 figure")
    p.add_argument("--threads", default=torch.get_num_threads())
    p.add_argument("--cache", default="/tmp/cplmix_augmenters",
                   help="trained augmenters are saved here and reused")
    p.add_argument("--results", default=str(RESULTS), help="folder of augmenter.md")
    p.add_argument("--quick", action="store_true",
                   help="task 'tiny', seed 0, a few epochs (checks that it runs)")
    args = p.parse_args(argv)
    if args.quick:
        args.tasks, args.seeds = "tiny", "0"
    if args.part == "quality":
        part_quality(args)
    elif args.part == "ablation":
        part_ablation(args)
    elif args.part == "figure":
        part_figure(args)
    else:
        write_table(Path(args.results) / "augmenter_runs.csv", args)
        print((Path(args.results) / "augmenter.md").read_text())


if __name__ == "__main__":
    main()

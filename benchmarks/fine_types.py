"""Fine types at matched K: CplMixVAE against baselines on the many-type family and on Zeisel.

    python benchmarks/fine_types.py                   # REPORT draws 100-109 + Zeisel
    python benchmarks/fine_types.py --draws 0,1 --no-zeisel --out /tmp/tune.md   # TUNE draws
    python benchmarks/fine_types.py --quick           # dry test: one tiny draw, 2 epochs
    python benchmarks/fine_types.py --draws 108 --no-zeisel --no-baselines --methods prune_div
    python benchmarks/fine_types.py --draws "" --zeisel level2 --methods model,truth \
        --at-used model --seed 0,1,2      # Zeisel level2, baselines at the model's used K

Data: draws of :func:`cplmix_sc.datasets.synthetic_hierarchy` (TUNE seeds 0-4, REPORT seeds
100-109; tune only on TUNE) and Zeisel 2015 (2,000 variable genes) vs ``level2`` (K = 47) and
``level1`` (K = 7). K = the true number of types. Per data set:

- difficulty pin: accuracy (and ARI) of a 3-fold cross-validated logistic regression on
  standardised log-normalised counts (:func:`cv_logreg`);
- baselines at K: k-means on the top 30 PCs, Leiden with its resolution bisected to K
  (``cplmix_sc.start.leiden_n_clusters``), a multinomial mixture fitted by EM from k-means
  (:func:`em_multinomial`);
- ``--methods`` (comma-separated): ``model`` default ``train()`` (2 arms); ``model_div`` the
  many-types recipe (``init="divisive"``, ``coupling="detached"``, ``warmup_coupling=False``,
  ``start_weight=10``);
  ``divisive`` that start alone; ``model_km`` the defaults from the k-means start
  (``train(init="kmeans")``); ``one_arm`` / ``one_arm_div`` the same with ``n_arms=1``
  (``one_arm``: every other default as ``model``, the many-types ones included);
  ``no_aug`` the defaults with ``augmentation="none"`` (each arm sees the cell as it is);
  ``learned`` the defaults with a learned augmenter (``augmentation="learned"``), an
  :class:`~cplmix_sc.Augmenter` with its defaults trained on the data set first (seed 0,
  ``benchmarks/augmenter.py``'s ``train_augmenter``, cached under :data:`AUG_CACHE`, with
  ``--quick`` under ``./augmenters``;
  ``learned_aug_s``: its training seconds);
  ``truth`` default training started from the true types (``train(init_labels=...)``),
  ``truth_prior`` the same with ``start_weight=10``, ``truth_recipe`` with the recipe;
  ``prune_div`` the recipe from ``round(1.5 K)`` categories, then ``prune(**PRUNE)``
  (``prune_div_kept``: categories left, ``prune_div_start``: round(1.5 K));
  ``model_div`` also reports state recovery (:func:`state_scores`);
  categories used (>= 10 cells under the consensus argmax), ARI / AMI;
- ceiling: max(EM started from the truth, CV logistic regression ARI); gap closed
  ``(ARI_model - ARI_best) / (ceiling - ARI_best)`` where ``ceiling - best >= 0.05``;
- ``--at-used METHOD``: the same three baselines again at K' = the number of categories
  METHOD used (>= 10 cells), the model's own granularity: columns ``K_used``,
  ``kmeans@K_used_ari`` (``_ami``), ``leiden@K_used_*``, ``em@K_used_*`` (the k-means of
  ``em@K_used`` is the one at K'; when K' = K they are the baselines at K).

``--seed`` takes a comma-separated list: one row per data set and seed (training and the
baselines both use that seed), then the mean ± sd over seeds per data set.

Writes ``benchmarks/results/fine_types.md`` (``--out``) and prints the command.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import scvi
import torch
from sklearn.cluster import KMeans
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict

import cplmix_sc
from cplmix_sc.metrics import clustering_scores
from cplmix_sc.start import divisive_start, fit_start, leiden_n_clusters, multinomial_em

sys.path.insert(0, str(Path(__file__).parent))
from _common import load_task, log_pcs
from fine_mech import used

warnings.filterwarnings("ignore")
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
logging.getLogger("scvi").setLevel(logging.ERROR)
RESULTS = Path(__file__).parent / "results"
TUNE, REPORT = (0, 1, 2, 3, 4), tuple(range(100, 110))


def _dense(adata) -> np.ndarray:
    x = adata.X
    return np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=np.float64)


def cv_logreg(adata, labels: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """3-fold CV logistic regression on standardised log-normalised counts: (accuracy, ARI).

    Cells without a label (``NaN``) are left out."""
    ok = ~labels.isna() if hasattr(labels, "isna") else np.ones(len(labels), bool)
    x = _dense(adata)[np.asarray(ok)]
    y = np.unique(np.asarray(labels)[np.asarray(ok)].astype(str), return_inverse=True)[1]
    x = np.log1p(x / x.sum(1, keepdims=True) * 1e4)
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    cv = StratifiedKFold(3, shuffle=True, random_state=seed)
    pred = cross_val_predict(LogisticRegression(C=0.1, max_iter=300), x, y, cv=cv)
    return float((pred == y).mean()), clustering_scores(y, pred)["ari"]


def em_multinomial(x, labels: np.ndarray, k: int) -> np.ndarray:
    """The multinomial mixture baseline (:func:`cplmix_sc.start.multinomial_em`)."""
    return multinomial_em(x, labels, k)


#: the many-types recipe: a coupling whose cost does not grow with K, and the start kept as
#: a prior during the mixture phase
MANY = {"coupling": "detached", "warmup_coupling": False, "start_weight": 10.0}
#: where ``learned`` keeps its trained augmenters (one per data set and seed)
AUG_CACHE = "/tmp/cplmix_augmenters"
#: prune_div: prune() from round(1.5 K) categories of the recipe, default threshold 0.6,
#: half of the categories below it removed per round, stopping 3 rounds after the best mean
#: consensus and keeping that round's model
PRUNE = {"n_prune": 0.5, "patience": 3}


def fit(adata, key: str, k: int, seed: int, quick: bool, start: str = "default",
        init: str | None = None, **kw):
    """A trained, annotated model on a copy of ``adata``: ``(model, its adata)``."""
    scvi.settings.seed = seed
    a = adata.copy()
    cplmix_sc.CplMixVAE.setup_anndata(a)
    model = cplmix_sc.CplMixVAE(a, n_categories=k, **kw)
    model.train(enable_progress_bar=False,
                init_labels=key if start == "truth" else None,
                **({"init": init} if init else {}),
                **({"max_epochs": 2, "warmup_epochs": 1} if quick else {}))
    return model, a


def model_run(adata, key: str, k: int, seed: int, quick: bool, start: str = "default",
              init: str | None = None, **kw) -> np.ndarray:
    return fit(adata, key, k, seed, quick, start, init, **kw)[0].predict()


def state_reference(adata, min_cells: int = 30) -> float:
    """A reference for :func:`state_scores` that is given the true types: per responsive true
    type of at least ``min_cells`` cells, |Spearman| of the true state with the first principal
    component of that type's log-normalised counts (log1p CP10k, all genes), averaged."""
    from scipy.stats import spearmanr

    x = _dense(adata)
    x = np.log1p(x / x.sum(1, keepdims=True) * 1e4)
    truth = adata.obs["state"].to_numpy(dtype=float)
    types = adata.obs["type"].astype(str).to_numpy()
    responsive = set(map(str, adata.uns["simulation"]["responsive_types"]))
    rho = []
    for t in responsive:
        m = types == t
        if m.sum() >= min_cells:
            u = np.linalg.svd(x[m] - x[m].mean(0), full_matrices=False)[0][:, 0]
            rho.append(abs(spearmanr(u, truth[m]).statistic))
    return float(np.mean(rho)) if rho else np.nan


def state_scores(adata, state: np.ndarray, pred: np.ndarray, min_cells: int = 30) -> dict:
    """State recovery of a model on a draw (issue 17's criterion: at least 0.85).

    ``state``: ``obsm["X_cpl_state"]``, arm 0's posterior mean of the state given the
    consensus type (``n_state`` = 2 columns). The true state is 1-D, the model's is 2-D and
    defined only up to rotation, so within a group of cells it is projected on its first
    principal direction (:func:`cplmix_sc.metrics.state_recovery`) and the absolute Spearman
    correlation with ``obs["state"]`` is taken. Columns:

    - ``state_rho``: the criterion's figure, the mean over responsive TRUE types with at least
      ``min_cells`` cells (all their cells, whatever category the model put them in);
    - ``state_rho_min``: the worst of those types; ``state_n``: how many there are;
    - ``state_rho_matched``: the same mean, each true type restricted to its cells in the
      model category holding most of them (types whose matched part has fewer than
      ``min_cells`` cells are left out; ``state_n_matched`` counts the rest). The model's
      state is type-dependent (``q(s|x, c)``): each category has its own coordinates, so a
      true type split over categories mixes several coordinate systems;
    - ``state_rho_dim``: the mean over the same types as ``state_rho`` of the better of the
      two raw state coordinates (no projection).
    """
    from scipy.stats import spearmanr

    truth = adata.obs["state"].to_numpy(dtype=float)
    types = adata.obs["type"].astype(str).to_numpy()
    responsive = set(map(str, adata.uns["simulation"]["responsive_types"]))
    rho = cplmix_sc.metrics.state_recovery(truth, state, types, min_cells=min_cells)
    rho = {t: v for t, v in rho.items() if t in responsive}
    row = {"state_rho": float(np.mean(list(rho.values()))) if rho else np.nan,
           "state_rho_min": float(min(rho.values())) if rho else np.nan, "state_n": len(rho)}
    matched, dims = [], []
    for t in rho:
        m = types == t
        dims.append(max(abs(spearmanr(state[m, j], truth[m]).statistic)
                        for j in range(state.shape[1])))
        c = np.bincount(pred[m]).argmax()
        mc = m & (pred == c)
        if mc.sum() >= min_cells:
            matched.append(next(iter(cplmix_sc.metrics.state_recovery(
                truth[mc], state[mc], np.zeros(mc.sum())).values())))
    row["state_rho_matched"] = float(np.mean(matched)) if matched else np.nan
    row["state_n_matched"] = len(matched)
    row["state_rho_dim"] = float(np.mean(dims)) if dims else np.nan
    return row



def baselines_at(pcs: np.ndarray, x: np.ndarray, k: int, seed: int) -> dict:
    """k-means on ``pcs``, Leiden bisected to ``k`` clusters and the multinomial mixture by EM
    from that k-means, each with ``k`` clusters: ``{"kmeans", "leiden", "em"}`` -> labels."""
    km = KMeans(k, n_init=10, random_state=seed).fit_predict(pcs)
    return {"kmeans": km, "leiden": leiden_n_clusters(pcs, k, seed),
            "em": em_multinomial(x, km, k)}


def evaluate(name: str, adata, key: str, k: int, seed: int, quick: bool, methods,
             baselines: bool = True, at_used: str | None = None) -> dict:
    truth = adata.obs[key]
    row = {"data": name, "K": k, "n_cells": adata.n_obs}
    t0 = time.perf_counter()
    preds = {}
    if baselines or at_used:
        pcs, x = log_pcs(adata, n_pcs=30, seed=seed), _dense(adata)
    if baselines:
        row["lr_acc"], row["lr_ari"] = cv_logreg(adata, truth, seed)
        preds = baselines_at(pcs, x, k, seed)
        codes = truth.astype("category").cat.codes.to_numpy()  # -1 for NaN
        preds["em_truth"] = em_multinomial(x, codes, k)
    if "divisive" in methods:  # the start of init="divisive" on its own (as train() fits it)
        preds["divisive"] = fit_start(adata.X, "divisive", k, 30, seed, genes="auto").labels
    if "divisive_allgenes" in methods:  # the same on every gene (before the state's genes
        preds["divisive_allgenes"] = divisive_start(adata.X, k, seed=seed)  # were left out)
    if "model" in methods:  # the defaults (from K = 24 on: the many-types setting)
        model, a = fit(adata, key, k, seed, quick)
        preds["model"] = model.predict()
        if "state" in adata.obs:
            row.update({f"model_{c}": v for c, v in state_scores(
                adata, a.obsm["X_cpl_state"], preds["model"]).items()})
    if "model_km" in methods:  # the defaults from the k-means start (train(init="kmeans"))
        preds["model_km"] = model_run(adata, key, k, seed, quick, init="kmeans")
    if "model_div" in methods:  # the many-types recipe (docs/model.md, "Many types")
        model, a = fit(adata, key, k, seed, quick, init="divisive", **MANY)
        preds["model_div"] = model.predict()
        if "state" in adata.obs:
            row.update({f"model_div_{c}": v for c, v in state_scores(
                adata, a.obsm["X_cpl_state"], preds["model_div"]).items()})
            row["state_pca_truth"] = state_reference(adata)
    if "prune_div" in methods:  # the recipe from 1.5 K, then prune() (PRUNE)
        k0 = round(1.5 * k)
        model, _ = fit(adata, key, k0, seed, quick, init="divisive", **MANY)
        t1 = time.perf_counter()
        hist = model.prune(enable_progress_bar=False, annotate=False,
                           **PRUNE, **({"fine_tune_epochs": 1} if quick else {}))
        preds["prune_div"] = model.predict()
        row["prune_div_start"] = k0
        row["prune_div_kept"] = len(model.active_categories)
        row["prune_div_rounds"] = len(hist)
        row["prune_div_s"] = round(time.perf_counter() - t1)
    if "one_arm_div" in methods:
        preds["one_arm_div"] = model_run(adata, key, k, seed, quick, init="divisive",
                                         n_arms=1, **MANY)
    if "one_arm" in methods:
        preds["one_arm"] = model_run(adata, key, k, seed, quick, n_arms=1)
    if "no_aug" in methods:
        preds["no_aug"] = model_run(adata, key, k, seed, quick, augmentation="none")
    if "learned" in methods:
        from augmenter import train_augmenter

        tag = name.split(" (")[0].replace(" ", "")
        cache = "augmenters" if quick else AUG_CACHE  # --quick: under the working directory
        aug, row["learned_aug_s"] = train_augmenter(adata, tag, cache, seed, quick)
        row["learned_aug_s"] = round(row["learned_aug_s"])
        preds["learned"] = model_run(adata, key, k, seed, quick, augmenter=aug)
    if "truth" in methods:
        preds["from_truth"] = model_run(adata, key, k, seed, quick, start="truth")
    if "truth_prior" in methods:  # the labels kept as a prior through the mixture phase
        preds["truth_prior"] = model_run(adata, key, k, seed, quick, start="truth",
                                         start_weight=MANY["start_weight"])
    if "truth_recipe" in methods:
        preds["truth_recipe"] = model_run(adata, key, k, seed, quick, start="truth", **MANY)
    if at_used:  # the baselines at the number of categories ``at_used`` used
        k_used = row["K_used"] = used(np.unique(preds[at_used], return_inverse=True)[1])
        again = (baselines_at(pcs, x, k_used, seed) if k_used != k or not baselines
                 else {b: preds[b] for b in ("kmeans", "leiden", "em")})
        preds.update({f"{b}@K_used": p for b, p in again.items()})
    for m, p in preds.items():
        s = clustering_scores(truth, p)
        row[f"{m}_ari"], row[f"{m}_ami"] = s["ari"], s["ami"]
        row[f"{m}_used"] = used(np.unique(p, return_inverse=True)[1])
    best = max(row.get("kmeans_ari", np.nan), row.get("leiden_ari", np.nan),
               row.get("em_ari", np.nan))
    if baselines:
        row["ceiling"] = max(row["em_truth_ari"], row["lr_ari"])
    for m in ("divisive", "model", "model_div"):
        if f"{m}_ari" in row and baselines and row["ceiling"] - best >= 0.05:
            row[f"{m}_gap"] = (row[f"{m}_ari"] - best) / (row["ceiling"] - best)
    row["seconds"] = round(time.perf_counter() - t0)
    print(json.dumps({c: round(v, 3) if isinstance(v, float) else v for c, v in row.items()}),
          flush=True)
    return row


COLS = ["seed", "K", "n_cells", "lr_acc", "ceiling", "kmeans_ari", "leiden_ari", "em_ari",
        "em_truth_ari", "divisive_allgenes_ari", "divisive_ari", "divisive_gap", "model_used",
        "model_ari", "model_ami", "model_gap", "model_state_rho", "K_used",
        "kmeans@K_used_ari", "kmeans@K_used_ami", "leiden@K_used_ari", "leiden@K_used_ami",
        "em@K_used_ari", "em@K_used_ami",
        "model_km_used", "model_km_ari", "model_km_ami",
        "model_div_used", "model_div_ari", "model_div_ami", "model_div_gap",
        "model_div_state_rho", "model_div_state_rho_min", "model_div_state_n",
        "model_div_state_rho_matched", "model_div_state_n_matched", "model_div_state_rho_dim",
        "state_pca_truth",
        "prune_div_start", "prune_div_kept", "prune_div_used", "prune_div_ari",
        "prune_div_rounds", "prune_div_s", "one_arm_used",
        "one_arm_ari", "no_aug_used", "no_aug_ari", "learned_aug_s", "learned_used",
        "learned_ari", "one_arm_div_used", "one_arm_div_ari", "from_truth_used",
        "from_truth_ari", "from_truth_ami", "truth_prior_used", "truth_prior_ari",
        "truth_recipe_used", "truth_recipe_ari"]


def table(rows: list[dict]) -> str:
    cols = [c for c in COLS if any(c in r for r in rows)]
    lines = ["| data | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for r in rows:
        cells = [("-" if c not in r else f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]))
                 for c in cols]
        lines.append(f"| {r['data']} | " + " | ".join(cells) + " |")
    for m in ("divisive", "model", "model_div"):
        gaps = [r[f"{m}_gap"] for r in rows if f"{m}_gap" in r]
        if gaps:
            lines.append(f"\nMean gap closed by `{m}` over {len(gaps)} data sets: "
                         f"{np.mean(gaps):.3f}")
    return "\n".join(lines)


def seed_table(rows: list[dict]) -> str:
    """Mean ± sd (ddof 1) over the seeds of each data set, per column of :data:`COLS`."""
    cols = [c for c in COLS if c != "seed" and any(c in r for r in rows)]
    lines = ["| data | seeds | " + " | ".join(cols) + " |", "|---" * (len(cols) + 2) + "|"]
    for data in dict.fromkeys(r["data"] for r in rows):
        group = [r for r in rows if r["data"] == data]
        cells = []
        for c in cols:
            v = np.array([r[c] for r in group if c in r], dtype=float)
            cells.append("-" if not len(v) else f"{v.mean():.3f} ± {v.std(ddof=1):.3f}"
                         if len(v) > 1 else f"{v[0]:.3f}")
        lines.append(f"| {data} | {len(group)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--draws", default=",".join(map(str, REPORT)))
    p.add_argument("--no-zeisel", action="store_true")
    p.add_argument("--methods", default="model,one_arm,truth")
    p.add_argument("--seed", default="0", help="training (and baseline) seeds, e.g. 0,1,2")
    p.add_argument("--zeisel", default="level2,level1",
                   help="Zeisel label levels to run: level2 (K = 47), level1 (K = 7)")
    p.add_argument("--at-used", metavar="METHOD",
                   help="also the baselines at the number of categories METHOD used")
    p.add_argument("--quick", action="store_true", help="one tiny draw, 2 epochs (dry test)")
    p.add_argument("--no-baselines", action="store_true",
                   help="skip the baselines and the difficulty pin (reported in the main table)")
    p.add_argument("--out", default=str(RESULTS / "fine_types.md"))
    args = p.parse_args()
    torch.set_num_threads(1)
    methods = args.methods.split(",")
    command = "python benchmarks/fine_types.py " + " ".join(sys.argv[1:])
    seeds = [int(s) for s in args.seed.split(",")]
    levels = [lv for lv in args.zeisel.split(",") if lv]
    kw = {"baselines": not args.no_baselines, "at_used": args.at_used}
    rows = []
    for seed in seeds:
        if args.quick:
            a = cplmix_sc.datasets.synthetic_hierarchy(100, n_types=24, n_cells=600, n_genes=400)
            rows.append(evaluate("quick", a, "type", 24, seed, True, methods, **kw))
            continue
        for d in map(int, filter(None, args.draws.split(","))):
            a = cplmix_sc.datasets.synthetic_hierarchy(d)
            s = a.uns["simulation"]
            name = f"draw {d} ({s['platform']}, {s['n_classes']}/{s['n_subclasses']} cl/sub)"
            rows.append(evaluate(name, a, "type", s["n_types"], seed, False, methods, **kw))
        if not args.no_zeisel:
            for task, key, k in (("zeisel47", "level2", 47), ("zeisel7", "level1", 7)):
                if key in levels:
                    a = load_task(task)[0]
                    rows.append(evaluate(f"Zeisel {key}", a, key, k, seed, False, methods,
                                         **kw))
    for r, seed in zip(rows, np.repeat(seeds, len(rows) // len(seeds)), strict=True):
        r["seed"] = int(seed)
    text = (f"# Fine types at matched K\n\nCommand: `{command}` (CPU, one thread, "
            f"{time.strftime('%Y-%m-%d')}; training seed {args.seed})\n\n" + table(rows) + "\n")
    if len(seeds) > 1:
        text += "\nMean ± sd over seeds:\n\n" + seed_table(rows) + "\n"
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    print("Command:", command)


if __name__ == "__main__":
    main()

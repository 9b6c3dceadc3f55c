"""Can an unsupervised criterion choose between the divisive and the k-means start?

    python benchmarks/start_select.py --draws 0,1,2,3,4 --zeisel --seed 0 --out /tmp/sel.jsonl

Per data set (TUNE draws of :func:`cplmix_sc.datasets.synthetic_hierarchy` at K = the true
number of types; Zeisel 2015 level2, 2,000 seurat_v3 genes, K = 47), both starts as
``train()`` fits them (``cplmix_sc.start.fit_start(x, init, K, 30, seed, genes="auto")``,
``init`` = ``"divisive"`` / ``"kmeans"``) and ``kmeans_base``, ``fine_types.py``'s k-means
baseline at K (k-means, 10 restarts, on the top 30 PCs of log1p CP10k), their ARI against
the truth (labelled cells), categories used (>= 10 cells) and unsupervised criteria of each
start's labels (higher = better for all):

- ``ll_em{n}``: log-likelihood per cell of a multinomial mixture (mixing weights, alpha
  1e-2 pseudo-counts) after ``n`` EM steps from the start's hard labels (0: parameters from
  the labels, evaluated once); ``ari_em{n}``: ARI of that mixture's argmax;
- ``ho_cells``: held-out cells: the mixture's parameters from the labels of a random half of
  the cells, the mixture log-likelihood (over categories, no labels) of the other half, per
  cell, both halves in turn and averaged;
- ``ho_counts``: count splitting: each count split Binomial(x, 1/2); parameters from the
  labels and the first half, log-likelihood per cell of the second half under its own label;
- ``sil_log``: silhouette in the top 30 PCs of log1p CP10k (every gene, the baselines' space);
  ``ch_log``: Calinski-Harabasz there; ``db_log``: minus Davies-Bouldin there.

Writes one JSON line per data set and seed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from scipy.special import logsumexp
from sklearn.cluster import KMeans
from sklearn.metrics import (
    adjusted_rand_score,
    calinski_harabasz_score,
    davies_bouldin_score,
    silhouette_score,
)

import cplmix_sc
from cplmix_sc.start import fit_start

sys.path.insert(0, str(Path(__file__).parent))
from _common import load_task, log_pcs

warnings.filterwarnings("ignore")
ALPHA = 1e-2
#: the candidates: both starts (``fit_start``) and fine_types.py's k-means baseline
INITS = ("divisive", "kmeans", "kmeans_base")


def _theta(x, r, alpha=ALPHA):
    theta = x.T @ r + alpha  # (G, K)
    theta = theta.T
    return np.log(theta / theta.sum(1, keepdims=True)), np.log(r.mean(0) + 1e-12)


def _onehot(labels, k):
    r = np.zeros((len(labels), k))
    r[np.arange(len(labels)), labels] = 1.0
    return r


def em_ll(x, labels, k, n_iter):
    """Mixture log-likelihood per cell (up to the multinomial coefficient) after ``n_iter``
    EM steps from hard ``labels``, and the argmax labels."""
    r = _onehot(labels, k)
    for _ in range(n_iter + 1):
        lt, lp = _theta(x, r)
        ll = x @ lt.T + lp
        tot = logsumexp(ll, axis=1, keepdims=True)
        r = np.exp(ll - tot)
    return float(tot.mean()), r.argmax(1)


def ho_cells(x, labels, k, seed):
    rng = np.random.default_rng(seed)
    half = rng.permutation(x.shape[0]) < x.shape[0] // 2
    out = []
    for tr in (half, ~half):
        lt, lp = _theta(x[tr], _onehot(labels[tr], k))
        out.append(logsumexp(x[~tr] @ lt.T + lp, axis=1).mean())
    return float(np.mean(out))


def ho_counts(x, labels, k, seed):
    rng = np.random.default_rng(seed)
    xa = rng.binomial(x.astype(np.int64), 0.5).astype(np.float64)
    xb = x - xa
    lt, _ = _theta(xa, _onehot(labels, k))
    return float((xb * lt[labels]).sum(1).mean())


def criteria(x, pcs, labels, k, seed) -> dict:
    labels = np.unique(labels, return_inverse=True)[1]
    k = int(labels.max()) + 1
    row = {}
    for n in (0, 5, 30):
        row[f"ll_em{n}"], em = em_ll(x, labels, k, n)
        row[f"em{n}_labels"] = em
    row["ho_cells"] = ho_cells(x, labels, k, seed)
    row["ho_counts"] = ho_counts(x, labels, k, seed)
    row["sil_log"] = float(silhouette_score(pcs, labels))
    row["ch_log"] = float(calinski_harabasz_score(pcs, labels))
    row["db_log"] = -float(davies_bouldin_score(pcs, labels))
    return row


def evaluate(name, adata, key, k, seed) -> dict:
    x = adata.X
    x = np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=np.float64)
    ok = adata.obs[key].notna().to_numpy()  # ARI on the labelled cells (as fine_types.py)
    truth = adata.obs[key].astype(str).to_numpy()[ok]
    pcs = log_pcs(adata, n_pcs=30, seed=seed)
    row = {"data": name, "K": k, "seed": seed}
    for init in INITS:
        t0 = time.perf_counter()
        if init == "kmeans_base":  # fine_types.py's k-means baseline at K
            lab = KMeans(k, n_init=10, random_state=seed).fit_predict(pcs)
        else:
            st = fit_start(adata.X, init, k, 30, seed, genes="auto")
            lab = st.labels if st.labels is not None else None
            if lab is None:  # k-means: taught by nearest centre, labels not kept
                lab = _kmeans_labels(adata, st)
        row[f"{init}_s"] = round(time.perf_counter() - t0, 1)
        row[f"{init}_ari"] = adjusted_rand_score(truth, lab[ok])
        row[f"{init}_used"] = int((np.bincount(lab) >= 10).sum())
        c = criteria(x, pcs, lab, k, seed)
        for n in (0, 5, 30):
            row[f"{init}_ari_em{n}"] = adjusted_rand_score(truth, c.pop(f"em{n}_labels")[ok])
        row.update({f"{init}_{m}": v for m, v in c.items()})
    print(json.dumps({a: round(b, 4) if isinstance(b, float) else b for a, b in row.items()}),
          flush=True)
    return row


def _kmeans_labels(adata, st):
    """Each cell's nearest k-means centre in the start's PCA (as the start teaches it)."""
    from cplmix_sc.module import log_normalise_rows

    z = (log_normalise_rows(adata.X) - st.mean) @ st.components.T
    d = ((z[:, None, :] - st.centers[None]) ** 2).sum(-1)
    return d.argmin(1)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--draws", default="0,1,2,3,4")
    p.add_argument("--zeisel", action="store_true")
    p.add_argument("--seed", default="0")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    with open(a.out, "a") as f:
        for seed in map(int, a.seed.split(",")):
            if a.zeisel:
                ad = load_task("zeisel47")[0]
                f.write(json.dumps(evaluate("Zeisel level2", ad, "level2", 47, seed)) + "\n")
                f.flush()
            for d in map(int, filter(None, a.draws.split(","))):
                ad = cplmix_sc.datasets.synthetic_hierarchy(d)
                s = ad.uns["simulation"]
                row = evaluate(f"draw {d}", ad, "type", s["n_types"], seed)
                f.write(json.dumps(row) + "\n")
                f.flush()


if __name__ == "__main__":
    main()

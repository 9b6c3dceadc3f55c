"""State recovery started from the true types (issue 17): which part of the model loses the state.

Trains ``CplMixVAE`` on a small TUNE draw of :func:`cplmix_sc.datasets.synthetic_hierarchy`
from the true types (``train(init_labels="type")``) with one setting of the module, and reads
the state several ways, each scored like ``benchmarks/fine_types.py``'s ``state_rho`` (per
responsive true type of >= 30 cells, |Spearman| of the state's first principal direction
within that type with the true state, averaged):

- ``rho_a0`` / ``rho_a1``: ``get_state(arm=a)`` (posterior mean given the consensus type;
  ``rho_a0`` is what ``X_cpl_state`` holds, the criterion's figure);
- ``rho_own0``: arm 0's state given arm 0's own argmax category;
- ``rho_bn0``: first PC of arm 0's bottleneck within the type (how much of the state reaches
  the input of the state encoder);
- ``rho_hid0``: first PC of arm 0's last hidden layer (before the bottleneck);
- ``probe_bn0`` / ``probe_hid0``: 5-fold cross-validated ridge of the true state on arm 0's
  bottleneck / last hidden layer within each type (is the state linearly decodable there?);
- ``probe_state0`` / ``knn_state0``: the same probe (ridge / 10-nearest-neighbour
  regression, non-linear: a curved 1-D state in the 2-D space) on arm 0's ``get_state``;
- ``rho_pca``: first PC of the type's own log-normalised counts (reference).

Usage (one thread)::

    OMP_NUM_THREADS=1 python benchmarks/state_recovery.py --seed 0 --name default
    OMP_NUM_THREADS=1 python benchmarks/state_recovery.py --seed 0 --name x \
        --module '{"state_dropout": 0.1}' --train '{"max_epochs": 200}'

``--few``: :func:`cplmix_sc.datasets.synthetic` (seed ``--seed``, its default state) with
``K = 12`` and the default start instead (not from the true types).

Appends one JSON row per run to ``benchmarks/results/state_runs.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import scvi
import torch
from sklearn.metrics import adjusted_rand_score

import cplmix_sc
from cplmix_sc.metrics import state_recovery

OUT = Path(__file__).parent / "results" / "state_runs.jsonl"
#: folder for the states of every run (``STATE_SAVE`` environment variable; none if unset)
SAVE = __import__("os").environ.get("STATE_SAVE")


def _lognorm(adata) -> np.ndarray:
    x = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
    return np.log1p(x / x.sum(1, keepdims=True) * 1e4)


def _score(truth, values, types, responsive) -> float:
    rho = state_recovery(truth, values, types, min_cells=30)
    rho = [v for t, v in rho.items() if t in responsive]
    return float(np.mean(rho)) if rho else float("nan")


def _probe(values: np.ndarray, truth, types, responsive, knn: bool = False) -> float:
    """Per responsive type (>= 30 cells): 5-fold cross-validated ridge prediction of the true
    state from ``values``, |Spearman| with the truth, averaged (is the state linearly there?)."""
    from scipy.stats import spearmanr
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import cross_val_predict
    from sklearn.neighbors import KNeighborsRegressor

    out = []
    for t in np.unique(types):
        m = types == t
        if t in responsive and m.sum() >= 30:
            reg = (KNeighborsRegressor(10) if knn
                   else RidgeCV(alphas=np.logspace(-3, 3, 13)))
            pred = cross_val_predict(reg, values[m], truth[m], cv=5)
            out.append(abs(spearmanr(pred, truth[m]).statistic))
    return float(np.mean(out)) if out else float("nan")


def _pc1(values: np.ndarray, types: np.ndarray) -> np.ndarray:
    """Per type, the first PC of ``values`` (so state_recovery sees a 1-D projection)."""
    out = np.zeros(len(types))
    for t in np.unique(types):
        m = types == t
        v = values[m] - values[m].mean(0)
        out[m] = np.linalg.svd(v, full_matrices=False)[0][:, 0] if m.sum() > 1 else 0.0
    return out


@torch.inference_mode()
def readouts(model, adata) -> dict:
    """Bottleneck, last hidden layer, own-category state of every arm, on all cells."""
    mod = model.module
    mod.eval()
    x = torch.as_tensor(adata.X.toarray() if hasattr(adata.X, "toarray") else adata.X,
                        dtype=torch.float32)
    inf = mod.inference(x)
    from cplmix_sc.module._normalise import log_normalise

    feats = inf.get("state_features", inf["bottleneck"])  # the state encoder's input
    h = mod.encoder(log_normalise(x, x.sum(-1, keepdim=True)).expand(mod.n_arms, *x.shape))
    own = inf["log_probs"].argmax(-1)  # (A, B)
    own_state = torch.stack([mod.state_given_category(feats, own[a])[a]
                             for a in range(mod.n_arms)])
    return {"bottleneck": inf["bottleneck"].numpy(), "hidden": h.numpy(),
            "own_state": own_state.numpy()}


def run(seed: int, name: str, module: dict, train: dict, n_types: int, n_cells: int,
        few: bool = False) -> dict:
    scvi.settings.seed = seed
    if few:  # the few-type simulator, its default state, K = 12, the default start
        adata = cplmix_sc.datasets.synthetic(seed=seed)
        n_types = 12
    else:
        adata = cplmix_sc.datasets.synthetic_hierarchy(seed, n_types=n_types, n_cells=n_cells)
    truth = adata.obs["state"].to_numpy(float)
    types = adata.obs["type"].astype(str).to_numpy()
    responsive = set(map(str, adata.uns["simulation"]["responsive_types"]))
    cplmix_sc.CplMixVAE.setup_anndata(adata)
    model = cplmix_sc.CplMixVAE(adata, n_categories=n_types, **module)
    t0 = time.perf_counter()
    model.train(enable_progress_bar=False, init_labels=None if few else "type", **train)
    row = {"data": "synthetic" if few else "hierarchy", "seed": seed, "name": name,
           "module": module, "train": train, "K": n_types, "n_cells": adata.n_obs,
           "train_s": round(time.perf_counter() - t0, 1)}
    pred = model.predict()
    row["ari"] = float(adjusted_rand_score(types, pred))
    row["n_used"] = len(np.unique(pred))
    for a in range(model.module.n_arms):
        row[f"rho_a{a}"] = _score(truth, model.get_state(arm=a), types, responsive)
    r = readouts(model, adata)
    row["rho_own0"] = _score(truth, r["own_state"][0], types, responsive)
    row["rho_bn0"] = _score(truth, _pc1(r["bottleneck"][0], types), types, responsive)
    row["rho_hid0"] = _score(truth, _pc1(r["hidden"][0], types), types, responsive)
    st = model.get_state(arm=0)
    row["probe_state0"] = _probe(st, truth, types, responsive)
    row["knn_state0"] = _probe(st, truth, types, responsive, knn=True)
    row["probe_bn0"] = _probe(r["bottleneck"][0], truth, types, responsive)
    row["probe_hid0"] = _probe(r["hidden"][0], truth, types, responsive)
    if SAVE:
        np.savez(f"{SAVE}/{name}_{seed}.npz", state=np.stack(
            [model.get_state(arm=a) for a in range(model.module.n_arms)]), truth=truth,
            types=types, pred=pred, own=r["own_state"], responsive=sorted(responsive))
    row["rho_pca"] = _score(truth, _pc1(_lognorm(adata), types), types, responsive)
    return row


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seed", type=int, nargs="+", default=[0])
    p.add_argument("--name", default="default")
    p.add_argument("--module", default="{}", help="JSON of CplMixVAE arguments")
    p.add_argument("--train", default="{}", help="JSON of train() arguments")
    p.add_argument("--n-types", type=int, default=30)
    p.add_argument("--n-cells", type=int, default=2400)
    p.add_argument("--few", action="store_true",
                   help="cplmix_sc.datasets.synthetic(seed) with K = 12 and the default start")
    args = p.parse_args()
    torch.set_num_threads(1)
    import logging
    import warnings
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    for s in args.seed:
        if s >= 100:
            raise SystemExit("seeds >= 100 are REPORT draws: do not tune on them")
        row = run(s, args.name, json.loads(args.module), json.loads(args.train),
                  args.n_types, args.n_cells, args.few)
        print(json.dumps(row), flush=True)
        with OUT.open("a") as fh:
            fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()

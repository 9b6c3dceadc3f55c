"""One training run on a draw of the many-type family: what keeps or loses fine types.

    python benchmarks/fine_mech.py 1 --start truth '{"coupling_weight": 0}'
    python benchmarks/fine_mech.py 1 --start default '{"coupling": "detached"}'

``--start truth``: the warm-up pulls towards the true types (``train(init_labels="type")``);
``em``: towards the multinomial mixture fitted by EM from k-means (``init_labels``);
``default``: ``train()`` as a user runs it (the graph start). The JSON holds CplMixVAE
arguments plus ``warmup_epochs``, ``max_epochs`` and ``init`` (train() arguments;
``pretrain_epochs``, the former name, is read as ``warmup_epochs``). K = the true number of
types. Prints one ``RESULT`` JSON line (after the warm-up and at the end: categories used,
i.e. >= 10 cells under the consensus argmax, ARI / AMI, consensus, mean confidence; loss and
NLL per cell, no augmentation) and appends it to
``benchmarks/results/fine_mech_runs.jsonl``. Single thread.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import warnings
from pathlib import Path

import numpy as np
import scvi
import torch
from lightning.pytorch.callbacks import Callback

import cplmix_sc
from cplmix_sc.metrics import clustering_scores
from cplmix_sc.tl import category_consensus

warnings.filterwarnings("ignore")
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
logging.getLogger("scvi").setLevel(logging.ERROR)
RESULTS = Path(__file__).parent / "results"


def used(pred: np.ndarray, min_cells: int = 10) -> int:
    return int((np.bincount(pred) >= min_cells).sum())


@torch.no_grad()
def snapshot(module, x: torch.Tensor, truth) -> dict:
    """Consensus labels and scores from the module on all cells (no augmentation)."""
    was = module.training
    module.eval()
    lp = torch.cat([module.inference(xb)["log_probs"] for xb in x.split(1024)], 1)
    module.train(was)
    p = lp.exp().mean(0)
    pred = p.argmax(1).numpy()
    arm = lp.argmax(-1).numpy()
    s = clustering_scores(truth, pred)
    return {"used": used(pred), "ari": round(s["ari"], 4), "ami": round(s["ami"], 4),
            "agree": round(float((arm[0] == arm[-1]).mean()), 4),
            "conf": round(float(p.max(1).values.mean()), 4)}


class AfterWarmup(Callback):
    def __init__(self, x, truth):
        self.x, self.truth, self.out = x, truth, None

    def on_train_end(self, trainer, pl_module):
        if pl_module.module.phase == "warmup":
            self.out = snapshot(pl_module.module, self.x, self.truth)


@torch.no_grad()
def loss_per_cell(model) -> dict:
    m = model.module
    m.eval()
    tot, rec, n = 0.0, 0.0, 0
    for tensors in model._make_data_loader(adata=model.adata, batch_size=512):
        _, _, lo = m(tensors)
        b = tensors["X"].shape[0]
        tot += float(lo.loss) * b
        rec += sum(float(v.sum()) for v in lo.reconstruction_loss.values()) / (
            m.n_arms * max(m.n_arms - 1, 1))
        n += b
    return {"loss": round(tot / n, 1), "nll": round(rec / n, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("draw", type=int)
    p.add_argument("kwargs", nargs="?", default="{}")
    p.add_argument("--start", choices=["truth", "default", "em"], default="truth")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tag", default="")
    p.add_argument("--out", default=str(RESULTS / "fine_mech_runs.jsonl"))
    args = p.parse_args()
    torch.set_num_threads(1)
    kw = json.loads(args.kwargs)
    if "pretrain_epochs" in kw:  # the rows of fine_mech_runs.jsonl used the former name
        kw["warmup_epochs"] = kw.pop("pretrain_epochs")
    train_kw = {k: kw.pop(k) for k in ("warmup_epochs", "max_epochs", "init") if k in kw}
    scvi.settings.seed = args.seed
    adata = cplmix_sc.datasets.synthetic_hierarchy(args.draw)
    k = adata.obs["type"].nunique()
    truth = adata.obs["type"].to_numpy()
    if args.start == "em":  # the multinomial mixture from k-means (fine_types.py's baseline)
        from _common import log_pcs
        from sklearn.cluster import KMeans

        from cplmix_sc.start import multinomial_em
        pcs = log_pcs(adata, 30, args.seed)
        km = KMeans(k, n_init=10, random_state=args.seed).fit_predict(pcs)
        adata.obs["em"] = multinomial_em(adata.X, km, k).astype(str)
    cplmix_sc.CplMixVAE.setup_anndata(adata)
    model = cplmix_sc.CplMixVAE(adata, n_categories=k, **kw)
    x = torch.as_tensor(adata.X.toarray(), dtype=torch.float32)
    cb = AfterWarmup(x, truth)
    t0 = time.perf_counter()
    model.train(enable_progress_bar=False, callbacks=[cb], annotate=False,
                init_labels={"truth": "type", "em": "em"}.get(args.start), **train_kw)
    final = snapshot(model.module, x, truth)
    cons = category_consensus(model)
    cons = cons[cons["n_cells"] > 0]
    row = {"draw": args.draw, "k": k, "start": args.start, "kwargs": {**kw, **train_kw},
           "seed": args.seed, "tag": args.tag, "warm": cb.out, **final,
           "consensus": round(float(np.average(cons["consensus"], weights=cons["n_cells"])), 4),
           **loss_per_cell(model), "seconds": round(time.perf_counter() - t0)}
    print("RESULT " + json.dumps(row), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a") as f:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()

"""Wall time of the whole default ``train()`` (start, warm-up, mixture phase, annotate).

    python benchmarks/train_time.py                      # both tasks below
    python benchmarks/train_time.py --tasks zeisel47     # one task
    python benchmarks/train_time.py --quick              # tiny data, a dry run

Tasks:

- ``hierarchy120``: a draw of the many-type family
  (:func:`cplmix_sc.datasets.synthetic_hierarchy`, seed 110, never used for tuning) with 120
  types, 20,000 cells x 2,000 genes, ``n_categories=120`` (issue 17's time criterion: under
  10 minutes on 2 CPU cores);
- ``zeisel47`` / ``zeisel7``: Zeisel 2015 on 2,000 variable genes with 47 and 7 categories
  (the README's job and the class level; target under 90 s).

Each task runs in its own process, on every core torch is given (``OMP_NUM_THREADS``), with
``CplMixVAE(adata, n_categories=K).train()`` and every default. It prints the seconds of the
whole call and of its phases (the start's fit, then each Lightning phase, from the progress
log), the peak resident memory, the categories used (at least 10 cells) and the ARI against
the reference labels, with the device and the load average. The table goes to
``benchmarks/results/train_time.md`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from speed import PeakRSS, device_name, load

warnings.filterwarnings("ignore")
RESULTS = Path(__file__).parent / "results"
TASKS = ("hierarchy120", "zeisel47", "zeisel7")


def _data(task: str, quick: bool):
    import cplmix_sc

    if task == "hierarchy120":
        kw = ({"n_types": 24, "n_cells": 1500, "n_genes": 400} if quick
              else {"n_types": 120, "n_cells": 20_000, "n_genes": 2_000})
        adata = cplmix_sc.datasets.synthetic_hierarchy(110, max_cells=kw["n_cells"], **kw)
        return adata, "type", kw["n_types"]
    from _common import load_task

    adata, key, k = load_task(task)
    if quick:
        adata = adata[:600].copy()
    return adata, key, k


def measure(task: str, seed: int, quick: bool) -> dict:
    """One task in this process: the default train() timed end to end."""
    import scvi

    import cplmix_sc
    from cplmix_sc.metrics import clustering_scores

    adata, key, k = _data(task, quick)
    cplmix_sc.CplMixVAE.setup_anndata(adata)
    scvi.settings.seed = seed
    times = {}
    fit_start = cplmix_sc.CplMixVAE._fit_start

    def timed_start(self, *args, **kwargs):
        t = time.perf_counter()
        out = fit_start(self, *args, **kwargs)
        times["start_s"] = time.perf_counter() - t
        return out

    cplmix_sc.CplMixVAE._fit_start = timed_start
    extra = {"max_epochs": 2, "warmup_epochs": 1} if quick else {}
    with PeakRSS() as rss:
        t0 = time.perf_counter()
        model = cplmix_sc.CplMixVAE(adata, n_categories=k)
        model.train(enable_progress_bar=False, **extra)
        total = time.perf_counter() - t0
    labels = adata.obs["cpl_type"].to_numpy()
    used = int((np.unique(labels, return_counts=True)[1] >= 10).sum())
    truth = adata.obs[key]
    ok = ~truth.isna().to_numpy()
    ari = clustering_scores(truth.to_numpy()[ok], labels[ok])["ari"]
    return {"task": task, "cells": adata.n_obs, "genes": adata.n_vars, "K": k,
            "init": model.init_, "seconds": round(total, 1),
            "start_s": round(times.get("start_s", float("nan")), 1),
            "peak_rss_gib": round(rss.peak / 2**30, 2), "used": used, "ari": round(ari, 3),
            "threads": int(__import__("torch").get_num_threads()),
            "device": device_name(), "load": load()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=str(RESULTS / "train_time.md"))
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(measure(args.worker, args.seed, args.quick)), flush=True)
        return
    rows = []
    for task in args.tasks.split(","):
        cmd = [sys.executable, __file__, "--worker", task, "--seed", str(args.seed)]
        out = subprocess.run(cmd + (["--quick"] if args.quick else []), capture_output=True,
                             text=True, env=os.environ.copy())
        lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
        if out.returncode != 0 or not lines:
            sys.stderr.write(out.stderr[-4000:])
            raise SystemExit(f"{task} failed (exit {out.returncode})")
        rows.append(json.loads(lines[-1][len("RESULT "):]))
        print(json.dumps(rows[-1]), flush=True)
    cols = ["task", "cells", "genes", "K", "init", "seconds", "start_s", "peak_rss_gib", "used",
            "ari", "threads", "device", "load"]
    command = "python benchmarks/train_time.py " + " ".join(sys.argv[1:])
    text = ["# Wall time of the default train()", "",
            f"Command: `{command.strip()}` (seed {args.seed}; "
            f"{time.strftime('%Y-%m-%d')}). `seconds`: the whole `CplMixVAE(...)` + "
            "`train()` call, annotate included; `start_s`: the start's fit within it.", "",
            "| " + " | ".join(cols) + " |", "|---" * len(cols) + "|"]
    text += ["| " + " | ".join(str(r.get(c, "-")) for c in cols) + " |" for r in rows]
    Path(args.out).write_text("\n".join(text) + "\n")
    print("\n".join(text))


if __name__ == "__main__":
    main()

"""The few-type start on its own: which merge and which clustering recover the types.

    python benchmarks/few_start.py                      # the tasks below, seed 0 (~2 min)
    python benchmarks/few_start.py --tasks sim,zeisel7 --seed 1

For each task (``_common.load_task`` names, or ``draw:SEED:MARKER[:STATE]`` for
``synthetic(seed=SEED, marker_effect=MARKER, state_effect=STATE)``, 12 types), on the start's
own PCA (``cplmix_sc.start.log_pca``, 30 PCs): the number of Leiden communities at resolution
1 and their ARI, the ARI of those communities merged down to K on the all-gene kNN graph
(the graph start before) and on the kNN graph of the PCA without the state's genes
(``state_program_genes``; the graph start now), of k-means at K with every gene and without
the state's genes, the agreement (ARI) between those two k-means, and the start that
``fit_start(init="auto")`` picks. ARI against the task's labels. Prints a markdown table.
"""

from __future__ import annotations

import argparse

import scipy.sparse as sp
from _common import load_task, quiet
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score as ari

import cplmix_sc
from cplmix_sc.start import fit_start, log_pca, merge_communities, state_program_genes
from cplmix_sc.start._graph import _knn_graph, _leiden

TASKS = ("sim,sim:1.2,sim:1.3,zeisel7,draw:1:0.9,draw:2:0.9,draw:1:1.2,draw:3:1.0:2.0,"
         "draw:4:1.5:1.0,draw:5:1.2:1.0,draw:6:1.0:0.5")


def task_data(task: str):
    if task.startswith("draw"):
        p = task.split(":")
        kw = {"seed": int(p[1]), "marker_effect": float(p[2])}
        if len(p) > 3:
            kw["state_effect"] = float(p[3])
        return cplmix_sc.datasets.synthetic(**kw), "type", 12
    return load_task(task)


def row(task: str, seed: int) -> str:
    adata, key, k = task_data(task)
    y = adata.obs[key].to_numpy()
    x = sp.csr_matrix(adata.X)
    keep, _, _ = state_program_genes(x, seed=seed)
    every = log_pca(x, 30, seed)[2]
    free = log_pca(x, 30, seed, genes=keep)[2]
    g = _knn_graph(every, seed, 15)
    communities = _leiden(g, 1.0, seed)
    n = int(communities.max()) + 1
    merged_every = merged_free = communities
    if n > k:
        merged_every = merge_communities(g.obsp["connectivities"], communities, k)
        merged_free = merge_communities(_knn_graph(free, seed, 15).obsp["connectivities"],
                                        communities, k)
    km_every = KMeans(k, n_init=10, random_state=seed).fit_predict(every)
    km_free = KMeans(k, n_init=10, random_state=seed).fit_predict(free)
    chosen = fit_start(x, "auto", k, 30, seed, genes="auto").init
    cells = [n, ari(y, communities), ari(y, merged_every), ari(y, merged_free),
             ari(y, km_every), ari(y, km_free), ari(km_every, km_free)]
    return (f"| {task} | {int((~keep).sum())} | " + " | ".join(
        str(c) if isinstance(c, int) else f"{c:.3f}" for c in cells) + f" | {chosen} |")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tasks", default=TASKS)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    quiet()
    print("| task | state genes | communities | communities' ARI | merged, all-gene graph | "
          "merged, graph without state genes | k-means | k-means without state genes | "
          "k-means agreement | `init=\"auto\"` picks |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for task in args.tasks.split(","):
        print(row(task, args.seed), flush=True)


if __name__ == "__main__":
    main()

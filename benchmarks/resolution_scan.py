"""How many Leiden communities the graph start's graph has at each resolution, and their scores.

    python benchmarks/resolution_scan.py sim:1.2 sim:1.2:2.0 zeisel47

The graph start (``train(init="leiden")``, ``cplmix_sc._graph.graph_start``) runs Leiden at
resolution 1 on a 15-NN graph of the top 30 PCs of log-normalised counts. This prints, per
data set and resolution, the number of communities and their ARI / AMI against the labels:
a lead for choosing K, since a model started from the right communities keeps them (see
``benchmarks/results/choose_k.md``). Tasks as in ``quality.py``. Seed 0.
"""

from __future__ import annotations

import sys
import warnings

from quality import load_task

from cplmix_sc._graph import _knn_graph, _leiden
from cplmix_sc._pca import log_pca
from cplmix_sc.metrics import clustering_scores

warnings.filterwarnings("ignore")

RESOLUTIONS = (0.1, 0.2, 0.3, 0.5, 0.7, 1.0)


def main() -> None:
    for task in sys.argv[1:] or ["sim:1.2"]:
        adata, key, _ = load_task(task)
        _, _, pcs = log_pca(adata.X, 30, 0)
        graph = _knn_graph(pcs, 0, 15)
        for res in RESOLUTIONS:
            labels = _leiden(graph, res, 0)
            s = clustering_scores(adata.obs[key].astype(str), labels)
            print(f"{task} resolution {res}: {labels.max() + 1} communities, "
                  f"ari {s['ari']:.3f} ami {s['ami']:.3f}", flush=True)


if __name__ == "__main__":
    main()

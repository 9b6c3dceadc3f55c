"""How hard is the simulator? Supervised ceiling and clustering baselines by marker strength.

    python benchmarks/sim_calibration.py            # ~1 min

For ``synthetic(seed=0, marker_effect=M, state_effect=3)`` (3,000 cells, 12 types) prints the
accuracy of a supervised logistic regression on 50 PCs of log-normalised counts (70/30 split),
and the ARI of k-means and PCA + Leiden at 12 clusters on 30 PCs.
"""

from __future__ import annotations

import warnings

from quality import log_pcs
from sklearn.cluster import KMeans
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import adjusted_rand_score
from sklearn.model_selection import train_test_split

import cplmix_sc
from cplmix_sc._graph import leiden_n_clusters

warnings.filterwarnings("ignore")

for me in (0.9, 1.2, 1.5, 2.0):
    a = cplmix_sc.datasets.synthetic(seed=0, marker_effect=me, state_effect=3.0)
    y = a.obs["type"].to_numpy()
    pcs = log_pcs(a, 50)
    xtr, xte, ytr, yte = train_test_split(pcs, y, test_size=0.3, random_state=0, stratify=y)
    acc = LogisticRegression(max_iter=3000).fit(xtr, ytr).score(xte, yte)
    km = KMeans(12, n_init=10, random_state=0).fit_predict(pcs[:, :30])
    ld = leiden_n_clusters(pcs[:, :30], 12, seed=0)
    print(f"marker_effect={me}: supervised accuracy {acc:.3f}, k-means ARI "
          f"{adjusted_rand_score(y, km):.3f}, Leiden ARI {adjusted_rand_score(y, ld):.3f}",
          flush=True)

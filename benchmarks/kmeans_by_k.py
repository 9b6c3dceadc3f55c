"""k-means on 30 PCs of Zeisel (2,000 seurat_v3 genes) for several k, against level2 and level1.

    python benchmarks/kmeans_by_k.py

Same data and PCs as the k-means baseline of ``quality.py``.
"""

from quality import load_task, log_pcs
from sklearn.cluster import KMeans

from cplmix_sc.metrics import clustering_scores

adata, _, _ = load_task("zeisel47")
pcs = log_pcs(adata, seed=0)
for k in (7, 10, 15, 20, 30, 47):
    pred = KMeans(k, n_init=10, random_state=0).fit_predict(pcs)
    l2 = clustering_scores(adata.obs["level2"], pred)
    l1 = clustering_scores(adata.obs["level1"], pred)
    print(f"k={k:3d} level2 ARI {l2['ari']:.3f} AMI {l2['ami']:.3f} acc {l2['accuracy']:.3f} "
          f"| level1 ARI {l1['ari']:.3f}")

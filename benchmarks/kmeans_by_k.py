"""k-means on 30 PCs of Zeisel (2,000 seurat_v3 genes) for several k, against level2 and level1.

    python benchmarks/kmeans_by_k.py
"""

import numpy as np
import scanpy as sc
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA

import cplmix_sc
from cplmix_sc.metrics import clustering_scores

adata = cplmix_sc.datasets.zeisel2015()
hvg = sc.pp.highly_variable_genes(adata, n_top_genes=2000, flavor="seurat_v3", inplace=False)
adata = adata[:, hvg["highly_variable"].to_numpy()].copy()
x = adata.X.toarray()
pcs = PCA(30, random_state=0).fit_transform(np.log1p(x / x.sum(1, keepdims=True) * 1e4))
for k in (7, 10, 15, 20, 30, 47):
    pred = KMeans(k, n_init=10, random_state=0).fit_predict(pcs)
    l2 = clustering_scores(adata.obs["level2"], pred)
    l1 = clustering_scores(adata.obs["level1"], pred)
    print(f"k={k:3d} level2 ARI {l2['ari']:.3f} AMI {l2['ami']:.3f} acc {l2['accuracy']:.3f} "
          f"| level1 ARI {l1['ari']:.3f}")

"""Real and augmented cells in one coordinate system (supplement F.2, Fig. S3)."""

from __future__ import annotations

import numpy as np
from anndata import AnnData
from sklearn.decomposition import PCA

from .._validation import check_same_genes
from ..module import log_normalise_rows


def _lognorm(adata: AnnData, layer: str | None = None) -> np.ndarray:
    return log_normalise_rows(adata.X if layer is None else adata.layers[layer])


def embed_augmented(
    adata: AnnData,
    augmented: AnnData,
    n_comps: int = 2,
    layer: str | None = None,
    key_added: str = "aug_pca",
    seed: int = 0,
) -> None:
    """Embed real cells and their augmented copies in the same coordinates.

    A PCA is fit on the log1p CP10k expression of the *real* cells only, and both the real
    cells and the copies (e.g. from :meth:`cplmix_sc.Augmenter.augment`) are projected on it,
    so a copy lands where a real cell with its profile would (Fig. S3 uses an autoencoder's
    2-D code the same way). Writes ``adata.obsm[f"X_{key_added}"]``,
    ``augmented.obsm[f"X_{key_added}"]`` and ``adata.uns[key_added]["params"]``; nothing
    else changes.

    Parameters
    ----------
    adata
        Real cells (counts in ``X`` or ``layer``).
    augmented
        Copies with the same genes in the same order (counts).
    n_comps
        Number of components (2 for plotting).
    layer
        Layer of ``adata`` holding counts (``augmented`` uses ``X``).
    key_added
        Name of the embedding.
    seed
        Random state of the PCA solver.
    """
    check_same_genes(adata.var_names, augmented)
    pca = PCA(n_comps, random_state=seed).fit(_lognorm(adata, layer))
    adata.obsm[f"X_{key_added}"] = pca.transform(_lognorm(adata, layer)).astype(np.float32)
    augmented.obsm[f"X_{key_added}"] = pca.transform(_lognorm(augmented)).astype(np.float32)
    adata.uns[key_added] = {"params": {"n_comps": n_comps, "layer": layer, "fit_on": "real"},
                            "variance_ratio": pca.explained_variance_ratio_.tolist()}

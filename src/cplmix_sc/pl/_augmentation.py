"""Diagnostics of the learned augmenter (supplement F.2, Figs. S3 and S5)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from anndata import AnnData

from ..tl._augmentation import _lognorm
from ._basic import _finish

REAL_COLOR = "0.6"
AUG_COLOR = "tab:orange"


def _gene_values(adata: AnnData, gene: str) -> np.ndarray:
    if gene not in adata.var_names:
        raise KeyError(f"Gene {gene!r} is not in the AnnData's var_names.")
    j = adata.var_names.get_loc(gene)
    return _lognorm(adata)[:, j]


def augmentation(
    adata: AnnData,
    augmented: AnnData,
    genes: Sequence[str] | str = (),
    basis: str | None = "X_aug_pca",
    color: str | None = None,
    bins: int = 30,
    ncols: int = 4,
    ax: Sequence[plt.Axes] | None = None,
    show: bool | None = None,
    save: str | Path | None = None,
) -> plt.Figure:
    """Real vs augmented cells: per-gene distributions (Fig. S5) and a shared 2-D map (Fig. S3).

    One panel per gene: histograms of log1p CP10k expression of the real cells (grey) and the
    copies (orange), as densities on the same bins. Then, if ``basis`` is given, two panels
    with the real cells and the copies in the same coordinates (``adata.obsm[basis]`` and
    ``augmented.obsm[basis]``, e.g. written by :func:`cplmix_sc.tl.embed_augmented`) and the
    same axis limits, coloured by ``color`` (a column of ``obs`` in both). Nothing is
    trained or recomputed besides normalising counts for the histograms.

    Parameters
    ----------
    adata
        Real cells (counts in ``X``).
    augmented
        Copies (counts in ``X``), e.g. from :meth:`cplmix_sc.Augmenter.augment`.
    genes
        Genes to draw.
    basis
        Key of the 2-D embedding in both ``obsm``; ``None`` draws genes only.
    color
        ``obs`` column (categorical) to colour the embedding by.
    bins
        Histogram bins.
    ncols
        Panels per row when the figure is created here.
    ax
        Axes to draw into: one per gene, then two for the embedding.
    show, save
        As in scanpy.

    Returns
    -------
    The figure.
    """
    genes = [genes] if isinstance(genes, str) else list(genes)
    n = len(genes) + (2 if basis is not None else 0)
    if n == 0:
        raise ValueError("Nothing to draw: give `genes` and/or `basis`.")
    if basis is not None:
        for name, a in (("adata", adata), ("augmented", augmented)):
            if basis not in a.obsm:
                raise KeyError(
                    f"{name}.obsm has no {basis!r}; compute it with "
                    "cplmix_sc.tl.embed_augmented(adata, augmented)."
                )
    if ax is None:
        ncols = max(1, min(ncols, n))
        nrows = int(np.ceil(n / ncols))
        fig, axs = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.8 * nrows), squeeze=False)
        for extra in axs.ravel()[n:]:
            extra.set_visible(False)
        axs = list(axs.ravel()[:n])
    else:
        axs = list(np.ravel(ax))
        if len(axs) != n:
            raise ValueError(f"`ax` must hold {n} axes ({len(genes)} genes + embedding).")
        fig = axs[0].figure
    for a, gene in zip(axs, genes, strict=False):
        real, copy = _gene_values(adata, gene), _gene_values(augmented, gene)
        edges = np.histogram_bin_edges(np.concatenate([real, copy]), bins=bins)
        a.hist(real, bins=edges, density=True, color=REAL_COLOR, alpha=0.7, label="real")
        a.hist(copy, bins=edges, density=True, color=AUG_COLOR, alpha=0.5, label="augmented")
        a.set_title(gene)
        a.set_xlabel("log1p CP10k")
    if genes:
        axs[0].legend(fontsize=7)
    if basis is not None:
        _embedding(axs[-2:], adata, augmented, basis, color)
    if ax is None:
        fig.tight_layout()
    _finish(fig, save, show)
    return fig


def _embedding(axs, adata, augmented, basis, color) -> None:
    coords = [np.asarray(adata.obsm[basis])[:, :2], np.asarray(augmented.obsm[basis])[:, :2]]
    both = np.concatenate(coords)
    pad = 0.03 * (both.max(0) - both.min(0))
    lo, hi = both.min(0) - pad, both.max(0) + pad
    cats = None
    if color is not None:
        cats = pd.Categorical(pd.concat([adata.obs[color], augmented.obs[color]]).astype(str))
    n_real = len(coords[0])
    cmap = plt.get_cmap("tab20")
    for i, (a, xy, title) in enumerate(zip(axs, coords, ("real", "augmented"), strict=True)):
        if cats is None:
            c = REAL_COLOR if i == 0 else AUG_COLOR
        else:
            codes = cats.codes[:n_real] if i == 0 else cats.codes[n_real:]
            c = cmap(codes % 20)
        a.scatter(xy[:, 0], xy[:, 1], c=c, s=2, rasterized=True)
        a.set_xlim(lo[0], hi[0])
        a.set_ylim(lo[1], hi[1])
        a.set_title(f"{title} cells" + (f" ({color})" if color else ""))
        a.set_xlabel(f"{basis} 1")
        a.set_ylabel(f"{basis} 2")

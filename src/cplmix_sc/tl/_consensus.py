"""Consistency of a trained model's categories between arms (defined in :mod:`..metrics`)."""

from __future__ import annotations

import pandas as pd
from anndata import AnnData

from ..metrics import category_consensus_from_labels


def category_consensus(
    model, adata: AnnData | None = None, batch_size: int | None = None
) -> pd.DataFrame:
    """Per-category consensus between a model's arms, on all cells, without augmentation.

    See :func:`category_consensus_from_labels` for the definition. Pruned categories are left
    out.

    Parameters
    ----------
    model
        A trained :class:`~cplmix_sc.CplMixVAE`.
    adata
        Cells to use; defaults to the model's AnnData.
    batch_size
        Cells per inference batch.

    Returns
    -------
    DataFrame indexed by ``category`` with ``n_cells``, ``n_cells_any_arm``, ``consensus``.
    """
    labels = model.get_arm_labels(adata, batch_size=batch_size)
    mask = model.module.category_mask.cpu().numpy()
    return category_consensus_from_labels(labels, model.module.n_categories, active=mask)

"""A start from given labels (``train(init_labels=...)``): refine an existing clustering."""

from __future__ import annotations

import numpy as np
import pandas as pd

#: start label of a cell without a starting category (not pulled during the warm-up)
NO_LABEL = -1


def start_labels_from(init_labels, obs: pd.DataFrame, n_categories: int
                      ) -> tuple[np.ndarray, pd.Index]:
    """Category codes from ``init_labels`` and the label behind each code.

    ``init_labels`` is an array-like or Series with one label per cell (a Series is aligned to
    ``obs.index``), or the name of an ``obs`` column. Missing labels (NaN, None) give
    :data:`NO_LABEL`: those cells have no starting category. Distinct labels become categories
    ``0, 1, ...`` in the order of a categorical's categories, else sorted; there may be at most
    ``n_categories`` of them.

    Returns
    -------
    ``(codes, names)``: ``(n_cells,)`` integer codes and the label of each category.
    """
    n_cells = len(obs)
    if isinstance(init_labels, str):
        if init_labels not in obs.columns:
            raise ValueError(
                f"`init_labels`={init_labels!r} is not a column of adata.obs; pass the name of "
                "an obs column, or the labels themselves (one per cell). For a start method use "
                "`init=` ('leiden', 'kmeans' or 'random')."
            )
        labels = obs[init_labels]
    elif isinstance(init_labels, pd.Series):
        if not init_labels.index.equals(obs.index):
            if not init_labels.index.is_unique or not obs.index.isin(init_labels.index).all():
                raise ValueError(
                    "A Series `init_labels` must be indexed by adata.obs_names (it is aligned "
                    "to them), each once; or pass its values (`.to_numpy()`) in the cells' order."
                )
            init_labels = init_labels.reindex(obs.index)
        labels = init_labels
    else:
        values = np.asarray(init_labels, dtype=object)
        if values.ndim != 1 or len(values) != n_cells:
            raise ValueError(
                f"`init_labels` must have one label per cell ({n_cells}), got shape "
                f"{values.shape}."
            )
        labels = pd.Series(values, index=obs.index)
    if len(labels) != n_cells:
        raise ValueError(f"`init_labels` must have one label per cell ({n_cells}).")
    cat = labels.astype("category") if not isinstance(labels.dtype, pd.CategoricalDtype) else (
        labels.cat.remove_unused_categories())
    names = cat.cat.categories
    if len(names) == 0:
        raise ValueError("`init_labels` has no label (all missing); pass None for no labels.")
    if len(names) > n_categories:
        raise ValueError(
            f"`init_labels` has {len(names)} distinct labels but the model has "
            f"n_categories={n_categories}; build the model with at least {len(names)} "
            "categories, or merge labels first."
        )
    codes = cat.cat.codes.to_numpy().astype(np.int64)
    codes[codes < 0] = NO_LABEL
    return codes, pd.Index(names)

"""Basic figures of learned types and states."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from anndata import AnnData


def _finish(fig, save: str | Path | None, show: bool | None):
    if save is not None:
        fig.savefig(save, dpi=120, bbox_inches="tight")
    if show is None:
        show = matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "ps", "cairo")
    if show:
        plt.show()


def type_contingency(
    adata: AnnData,
    reference_key: str,
    key: str = "cpl_type",
    ax: plt.Axes | None = None,
    show: bool | None = None,
    save: str | Path | None = None,
) -> plt.Axes:
    """Heatmap of reference labels (rows) vs learned types (columns), rows normalised.

    Columns are ordered by the reference label they share most cells with, so a good
    labelling shows a block diagonal.

    Parameters
    ----------
    adata
        AnnData annotated by :meth:`~cplmix_sc.CplMixVAE.annotate`.
    reference_key, key
        Columns of ``adata.obs`` with the reference labels and the learned types.
    ax, show, save
        As in scanpy: draw into ``ax``; show the figure; save it to this path.
    """
    table = pd.crosstab(adata.obs[reference_key], adata.obs[key])
    frac = table.div(table.sum(1), axis=0)
    order = np.argsort(frac.to_numpy().argmax(0), kind="stable")
    frac = frac.iloc[:, order]
    if ax is None:
        _, ax = plt.subplots(figsize=(max(4, 0.12 * frac.shape[1] + 2), 0.3 * len(frac) + 1.5))
    im = ax.imshow(frac.to_numpy(), aspect="auto", cmap="Blues", vmin=0, vmax=1)
    ax.set_yticks(range(len(frac)), frac.index.astype(str))
    ax.set_xticks(range(frac.shape[1]), frac.columns.astype(str), rotation=90, fontsize=6)
    ax.set_xlabel(key)
    ax.set_ylabel(reference_key)
    ax.figure.colorbar(im, ax=ax, label=f"fraction of {reference_key}")
    _finish(ax.figure, save, show)
    return ax


def demo_figure(
    adata: AnnData,
    reference_key: str,
    key_added: str = "cpl",
    show: bool | None = None,
    save: str | Path | None = None,
) -> plt.Figure:
    """Contingency of types vs a reference, and the state coloured by the learned type."""
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(13, 4.5), width_ratios=[2, 1])
    type_contingency(adata, reference_key, key=f"{key_added}_type", ax=ax0, show=False)
    state = adata.obsm[f"X_{key_added}_state"]
    codes = adata.obs[f"{key_added}_type"].cat.codes.to_numpy()
    y = state[:, 1] if state.shape[1] > 1 else np.zeros(len(state))
    ax1.scatter(state[:, 0], y, c=codes, cmap="tab20", s=3, rasterized=True)
    ax1.set_xlabel("state 1")
    ax1.set_ylabel("state 2" if state.shape[1] > 1 else "")
    ax1.set_title("type-dependent state, coloured by type")
    _finish(fig, save, show)
    return fig

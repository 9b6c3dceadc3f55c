"""Figures for choosing K: consensus against K (Fig. S9) and the arm-vs-arm contingency."""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..metrics._matching import match_table
from ._basic import _finish


def k_selection(
    history: pd.DataFrame,
    ax: plt.Axes | None = None,
    show: bool | None = None,
    save: str | Path | None = None,
) -> plt.Axes:
    """Mean and minimum inter-arm consensus, and the Fig. S9a log-ratio, against K.

    Parameters
    ----------
    history
        The DataFrame returned by :meth:`~cplmix_sc.CplMixVAE.prune`.
    ax, show, save
        As in scanpy.

    Returns
    -------
    The consensus axes; the log-ratio is on its twin (``ax.right_ax``).
    """
    need = {"n_categories", "mean_consensus", "min_consensus", "log_ratio"}
    if not need <= set(history.columns):
        raise KeyError(f"`history` needs columns {sorted(need)}: pass what prune() returned.")
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    k = history["n_categories"].to_numpy()
    ax.plot(k, history["mean_consensus"], "o-", color="C0", label="mean consensus")
    ax.plot(k, history["min_consensus"], "s--", color="C0", alpha=0.6, label="min consensus")
    ax.set_xlabel("number of categories K")
    ax.set_ylabel("inter-arm consensus")
    ax.set_ylim(0, 1.02)
    ax.invert_xaxis()  # pruning goes from many to few
    right = ax.twinx()
    right.plot(k, history["log_ratio"], "^-", color="C3", label="log E[max q] / E[min q]")
    right.set_ylabel("log E[max q] / E[min q]", color="C3")
    ax.right_ax = right
    lines = ax.get_lines() + right.get_lines()
    ax.legend(lines, [ln.get_label() for ln in lines], loc="lower left", fontsize=8)
    _finish(ax.figure, save, show)
    return ax


def arm_consensus(
    model_or_labels,
    arms: tuple[int, int] = (0, 1),
    ax: plt.Axes | None = None,
    show: bool | None = None,
    save: str | Path | None = None,
) -> plt.Axes:
    """Contingency of two arms' categories, rows normalised, ordered to show the diagonal.

    Parameters
    ----------
    model_or_labels
        ``(n_arms, n_cells)`` arm labels, e.g. ``model.get_arm_labels()``. Passing the model
        itself is deprecated: a plot does not run inference.
    arms
        The two arms to compare.
    ax, show, save
        As in scanpy.
    """
    if hasattr(model_or_labels, "get_arm_labels"):
        warnings.warn(
            "pl.arm_consensus(model) is deprecated: pass model.get_arm_labels() (plots do not "
            "run inference).",
            FutureWarning,
            stacklevel=2,
        )
        labels = model_or_labels.get_arm_labels()
    else:
        labels = np.asarray(model_or_labels)
    a, b = arms
    if labels.ndim != 2 or max(a, b) >= labels.shape[0]:
        raise ValueError(f"Arms {arms} are not available in labels of shape {labels.shape}.")
    table = pd.crosstab(labels[a], labels[b])
    rows, cols = match_table(table.to_numpy())
    row_order = list(rows) + [i for i in range(table.shape[0]) if i not in set(rows)]
    col_order = list(cols) + [j for j in range(table.shape[1]) if j not in set(cols)]
    table = table.iloc[row_order, col_order]
    frac = table.div(table.sum(1), axis=0)
    if ax is None:
        size = 0.18 * max(frac.shape) + 2
        _, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(frac.to_numpy(), cmap="Blues", vmin=0, vmax=1, aspect="auto")
    ax.set_yticks(range(frac.shape[0]), frac.index.astype(str), fontsize=6)
    ax.set_xticks(range(frac.shape[1]), frac.columns.astype(str), rotation=90, fontsize=6)
    ax.set_ylabel(f"arm {a} category")
    ax.set_xlabel(f"arm {b} category")
    ax.figure.colorbar(im, ax=ax, label=f"fraction of arm {a}'s cells")
    _finish(ax.figure, save, show)
    return ax

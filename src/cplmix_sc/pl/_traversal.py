"""Figures of state traversals (supplement Figs. S11, S12) and of the state per type."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from anndata import AnnData
from scipy.cluster.hierarchy import leaves_list, linkage

from ..tl._traversal import PSEUDOCOUNT, Traversal
from ._basic import _finish


def _pick(values: Sequence[str], wanted, what: str) -> list[int]:
    values = [str(v) for v in values]
    if wanted is None:
        return list(range(len(values)))
    wanted = [wanted] if isinstance(wanted, str | int) else list(wanted)
    missing = [w for w in wanted if str(w) not in values]
    if missing:
        raise KeyError(f"{what} {missing} are not in the traversal; it has {values[:20]}.")
    return [values.index(str(w)) for w in wanted]


def _grid(n: int, ncols: int, size: tuple[float, float]):
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    fig, axs = plt.subplots(
        nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False
    )
    for ax in axs.ravel()[n:]:
        ax.set_visible(False)
    return fig, axs.ravel()[:n]


def traversal(
    result: Traversal,
    genes: Sequence[str] | str,
    cell_types: Sequence[str] | str | None = None,
    hue: str = "cell_type",
    x: str = "position",
    ncols: int = 4,
    log: bool = False,
    show: bool | None = None,
    save: str | Path | None = None,
) -> plt.Figure:
    """Expression along the state sweep: one panel per gene, one line per type or run.

    Fig. S11 style: with ``hue="run"`` and one type, each line is one trained model (seed),
    which shows whether the gene's response to the state is reproducible.

    Parameters
    ----------
    result
        Output of :func:`cplmix_sc.tl.traversal`.
    genes
        Genes to draw, one panel each.
    cell_types
        Types to draw; default all in ``result``.
    hue
        ``"cell_type"`` (one line per type, runs as line styles) or ``"run"``.
    x
        ``"position"`` (0 to 1 along each type's sweep, comparable across types) or
        ``"state_value"`` (state units along the type's axis).
    ncols
        Panels per row.
    log
        Plot ``log2(expression + 1)`` instead of expression per 10,000 counts.
    show, save
        As in scanpy.

    Returns
    -------
    The figure; its axes are ``fig.axes`` (one per gene, in order).
    """
    if hue not in ("cell_type", "run"):
        raise ValueError(f"`hue` must be 'cell_type' or 'run', got {hue!r}.")
    if x not in ("position", "state_value"):
        raise ValueError(f"`x` must be 'position' or 'state_value', got {x!r}.")
    gi = _pick(list(result.genes), genes, "Genes")
    ti = _pick(result.cell_types, cell_types, "Cell types")
    fig, axes = _grid(len(gi), ncols, (3.2, 2.6))
    n_steps = result.expression.shape[2]
    colours = plt.get_cmap("tab10" if max(len(ti), result.n_runs) <= 10 else "tab20")
    styles = ["-", "--", ":", "-."]
    for ax, g in zip(axes, gi, strict=True):
        for j, t in enumerate(ti):
            for r in range(result.n_runs):
                y = result.expression[r, t, :, g]
                if np.isnan(y).all():
                    continue
                y = np.log2(y + PSEUDOCOUNT) if log else y
                xs = result.state_values[r, t] if x == "state_value" else np.linspace(
                    0, 1, n_steps
                )
                if hue == "cell_type":
                    kw = {"color": colours(j % colours.N), "ls": styles[r % len(styles)],
                          "label": result.cell_types[t] if r == 0 else None}
                else:
                    kw = {"color": colours(r % colours.N), "ls": styles[j % len(styles)],
                          "label": f"run {r}" if j == 0 else None}
                ax.plot(xs, y, **kw)
        ax.set_title(str(result.genes[g]))
        ax.set_xlabel("state (position along sweep)" if x == "position" else "state")
        ax.set_ylabel("log2(expr + 1)" if log else "expr. per 10k")
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, title=hue.replace("_", " "), loc="center left",
                   bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.tight_layout()
    _finish(fig, save, show)
    return fig


def traversal_heatmap(
    result: Traversal,
    genes: Sequence[str] | str,
    cell_types: Sequence[str] | str | None = None,
    run: int = 0,
    order: str = "hierarchy",
    ncols: int = 5,
    cmap: str = "viridis",
    show: bool | None = None,
    save: str | Path | None = None,
) -> plt.Figure:
    """Types x state panels colour-mapped by normalised expression (Fig. S12 style).

    Each panel is one gene; its columns are types and its vertical axis the position along
    each type's state sweep (bottom: start, top: end). Colours are expression divided by the
    gene's maximum over the panel, so a flat column is a gene the state does not move in
    that type and a graded column one it does.

    Parameters
    ----------
    result
        Output of :func:`cplmix_sc.tl.traversal`.
    genes
        Genes to draw, one panel each.
    cell_types
        Types (columns); default all in ``result``.
    run
        Which run of a multi-model traversal.
    order
        ``"hierarchy"``: types ordered by average-linkage clustering of their mean log
        profiles over ``genes`` (as the paper's dendrogram-sorted axis); ``"given"``: as
        passed.
    ncols, cmap, show, save
        Layout, colour map, and as in scanpy.

    Returns
    -------
    The figure; the panels are ``fig.axes[:len(genes)]`` and the colour bar the last axes.
    """
    if order not in ("hierarchy", "given"):
        raise ValueError(f"`order` must be 'hierarchy' or 'given', got {order!r}.")
    if not 0 <= run < result.n_runs:
        raise ValueError(f"`run` must be in [0, {result.n_runs - 1}], got {run}.")
    gi = _pick(list(result.genes), genes, "Genes")
    ti = _pick(result.cell_types, cell_types, "Cell types")
    data = result.expression[run][np.ix_(ti, np.arange(result.expression.shape[2]), gi)]
    keep = ~np.isnan(data).all(axis=(1, 2))
    ti, data = [t for t, k in zip(ti, keep, strict=True) if k], data[keep]
    if order == "hierarchy" and len(ti) > 2:
        prof = np.log2(data.mean(1) + PSEUDOCOUNT)
        perm = leaves_list(linkage(prof, method="average"))
        ti, data = [ti[i] for i in perm], data[perm]
    fig, axes = _grid(len(gi), ncols, (0.25 * len(ti) + 1.2, 2.6))
    im = None
    for j, ax in enumerate(axes):
        panel = data[:, :, j].T  # (n_steps, n_types)
        peak = np.nanmax(panel)
        panel = panel / peak if peak > 0 else panel
        im = ax.imshow(panel, aspect="auto", origin="lower", cmap=cmap, vmin=0, vmax=1,
                       extent=(-0.5, len(ti) - 0.5, 0, 1))
        ax.set_title(str(result.genes[gi[j]]))
        ax.set_xticks(range(len(ti)), [result.cell_types[t] for t in ti], rotation=90,
                      fontsize=7)
        if j % max(1, min(ncols, len(gi))) == 0:
            ax.set_ylabel("state (position along sweep)")
    fig.tight_layout()
    fig.colorbar(im, ax=list(axes), label="normalised expression", shrink=0.8)
    _finish(fig, save, show)
    return fig


def state(
    adata: AnnData,
    key_added: str = "cpl",
    cell_types: Sequence[str] | str | None = None,
    color: str | None = None,
    ncols: int = 4,
    min_cells: int = 1,
    show: bool | None = None,
    save: str | Path | None = None,
) -> plt.Figure:
    """The inferred state of each type's cells, one panel per type.

    Parameters
    ----------
    adata
        AnnData annotated by :meth:`~cplmix_sc.CplMixVAE.annotate`.
    key_added
        Prefix used at annotation (reads ``obs[f"{key_added}_type"]`` and
        ``obsm[f"X_{key_added}_state"]``).
    cell_types
        Types to draw; default all with at least ``min_cells`` cells.
    color
        An ``obs`` column or a gene to colour cells by (e.g. an IEG); default the type
        confidence.
    ncols, min_cells, show, save
        Layout, smallest type drawn, and as in scanpy.

    Returns
    -------
    The figure; one axes per type in ``fig.axes`` (then colour bars).
    """
    type_key, state_key = f"{key_added}_type", f"X_{key_added}_state"
    for k, where in ((type_key, adata.obs), (state_key, adata.obsm)):
        if k not in where:
            raise KeyError(f"{k!r} not found; run `model.annotate(adata, key_added=...)` first.")
    types = adata.obs[type_key].astype(str)
    counts = types.value_counts()
    names = [t for t in adata.obs[type_key].cat.categories if counts.get(t, 0) >= min_cells]
    ti = _pick(names, cell_types, "Cell types")
    names = [names[i] for i in ti]
    colour_by = color or f"{key_added}_type_confidence"
    values = np.asarray(adata.obs_vector(colour_by), dtype=float)
    st = np.asarray(adata.obsm[state_key])
    fig, axes = _grid(len(names), ncols, (2.8, 2.5))
    vmin, vmax = np.nanpercentile(values, [1, 99])
    for ax, t in zip(axes, names, strict=True):
        m = (types == t).to_numpy()
        y = st[m, 1] if st.shape[1] > 1 else np.zeros(m.sum())
        sca = ax.scatter(st[m, 0], y, c=values[m], s=4, cmap="viridis", vmin=vmin, vmax=vmax,
                         rasterized=True)
        ax.set_title(f"type {t} ({m.sum()} cells)", fontsize=9)
        ax.set_xlabel("state 1")
        ax.set_ylabel("state 2" if st.shape[1] > 1 else "")
    fig.tight_layout()
    fig.colorbar(sca, ax=list(axes), label=colour_by, shrink=0.8)
    _finish(fig, save, show)
    return fig

"""Fit the start: the categories the warm-up pulls every arm towards (``train(init=...)``)."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.cluster import KMeans

from .._backed import is_backed, read_rows
from ._divisive import divisive_start
from ._genes import state_program_genes
from ._graph import graph_start
from ._pca import log_pca

logger = logging.getLogger(__name__)

#: the start is fit on at most this many cells (a random sample of larger data)
MAX_START_CELLS = 20_000
#: the ways to start (``train(init=...)``); ``"random"`` has no start
INITS = ("divisive", "kmeans", "leiden", "random")


@dataclass
class Start:
    """A fitted start: the PCA it clusters in and its categories.

    Attributes
    ----------
    mean, components
        ``(G,)`` and ``(P, G)``: PCA of log-normalised counts (zero for left-out genes).
    centers
        ``(K, P)`` mean PC coordinates of each category (zero for an empty one).
    counts
        ``(K,)`` cells per category.
    points, labels
        For a per-cell start (``"leiden"``): the reference cells' PC coordinates and their
        categories (a cell is taught its nearest reference cell's category); ``None`` for
        k-means, taught by nearest centre.
    genes
        Boolean ``(G,)`` mask of the genes the PCA used, ``None`` for every gene.
    """

    mean: np.ndarray
    components: np.ndarray
    centers: np.ndarray
    counts: np.ndarray
    points: np.ndarray | None
    labels: np.ndarray | None
    genes: np.ndarray | None

    @property
    def excluded(self) -> list[int]:
        """Indices of the genes left out of the PCA."""
        return [] if self.genes is None else np.flatnonzero(~self.genes).tolist()


def start_cells(n_cells: int, seed: int | None) -> np.ndarray | None:
    """The sorted random sample of cells the start is fit on (``None``: every cell)."""
    if n_cells <= MAX_START_CELLS:
        return None
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_cells, MAX_START_CELLS, replace=False))


def fit_start(
    x,
    init: str,
    n_categories: int,
    n_pcs: int,
    seed: int | None,
    resolution: float = 1.0,
    genes: np.ndarray | str | None = None,
    labels: np.ndarray | None = None,
) -> Start:
    """The start from the top PCs of log-normalised counts.

    ``"divisive"``: :func:`~cplmix_sc.start.divisive_start`, ``n_categories`` clusters split
    top-down, each in its own genes' Pearson residuals; taught by nearest reference cell.
    ``"kmeans"``: k-means with ``n_categories`` clusters, taught by nearest centre.
    ``"leiden"``: Leiden communities of a 15-NN graph at ``resolution``, merged along the graph
    down to ``n_categories`` if there are more (:func:`~cplmix_sc.start.graph_start`), taught
    by nearest reference cell. Both are fit on at most :data:`MAX_START_CELLS` cells (a
    random sample of larger data); for a backed matrix only those rows are read, and the PCA is
    fit on them. ``genes`` is a boolean mask of the genes the PCA uses, ``None`` (every gene)
    or ``"auto"`` (:func:`~cplmix_sc.start.state_program_genes` on the same cells).
    ``labels`` (``(n_cells,)`` codes, :data:`~cplmix_sc.start._labels.NO_LABEL` for none): the
    start is these categories, taught by nearest reference cell (``init`` and ``"auto"``
    genes are then not used); cells without a label are reference cells without a category.
    """
    sample = start_cells(x.shape[0], seed)
    if is_backed(x):  # on disk: read only the sampled rows (all if few), as CSR
        x = read_rows(x, sample)
        sample = None
    if labels is not None and sample is not None:
        labels = labels[sample]
    if isinstance(genes, str) and (labels is not None or init == "divisive"):
        genes = None  # given labels, or splits in local genes: no graph communities to protect
    if isinstance(genes, str):
        genes = auto_genes(x if sample is None else x[sample], n_pcs, seed, resolution,
                           n_categories)
    n_genes = x.shape[1] if genes is None else int(genes.sum())
    n_comp = min(n_pcs, n_genes - 1, x.shape[0] - 1)
    # sparse-aware: a large matrix is never densified whole (start._pca.log_pca)
    mean, components, pcs = log_pca(x, n_comp, seed, genes=genes, rows=sample)
    if labels is None and init == "divisive":
        labels = divisive_start(x if sample is None else x[sample], n_categories, seed)
    if labels is not None or init == "leiden":
        if labels is None:
            labels = graph_start(pcs, n_categories, seed=seed, resolution=resolution)
        centers, points = category_centers(pcs, labels, n_categories), pcs
    else:
        km = KMeans(n_categories, n_init=10, random_state=seed).fit(pcs)
        labels, centers, points = km.labels_, km.cluster_centers_, None
    counts = np.bincount(labels[labels >= 0], minlength=n_categories)
    return Start(mean, components, centers, counts, points,
                 None if points is None else labels, genes)


def category_centers(pcs: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Mean coordinates of each category's cells, ``(k, P)`` (zero for an empty category)."""
    return np.stack([
        pcs[labels == c].mean(0) if np.any(labels == c) else np.zeros(pcs.shape[1])
        for c in range(k)
    ])


def auto_genes(x, n_pcs: int, seed, resolution: float, n_categories: int) -> np.ndarray | None:
    """``init_exclude_genes="auto"``: the mask of :func:`state_program_genes`, with its
    warning or log line; ``None`` when every gene stays."""
    keep, _, info = state_program_genes(
        x, n_pcs=n_pcs, seed=seed, resolution=resolution, max_communities=n_categories
    )
    if info["too_many"]:
        warnings.warn(
            f"init_exclude_genes='auto' flagged {info['too_many']} of {x.shape[1]} "
            "genes as a state's, too many for one program: the start uses every "
            "gene. Select variable genes first, or name the state's genes "
            "(`init_exclude_genes=[...]`).",
            UserWarning,
            stacklevel=5,
        )
    elif info["skipped"]:
        logger.info(
            "init_exclude_genes='auto': %d communities for %d categories, so the "
            "start merges them along the graph and uses every gene.",
            info["n_communities"][0], n_categories,
        )
    else:
        logger.info(
            "The start leaves out %d genes that vary together within communities "
            "(%d rounds; communities per round: %s).",
            int((~keep).sum()), info["n_rounds"], info["n_communities"],
        )
    return None if keep.all() else keep

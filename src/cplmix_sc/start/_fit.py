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
#: ``fit_start(init="auto")`` takes k-means when k-means on every gene and k-means without the
#: shared state's genes agree at least this well (adjusted Rand index): compact types that the
#: state does not cut (Zeisel's 7 classes: 0.97; the simulator's state-cut types: 0.09-0.15,
#: weak markers: 0.70-0.76; ``benchmarks/results/quality.md``, "The few-type start")
KMEANS_AGREEMENT = 0.9


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
    init
        The clustering used: ``"leiden"``, ``"kmeans"``, ``"divisive"`` or ``"labels"``
        (``fit_start(init="auto")`` picks one of the first two).
    cells
        The rows of the data the start was fit on, the reference cells in order (sorted;
        ``None``: every row).
    """

    mean: np.ndarray
    components: np.ndarray
    centers: np.ndarray
    counts: np.ndarray
    points: np.ndarray | None
    labels: np.ndarray | None
    genes: np.ndarray | None
    init: str = ""
    cells: np.ndarray | None = None

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


def fit_start(x, init: str, n_categories: int, n_pcs: int, seed: int | None,
              resolution: float = 1.0, genes: np.ndarray | str | None = None,
              labels: np.ndarray | None = None) -> Start:
    """The start from the top PCs of log-normalised counts (see :func:`_fit_start`).

    Runs with the BLAS and OpenMP thread pools limited to one thread (``threadpoolctl``): its
    many small problems (a PCA and a 2-means per divisive split) ran about twice slower on two
    threads than on one, fighting PyTorch's threads, and the start then does not depend on
    the number of cores (``benchmarks/results/speed.md``).
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return _fit_start(x, init, n_categories, n_pcs, seed, resolution, genes, labels)


def _fit_start(
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
    by nearest reference cell; with ``genes="auto"`` and more communities than categories,
    the merges are judged on the graph of a PCA without the shared state's genes
    (:func:`auto_genes`). Both are fit on at most :data:`MAX_START_CELLS` cells (a
    random sample of larger data); for a backed matrix only those rows are read, and the PCA is
    fit on them. ``genes`` is a boolean mask of the genes the PCA (and the divisive splits)
    use, ``None`` (every gene) or ``"auto"`` (:func:`~cplmix_sc.start.state_program_genes` on
    the same cells, :func:`auto_genes`).
    ``labels`` (``(n_cells,)`` codes, :data:`~cplmix_sc.start._labels.NO_LABEL` for none): the
    start is these categories, taught by nearest reference cell (``init`` and ``"auto"``
    genes are then not used); cells without a label are reference cells without a category.
    ``"auto"`` (``train()``'s default with fewer than 24 categories): ``"leiden"``, except
    when the graph has more communities than ``n_categories`` and k-means with
    ``n_categories`` clusters finds the same partition with and without the shared state's
    genes (adjusted Rand index at least :data:`KMEANS_AGREEMENT`): then the types are compact
    and not cut by a state, and the k-means start is used (``genes="auto"`` only; else
    ``"leiden"``). ``Start.init`` says which was used.
    """
    given = labels is not None
    sample = cells = start_cells(x.shape[0], seed)
    if is_backed(x):  # on disk: read only the sampled rows (all if few), as CSR
        x = read_rows(x, sample)
        sample = None
    if labels is not None and sample is not None:
        labels = labels[sample]
    if init == "auto" and not (isinstance(genes, str) and labels is None):
        init = "leiden"  # the choice needs the state's genes ("auto" genes)
    if isinstance(genes, str) and labels is not None:
        genes = None  # given labels: no communities to protect
    merge_genes = None
    if isinstance(genes, str):
        # the divisive start never merges communities: its splits and PCA leave a shared
        # state's genes out whatever the number of communities
        genes, merge_genes = auto_genes(x if sample is None else x[sample], n_pcs, seed,
                                        resolution,
                                        None if init == "divisive" else n_categories)
    n_genes = x.shape[1] if genes is None else int(genes.sum())
    n_comp = min(n_pcs, n_genes - 1, x.shape[0] - 1)
    # sparse-aware: a large matrix is never densified whole (start._pca.log_pca)
    mean, components, pcs = log_pca(x, n_comp, seed, genes=genes, rows=sample)
    merge_pcs = None
    if merge_genes is not None and labels is None and init in ("leiden", "auto"):
        n_comp = min(n_pcs, int(merge_genes.sum()) - 1, x.shape[0] - 1)
        merge_pcs = log_pca(x, n_comp, seed, genes=merge_genes, rows=sample)[2]
    if init == "auto":
        init = "leiden" if merge_pcs is None else kmeans_or_graph(pcs, merge_pcs,
                                                                  n_categories, seed)
    if labels is None and init == "divisive":
        xs = x if sample is None else x[sample]
        labels = divisive_start(xs if genes is None else xs[:, genes], n_categories, seed)
    if labels is not None or init == "leiden":
        if labels is None:
            labels = graph_start(pcs, n_categories, seed=seed, resolution=resolution,
                                 **({} if merge_pcs is None else {"merge_rep": merge_pcs}))
        centers, points = category_centers(pcs, labels, n_categories), pcs
    else:
        km = KMeans(n_categories, n_init=10, random_state=seed).fit(pcs)
        labels, centers, points = km.labels_, km.cluster_centers_, None
    counts = np.bincount(labels[labels >= 0], minlength=n_categories)
    used = "labels" if given else init
    return Start(mean, components, centers, counts, points,
                 None if points is None else labels, genes, used, cells)


def kmeans_or_graph(pcs: np.ndarray, state_free_pcs: np.ndarray, k: int, seed) -> str:
    """``"kmeans"`` if k-means with ``k`` clusters on ``pcs`` (every gene) and on
    ``state_free_pcs`` (without the shared state's genes) agree to an adjusted Rand index of
    at least :data:`KMEANS_AGREEMENT`, else ``"leiden"`` (the graph start)."""
    from sklearn.metrics import adjusted_rand_score

    every = KMeans(k, n_init=10, random_state=seed).fit_predict(pcs)
    free = KMeans(k, n_init=10, random_state=seed).fit_predict(state_free_pcs)
    agreement = adjusted_rand_score(every, free)
    choice = "kmeans" if agreement >= KMEANS_AGREEMENT else "leiden"
    logger.info("init='auto': k-means with and without the state's genes agree to ARI %.2f: "
                "the %s start.", agreement, "k-means" if choice == "kmeans" else "graph")
    return choice


def category_centers(pcs: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Mean coordinates of each category's cells, ``(k, P)`` (zero for an empty category)."""
    return np.stack([
        pcs[labels == c].mean(0) if np.any(labels == c) else np.zeros(pcs.shape[1])
        for c in range(k)
    ])


def auto_genes(x, n_pcs: int, seed, resolution: float,
               n_categories: int | None) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``init_exclude_genes="auto"``: ``(pca_genes, merge_genes)``, masks of the genes the
    start's PCA and the graph start's merges use (``None``: every gene), with a warning or
    log line.

    :func:`state_program_genes` finds the genes of a state shared by communities. When Leiden
    on every gene finds at most ``n_categories`` communities, the start's PCA leaves them out
    (``pca_genes``). When it finds more, the communities are found on every gene (leaving the
    state's genes out of the PCA lost types on Zeisel's 7 classes) and only the merges down
    to ``n_categories`` are judged without them (``merge_genes``): on the simulator the
    merges along the all-gene graph pulled most cells into one category
    (``benchmarks/results/quality.md``, "Merging without the state's genes").
    ``n_categories=None`` (the divisive start, which merges nothing): always ``pca_genes``;
    the divisive splits leave the state's genes out too (on the TUNE draws of the many-type
    family a shared state otherwise cuts the splits: ``benchmarks/results/fine_types.md``).
    """
    keep, _, info = state_program_genes(x, n_pcs=n_pcs, seed=seed, resolution=resolution)
    if info["too_many"]:
        warnings.warn(
            f"init_exclude_genes='auto' flagged {info['too_many']} of {x.shape[1]} "
            "genes as a state's, too many for one program: the start uses every "
            "gene. Select variable genes first, or name the state's genes "
            "(`init_exclude_genes=[...]`).",
            UserWarning,
            stacklevel=5,
        )
        return None, None
    if keep.all():
        return None, None
    if n_categories is not None and info["n_communities"][0] > n_categories:
        logger.info(
            "init_exclude_genes='auto': %d communities for %d categories, so the start "
            "finds them on every gene and merges them on a graph without the %d genes that "
            "vary together within communities.",
            info["n_communities"][0], n_categories, int((~keep).sum()),
        )
        return None, keep
    logger.info(
        "The start leaves out %d genes that vary together within communities "
        "(%d rounds; communities per round: %s).",
        int((~keep).sum()), info["n_rounds"], info["n_communities"],
    )
    return keep, None

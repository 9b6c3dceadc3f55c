"""The start: the categories the warm-up pulls every arm towards (``train(init=...)``).

Pure functions of a counts matrix: :func:`fit_start` returns a :class:`Start` (a PCA of
log-normalised counts and its categories); :func:`start_genes` checks which genes the PCA
uses and :func:`state_program_genes` finds a shared state's genes to leave out;
:func:`start_labels_from` turns given labels into a start's categories;
:func:`graph_start` and :func:`leiden_n_clusters` are the graph clusterings,
:func:`divisive_start` the top-down one, and :func:`multinomial_em` a multinomial mixture.
"""

from ._divisive import divisive_start
from ._fit import INITS, MAX_START_CELLS, Start, category_centers, fit_start, start_cells
from ._genes import start_genes, state_program_genes
from ._graph import graph_start, keep_torch_threads, leiden_n_clusters, merge_communities
from ._labels import NO_LABEL, start_labels_from
from ._mixture import multinomial_em
from ._pca import log_pca

__all__ = [
    "INITS",
    "MAX_START_CELLS",
    "NO_LABEL",
    "Start",
    "category_centers",
    "divisive_start",
    "fit_start",
    "graph_start",
    "keep_torch_threads",
    "leiden_n_clusters",
    "log_pca",
    "merge_communities",
    "multinomial_em",
    "start_cells",
    "start_genes",
    "start_labels_from",
    "state_program_genes",
]

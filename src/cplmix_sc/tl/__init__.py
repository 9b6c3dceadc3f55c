"""Analyses of a trained model (scanpy ``tl`` style): state traversals, state genes, markers,
and the consistency of categories between arms."""

from ._consensus import category_consensus, category_consensus_from_labels
from ._traversal import Traversal, marker_genes, state_genes, traversal

__all__ = [
    "Traversal",
    "category_consensus",
    "category_consensus_from_labels",
    "marker_genes",
    "state_genes",
    "traversal",
]

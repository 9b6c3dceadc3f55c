"""Analyses of a trained model (scanpy ``tl`` style): state traversals, state genes, markers,
and the consistency of categories between arms."""

from ._augmentation import embed_augmented
from ._consensus import category_consensus, category_consensus_from_labels
from ._runs import RunConsensus, consensus_from_labels, run_consensus
from ._traversal import Traversal, marker_genes, state_genes, traversal

__all__ = [
    "RunConsensus",
    "Traversal",
    "category_consensus",
    "category_consensus_from_labels",
    "consensus_from_labels",
    "embed_augmented",
    "marker_genes",
    "run_consensus",
    "state_genes",
    "traversal",
]

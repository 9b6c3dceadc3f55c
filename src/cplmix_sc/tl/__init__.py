"""Analyses of a trained model (scanpy ``tl`` style): state traversals, state genes, markers."""

from ._traversal import Traversal, marker_genes, state_genes, traversal

__all__ = ["Traversal", "marker_genes", "state_genes", "traversal"]

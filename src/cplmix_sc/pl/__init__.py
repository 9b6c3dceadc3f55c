"""Plots: they draw what ``tl``/``annotate`` computed; they never train or recompute."""

from ._basic import demo_figure, type_contingency
from ._traversal import state, traversal, traversal_heatmap

__all__ = ["demo_figure", "state", "traversal", "traversal_heatmap", "type_contingency"]

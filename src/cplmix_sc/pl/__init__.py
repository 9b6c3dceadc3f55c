"""Plots: they draw what ``tl``/``annotate`` computed; they never train or recompute."""

from ._augmentation import augmentation
from ._basic import demo_figure, type_contingency
from ._consensus import arm_consensus, k_selection
from ._traversal import state, traversal, traversal_heatmap

__all__ = [
    "arm_consensus",
    "augmentation",
    "demo_figure",
    "k_selection",
    "state",
    "traversal",
    "traversal_heatmap",
    "type_contingency",
]

"""Plots: they draw what ``tl``/``annotate`` computed; they never train or recompute."""

from ._basic import demo_figure, type_contingency

__all__ = ["demo_figure", "type_contingency"]

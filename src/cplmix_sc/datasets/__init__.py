"""Datasets: bundled real data and a ground-truth simulator."""

from ._synthetic import synthetic
from ._zeisel import zeisel2015

__all__ = ["synthetic", "zeisel2015"]

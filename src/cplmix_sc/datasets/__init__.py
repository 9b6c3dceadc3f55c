"""Datasets: bundled real data, loaders for the paper's public data, and a simulator."""

from ._hierarchy import synthetic_hierarchy
from ._mop10x import mop10x
from ._registry import DatasetFileError, DatasetNotFoundError
from ._synthetic import synthetic
from ._tasic2018 import select_paper_genes, tasic2018
from ._zeisel import zeisel2015

__all__ = [
    "DatasetFileError",
    "DatasetNotFoundError",
    "mop10x",
    "select_paper_genes",
    "synthetic",
    "synthetic_hierarchy",
    "tasic2018",
    "zeisel2015",
]

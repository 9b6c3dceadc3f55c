"""cplmix_sc: cell types and type-dependent continuous state with coupled mixture VAEs."""

from importlib.metadata import PackageNotFoundError, version

from . import datasets, genesets, metrics, module, pl, start, tl, train
from .model import Augmenter, CplMixVAE

try:
    __version__ = version("cplmix-sc")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "Augmenter",
    "CplMixVAE",
    "datasets",
    "genesets",
    "metrics",
    "module",
    "pl",
    "start",
    "tl",
    "train",
]

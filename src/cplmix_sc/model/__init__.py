"""User-facing models."""

from ._augmenter import Augmenter
from ._cplmixvae import CplMixVAE

__all__ = ["Augmenter", "CplMixVAE"]

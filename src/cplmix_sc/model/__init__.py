"""User-facing models."""

from ._cplmixvae import CplMixVAE

__all__ = ["CplMixVAE"]

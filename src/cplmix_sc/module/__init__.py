"""Networks and losses (what the user-facing models are built from)."""

from ._arms import ArmBatchNorm, ArmLinear, ArmMLP
from ._augmenter import AugmenterModule
from ._coupling import COUPLINGS, aitchison_sq, clr, sigma_sq
from ._cplmixvae import LIKELIHOODS, CplMixVAEModule
from ._normalise import NORM_SCALE, log_normalise, log_normalise_rows

__all__ = [
    "COUPLINGS",
    "LIKELIHOODS",
    "NORM_SCALE",
    "ArmBatchNorm",
    "ArmLinear",
    "ArmMLP",
    "AugmenterModule",
    "CplMixVAEModule",
    "aitchison_sq",
    "clr",
    "log_normalise",
    "log_normalise_rows",
    "sigma_sq",
]

"""Training plans and data paths."""

from ._plan import CplMixTrainingPlan

__all__ = ["CplMixTrainingPlan"]

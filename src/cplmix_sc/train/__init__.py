"""Training plans, data paths and the callbacks that keep long runs safe."""

from ._augmenter_plan import AugmenterTrainingPlan
from ._callbacks import CouplingWarmup, NonFiniteGuard, NonFiniteLossError
from ._checkpoint import ResumableCheckpoint
from ._data import DeviceBatchLoader, DeviceDataSplitter, DeviceMatrix
from ._plan import CplMixTrainingPlan
from ._progress import PhaseSummary, progress_line, quiet_progress, setup_progress_logger

__all__ = [
    "AugmenterTrainingPlan",
    "CouplingWarmup",
    "CplMixTrainingPlan",
    "DeviceBatchLoader",
    "DeviceDataSplitter",
    "DeviceMatrix",
    "NonFiniteGuard",
    "NonFiniteLossError",
    "PhaseSummary",
    "ResumableCheckpoint",
    "progress_line",
    "quiet_progress",
]

setup_progress_logger()

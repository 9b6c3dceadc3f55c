"""Training plans, data paths and the callbacks of training (safety, schedules, the start's
label table)."""

from ._augmenter_plan import AugmenterTrainingPlan
from ._callbacks import CouplingWarmup, NonFiniteGuard, NonFiniteLossError, StartLabelTable
from ._checkpoint import ResumableCheckpoint
from ._data import DeviceBatchLoader, DeviceDataSplitter, DeviceMatrix
from ._plan import CplMixTrainingPlan
from ._progress import PhaseSummary, progress_line, quiet_progress, setup_progress_logger
from ._schedule import default_batch_size

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
    "StartLabelTable",
    "default_batch_size",
    "progress_line",
    "quiet_progress",
]

setup_progress_logger()

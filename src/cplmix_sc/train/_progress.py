"""Quiet progress: one line per training phase instead of Lightning's messages and bars,
and one line per step of the package's other long loops (:func:`progress_line`)."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
import warnings
from collections.abc import Callable, Iterator

from lightning.pytorch import Callback

#: Lightning's loggers: "GPU available", "💡 Tip: ...", model summaries (INFO messages)
LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric", "lightning")


class PhaseSummary(Callback):
    """Print one line when a training phase ends: phase, epochs, time and last loss.

    Pass it to :meth:`~cplmix_sc.CplMixVAE.train` with ``enable_progress_bar=False``
    (``train(callbacks=[PhaseSummary()], enable_progress_bar=False)``) to see
    ``warmup: 10 epochs in 12 s (loss 2981.4)`` and ``mixture: ...`` instead of a progress bar
    per phase. ``prune()`` fine-tuning rounds print one line each (phase ``mixture``).

    Parameters
    ----------
    echo
        Where the line goes (default: ``print``).
    """

    def __init__(self, echo: Callable[[str], None] = print):
        self.echo = echo
        self._start = 0.0

    def on_train_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()

    def on_train_end(self, trainer, pl_module) -> None:
        phase = getattr(pl_module.module, "phase", "training")
        loss = trainer.callback_metrics.get("train_loss_epoch")
        loss = "" if loss is None else f" (loss {float(loss):.1f})"
        self.echo(
            f"{phase}: {trainer.current_epoch} epochs in "
            f"{time.perf_counter() - self._start:.0f} s{loss}"
        )


@contextlib.contextmanager
def quiet_lightning(level: int = logging.WARNING) -> Iterator[None]:
    """Silence Lightning's INFO messages and its data-loader warnings inside the block."""
    loggers = [logging.getLogger(name) for name in LIGHTNING_LOGGERS]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*log_every_n_steps.*")
        warnings.filterwarnings("ignore", ".*LeafSpec.*")
        for lg in loggers:
            lg.setLevel(level)
        try:
            yield
        finally:
            for lg, lv in zip(loggers, levels, strict=True):
                lg.setLevel(lv)


#: the package's logger; its INFO records are the progress lines of :func:`progress_line`
PACKAGE_LOGGER = "cplmix_sc"


class _LineHandler(logging.Handler):
    """Writes a record's message as one line to the *current* ``sys.stdout`` (a notebook's
    or a test's capture), like :class:`PhaseSummary`'s ``print``; below ``WARNING`` only
    (warnings and errors keep logging's usual path)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stdout.write(self.format(record) + "\n")
            sys.stdout.flush()
        except Exception:  # logging's contract: emit never raises
            self.handleError(record)


def _below_warning_and_scvi_verbosity(record: logging.LogRecord) -> bool:
    from scvi import settings

    return record.levelno < logging.WARNING and record.levelno >= settings.verbosity


def setup_progress_logger() -> logging.Logger:
    """Give the ``cplmix_sc`` logger its one-line handler (once) and level ``INFO`` if unset.

    Called on import of the package. Lines then show by default (in a notebook too) and go
    quiet with ``logging.getLogger("cplmix_sc").setLevel(logging.WARNING)`` (this package
    only), ``scvi.settings.verbosity = logging.WARNING`` (with scvi-tools' own messages) or
    inside :func:`quiet_progress`.
    """
    logger = logging.getLogger(PACKAGE_LOGGER)
    if not any(isinstance(h, _LineHandler) for h in logger.handlers):
        handler = _LineHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.addFilter(_below_warning_and_scvi_verbosity)
        logger.addHandler(handler)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    return logger


def progress_line(message: str) -> None:
    """Report one step of a long loop as one line (``INFO`` on ``cplmix_sc.progress``)."""
    logging.getLogger(f"{PACKAGE_LOGGER}.progress").info(message)


@contextlib.contextmanager
def quiet_progress(quiet: bool = True) -> Iterator[None]:
    """Silence the package's progress lines inside the block (if ``quiet``)."""
    logger = logging.getLogger(PACKAGE_LOGGER)
    level = logger.level
    if quiet:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)

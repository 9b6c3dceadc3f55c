"""Quiet progress: one line per training phase instead of Lightning's messages and bars."""

from __future__ import annotations

import contextlib
import logging
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

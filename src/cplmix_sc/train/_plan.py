"""Training plan for CplMixVAE: scvi-tools' plan with the module's mode made explicit."""

from __future__ import annotations

from scvi.train import TrainingPlan


class CplMixTrainingPlan(TrainingPlan):
    """:class:`scvi.train.TrainingPlan` that always trains with the module in train mode.

    scvi-tools 1.4.2 leaves the module in eval mode after a first ``train()`` (or ``load``),
    so a second ``train()`` would run without dropout, augmentation or Gumbel noise and with
    frozen batch-norm statistics. This plan switches the module back at the start of fitting.
    """

    def on_train_start(self) -> None:
        self.module.train()
        super().on_train_start()

    def on_train_epoch_start(self) -> None:
        # validation may have switched the module to eval; training steps need train mode
        self.module.train()

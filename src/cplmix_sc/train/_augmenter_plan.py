"""Training plan of the augmenter: G and D with two optimisers, manual optimisation (Eq. 70).

Modelled on :class:`scvi.train.AdversarialTrainingPlan`: one optimiser for the generator G,
one for the discriminator D, ``automatic_optimization = False``, and in every mini-batch a
G step (reconstruction, triplet, closeness and fooling D) followed by a D step on the
generated samples, detached.
"""

from __future__ import annotations

import torch
from scvi import REGISTRY_KEYS
from scvi.train import TrainingPlan


class AugmenterTrainingPlan(TrainingPlan):
    """G and D steps of the augmenter's min-max game (supplement Eq. 70).

    Parameters
    ----------
    module
        An :class:`~cplmix_sc.module.AugmenterModule`.
    lr
        Adam learning rate of G.
    lr_discriminator
        Adam learning rate of D (default: ``lr``).
    adversarial_warmup_epochs
        Epochs trained as a plain VAE with the triplet and closeness terms, before the GAN
        terms switch on (D is not stepped meanwhile); a generator that already reconstructs
        gives D something to judge.
    **kwargs
        Passed to :class:`scvi.train.TrainingPlan`.
    """

    def __init__(
        self,
        module,
        *,
        lr: float = 1e-3,
        lr_discriminator: float | None = None,
        adversarial_warmup_epochs: int = 0,
        **kwargs,
    ):
        kwargs.setdefault("n_epochs_kl_warmup", None)
        super().__init__(module, lr=lr, **kwargs)
        self.lr_discriminator = lr if lr_discriminator is None else lr_discriminator
        self.adversarial_warmup_epochs = adversarial_warmup_epochs
        self.automatic_optimization = False
        self.loss_kwargs.pop("kl_weight", None)  # the module's own kl_weight is used

    @property
    def adversarial_on(self) -> bool:
        return self.current_epoch >= self.adversarial_warmup_epochs

    def on_train_start(self) -> None:
        self.module.train()
        super().on_train_start()

    def on_train_epoch_start(self) -> None:
        self.module.train()

    def training_step(self, batch, batch_idx):
        """One G step, then one D step (as in AdversarialTrainingPlan)."""
        opt_g, opt_d = self.optimizers()
        adversarial = self.adversarial_on
        _, _, out = self.forward(
            batch, loss_kwargs={"adversarial": adversarial}
        )
        self.log("train_loss", out.loss, on_step=False, on_epoch=True, prog_bar=True)
        self.compute_and_log_metrics(out, self.train_metrics, "train")
        opt_g.zero_grad()
        self.manual_backward(out.loss)
        opt_g.step()
        if adversarial:
            fakes = self.module.last_fakes  # the G step's samples, detached
            d_loss = self.module.discriminator_loss(batch[REGISTRY_KEYS.X_KEY], *fakes)
            opt_d.zero_grad()
            self.manual_backward(d_loss)
            opt_d.step()
            self.log("discriminator_loss_train", d_loss.detach(), on_step=False, on_epoch=True)
        return out.loss

    def validation_step(self, batch, batch_idx):
        """Validation: the generator's loss with the GAN term (no optimiser steps)."""
        _, _, out = self.forward(batch, loss_kwargs={"adversarial": self.adversarial_on})
        self.log("validation_loss", out.loss, on_epoch=True, sync_dist=self.use_sync_dist)
        self.compute_and_log_metrics(out, self.val_metrics, "validation")

    def configure_optimizers(self):
        """Adam for G (all but D) and Adam for D; frozen parameters are left out."""
        g = [p for p in self.module.generator_parameters() if p.requires_grad]
        d = [p for p in self.module.discriminator_parameters() if p.requires_grad]
        opt_g = torch.optim.Adam(g, lr=self.lr, eps=0.01, weight_decay=self.weight_decay)
        opt_d = torch.optim.Adam(
            d, lr=self.lr_discriminator, betas=(0.5, 0.999), weight_decay=self.weight_decay
        )
        return [opt_g, opt_d]

"""Training plan for CplMixVAE: scvi-tools' plan with explicit module mode and lean logging."""

from __future__ import annotations

import torch
from scvi.train import TrainingPlan

#: names of the per-epoch sums kept on the device (besides the extra metrics)
_SUMS = ("loss", "reconstruction_loss", "kl_local", "kl_global", "n_obs", "n_steps")


class CplMixTrainingPlan(TrainingPlan):
    """:class:`scvi.train.TrainingPlan` that trains in train mode and never syncs per step.

    - scvi-tools 1.4.2 leaves the module in eval mode after a first ``train()`` (or ``load``),
      so a second ``train()`` would run without dropout, augmentation or Gumbel noise and with
      frozen batch-norm statistics. This plan switches the module back at the start of fitting.
    - Metrics are summed on the device during an epoch and logged once at its end (same names
      as scvi-tools: ``train_loss``, ``elbo_train``, ``reconstruction_loss_train``,
      ``kl_local_train``, ``kl_global_train``, the module's extra metrics with the suffix
      ``_train``, and the ``_validation`` counterparts): no ``.item()`` or host copy in a
      step. Under DDP the sums are all-reduced once per epoch (outside inference mode, where
      scvi-tools' own plan crashes), so the logged values are over all ranks' cells.
    - ``optimizer="Adam"`` / ``"AdamW"`` use PyTorch's fused implementation (one kernel for
      every parameter; the same update up to float rounding): on the CPU the per-tensor
      implementation cost about 13 ms per step for the two arms' million parameters
      (``benchmarks/results/speed.md``).
    """

    def __init__(self, module, **kwargs):
        super().__init__(module, **kwargs)
        self._sums: dict[str, dict[str, torch.Tensor]] = {}

    def _optimizer_creator_fn(self, optimizer_cls):
        """scvi-tools' Adam/AdamW creator, fused where PyTorch supports it (float32
        parameters on the CPU or CUDA)."""

        def create(params):
            params = list(params)
            fused = all(p.dtype == torch.float32 and p.device.type in ("cpu", "cuda")
                        for p in params)
            return optimizer_cls(params, lr=self.lr, eps=self.eps,
                                 weight_decay=self.weight_decay, fused=fused or None)

        return create

    def on_train_start(self) -> None:
        self.module.train()
        super().on_train_start()

    def on_train_epoch_start(self) -> None:
        # validation may have switched the module to eval; training steps need train mode
        self.module.train()
        self._sums.pop("train", None)

    def on_validation_epoch_start(self) -> None:
        self._sums.pop("validation", None)

    @torch.no_grad()
    def _accumulate(self, mode: str, out) -> None:
        """Add a step's sums: tensors stay on the device, counts on the host (no copies)."""
        n = int(out.n_obs_minibatch)
        values = {
            "loss": out.loss.detach() * n,
            "reconstruction_loss": out.reconstruction_loss_sum.detach(),
            "kl_local": out.kl_local_sum.detach(),
        }
        for key, met in (out.extra_metrics or {}).items():
            if isinstance(met, torch.Tensor) and met.dim() == 0:
                values[key] = met.detach().float() * n
        kl_global = out.kl_global_sum
        host = {"n_obs": n, "n_steps": 1}
        if isinstance(kl_global, torch.Tensor) and kl_global.device == out.loss.device:
            values["kl_global"] = kl_global.detach()
        else:  # a host number (0 for this model): reading it costs no device sync
            host["kl_global"] = float(kl_global)
        sums = self._sums.setdefault(mode, {})
        for k, v in values.items():
            sums[k] = v.float().clone() if k not in sums else sums[k] + v.float()
        for k, v in host.items():
            sums[k] = v if k not in sums else sums[k] + v

    def _log_epoch(self, mode: str) -> None:
        sums = self._sums.pop(mode, None)
        if not sums:
            return
        keys = sorted(sums)
        device = self.device
        total = torch.stack([torch.as_tensor(sums[k], dtype=torch.float32, device=device)
                             for k in keys])
        if self.trainer.world_size > 1:  # one collective per epoch, outside inference mode
            total = self.trainer.strategy.reduce(total.clone(), reduce_op="sum")
        s = dict(zip(keys, total, strict=True))
        n_obs, n_steps = s["n_obs"].clamp_min(1.0), s["n_steps"].clamp_min(1.0)
        n_total = getattr(self, f"n_obs_{'training' if mode == 'train' else 'validation'}")
        n_total = n_total if n_total else 1
        rec, kl_local = s["reconstruction_loss"] / n_obs, s["kl_local"] / n_obs
        kl_global = s["kl_global"] / n_steps
        metrics = {
            "train_loss" if mode == "train" else "validation_loss": s["loss"] / n_obs,
            f"elbo_{mode}": rec + kl_local + kl_global / n_total,
            f"reconstruction_loss_{mode}": rec,
            f"kl_local_{mode}": kl_local,
            f"kl_global_{mode}": kl_global,
        }
        for key in keys:
            if key not in _SUMS:
                metrics[f"{key}_{mode}"] = s[key] / n_obs
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=False, sync_dist=False)

    def training_step(self, batch, batch_idx):
        if "kl_weight" in self.loss_kwargs:
            self.loss_kwargs.update({"kl_weight": self.kl_weight})
        _, _, out = self.forward(batch, loss_kwargs=self.loss_kwargs)
        self._accumulate("train", out)
        return out.loss

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def validation_step(self, batch, batch_idx):
        _, _, out = self.forward(batch, loss_kwargs=self.loss_kwargs)
        self._accumulate("validation", out)

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("validation")

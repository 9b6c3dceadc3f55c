"""Lightning callbacks of training: the non-finite loss guard and the coupling warm-up
(checkpoints: :mod:`cplmix_sc.train._checkpoint`)."""

from __future__ import annotations

import torch
from lightning.pytorch import Callback


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss or gradient; the last good weights were kept.

    ``phase`` and ``epochs_done`` (complete epochs of that phase, whose weights were kept) say
    how far training got."""

    phase: str = "mixture"
    epochs_done: int = 0


class NonFiniteGuard(Callback):
    """Stop at the first non-finite loss or gradient and roll back to the last good weights.

    At the start of every epoch the module's parameters and buffers (batch-norm statistics
    included) are copied; a NaN/inf loss (checked before the backward pass) or gradient
    (checked before the optimiser step) restores that copy, i.e. the weights at the end of the
    last complete epoch, and raises :class:`NonFiniteLossError` naming the phase and epoch.

    On the CPU every step is checked at once (a check costs nothing there), before the
    optimiser step. On an accelerator, waiting for the answer every step would stall the
    device, so the checks are kept on the device and read once, at the end of the epoch
    (``check="epoch"``): the error then names the first bad step and the epoch, and the
    weights are still restored to the end of the previous epoch.

    Parameters
    ----------
    phase
        Name of the training phase, for the message (``"warmup"`` or ``"mixture"``).
    lr
        The learning rate, for the message.
    check
        ``"step"``: read every check at once; ``"epoch"``: keep them on the device and read
        them at the end of the epoch; ``"auto"`` (default): ``"step"`` on the CPU, else
        ``"epoch"``.
    """

    def __init__(self, phase: str = "mixture", lr: float | None = None, check: str = "auto"):
        super().__init__()
        if check not in ("auto", "step", "epoch"):
            raise ValueError(f"`check` must be 'auto', 'step' or 'epoch', got {check!r}.")
        self.phase = phase
        self.lr = lr
        self.check = check
        self._snapshot: dict[str, torch.Tensor] | None = None
        # deferred checks: first bad step (-1: none) and what was bad (1 loss, 2 gradient)
        self._first_bad: torch.Tensor | None = None
        self._what: torch.Tensor | None = None

    def _deferred(self, pl_module) -> bool:
        if self.check == "auto":
            return pl_module.device.type != "cpu"
        return self.check == "epoch"

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._snapshot = {k: v.detach().clone() for k, v in pl_module.module.state_dict().items()}
        self._first_bad = torch.full((), -1, dtype=torch.long, device=pl_module.device)
        self._what = torch.zeros((), dtype=torch.long, device=pl_module.device)

    def _record(self, trainer, ok: torch.Tensor, code: int) -> None:
        """Remember the first step whose check failed, on the device (no host sync)."""
        first = (self._first_bad < 0) & ~ok
        self._first_bad = torch.where(first, trainer.global_step, self._first_bad)
        self._what = torch.where(first, code, self._what)

    def on_before_backward(self, trainer, pl_module, loss: torch.Tensor) -> None:
        ok = torch.isfinite(loss.detach()).all()
        if self._deferred(pl_module):
            self._record(trainer, ok, 1)
        elif not ok:
            self._fail(trainer, pl_module, f"the loss is {loss.detach().float().item()}")

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        named = [(n, p.grad) for n, p in pl_module.module.named_parameters() if p.grad is not None]
        if not named:
            return
        # one fused reduction; names only on failure
        norms = torch._foreach_norm([g for _, g in named])
        ok = torch.isfinite(torch.stack(norms)).all()
        if self._deferred(pl_module):
            self._record(trainer, ok, 2)
            return
        if bool(ok):
            return
        bad = [n for n, g in named if not torch.isfinite(g).all()]
        self._fail(trainer, pl_module, f"the gradient of {', '.join(bad[:3])} is not finite")

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self._first_bad is None or not self._deferred(pl_module):
            return
        first_bad = int(self._first_bad)  # the one host sync of the epoch
        if first_bad >= 0:
            what = "the loss" if int(self._what) == 1 else "a gradient"
            self._fail(
                trainer, pl_module,
                f"{what} first became non-finite at step {first_bad} (checked at the end of "
                "the epoch on the device)",
                deferred=True,
            )

    def _fail(self, trainer, pl_module, what: str, deferred: bool = False) -> None:
        epoch = trainer.current_epoch
        module = pl_module.module
        bad_params = [n for n, p in module.named_parameters() if not p.isfinite().all()]
        if deferred:  # later steps spread the NaN: the parameters cannot tell the cause
            lr = f"lr={self.lr:g}; " if self.lr is not None else ""
            cause = (
                f"a learning rate too high for these data ({lr}try 10 times smaller), extreme "
                "values in the input, or parameters changed outside the optimiser"
            )
        elif bad_params:
            cause = (
                f"parameters were already non-finite ({', '.join(bad_params[:3])}), so they "
                "were changed outside the optimiser"
            )
        else:
            lr = f"lr={self.lr:g}; " if self.lr is not None else ""
            cause = (
                f"a learning rate too high for these data ({lr}try 10 times smaller), or "
                "extreme values in the input (check the largest counts and library sizes)"
            )
        if self._snapshot is not None:
            module.load_state_dict(self._snapshot)
            kept = (
                f"the weights from the end of epoch {epoch} of this phase were restored"
                if epoch > 0
                else "the weights from before this phase were restored"
            )
        else:  # pragma: no cover - the snapshot is taken before the first step
            kept = "no earlier weights were available"
        error = NonFiniteLossError(
            f"Training stopped in epoch {epoch + 1} of {trainer.max_epochs} of the {self.phase} "
            f"phase (step {trainer.global_step}): {what}. Likely cause: {cause}. To keep the "
            f"model safe, {kept}; train again with a smaller lr, or resume from a checkpoint "
            "(train(checkpoint_dir=..., resume=True))."
        )
        error.phase, error.epochs_done = self.phase, epoch
        raise error


class CouplingWarmup(Callback):
    """Bring the coupling in gradually over the first part of the mixture phase.

    For the first ``fraction / 2`` of the phase's ``n_epochs`` the coupling term of Eq. 46 is
    off, for the next ``fraction / 2`` it has ``0.3`` of its weight, then its full weight
    (``module.coupling_scale``; set back to 1 when training ends). The arms first settle
    their types from the shared start on their own, then are made to agree (measurements:
    ``docs/model.md``).

    Parameters
    ----------
    n_epochs
        Epochs of the mixture phase.
    fraction
        Part of the phase over which the coupling is brought in (0 turns the warm-up off).
    """

    def __init__(self, n_epochs: int, fraction: float):
        self.n_epochs = n_epochs
        self.fraction = fraction

    def scale(self, epoch: int) -> float:
        if epoch < round(0.5 * self.fraction * self.n_epochs):
            return 0.0
        if epoch < round(self.fraction * self.n_epochs):
            return 0.3
        return 1.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        pl_module.module.coupling_scale = self.scale(trainer.current_epoch)

    def on_train_end(self, trainer, pl_module) -> None:
        pl_module.module.coupling_scale = 1.0

    def on_exception(self, trainer, pl_module, exception) -> None:
        pl_module.module.coupling_scale = 1.0


class StartLabelTable(Callback):
    """Look the start's labels up per cell instead of searching for them every step.

    While the warm-up (or a mixture phase with ``start_weight > 0``) pulls towards the
    start, every step needs each mini-batch cell's start label: its nearest reference cell
    among up to 20,000 (:meth:`~cplmix_sc.module.CplMixVAEModule.start_labels`), a search as
    costly per epoch as labelling every cell once. When the mini-batches come from
    :class:`~cplmix_sc.train.DeviceDataSplitter` (which gives the cells' indices) and at least
    ``min_epochs`` epochs are pulled, this callback labels every cell once, a block at a time,
    and the module looks the labels up; the table is kept in ``shared`` for the next phase of
    the same ``train()`` call and taken off the module when fitting ends. The start's own
    cells (``shared["reference_cells"]``: their rows, in the order of the reference cells)
    are their own nearest reference cells: they get their labels without a search. Other
    cells (when the start was fit on a sample of a large data set) are searched among the
    reference cells of their nearest categories only
    (:meth:`~cplmix_sc.module.CplMixVAEModule.start_labels_grouped`): the full search's
    labels for all but a few cells on the border of two categories.

    Parameters
    ----------
    shared
        A dict that outlives one phase (the table is stored under ``"start_labels"``).
    pulled_epochs
        Epochs left in this ``train()`` call that pull towards the start.
    min_epochs
        Build the table only if at least this many epochs are pulled.
    """

    #: cells labelled at a time (their dense counts: 64 MB for 2,000 genes)
    group_block = 8192

    def __init__(self, shared: dict | None = None, pulled_epochs: int = 2, min_epochs: int = 2):
        super().__init__()
        self.shared = {} if shared is None else shared
        self.pulled_epochs = pulled_epochs
        self.min_epochs = min_epochs

    def on_train_start(self, trainer, pl_module) -> None:
        from ._data import DeviceDataSplitter

        module = pl_module.module
        dm = getattr(trainer, "datamodule", None)
        pulled = module.phase == "warmup" or module.start_weight > 0
        if not (module.has_start and pulled and isinstance(dm, DeviceDataSplitter)
                and dm.on_device and dm.matrix is not None):
            return
        table = self.shared.get("start_labels")
        if table is None or table.device != dm.matrix.device:
            if self.pulled_epochs < self.min_epochs:
                return
            table = self._labels(module, dm.matrix)
            self.shared["start_labels"] = table
        module.set_cell_start_labels(table)

    @torch.no_grad()
    def _labels(self, module, matrix) -> torch.Tensor:
        n, device = matrix.shape[0], matrix.device
        table = torch.empty(n, dtype=torch.long, device=device)
        todo = torch.arange(n, device=device)
        reference = self.shared.get("reference_cells")
        if reference is not None and len(reference) == module.start_points.shape[0]:
            # the start's own cells: their nearest reference cell is themselves
            reference = torch.as_tensor(reference, dtype=torch.long, device=device)
            table[reference] = module.start_point_labels
            rest = torch.ones(n, dtype=torch.bool, device=device)
            rest[reference] = False
            todo = todo[rest]
        for i in range(0, len(todo), self.group_block):
            rows = todo[i:i + self.group_block]
            table[rows] = module.start_labels_grouped(matrix.rows(rows))
        return table

    def on_train_end(self, trainer, pl_module) -> None:
        pl_module.module.set_cell_start_labels(None)

    def on_exception(self, trainer, pl_module, exception) -> None:
        pl_module.module.set_cell_start_labels(None)

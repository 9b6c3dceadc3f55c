"""Training of :class:`~cplmix_sc.CplMixVAE`: the warm-up towards the start, the coupled
mixture phase, checkpoints and resume, and the device-resident data path."""

from __future__ import annotations

import inspect
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch
from lightning.pytorch.utilities import rank_zero_only
from scvi import REGISTRY_KEYS, settings
from scvi.model._utils import use_distributed_sampler
from scvi.model.base import UnsupervisedTrainingMixin
from scvi.train import TrainingPlan

from .._validation import check_choice, check_int, check_key_added, check_number
from ..start import INITS, Start, fit_start, start_genes, start_labels_from
from ..train import (
    CouplingWarmup,
    NonFiniteGuard,
    NonFiniteLossError,
    ResumableCheckpoint,
    StartLabelTable,
)
from ..train._allocator import steady_heap
from ..train._checkpoint import (
    CHECKPOINT_KEY,
    CHECKPOINT_NAME,
    check_checkpoint_dir,
    check_resume,
    data_identity,
    jsonable,
    read_checkpoint,
    set_rng_state,
)
from ..train._data import DeviceDataSplitter
from ..train._schedule import (
    default_batch_size,
    mixture_epochs,
    steps_per_epoch,
    warmup_epochs,
)
from ._defaults import many_types, resolve_init


def is_global_zero() -> bool:
    """Whether this process is rank 0 (always, without DDP); Lightning sets the rank."""
    return getattr(rank_zero_only, "rank", 0) == 0


class TrainingMixin(UnsupervisedTrainingMixin):
    """:meth:`train`: two phases (warm-up towards the start, then the coupled mixture model),
    checkpoints and resume. Needs ``self.module`` (a :class:`~cplmix_sc.module.CplMixVAEModule`)
    and ``self.annotate``."""

    def train(
        self,
        max_epochs: int | None = None,
        warmup_epochs: int | None = None,
        init: Literal["auto", "divisive", "kmeans", "leiden", "random"] = "auto",
        lr: float = 1e-3,
        batch_size: int | None = None,
        train_size: float = 1.0,
        annotate: bool = True,
        key_added: str = "cpl",
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        plan_kwargs: dict | None = None,
        checkpoint_dir: str | os.PathLike | None = None,
        checkpoint_every: int = 10,
        resume: bool | str | os.PathLike = False,
        data_on_device: bool | Literal["auto"] = "auto",
        coupling_warmup: float = 0.5,
        init_resolution: float = 1.0,
        init_exclude_genes: Sequence[str] | np.ndarray | str | None = "auto",
        init_labels: Sequence | np.ndarray | str | None = None,
        pretrain_epochs: int | None = None,
        **trainer_kwargs,
    ):
        """Train the model, then write the types and states into the AnnData.

        Training has two phases. Unless ``init="random"`` (the paper) or the model was already
        trained, a *warm-up* of ``warmup_epochs`` trains the full model while pulling every
        arm's ``q(c|x)`` towards the *start*, a clustering of the top 30 PCs of log-normalised
        counts (``init``; same category indices in every arm; :mod:`cplmix_sc.start`). Then the
        coupled mixture model alone is trained for ``max_epochs`` and refines, merges or
        splits the starting categories.

        A NaN or infinite loss or gradient stops training with
        :class:`~cplmix_sc.train.NonFiniteLossError` (naming the phase and epoch) and restores
        the weights of the end of the last complete epoch. With ``checkpoint_dir``, an
        interrupted run can be continued with ``resume=True`` (``docs/robustness.md``).
        Default epochs come from :mod:`cplmix_sc.train._schedule`; figures behind the
        defaults are in ``docs/model.md``.

        Parameters
        ----------
        max_epochs
            Epochs of the coupled mixture phase. Default: about 480 optimiser steps' worth,
            between 20 and 400 epochs (40 epochs for the 3,005 Zeisel cells at batch 256).
        warmup_epochs
            Epochs of the warm-up towards the start; default about 120 optimiser steps, or 5
            per category of the start if more (10 epochs for Zeisel's 7 classes), at least
            1 and at most ``max_epochs``; with 24 or more categories 10 steps per category,
            at most 3 x ``max_epochs`` (:mod:`cplmix_sc.train._schedule`).
        init
            How the start is found, on the top 30 PCs of log-normalised counts. ``"auto"``
            (default): ``"divisive"`` from 24 categories on (the many-types defaults,
            :mod:`cplmix_sc.model._defaults`); with fewer, ``"leiden"``, or ``"kmeans"`` when
            the graph has more communities than categories and k-means finds the same
            clusters with and without the shared state's genes (compact types the state does
            not cut; :func:`cplmix_sc.start.fit_start`, needs ``init_exclude_genes="auto"``);
            ``model.init_`` says which. ``"leiden"``: Leiden communities of a 15-NN graph at
            ``init_resolution``, merged down to ``n_categories`` when there are more
            (:func:`cplmix_sc.start.graph_start`; with ``init_exclude_genes="auto"`` on the
            graph without the shared state's genes; extra categories start empty).
            ``"kmeans"``: k-means with ``n_categories`` clusters (better for few, compact
            types). ``"divisive"``: ``n_categories``
            clusters split top-down, each split in the Pearson residuals of its own most
            variable genes (:func:`cplmix_sc.start.divisive_start`). ``"random"``: no start
            and no warm-up, as in the paper.
        lr
            Adam learning rate (paper: 1e-3).
        batch_size
            Mini-batch size (at least 2 and at most the number of training cells). A last
            mini-batch of a single cell is dropped (batch normalisation needs two). ``None``:
            256, or with more than 65,536 training cells 512 or 1,024, so that an epoch
            takes at most 256 steps (:func:`cplmix_sc.train.default_batch_size`).
        train_size
            Fraction of cells used for training; the rest is validation (held-out ELBO).
        annotate
            If ``True``, call :meth:`annotate` on the registered AnnData at the end.
        key_added
            Prefix of the keys written by :meth:`annotate`.
        accelerator, devices
            Passed to Lightning.
        plan_kwargs
            Keyword arguments of :class:`~cplmix_sc.train.CplMixTrainingPlan`.
        checkpoint_dir
            If given, ``checkpoint_dir/last.ckpt`` is written every ``checkpoint_every``
            epochs and at the end of each phase: weights, optimiser state, phase, epoch,
            random number generator states and the identity of the genes and cells
            (:class:`~cplmix_sc.train.ResumableCheckpoint`).
        checkpoint_every
            Epochs between checkpoints.
        resume
            ``True``: continue from ``checkpoint_dir/last.ckpt``; a path: continue from that
            checkpoint (file, or the directory holding ``last.ckpt``). Build the model as for
            the interrupted run (same AnnData and arguments; other genes or cells, by name or
            order, are refused); ``max_epochs``, ``warmup_epochs`` and ``init`` default to
            the interrupted run's. Training goes on in the phase and epoch where it stopped,
            with the optimiser's state, and with the same seed gives the same result as an
            uninterrupted run on the CPU. ``model.history`` then covers the resumed epochs.
        data_on_device
            ``"auto"`` (default): keep the registered counts on the training device and draw
            mini-batches there (:class:`~cplmix_sc.train.DeviceDataSplitter`) when they fit
            (on a GPU: half of its free memory), else scvi-tools' loaders; a backed AnnData
            gets scvi-tools' loaders. ``True``: always on the device (a backed matrix is read
            into it a block of rows at a time). ``False``: always scvi-tools' loaders. See
            ``docs/scaling.md``.
        coupling_warmup
            Part of the mixture phase over which the coupling between arms is brought in
            (:class:`~cplmix_sc.train.CouplingWarmup`): off for its first half, at 0.3 of
            ``coupling_weight`` for its second half, then full; ``0``: full coupling from the
            first step. Only a model's first training uses it: a second ``train()`` and the
            fine-tuning of :meth:`prune` keep full coupling.
        init_resolution
            Leiden resolution of the graph start (``init="leiden"``; scanpy's default 1).
            Lower values start from coarser communities, which helps where a strong
            continuous state cuts types into pieces (``docs/model.md``, "Choosing K").
        init_exclude_genes
            Genes left out of the start's PCA and of the divisive start's splits (the model
            itself still sees every gene), so that the start is not cut along a continuous
            state shared by many types (:func:`cplmix_sc.start.start_genes`):

            - ``"auto"`` (default): find the genes of a state shared by communities
              (:func:`cplmix_sc.start.state_program_genes`). ``init="divisive"``: leave them
              out. Otherwise, when Leiden on every gene finds at most ``n_categories``
              communities, leave them out; when it finds more, the PCA uses every gene and
              only the graph start's merges leave them out.
            - gene names in ``var_names`` (e.g. ``cplmix_sc.genesets.load("ieg")`` through
              ``cplmix_sc.genesets.match``), a boolean mask over the genes, or the name of a
              boolean ``var`` column: leave out exactly these.
            - ``None``: use every gene.

            The genes left out are listed in ``model.init_excluded_genes_``. Cells are still
            normalised by their total over all genes.
        init_labels
            Start from these labels instead of a clustering (refine an existing annotation,
            or start from known types): one label per cell (array, list or a Series indexed
            by ``obs_names``) or the name of an ``obs`` column. Distinct labels become
            categories ``0, 1, ...`` (a categorical's order, else sorted; their labels are in
            ``model.init_label_names_``), at most ``n_categories`` of them; extra categories
            start empty. Cells with a missing label (NaN, None) have no starting category and
            are not pulled during the warm-up. Overrides ``init`` (except ``"random"``, which
            has no warm-up and is refused with labels); the start's PCA uses every gene unless
            ``init_exclude_genes`` names genes. Only a model's first training has a warm-up.
        pretrain_epochs
            Former name of ``warmup_epochs`` (deprecated).
        **trainer_kwargs
            Passed to :class:`scvi.train.Trainer` (e.g. ``precision="bf16-mixed"`` for
            bfloat16 autocast on a GPU, ``strategy="ddp"`` with ``devices=N``).
        """
        if pretrain_epochs is not None:
            warnings.warn("`pretrain_epochs` is now called `warmup_epochs`.", FutureWarning,
                          stacklevel=2)
            warmup_epochs = pretrain_epochs if warmup_epochs is None else warmup_epochs
        check_choice("init", init, ("auto", *INITS))
        auto = init == "auto"
        init = resolve_init(init, self.module.n_categories)
        check_number("lr", lr, low=0.0)
        check_number("train_size", train_size, low=0.0, high=1.0)
        check_number("coupling_warmup", coupling_warmup, low=0.0, high=1.0, low_inclusive=True)
        check_number("init_resolution", init_resolution, low=0.0)
        genes = start_genes(init_exclude_genes, init, self.adata.var)
        labels = self._check_init_labels(init_labels, init)
        if self.is_trained_:  # continued training / prune's fine-tuning: arms already agree
            coupling_warmup = 0.0
        if data_on_device not in (True, False, "auto"):
            raise ValueError(
                f"`data_on_device` must be True, False or 'auto', got {data_on_device!r}."
            )
        if batch_size is not None:
            batch_size = check_int("batch_size", batch_size, 2)
        checkpoint_every = check_int("checkpoint_every", checkpoint_every, 1)
        check_key_added(key_added)
        check_checkpoint_dir(checkpoint_dir)
        self._check_plan_kwargs(plan_kwargs)
        # few types: the start's own "auto" (the graph start, or k-means where it is stable)
        run = {"max_epochs": max_epochs, "warmup_epochs": warmup_epochs,
               "init": "auto" if auto and init == "leiden" else init,
               "init_resolution": init_resolution, "genes": genes, "labels": labels,
               "ckpt": None,
               "checkpoint_dir": checkpoint_dir}
        if resume is not False and resume is not None:
            self._resume_run(run, resume, train_size)
        self.init_ = "labels" if run["labels"] is not None else run["init"]
        self._schedule(run, batch_size, train_size)
        fit_kwargs = self._fit_kwargs(run["n_train"], run["batch_size"], train_size, accelerator,
                                      devices, lr, plan_kwargs, trainer_kwargs)
        run.update(coupling_warmup=coupling_warmup, data_on_device=data_on_device, lr=lr,
                   checkpoint_every=checkpoint_every)
        self._run_phases(run, fit_kwargs)
        if annotate and is_global_zero():  # under DDP only rank 0 writes its results
            self.annotate(key_added=key_added)

    def _check_plan_kwargs(self, plan_kwargs: dict | None) -> None:
        """Refuse keys neither the training plan nor the module's loss takes (scvi-tools would
        pass them on to the loss, which fails at the first step)."""
        if not plan_kwargs:
            return
        known = set(inspect.signature(TrainingPlan.__init__).parameters)
        known |= set(inspect.signature(self.module.loss).parameters)
        known -= {"self", "module", "loss_kwargs", "tensors", "inference_outputs",
                  "generative_outputs"}
        unknown = sorted(set(plan_kwargs) - known)
        if unknown:
            raise ValueError(
                f"`plan_kwargs` has unknown keys {unknown}; the training plan takes "
                f"{sorted(known)}. Pass model options to CplMixVAE(...) and training options "
                "to train(...)."
            )

    def _resume_run(self, run: dict, resume, train_size: float) -> None:
        """Read the checkpoint to resume from into ``run``: the interrupted run's schedule,
        start and start genes."""
        ckpt = self._read_resume_checkpoint(resume, run["checkpoint_dir"])
        meta = ckpt[CHECKPOINT_KEY]["meta"]
        run["ckpt"] = ckpt
        if run["max_epochs"] is None:
            run["max_epochs"] = meta["max_epochs"]
        if run["warmup_epochs"] is None:  # checkpoints before the rename: "pretrain_epochs"
            run["warmup_epochs"] = meta.get("warmup_epochs", meta.get("pretrain_epochs"))
        run["init"] = meta["init"]
        run["labels"] = meta.get("init_labels")
        if meta.get("init_label_names") is not None:
            self.init_label_names_ = pd.Index(meta["init_label_names"])
        run["init_resolution"] = meta.get("init_resolution", run["init_resolution"])
        # the interrupted run's start genes (a checkpoint without them: every gene)
        run["genes"] = None
        if meta.get("init_excluded") is not None:
            run["genes"] = np.ones(self.adata.n_vars, dtype=bool)
            run["genes"][meta["init_excluded"]] = False
        if run["init"] != "random":
            self.init_excluded_genes_ = self.adata.var_names[meta.get("init_excluded") or []]
        if train_size < 1 and meta.get("seed") != settings.seed:
            warnings.warn(
                f"The interrupted run used scvi.settings.seed={meta.get('seed')}, this one "
                f"{settings.seed}: the train/validation split differs. Set "
                f"scvi.settings.seed = {meta.get('seed')} before building the model.",
                UserWarning,
                stacklevel=3,
            )
        if run["checkpoint_dir"] is None and resume is not True:
            run["checkpoint_dir"] = Path(ckpt["path"]).parent

    def _read_resume_checkpoint(self, resume, checkpoint_dir) -> dict:
        """Read the checkpoint to resume from and check that it belongs to this model and data."""
        if resume is True:
            if checkpoint_dir is None:
                raise ValueError(
                    "resume=True needs the checkpoint_dir of the interrupted run; pass "
                    "checkpoint_dir=... or resume='path/to/last.ckpt'."
                )
            resume = Path(checkpoint_dir) / CHECKPOINT_NAME
        if not isinstance(resume, str | os.PathLike):
            raise TypeError(f"`resume` must be True, False or a path, got {resume!r}.")
        ckpt = read_checkpoint(resume)
        check_resume(ckpt, self.init_params_, self.module.state_dict(), self._data_identity())
        return ckpt

    def _data_identity(self) -> dict:
        return data_identity(self.adata.var_names, self.adata.obs_names)

    def _schedule(self, run: dict, batch_size: int, train_size: float) -> None:
        """Default and checked epochs of both phases (:mod:`cplmix_sc.train._schedule`)."""
        n_train = int(np.ceil(self.adata.n_obs * train_size))
        if batch_size is None:
            batch_size = default_batch_size(n_train)
        run["batch_size"] = batch_size
        if run["max_epochs"] is None:
            run["max_epochs"] = mixture_epochs(n_train, batch_size)
        run["max_epochs"] = check_int("max_epochs", run["max_epochs"], 1)
        if run["warmup_epochs"] is None:  # provisional: set again from the fitted start
            run["warmup_for_start"] = (n_train, batch_size)
            run["warmup_epochs"] = warmup_epochs(n_train, batch_size, run["max_epochs"])
        run["warmup_epochs"] = check_int("warmup_epochs", run["warmup_epochs"], 0)
        if batch_size > n_train:
            raise ValueError(
                f"batch_size={batch_size} is larger than the {n_train} training cells; "
                "use a smaller batch_size."
            )
        run["n_train"] = n_train
        run["steps_per_epoch"] = steps_per_epoch(n_train, batch_size)

    @staticmethod
    def _fit_kwargs(n_train, batch_size, train_size, accelerator, devices, lr, plan_kwargs,
                    trainer_kwargs) -> dict:
        """Keyword arguments of scvi-tools' ``train`` shared by both phases."""
        plan_kwargs = {"lr": lr, "n_epochs_kl_warmup": None, **(plan_kwargs or {})}
        datasplitter_kwargs = dict(trainer_kwargs.pop("datasplitter_kwargs", None) or {})
        if n_train % batch_size == 1:  # batch norm cannot train on a mini-batch of one cell
            datasplitter_kwargs.setdefault("drop_last", True)
        return {
            "batch_size": batch_size,
            "train_size": train_size,
            "accelerator": accelerator,
            "devices": devices,
            "plan_kwargs": plan_kwargs,
            "datasplitter_kwargs": datasplitter_kwargs,
            **trainer_kwargs,
        }

    def _run_phases(self, run: dict, fit_kwargs: dict) -> None:
        """Fit the start if needed, then the warm-up and the mixture phase (or what is left of
        them after a resume)."""
        meta = {
            "max_epochs": run["max_epochs"],
            "warmup_epochs": run["warmup_epochs"],
            "init": run["init"],
            "init_resolution": run["init_resolution"],
            "init_excluded": _left_out(run["genes"]),  # "auto": set once the start is fit
            "init_labels": run["labels"],
            "init_label_names": (None if self.init_label_names_ is None
                                 else self.init_label_names_.tolist()),
            "init_params": jsonable(self.init_params_),
            "seed": settings.seed,
            "data": self._data_identity(),
        }
        run["meta"] = meta
        run["callbacks"] = list(fit_kwargs.pop("callbacks", None) or [])
        run["shared"] = {}  # the device copy of the data, made once for both phases
        phase = ("warmup" if run["init"] != "random" and not self.is_trained_
                 and run["warmup_epochs"] > 0 else "mixture")
        resume_path = None
        ckpt = run["ckpt"]
        if ckpt is not None:
            state = ckpt[CHECKPOINT_KEY]
            phase = state["meta"]["phase"]
            if state["meta"]["phase_complete"]:
                # nothing left of that phase: take its weights and RNG state and go on
                self._load_checkpoint_weights(ckpt)
                set_rng_state(state["rng"])
                phase = "mixture" if phase == "warmup" else "done"
            else:
                resume_path = ckpt["path"]
        if phase == "warmup":
            if (ckpt is None or run["init"] in ("auto", "leiden", "divisive")
                    or run["labels"] is not None):
                # a per-cell start (graph or labels) is not saved: refit it
                start = self._fit_start(run["init"], run["init_resolution"], run["genes"],
                                        run["labels"])
                meta["init_excluded"] = _left_out(start.genes)
                self.init_ = start.init
                # rows of the reference cells (StartLabelTable labels them without a search)
                run["shared"]["reference_cells"] = (
                    None if start.points is None
                    else np.arange(len(start.points)) if start.cells is None else start.cells)
                if ckpt is None and "warmup_for_start" in run:  # scales with the start's size
                    run["warmup_epochs"] = meta["warmup_epochs"] = warmup_epochs(
                        *run["warmup_for_start"], run["max_epochs"],
                        int((start.counts > 0).sum()), many_types(self.module.n_categories))
            self._fit_phase(run, fit_kwargs, "warmup", run["warmup_epochs"], resume_path)
            run["warmup_done"] = True
            resume_path = None
        if phase in ("warmup", "mixture"):
            self._fit_phase(run, fit_kwargs, "mixture", run["max_epochs"], resume_path)
        else:
            self.is_trained_ = True
            self.module.eval()

    def _fit_phase(self, run: dict, fit_kwargs: dict, phase: str, n_epochs: int,
                   ckpt_path=None) -> None:
        """One phase of training through scvi-tools' ``train`` (a fresh Lightning trainer)."""
        # epochs of this train() call left that pull towards the start (its label table)
        pulled = (n_epochs if phase == "warmup" else 0) + (
            run["max_epochs"] if self.module.start_weight > 0 else 0)
        callbacks = [*run["callbacks"], NonFiniteGuard(phase, run["lr"]),
                     StartLabelTable(run["shared"], pulled)]
        if phase == "mixture" and run["coupling_warmup"] > 0:
            callbacks.append(CouplingWarmup(n_epochs, run["coupling_warmup"]))
        kwargs = dict(fit_kwargs)
        if run["data_on_device"] is not False:
            kwargs["datamodule"] = self._device_datamodule(
                kwargs, run["data_on_device"], run["shared"].get("matrix")
            )
        if run["checkpoint_dir"] is not None:
            callbacks.append(ResumableCheckpoint(
                run["checkpoint_dir"], run["checkpoint_every"], {**run["meta"], "phase": phase}
            ))
        self.module.train()  # scvi-tools leaves eval mode after a first train() or load()
        self.module.phase = phase
        try:
            with steady_heap():  # the steps' large buffers reused, not page-faulted
                UnsupervisedTrainingMixin.train(
                    self, max_epochs=n_epochs, callbacks=callbacks, ckpt_path=ckpt_path,
                    **kwargs
                )
        except NonFiniteLossError as err:
            # the kept weights are trained if any epoch finished (a completed warm-up counts)
            if err.epochs_done > 0 or (phase == "mixture" and run.get("warmup_done")):
                self.is_trained_ = True
                self.module.eval()
            raise
        finally:
            self.module.phase = "mixture"
            dm = kwargs.get("datamodule")
            if dm is not None and dm.matrix is not None:
                run["shared"]["matrix"] = dm.matrix

    def _device_datamodule(self, fit_kwargs: dict, data_on_device, matrix) -> DeviceDataSplitter:
        """The device-resident data path with scvi-tools' split; takes its options from
        ``fit_kwargs`` (they would otherwise go to scvi-tools' DataSplitter)."""
        return DeviceDataSplitter(
            self.adata_manager,
            train_size=fit_kwargs.pop("train_size"),
            batch_size=fit_kwargs.pop("batch_size"),
            distributed_sampler=use_distributed_sampler(fit_kwargs.get("strategy")),
            matrix=matrix,
            force=data_on_device is True,
            **(fit_kwargs.pop("datasplitter_kwargs") or {}),
        )

    def _load_checkpoint_weights(self, ckpt: dict) -> None:
        state = {
            k.removeprefix("module."): v
            for k, v in ckpt["state_dict"].items()
            if k.startswith("module.")
        }
        self.module.load_state_dict(state)
        self.module.to(self.device)

    def _check_init_labels(self, init_labels, init: str) -> np.ndarray | None:
        """``init_labels`` as category codes (``-1``: no label); sets ``init_label_names_``."""
        if init_labels is None:
            return None
        if init == "random":
            raise ValueError(
                "init='random' has no warm-up, so `init_labels` would not be used; drop "
                "init='random' to start from the labels."
            )
        if self.is_trained_:
            raise ValueError(
                "`init_labels` sets the start of a model's first training; this model is "
                "already trained. Build a new model to start from labels."
            )
        codes, names = start_labels_from(init_labels, self.adata.obs, self.module.n_categories)
        self.init_label_names_ = names
        return codes

    def _fit_start(self, init: str, resolution: float, genes, labels=None) -> Start:
        """Fit the start on the registered counts (:func:`cplmix_sc.start.fit_start`), store it
        in the module and the left-out genes in ``init_excluded_genes_``."""
        start = fit_start(
            self.adata_manager.get_from_registry(REGISTRY_KEYS.X_KEY),
            init,
            self.module.n_categories,
            n_pcs=self.module.start_loadings.shape[1],
            seed=settings.seed,
            resolution=resolution,
            genes=genes,
            labels=labels,
        )
        self.init_excluded_genes_ = self.adata.var_names[start.excluded]

        def tensor(a):
            return None if a is None else torch.as_tensor(a, dtype=torch.float32)

        self.module.set_start(
            tensor(start.mean),
            tensor(start.components.T),
            tensor(start.centers),
            tensor(start.counts + 1.0),
            points=tensor(start.points),
            labels=None if start.labels is None else torch.as_tensor(start.labels),
        )
        return start


def _left_out(keep) -> list[int] | None:
    """Indices of the genes a start's mask leaves out (``None``: no mask, every gene)."""
    return np.flatnonzero(~keep).tolist() if isinstance(keep, np.ndarray) else None

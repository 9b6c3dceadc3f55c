"""CplMixVAE: the user-facing model (thin; the maths lives in :mod:`cplmix_sc.module`)."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from lightning.pytorch.utilities import rank_zero_only
from scvi import REGISTRY_KEYS, settings
from scvi.data import AnnDataManager
from scvi.data.fields import CategoricalObsField, LayerField
from scvi.model._utils import use_distributed_sampler
from scvi.model.base import BaseModelClass, UnsupervisedTrainingMixin
from scvi.utils import setup_anndata_dsp
from sklearn.cluster import KMeans

from .._backed import is_backed, nonzero_fraction, read_rows
from .._graph import graph_start, state_program_genes
from .._pca import log_pca
from .._validation import (
    check_choice,
    check_counts,
    check_int,
    check_not_view,
    check_number,
    check_obs_key,
    check_same_genes,
    first_non_integer,
    get_matrix,
    non_integer_message,
)
from ..metrics import arm_consensus
from ..module import CplMixVAEModule
from ..module._augment import AUGMENTATIONS
from ..module._likelihood import MAX_SPARSE_DENSITY
from ..train import CplMixTrainingPlan
from ..train._callbacks import (
    CHECKPOINT_NAME,
    CouplingWarmup,
    NonFiniteGuard,
    ResumableCheckpoint,
    read_checkpoint,
    set_rng_state,
)
from ..train._data import DeviceDataSplitter
from ._augmenter import Augmenter
from ._ecosystem import EcosystemMixin

logger = logging.getLogger(__name__)

INITS = ("kmeans", "leiden", "random")
#: at most this many reference cells for a per-cell (Leiden) teacher
MAX_TEACHER_CELLS = 20_000
#: default length of the coupled mixture phase, in optimiser steps (40 epochs of Zeisel)
MIXTURE_STEPS = 480
#: default length of the warm-up, in optimiser steps (10 epochs of Zeisel)
WARMUP_STEPS = 120


def _flat_params(init_params: dict) -> dict:
    """``CplMixVAE`` arguments from ``init_params_`` as one flat dictionary."""
    return {
        **init_params.get("non_kwargs", {}),
        **init_params.get("kwargs", {}).get("module_kwargs", {}),
    }


def _left_out(keep) -> list[int] | None:
    """Indices of the genes a start's mask leaves out (``None``: no mask, every gene)."""
    return np.flatnonzero(~keep).tolist() if isinstance(keep, np.ndarray) else None


def _is_global_zero() -> bool:
    """Whether this process is rank 0 (always, without DDP); Lightning sets the rank."""
    return getattr(rank_zero_only, "rank", 0) == 0


def _jsonable(value):
    """Plain Python types (for comparing a model's arguments with a checkpoint's)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items() if k != "adata"}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value if isinstance(value, str | int | float | bool | type(None)) else repr(value)


class CplMixVAE(EcosystemMixin, UnsupervisedTrainingMixin, BaseModelClass):
    """Coupled mixture VAEs: discrete cell types and a type-dependent continuous state.

    Each of ``n_arms`` autoencoders sees its own perturbed copy of every cell and infers a
    category ``c`` (the type) and a state ``s`` whose meaning depends on ``c``; the arms are
    coupled so that they agree on ``c`` (Marghi, Gala & Sümbül, supplement Eq. 46).

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata` (raw counts).
    n_categories
        Number of categories ``K``. Start with about as many types as you expect, or more and
        prune.
    n_state
        Dimension of the continuous state (paper: 2).
    n_arms
        Number of coupled arms ``A`` (``1``: the single-arm mixture VAE baseline).
    likelihood
        ``"nb"`` (negative binomial on counts, default) or ``"gaussian"`` (on log-normalised
        counts, the paper's choice).
    coupling
        ``"aitchison"`` (default, Eqs. 47-48) or ``"sigma"`` (the reference code's d_σ).
    coupling_weight
        λ in Eq. 46.
    entropy_weight
        Weight of the per-cell categorical entropy in the minimised loss; ``-1`` is Eq. 46,
        positive values make posteriors confident (default).
    usage_weight
        Weight of ``KL(mean posterior over a mini-batch || target proportions)``: keeps
        categories in use.
    usage_target
        ``"teacher"`` (default): the proportions of the starting clustering, so categories stay
        alive without being forced to equal sizes; ``"uniform"``: equal proportions.
    temperature
        Gumbel-softmax temperature τ.
    augmentation
        ``"simple"`` (binomial thinning, a fresh copy per arm and step), ``"learned"`` (a
        fresh copy per arm and step from ``augmenter``) or ``"none"``. Default: ``"learned"``
        if an ``augmenter`` is given, else ``"simple"``. On Zeisel and the simulator (3 seeds
        each) the learned copies were 0.01-0.05 ARI below thinning and ``"none"`` within
        0.005 of it (``docs/augmenter.md``, Table S1 ablation).
    augmenter
        A trained :class:`~cplmix_sc.Augmenter` on the same genes (names and order). A frozen
        copy of it is built into the module (saved and loaded with the model; never trained
        further), and every training mini-batch gives each arm a fresh noisy copy of every
        cell, generated on the model's device.
    **module_kwargs
        Further :class:`~cplmix_sc.module.CplMixVAEModule` arguments (``n_hidden``,
        ``n_layers``, ``n_bottleneck``, ``thinning``, ``input_dropout``, ``state_dropout``,
        ``decoder``, ``warmup_weight``).

    Examples
    --------
    >>> import cplmix_sc
    >>> adata = cplmix_sc.datasets.zeisel2015()
    >>> cplmix_sc.CplMixVAE.setup_anndata(adata)
    >>> model = cplmix_sc.CplMixVAE(adata, n_categories=47)
    >>> model.train()
    >>> adata.obs["cpl_type"], adata.obsm["X_cpl_state"]
    """

    _module_cls = CplMixVAEModule
    _training_plan_cls = CplMixTrainingPlan

    def __init__(
        self,
        adata: AnnData | None = None,
        n_categories: int = 10,
        n_state: int = 2,
        n_arms: int = 2,
        likelihood: Literal["nb", "gaussian"] = "nb",
        coupling: Literal["aitchison", "sigma"] = "aitchison",
        coupling_weight: float = 1.0,
        entropy_weight: float = 3.0,
        usage_weight: float = 3.0,
        usage_target: Literal["uniform", "teacher"] = "teacher",
        temperature: float = 1.0,
        augmentation: Literal["simple", "learned", "none"] | None = None,
        augmenter: Augmenter | None = None,
        **module_kwargs,
    ):
        n_categories = check_int("n_categories", n_categories, 2)
        n_arms = check_int("n_arms", n_arms, 1)
        n_state = check_int("n_state", n_state, 1)
        check_number("temperature", temperature, low=0.0)
        check_choice("likelihood", likelihood, ("nb", "gaussian"))
        super().__init__(adata)
        self._check_data_for_model(n_categories, likelihood)
        augmentation = self._resolve_augmenter(augmentation, augmenter, module_kwargs)
        self.module = self._module_cls(
            n_input=self.summary_stats.n_vars,
            n_batch=self.summary_stats.n_batch if self._has_batch else 0,
            n_categories=int(n_categories),
            n_state=int(n_state),
            n_arms=int(n_arms),
            likelihood=likelihood,
            coupling=coupling,
            coupling_weight=coupling_weight,
            entropy_weight=entropy_weight,
            usage_weight=usage_weight,
            usage_target=usage_target,
            temperature=temperature,
            augmentation=augmentation,
            **module_kwargs,
        )
        self._model_summary_string = (
            f"CplMixVAE: {n_arms} arms, {n_categories} categories, state dim {n_state}, "
            f"likelihood {likelihood}, coupling {coupling} (λ={coupling_weight}), "
            f"augmentation {augmentation}."
        )
        if augmenter is not None:
            self.module.set_augmenter(augmenter.module)
        x = self.adata_manager.get_from_registry(REGISTRY_KEYS.X_KEY)
        self.module.sparse_likelihood = bool(nonzero_fraction(x) <= MAX_SPARSE_DENSITY)
        augmenter = None  # its architecture is in module_kwargs, its weights in the module
        self.init_excluded_genes_ = None  # set by train(): genes left out of the start
        self.init_params_ = self._get_init_params(locals())

    def _resolve_augmenter(self, augmentation, augmenter, module_kwargs: dict) -> str:
        """Check ``augmentation``/``augmenter``; put the augmenter's sizes in ``module_kwargs``."""
        has_saved = module_kwargs.get("augmenter_kwargs") is not None  # load() rebuilds it
        if augmentation is None:
            augmentation = "learned" if augmenter is not None or has_saved else "simple"
        check_choice("augmentation", augmentation, AUGMENTATIONS)
        if augmenter is None:
            if augmentation == "learned" and not has_saved:
                raise ValueError(
                    'augmentation="learned" needs a trained augmenter: train '
                    "aug = cplmix_sc.Augmenter(adata) on the same genes, then build "
                    "CplMixVAE(adata, augmenter=aug)."
                )
            return augmentation
        if not isinstance(augmenter, Augmenter):
            raise TypeError(f"`augmenter` must be a cplmix_sc.Augmenter, got {type(augmenter)}.")
        if augmentation != "learned":
            raise ValueError(
                f'augmentation="{augmentation}" does not use the augmenter; pass '
                'augmentation="learned" (or leave it out), or drop `augmenter=`.'
            )
        if not augmenter.is_trained_:
            raise ValueError("The augmenter is not trained: call `aug.train()` first.")
        genes, names = augmenter.gene_names, self.adata.var_names
        if len(genes) != len(names) or not (genes == names).all():
            n_missing = len(genes.difference(names))
            order = ", same genes in another order" if n_missing == 0 else ""
            raise ValueError(
                f"The augmenter was trained on {len(genes)} genes, this AnnData has "
                f"{len(names)} ({n_missing} of the augmenter's genes missing{order}). Train "
                "the augmenter on the model's genes (same names, same order), or build the "
                "model on adata[:, aug.gene_names].copy()."
            )
        module_kwargs["augmenter_kwargs"] = augmenter.module_kwargs
        return augmentation

    @property
    def _has_batch(self) -> bool:
        return self.adata_manager.get_state_registry(REGISTRY_KEYS.BATCH_KEY).original_key != (
            "_scvi_batch"
        )

    def _check_data_for_model(self, n_categories: int, likelihood: str) -> None:
        """Checks that need both the registered data and the model's options."""
        n_cells, n_genes = self.summary_stats.n_cells, self.summary_stats.n_vars
        if n_cells < n_categories:
            raise ValueError(
                f"The AnnData has {n_cells} cells but n_categories={n_categories}; "
                "use fewer categories than cells."
            )
        if n_genes < 2:
            raise ValueError(f"The AnnData has {n_genes} gene(s); CplMixVAE needs at least 2.")
        if likelihood == "nb":
            layer = self.adata_manager.registry["setup_args"]["layer"]
            x, where = get_matrix(self.adata, layer)
            value = first_non_integer(x)
            if value is not None:
                raise ValueError(non_integer_message(where, value))

    def _validate_anndata(self, adata: AnnData | None = None, copy_if_view: bool = False):
        """scvi-tools' check plus ours for a new AnnData: no view, same genes, valid counts.

        Unlike scvi-tools, a view is refused rather than turned into a copy in place.
        """
        if adata is not None and adata is not self.adata:
            check_not_view(adata)
            if self.adata is not None:
                check_same_genes(self.adata.var_names, adata)
            layer = self.adata_manager.registry["setup_args"]["layer"]
            is_integer = check_counts(adata, layer, genes=False)
            if not is_integer and self.module.likelihood == "nb":
                x, where = get_matrix(adata, layer)
                raise ValueError(non_integer_message(where, first_non_integer(x)))
        return super()._validate_anndata(adata, copy_if_view=copy_if_view)

    @classmethod
    @setup_anndata_dsp.dedent
    def setup_anndata(
        cls,
        adata: AnnData,
        layer: str | None = None,
        batch_key: str | None = None,
        **kwargs,
    ):
        """Register an AnnData with raw counts for CplMixVAE.

        The matrix is checked first, without densifying a sparse one, and refused with an
        error that names the fix: views, a CSC matrix of a backed AnnData, non-numeric
        dtypes, NaN/inf, negative values, cells or genes without any count (remove them, e.g. with
        ``sc.pp.filter_cells(adata, min_counts=1)`` and ``sc.pp.filter_genes(adata,
        min_counts=1)``), a missing layer or ``batch_key`` and a ``batch_key`` column with
        missing values. Non-integer values are accepted here and refused by the model with
        ``likelihood="nb"`` (see ``docs/robustness.md``). A backed AnnData
        (``read_h5ad(path, backed="r")``, X stored as CSR or dense) is accepted: its matrix is
        checked and later read a block of rows at a time, never whole (``docs/scaling.md``).

        Registration (scvi-tools) adds ``obs["_scvi_batch"]``, ``uns["_scvi_uuid"]`` and
        ``uns["_scvi_manager_uuid"]``, and makes a Fortran-ordered dense matrix C-ordered
        (same values); nothing else in ``adata`` changes, also when a check fails.

        Parameters
        ----------
        %(param_adata)s
        %(param_layer)s
        %(param_batch_key)s
            The batch conditions the decoders, as in scVI.
        """
        check_not_view(adata)
        check_counts(adata, layer)
        check_obs_key(adata, batch_key, "batch_key")
        source = kwargs.get("source_registry")
        source_genes = None if source is None else (
            source["field_registries"][REGISTRY_KEYS.X_KEY]["state_registry"].get("column_names")
        )
        if source_genes is not None:  # load(dir, adata) or a transfer: same genes required
            check_same_genes(pd.Index(source_genes), adata)
        setup_method_args = cls._get_setup_method_args(**locals())
        anndata_fields = [
            LayerField(REGISTRY_KEYS.X_KEY, layer, is_count_data=True),
            CategoricalObsField(REGISTRY_KEYS.BATCH_KEY, batch_key),
        ]
        adata_manager = AnnDataManager(fields=anndata_fields, setup_method_args=setup_method_args)
        adata_manager.register_fields(adata, **kwargs)
        cls.register_manager(adata_manager)

    # ------------------------------------------------------------------ training
    def train(
        self,
        max_epochs: int | None = None,
        pretrain_epochs: int | None = None,
        init: Literal["kmeans", "leiden", "random"] = "leiden",
        lr: float = 1e-3,
        batch_size: int = 256,
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
        **trainer_kwargs,
    ):
        """Train the model, then write the types and states into the AnnData.

        Training has two phases. Unless ``init="random"`` (the paper) or the model was already
        trained, a warm-up of ``pretrain_epochs`` trains the full model while pulling every
        arm's ``q(c|x)`` towards a clustering of the top 30 PCs of log-normalised counts
        (``init``; same category indices in every arm). Then the coupled mixture model alone is
        trained for ``max_epochs`` and refines, merges or splits those starting types.

        A NaN or infinite loss or gradient stops training with
        :class:`~cplmix_sc.train.NonFiniteLossError` (naming the phase and epoch) and restores
        the weights of the end of the last complete epoch. With ``checkpoint_dir``, an
        interrupted run can be continued with ``resume=True`` (see ``docs/robustness.md``).

        Parameters
        ----------
        max_epochs
            Epochs of the coupled mixture phase. Default: about 480 optimiser steps' worth,
            between 20 and 400 epochs (40 epochs for the 3,005 Zeisel cells at batch 256).
            Longer is not better on real data: on Zeisel the types drift away from the
            published ones after 10-40 epochs while every label-free signal keeps improving
            (ARI 0.391 at 40 epochs vs 0.372 at 100, mean of 3 seeds); on the simulator the
            state needs about 40.
        pretrain_epochs
            Epochs of the warm-up towards the starting categories; default about 120
            optimiser steps (10 epochs for Zeisel), at most ``max_epochs // 4`` (at least
            1). Longer warm-ups lock the start in (on Zeisel, 25 epochs from
            k-means kept 46 k-means-like categories at ARI 0.28).
        init
            Starting categories of the warm-up, from the top 30 PCs of log-normalised counts:
            ``"leiden"`` (default; the graph start: Leiden communities of a 15-NN graph at
            resolution 1, merged along the graph down to ``n_categories`` when there are
            more, :func:`cplmix_sc._graph.graph_start`; extra categories start empty),
            ``"kmeans"`` (k-means with ``n_categories`` clusters) or ``"random"`` (no
            pretraining, as in the paper). The model keeps and refines a good start but
            rarely escapes a poor one. Where a strong continuous state stretches each type,
            k-means cuts the types into pieces and the graph start does not: on the
            simulator at the issue's difficulty (``marker_effect=1.2``) the default reaches
            ARI 0.88 and state recovery 0.86 (3 seeds) where the k-means start gave 0.15. On
            Zeisel at 47 categories the default gives ARI 0.44. For few, compact types the
            k-means start is better (Zeisel at 7 categories, 3 seeds: ARI 0.813 vs 0.762):
            ``"kmeans"`` is the better choice for few, compact
            types. Figures: ``docs/model.md`` and ``benchmarks/results/``.
        lr
            Adam learning rate (paper: 1e-3).
        batch_size
            Mini-batch size (at least 2 and at most the number of training cells). A last
            mini-batch of a single cell is dropped (batch normalisation needs two).
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
            epochs and at the end of each phase: weights, optimiser state, phase, epoch and
            random number generator states (:class:`~cplmix_sc.train.ResumableCheckpoint`).
        checkpoint_every
            Epochs between checkpoints.
        resume
            ``True``: continue from ``checkpoint_dir/last.ckpt``; a path: continue from that
            checkpoint (file, or the directory holding ``last.ckpt``). Build the model as for
            the interrupted run (same AnnData and arguments); ``max_epochs``,
            ``pretrain_epochs`` and ``init`` default to the interrupted run's. Training goes
            on in the phase and epoch where it stopped, with the optimiser's state, and with
            the same seed gives the same result as an uninterrupted run on the CPU.
            ``model.history`` then covers the resumed epochs only.
        data_on_device
            ``"auto"`` (default): keep the registered counts on the training device and draw
            mini-batches there (:class:`~cplmix_sc.train.DeviceDataSplitter`: dense data as
            is, sparse data as CSR densified one mini-batch at a time; the same train/
            validation split as scvi-tools' loaders) when they fit (on a GPU: half of its free
            memory), else scvi-tools' loaders. A backed AnnData (``read_h5ad(path,
            backed="r")``) always gets scvi-tools' loaders under ``"auto"``: each mini-batch
            reads its rows from the file. ``True``: always on the device; a backed matrix is
            then deliberately read into the device copy, a block of rows at a time (a CSR file
            becomes CSR in host memory first, never a dense copy on the host unless the device
            is the CPU). ``False``: always scvi-tools' loaders. See ``docs/scaling.md``.
        coupling_warmup
            Part of the mixture phase over which the coupling between arms is brought in
            (:class:`~cplmix_sc.train.CouplingWarmup`): off for its first half, at 0.3 of
            ``coupling_weight`` for its second half, then full. ``0``: full coupling from the
            first step (the previous default). With 0.5, 3 seeds: Zeisel 47 ARI / AMI /
            accuracy 0.438 / 0.594 / 0.446 instead of 0.410 / 0.574 / 0.441, Zeisel 7 0.761
            instead of 0.762, the simulator 0.877 instead of 0.870 (state 0.863 vs 0.842);
            see ``docs/model.md``. Only a model's first training uses it: a second
            ``train()`` and the fine-tuning of :meth:`prune` keep full coupling, so that arms
            that already agree are not let apart again.
        init_resolution
            Leiden resolution of the graph start (``init="leiden"``; scanpy's default 1).
            Where a strong continuous state cuts types into pieces that the model then keeps
            as separate categories, a lower resolution starts from coarser communities: on
            the simulator with state effect 2 (``benchmarks/resolution_scan.py``), 0.2-0.5
            gives its 12 types where 1 gives 21 pieces; on Zeisel 0.5 gives 8 coarse
            clusters. See ``docs/model.md``, "Choosing K".
        init_exclude_genes
            Genes left out of the start's PCA (``init="leiden"`` or ``"kmeans"``; the model
            itself still sees every gene), so that the start is not cut along a continuous
            state that moves them in cells of many types:

            - ``"auto"`` (default): find them when the start keeps its communities as
              categories, i.e. when Leiden on every gene finds at most ``n_categories``
              communities (the generous ``n_categories`` of "Choosing K" in
              ``docs/model.md``). Genes are scored by how much of their variance *within*
              the communities the communities' own top two PCs explain, averaged over
              communities (each gene's highest fifth left out); robust z-scores above 3,
              against genes of similar mean expression, are left out, and the clustering and
              scores are redone on the remaining genes until no new gene is flagged
              (:func:`cplmix_sc._graph.state_program_genes`). Markers differ between
              communities and are mostly flat within them, so they mostly stay. If more
              than 30% of the genes are flagged, every gene is used, with a warning. With
              more communities than categories the start merges them along the graph and
              uses every gene (leaving genes out there measured worse: Zeisel at 7
              categories, ARI 0.66 instead of 0.75).
            - gene names in ``var_names`` (e.g. ``cplmix_sc.genesets.load("ieg")`` through
              ``cplmix_sc.genesets.match``), a boolean mask over the genes, or the name of a
              boolean ``var`` column: leave out exactly these. Names not in ``var_names``
              are ignored with a warning (an error if none is found).
            - ``None``: use every gene (the start before this option).

            The genes left out are listed in ``model.init_excluded_genes_``. On the
            simulator with a strong state (state effect 3, 12 types) ``"auto"`` finds 59 of
            its 60 activity and 18 state-moved housekeeping genes, no marker; started from 24
            categories, :meth:`prune` then keeps K = 12-13 (seeds 0-2, ARI 0.92) where every
            gene in the start kept 21 halves of types (ARI 0.62). On Zeisel it leaves out 66
            of 2,000 genes; from 80 categories K = 14-15 (ARI 0.34-0.46, seeds 0-2; every
            gene: K = 14, 0.353). See ``docs/model.md``, "Choosing K". Cells are still
            normalised by their total over all genes.
        **trainer_kwargs
            Passed to :class:`scvi.train.Trainer` (e.g. ``precision="bf16-mixed"`` for
            bfloat16 autocast on a GPU, ``strategy="ddp"`` with ``devices=N``).
        """
        check_choice("init", init, INITS)
        check_number("lr", lr, low=0.0)
        check_number("train_size", train_size, low=0.0, high=1.0)
        check_number("coupling_warmup", coupling_warmup, low=0.0, high=1.0, low_inclusive=True)
        check_number("init_resolution", init_resolution, low=0.0)
        start_genes = self._start_genes(init_exclude_genes, init)
        if self.is_trained_:  # continued training / prune's fine-tuning: arms already agree
            coupling_warmup = 0.0
        if data_on_device not in (True, False, "auto"):
            raise ValueError(
                f"`data_on_device` must be True, False or 'auto', got {data_on_device!r}."
            )
        batch_size = check_int("batch_size", batch_size, 2)
        checkpoint_every = check_int("checkpoint_every", checkpoint_every, 1)
        ckpt = None
        if resume is not False and resume is not None:
            ckpt = self._read_resume_checkpoint(resume, checkpoint_dir)
            meta = ckpt["cplmix_sc"]["meta"]
            max_epochs = meta["max_epochs"] if max_epochs is None else max_epochs
            pretrain_epochs = meta["pretrain_epochs"] if pretrain_epochs is None else (
                pretrain_epochs
            )
            init = meta["init"]
            init_resolution = meta.get("init_resolution", init_resolution)
            # the interrupted run's start genes (a checkpoint without them: every gene)
            start_genes = None
            if meta.get("init_excluded") is not None:
                start_genes = np.ones(self.adata.n_vars, dtype=bool)
                start_genes[meta["init_excluded"]] = False
            if init != "random":
                self.init_excluded_genes_ = self.adata.var_names[meta.get("init_excluded") or []]
            if train_size < 1 and meta.get("seed") != settings.seed:
                warnings.warn(
                    f"The interrupted run used scvi.settings.seed={meta.get('seed')}, this one "
                    f"{settings.seed}: the train/validation split differs. Set "
                    f"scvi.settings.seed = {meta.get('seed')} before building the model.",
                    UserWarning,
                    stacklevel=2,
                )
            if checkpoint_dir is None and resume is not True:
                checkpoint_dir = Path(ckpt["path"]).parent
        n_cells = self.adata.n_obs
        n_train = int(np.ceil(n_cells * train_size))
        steps_per_epoch = max(1, int(np.ceil(n_train / batch_size)))
        if max_epochs is None:
            # ~500 steps: on Zeisel the objective moves a good start away from the labels with
            # longer training, on the simulator 40 epochs reach the types and the state
            # (benchmarks/results/levers.md, "What the mixture phase does to a start")
            max_epochs = int(np.clip(MIXTURE_STEPS // steps_per_epoch, 20, 400))
        max_epochs = check_int("max_epochs", max_epochs, 1)
        if pretrain_epochs is None:
            pretrain_epochs = max(1, min(-(-WARMUP_STEPS // steps_per_epoch), max_epochs // 4))
        pretrain_epochs = check_int("pretrain_epochs", pretrain_epochs, 0)
        if batch_size > n_train:
            raise ValueError(
                f"batch_size={batch_size} is larger than the {n_train} training cells; "
                "use a smaller batch_size."
            )
        plan_kwargs = {"lr": lr, "n_epochs_kl_warmup": None, **(plan_kwargs or {})}
        datasplitter_kwargs = dict(trainer_kwargs.pop("datasplitter_kwargs", None) or {})
        if n_train % batch_size == 1:  # batch norm cannot train on a mini-batch of one cell
            datasplitter_kwargs.setdefault("drop_last", True)
        fit_kwargs = {
            "batch_size": batch_size,
            "train_size": train_size,
            "accelerator": accelerator,
            "devices": devices,
            "plan_kwargs": plan_kwargs,
            "datasplitter_kwargs": datasplitter_kwargs,
            **trainer_kwargs,
        }
        user_callbacks = list(fit_kwargs.pop("callbacks", None) or [])
        meta = {
            "max_epochs": max_epochs,
            "pretrain_epochs": pretrain_epochs,
            "init": init,
            "init_resolution": init_resolution,
            "init_excluded": _left_out(start_genes),  # "auto": set once the start is fit
            "init_params": _jsonable(self.init_params_),
            "seed": settings.seed,
        }

        shared = {}  # the device copy of the data, made once for both phases

        def fit(phase: str, n_epochs: int, ckpt_path=None) -> None:
            callbacks = [*user_callbacks, NonFiniteGuard(phase, lr)]
            if phase == "mixture" and coupling_warmup > 0:
                callbacks.append(CouplingWarmup(n_epochs, coupling_warmup))
            kwargs = dict(fit_kwargs)
            if data_on_device is not False:
                kwargs["datamodule"] = self._device_datamodule(
                    kwargs, data_on_device, shared.get("matrix")
                )
            if checkpoint_dir is not None:
                meta_phase = {**meta, "phase": phase}
                callbacks.append(ResumableCheckpoint(checkpoint_dir, checkpoint_every, meta_phase))
            self.module.train()  # scvi-tools leaves eval mode after a first train() or load()
            self.module.phase = phase
            try:
                super(CplMixVAE, self).train(
                    max_epochs=n_epochs, callbacks=callbacks, ckpt_path=ckpt_path, **kwargs
                )
            finally:
                self.module.phase = "mixture"
                dm = kwargs.get("datamodule")
                if dm is not None and dm.matrix is not None:
                    shared["matrix"] = dm.matrix

        start = ("warmup" if init != "random" and not self.is_trained_ and pretrain_epochs > 0
                 else "mixture")
        resume_path = None
        if ckpt is not None:
            state = ckpt["cplmix_sc"]
            start = state["meta"]["phase"]
            if state["meta"]["phase_complete"]:
                # nothing left of that phase: take its weights and RNG state and go on
                self._load_checkpoint_weights(ckpt)
                set_rng_state(state["rng"])
                start = "mixture" if start == "warmup" else "done"
            else:
                resume_path = ckpt["path"]
        if start == "warmup":
            if ckpt is None or init == "leiden":  # a Leiden teacher is not saved: refit it
                meta["init_excluded"] = _left_out(
                    self._fit_teacher(init, init_resolution, start_genes)
                )
            fit("warmup", pretrain_epochs, resume_path)
            resume_path = None
        if start in ("warmup", "mixture"):
            fit("mixture", max_epochs, resume_path)
        else:
            self.is_trained_ = True
            self.module.eval()
        if annotate and _is_global_zero():  # under DDP only rank 0 writes its results
            self.annotate(key_added=key_added)

    def _device_datamodule(self, fit_kwargs: dict, data_on_device, matrix) -> DeviceDataSplitter:
        """The device-resident data path with scvi-tools' split; takes its options from
        ``fit_kwargs`` (they would otherwise go to scvi-tools' DataSplitter)."""
        strategy = fit_kwargs.get("strategy")
        dm = DeviceDataSplitter(
            self.adata_manager,
            train_size=fit_kwargs.pop("train_size"),
            batch_size=fit_kwargs.pop("batch_size"),
            distributed_sampler=use_distributed_sampler(strategy),
            matrix=matrix,
            force=data_on_device is True,
            **(fit_kwargs.pop("datasplitter_kwargs") or {}),
        )
        return dm

    def _read_resume_checkpoint(self, resume, checkpoint_dir) -> dict:
        """Read the checkpoint to resume from and check that it belongs to this model."""
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
        saved = _flat_params(ckpt["cplmix_sc"]["meta"]["init_params"])
        mine = _flat_params(_jsonable(self.init_params_))
        diff = [
            f"{k}={saved.get(k)!r} there, {mine.get(k)!r} here"
            for k in sorted(set(saved) | set(mine))
            if saved.get(k) != mine.get(k)
        ]
        if diff:
            raise ValueError(
                f"The checkpoint {ckpt['path']!r} was written by a model built with other "
                f"arguments ({'; '.join(diff)}); build the model with the same arguments "
                "to resume."
            )
        shapes = {k: tuple(v.shape) for k, v in self.module.state_dict().items()}
        saved_shapes = {
            k.removeprefix("module."): tuple(v.shape)
            for k, v in ckpt["state_dict"].items()
            if k.startswith("module.")
        }
        if shapes != saved_shapes:
            raise ValueError(
                f"The checkpoint {ckpt['path']!r} does not fit this model (different genes, "
                "batches or sizes); resume with the AnnData and arguments of the interrupted run."
            )
        return ckpt

    def _load_checkpoint_weights(self, ckpt: dict) -> None:
        state = {
            k.removeprefix("module."): v
            for k, v in ckpt["state_dict"].items()
            if k.startswith("module.")
        }
        self.module.load_state_dict(state)
        self.module.to(self.device)

    def _start_genes(self, exclude, init: str) -> np.ndarray | str | None:
        """Boolean mask of the genes the start's PCA uses, from ``init_exclude_genes``
        (``"auto"`` is resolved by :meth:`_fit_teacher`)."""
        if exclude is None or (init == "random" and isinstance(exclude, str)
                               and exclude == "auto"):
            return None
        if isinstance(exclude, str) and exclude == "auto":
            return "auto"
        if init == "random":
            raise ValueError(
                "`init_exclude_genes` shapes the warm-up's start; init='random' has none. "
                "Use init='leiden' or 'kmeans', or drop `init_exclude_genes`."
            )
        var = self.adata.var
        n_genes = self.adata.n_vars
        if isinstance(exclude, str):
            if exclude not in var.columns:
                hint = (f" {exclude!r} is a gene: pass it in a list, [{exclude!r}]."
                        if exclude in self.adata.var_names else "")
                raise ValueError(
                    f"`init_exclude_genes`={exclude!r} is not a column of adata.var; pass a "
                    "boolean var column, a boolean mask or a list of gene names." + hint
                )
            col = var[exclude]
            if not pd.api.types.is_bool_dtype(col) or col.isna().any():
                raise ValueError(
                    f"adata.var[{exclude!r}] must be boolean without missing values (True = "
                    f"leave out of the start), got dtype {col.dtype}."
                )
            drop = col.to_numpy(dtype=bool)
        else:
            if isinstance(exclude, pd.Series) and pd.api.types.is_bool_dtype(exclude):
                if (not exclude.index.is_unique
                        or not self.adata.var_names.isin(exclude.index).all()):
                    raise ValueError(
                        "A boolean Series `init_exclude_genes` must be indexed by "
                        "adata.var_names, each once (it is aligned to them)."
                    )
                exclude = exclude.reindex(self.adata.var_names)
                if exclude.isna().any():
                    raise ValueError(
                        "A boolean `init_exclude_genes` must be without missing values."
                    )
                exclude = exclude.to_numpy(dtype=bool)
            if isinstance(exclude, (set, frozenset)):
                exclude = sorted(exclude, key=str)
            elif not isinstance(exclude, (np.ndarray, pd.Index, pd.Series, list, tuple)):
                exclude = list(exclude)  # any other iterable of names, e.g. a generator
            if isinstance(exclude, (list, tuple)):  # numpy would turn True into "True"
                exclude = np.array(exclude, dtype=object)
            values = np.asarray(exclude)
            numbers = values.dtype.kind in "iuf"
            if values.dtype == object:  # booleans in an object array: a mask; mixed: refuse
                is_bool = np.array([isinstance(v, (bool, np.bool_)) for v in values.ravel()])
                numbers = any(isinstance(v, (int, float, np.integer, np.floating))
                              for v, b in zip(values.ravel(), is_bool, strict=True) if not b)
                if is_bool.all():
                    values = values.astype(bool)
                elif is_bool.any() and not numbers:
                    raise ValueError(
                        "`init_exclude_genes` mixes booleans and gene names; pass either a "
                        "boolean mask over the genes or a list of names."
                    )
            if values.size == 0:
                raise ValueError(
                    "`init_exclude_genes` is an empty list; pass None to use every gene "
                    "(an empty `cplmix_sc.genesets.match` result means no gene matched)."
                )
            if numbers:
                raise ValueError(
                    "`init_exclude_genes` must hold gene names or booleans, got numbers; "
                    "for positions use `adata.var_names[positions]`."
                )
            if values.dtype == bool:
                if values.shape != (n_genes,):
                    raise ValueError(
                        f"A boolean `init_exclude_genes` must have one entry per gene "
                        f"({n_genes}), got shape {values.shape}."
                    )
                drop = values
            else:
                names = pd.Index(values.ravel().astype(str))
                found = names.isin(self.adata.var_names)
                if not found.any():
                    raise ValueError(
                        f"None of the {len(names)} genes in `init_exclude_genes` is in "
                        f"adata.var_names (e.g. {list(names[:3])}); match the spelling with "
                        "`cplmix_sc.genesets.match`."
                    )
                if not found.all():
                    warnings.warn(
                        f"{int((~found).sum())} of the {len(names)} genes in "
                        f"`init_exclude_genes` are not in adata.var_names and are ignored "
                        f"(e.g. {list(names[~found][:3])}).",
                        UserWarning,
                        stacklevel=3,
                    )
                drop = self.adata.var_names.isin(names)
        keep = ~np.asarray(drop, dtype=bool)
        if keep.sum() < 2:
            raise ValueError(
                f"`init_exclude_genes` leaves {int(keep.sum())} of {n_genes} genes for the "
                "start; at least 2 are needed."
            )
        return keep

    def _fit_teacher(
        self,
        init: str = "kmeans",
        resolution: float = 1.0,
        genes: np.ndarray | str | None = None,
    ) -> np.ndarray | None:
        """The warm-up's starting categories from the top PCs of log-normalised counts.

        ``"kmeans"``: k-means, taught by nearest centroid. ``"leiden"``: Leiden communities of a
        15-NN graph of the PCs at resolution 1, merged along the graph down to
        ``n_categories`` if there are more (:func:`cplmix_sc._graph.graph_start`; at most
        ``MAX_TEACHER_CELLS`` cells, sampled), taught by nearest reference cell. Either start
        is fit on at most ``MAX_TEACHER_CELLS`` cells (a random sample of larger data).
        ``genes`` (boolean mask) restricts the PCA to those genes (``init_exclude_genes``);
        ``"auto"`` finds the state genes to leave out on the same cells
        (:func:`cplmix_sc._graph.state_program_genes`). Returns the mask used (or ``None``)
        and stores the left-out genes' names in ``init_excluded_genes_``.

        For a backed AnnData only those cells' rows are read from the file (as CSR), and the
        PCA is fit on them: the same start as in memory when there are at most
        ``MAX_TEACHER_CELLS`` cells, a PCA of the sample rather than of all cells otherwise.
        """
        x = self.adata_manager.get_from_registry(REGISTRY_KEYS.X_KEY)
        n_cells = x.shape[0]
        sample = None
        if n_cells > MAX_TEACHER_CELLS:  # the start is fit on a sample of cells
            rng = np.random.default_rng(settings.seed)
            sample = np.sort(rng.choice(n_cells, MAX_TEACHER_CELLS, replace=False))
        if is_backed(x):
            # on disk: read only the sampled rows (all if few), as CSR, a block at a time;
            # the PCA is then fit on those cells only
            x = read_rows(x, sample)
            sample = None
        if isinstance(genes, str):  # "auto": the genes of a state shared by communities
            keep, _, info = state_program_genes(
                x if sample is None else x[sample],
                n_pcs=self.module.teacher_loadings.shape[1],
                seed=settings.seed,
                resolution=resolution,
                max_communities=self.module.n_categories,
            )
            genes = None if keep.all() else keep
            if info["too_many"]:
                warnings.warn(
                    f"init_exclude_genes='auto' flagged {info['too_many']} of {x.shape[1]} "
                    "genes as a state's, too many for one program: the start uses every "
                    "gene. Select variable genes first, or name the state's genes "
                    "(`init_exclude_genes=[...]`).",
                    UserWarning,
                    stacklevel=3,
                )
            elif info["skipped"]:
                logger.info(
                    "init_exclude_genes='auto': %d communities for %d categories, so the "
                    "start merges them along the graph and uses every gene.",
                    info["n_communities"][0], self.module.n_categories,
                )
            else:
                logger.info(
                    "The start leaves out %d genes that vary together within communities "
                    "(%d rounds; communities per round: %s).",
                    int((~keep).sum()), info["n_rounds"], info["n_communities"],
                )
        self.init_excluded_genes_ = self.adata.var_names[_left_out(genes) or []]
        n_genes = x.shape[1] if genes is None else int(genes.sum())
        n_pcs = min(self.module.teacher_loadings.shape[1], n_genes - 1, x.shape[0] - 1)
        # sparse-aware: a large matrix is never densified whole (cplmix_sc._pca.log_pca)
        pca_mean, pca_components, pcs = log_pca(x, n_pcs, settings.seed, genes=genes)
        k = self.module.n_categories
        if sample is not None:
            pcs = pcs[sample]
        if init == "leiden":
            labels = graph_start(pcs, k, seed=settings.seed, resolution=resolution)
            centers = np.stack([
                pcs[labels == c].mean(0) if np.any(labels == c) else np.zeros(pcs.shape[1])
                for c in range(k)
            ])
        else:
            km = KMeans(k, n_init=10, random_state=settings.seed).fit(pcs)
            labels, centers = km.labels_, km.cluster_centers_
        counts = np.bincount(labels, minlength=k)
        self.module.set_teacher(
            torch.as_tensor(pca_mean, dtype=torch.float32),
            torch.as_tensor(pca_components.T, dtype=torch.float32),
            torch.as_tensor(centers, dtype=torch.float32),
            torch.as_tensor(counts + 1.0, dtype=torch.float32),
        )
        if init == "leiden":
            self.module.set_teacher_points(
                torch.as_tensor(pcs, dtype=torch.float32), torch.as_tensor(labels)
            )
        return genes

    # ------------------------------------------------------------------ pruning (choosing K)
    @property
    def active_categories(self) -> np.ndarray:
        """Indices of the categories not pruned (all of them before :meth:`prune`)."""
        return np.flatnonzero(self.module.category_mask.cpu().numpy())

    @torch.inference_mode()
    def _prune_stats(self, batch_size: int | None) -> dict:
        """Consensus per category, the Fig. S9a log-ratio and the reconstruction NLL."""
        from ..tl._consensus import category_consensus_from_labels

        self.module.eval()
        held_out = getattr(self, "validation_indices", None)
        held_out = held_out if held_out is not None and len(held_out) else None
        loader = self._make_data_loader(
            adata=self.adata, indices=held_out, batch_size=batch_size or 1024
        )
        nll, n = 0.0, 0
        for tensors in loader:
            _, _, losses = self.module(tensors)
            nll += float(losses.reconstruction_loss["reconstruction_loss"].sum())
            n += tensors[REGISTRY_KEYS.X_KEY].shape[0]
        w = max(self.module.n_arms - 1, 1) * self.module.n_arms
        post = self._posterior(batch_size=batch_size)
        probs = post["log_probs"].exp().mean(0).numpy()[:, self.active_categories]
        table = category_consensus_from_labels(
            post["log_probs"].argmax(-1).numpy(), self.module.n_categories,
            active=self.module.category_mask.cpu().numpy(),
        )
        return {
            "table": table,
            "log_ratio": float(np.log(probs.max(1).mean() / max(probs.min(1).mean(), 1e-30))),
            "reconstruction": nll / max(n, 1) / w,
            "reconstruction_on": "held-out" if held_out is not None else "training",
        }

    def prune(
        self,
        min_consensus: float = 0.6,
        n_prune: int = 1,
        min_categories: int = 2,
        max_rounds: int | None = None,
        fine_tune_epochs: int | None = None,
        lr: float = 1e-3,
        batch_size: int = 256,
        annotate: bool = True,
        key_added: str = "cpl",
        **trainer_kwargs,
    ) -> pd.DataFrame:
        """Remove categories the arms do not agree on, with fine-tuning, until all agree.

        Start from more categories than you expect types (:meth:`train` with a generous
        ``n_categories``). Each round measures every surviving category's consensus between
        arms (:func:`cplmix_sc.tl.category_consensus`: Jaccard index of the cells the arms put
        in it, on all cells without augmentation), removes categories that no cell's consensus
        label uses, then, if some category is below ``min_consensus``, removes the
        ``n_prune`` least consistent ones and fine-tunes the model for ``fine_tune_epochs``.
        It stops when every surviving category reaches ``min_consensus`` (the chosen K), at
        ``min_categories`` or after ``max_rounds``.

        A removed category is masked: ``q(c|x) = 0`` for it, so it leaves the categorical
        head and the decoder's input, and its cells move to the categories that remain.
        Labels are never renumbered: a surviving category keeps its index, so ``cpl_type``
        values stay comparable before and after pruning. :attr:`active_categories` lists the
        survivors; ``get_type_probabilities`` keeps all ``n_categories`` columns, with
        exact zeros for pruned ones. Pruning is saved with the model.

        Parameters
        ----------
        min_consensus
            Consensus every category must reach to stop.
        n_prune
            Categories removed per round (besides unused ones).
        min_categories
            Never go below this many categories.
        max_rounds
            Stop after this many rounds (default: until the rule stops it).
        fine_tune_epochs
            Epochs of training after each removal; default ``max(5, E // 10)`` with ``E`` the
            default number of epochs of :meth:`train` for this data.
        lr, batch_size, **trainer_kwargs
            As in :meth:`train`.
        annotate, key_added
            Call :meth:`annotate` at the end (default) with this prefix.

        Returns
        -------
        DataFrame, one row per round (also in ``prune_history_``): ``round``, ``n_categories``
        (surviving before the round's removal), ``mean_consensus``, ``min_consensus``,
        ``log_ratio`` (log of E[max_c q(c|x)] / E[min_c q(c|x)], Fig. S9a),
        ``reconstruction`` (mean NLL per cell and arm; held-out cells if the model was
        trained with ``train_size < 1``), ``removed`` (categories removed after measuring)
        and ``consensus`` (dict category -> consensus).
        """
        if not self.is_trained_:
            raise ValueError("Train the model before pruning: call `model.train()` first.")
        if not 0.0 <= min_consensus <= 1.0:
            raise ValueError(f"`min_consensus` must be in [0, 1], got {min_consensus}.")
        if n_prune < 1 or min_categories < 1:
            raise ValueError("`n_prune` and `min_categories` must be at least 1.")
        if self.module.n_arms < 2:
            raise ValueError("Pruning by consensus needs at least two arms (n_arms >= 2).")
        if fine_tune_epochs is None:
            steps = max(1, int(np.ceil(self.adata.n_obs / batch_size)))
            fine_tune_epochs = max(5, int(np.clip(1_200 // steps, 20, 400)) // 10)
        history = []
        mask = self.module.category_mask
        for rnd in range(10**6 if max_rounds is None else max_rounds + 1):
            stats = self._prune_stats(batch_size)
            table = stats["table"]
            cons = table["consensus"]
            unused = table.index[table["n_cells"] == 0].tolist()
            candidates = cons.drop(unused).sort_values(kind="stable")
            done = (
                (candidates >= min_consensus).all()
                or len(candidates) <= min_categories
                or (max_rounds is not None and rnd == max_rounds)
            )
            room = max(len(table) - len(unused) - min_categories, 0)
            low = [] if done else candidates[candidates < min_consensus].index[:n_prune]
            removed = [int(c) for c in unused] + [int(c) for c in list(low)[:room]]
            removed = removed[: max(len(table) - min_categories, 0)]
            history.append(
                {
                    "round": rnd,
                    "n_categories": len(table),
                    "mean_consensus": float(cons.mean()),
                    "min_consensus": float(cons.min()),
                    "log_ratio": stats["log_ratio"],
                    "reconstruction": stats["reconstruction"],
                    "reconstruction_on": stats["reconstruction_on"],
                    "removed": removed,
                    "consensus": {int(k): round(float(v), 4) for k, v in cons.items()},
                }
            )
            if not removed:
                break
            new_mask = mask.clone()
            new_mask[torch.as_tensor(removed, device=mask.device)] = False
            self.module.set_category_mask(new_mask)
            if done:
                break
            # the trained model skips the warm-up; the non-finite guard and checks apply
            self.train(max_epochs=fine_tune_epochs, lr=lr, batch_size=batch_size,
                       annotate=False, **trainer_kwargs)
        self.module.eval()
        self.prune_history_ = pd.DataFrame(history)
        if annotate and _is_global_zero():
            self.annotate(key_added=key_added)
        return self.prune_history_

    # ------------------------------------------------------------------ inference
    @torch.inference_mode()
    def _posterior(
        self,
        adata: AnnData | None = None,
        indices: Sequence[int] | None = None,
        batch_size: int | None = None,
    ) -> dict[str, torch.Tensor]:
        """Per-arm log q(c|x), bottleneck and state (for the consensus type), on the CPU."""
        adata = self._validate_anndata(adata)
        self.module.eval()
        loader = self._make_data_loader(adata=adata, indices=indices, batch_size=batch_size)
        out: dict[str, list[torch.Tensor]] = {"log_probs": [], "bottleneck": [], "state": []}
        for tensors in loader:
            inf = self.module.inference(tensors[REGISTRY_KEYS.X_KEY])
            out["log_probs"].append(inf["log_probs"].cpu())
            out["bottleneck"].append(inf["bottleneck"].cpu())
            types = inf["log_probs"].exp().mean(0).argmax(-1)
            out["state"].append(self.module.state_given_category(inf["bottleneck"], types).cpu())
        return {k: torch.cat(v, dim=1) for k, v in out.items()}

    def get_type_probabilities(
        self,
        adata: AnnData | None = None,
        arm: int | None = None,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """Posterior ``q(c|x)`` per cell, ``(n_cells, n_categories)``.

        Parameters
        ----------
        adata
            AnnData with the same genes; defaults to the one the model was set up with.
        arm
            One arm's posterior; ``None`` (default) gives the consensus, the mean over arms.
        batch_size
            Cells per inference batch.
        """
        log_p = self._posterior(adata, batch_size=batch_size)["log_probs"]
        return self._arm_or_mean(log_p.exp(), arm).numpy()

    def _arm_or_mean(self, values: torch.Tensor, arm: int | None) -> torch.Tensor:
        if arm is None:
            return values.mean(0)
        self._check_arm(arm)
        return values[arm]

    def predict(self, adata: AnnData | None = None, batch_size: int | None = None) -> np.ndarray:
        """Consensus type per cell: argmax of the posterior averaged over arms."""
        return self.get_type_probabilities(adata, batch_size=batch_size).argmax(1)

    def get_state(
        self, adata: AnnData | None = None, arm: int = 0, batch_size: int | None = None
    ) -> np.ndarray:
        """Posterior mean of the state given the consensus type, ``(n_cells, n_state)``.

        The state is type-dependent: it is computed by ``q(s|x, c)`` with ``c`` the one-hot
        consensus type. Arms' state coordinates are not aligned with each other (each arm may
        rotate or flip its state), so one arm's state is returned (``arm``, default 0).
        """
        state = self._posterior(adata, batch_size=batch_size)["state"]
        return self._arm_or_mean(state, arm).numpy()

    def get_arm_labels(self, adata: AnnData | None = None, batch_size: int | None = None):
        """Argmax category of every arm, ``(n_arms, n_cells)``."""
        return self._posterior(adata, batch_size=batch_size)["log_probs"].argmax(-1).numpy()

    @torch.inference_mode()
    def decode_expression(
        self,
        state: np.ndarray,
        types: np.ndarray | Sequence[int],
        batch: np.ndarray | Sequence[int] | None = None,
        arm: int = 0,
    ) -> np.ndarray:
        """Expected expression per 10,000 counts decoded from given states and types.

        The generative side of the model, ``E[x | s, c]`` (Eq. 46's p(x|s,c)) normalised to
        10,000 counts: what :func:`cplmix_sc.tl.traversal` sweeps.

        Parameters
        ----------
        state
            ``(n, n_state)`` state coordinates (arm ``arm``'s coordinates, as from
            :meth:`get_state`).
        types
            ``(n,)`` category indices.
        batch
            ``(n,)`` batch codes (integer codes of the registered batch key); required when the
            model was set up with a ``batch_key``.
        arm
            Whose decoder to use.

        Returns
        -------
        ``(n, n_genes)`` array of expected counts per 10,000.
        """
        self._check_arm(arm)
        state = np.asarray(state, dtype=np.float32)
        if state.ndim != 2 or state.shape[1] != self.module.n_state:
            raise ValueError(
                f"`state` must have shape (n, {self.module.n_state}), got {state.shape}."
            )
        types = np.asarray(types)
        if types.shape != (state.shape[0],):
            raise ValueError(f"`types` must have shape ({state.shape[0]},), got {types.shape}.")
        k = self.module.n_categories
        if types.size and (types.min() < 0 or types.max() >= k):
            raise ValueError(f"`types` must be category indices in [0, {k - 1}].")
        batch_t = None
        if self._has_batch:
            if batch is None:
                raise ValueError(
                    "This model was set up with a batch_key: pass `batch` (integer codes)."
                )
            batch_t = torch.as_tensor(np.asarray(batch), dtype=torch.long, device=self.device)
        out = self.module.expected_expression(
            torch.as_tensor(state, device=self.device),
            torch.as_tensor(types, device=self.device),
            batch_t,
            arm=arm,
        )
        return out.cpu().numpy()

    def _check_arm(self, arm: int) -> None:
        if not 0 <= arm < self.module.n_arms:
            raise ValueError(f"`arm` must be in [0, {self.module.n_arms - 1}], got {arm}.")

    def annotate(
        self,
        adata: AnnData | None = None,
        key_added: str = "cpl",
        batch_size: int | None = None,
    ) -> None:
        """Write types, confidences and states into ``adata`` (scanpy ``tl`` style).

        Writes ``obs[f"{key_added}_type"]`` (categorical: category indices as strings),
        ``obs[f"{key_added}_type_confidence"]`` (consensus probability of that type),
        ``obs[f"{key_added}_arm_agreement"]`` (fraction of arms whose own argmax is that type),
        ``obsm[f"X_{key_added}_state"]``, ``obsm[f"{key_added}_type_probs"]`` and
        ``uns[key_added]`` (model parameters and the mean inter-arm agreement). Nothing else
        in ``adata`` changes (a new ``adata`` is also registered: ``obs["_scvi_batch"]`` and
        ``uns["_scvi_*"]``). A new ``adata`` must have the model's genes in the same order
        and pass the checks of :meth:`setup_anndata` (all-zero genes are allowed); views are
        refused rather than copied in place.
        """
        adata = self._validate_anndata(adata)
        post = self._posterior(adata, batch_size=batch_size)
        probs_arm = post["log_probs"].exp()
        probs = probs_arm.mean(0).numpy()
        types = probs.argmax(1)
        arm_labels = probs_arm.argmax(-1).numpy()
        k = self.module.n_categories
        names = [str(i) for i in range(k)]
        used = [names[i] for i in range(k) if np.any(types == i)]
        adata.obs[f"{key_added}_type"] = pd.Categorical(
            [names[t] for t in types], categories=used
        )
        adata.obs[f"{key_added}_type_confidence"] = probs.max(1).astype(np.float32)
        adata.obs[f"{key_added}_arm_agreement"] = (arm_labels == types[None]).mean(0).astype(
            np.float32
        )
        adata.obsm[f"X_{key_added}_state"] = post["state"][0].numpy().astype(np.float32)
        adata.obsm[f"{key_added}_type_probs"] = probs.astype(np.float32)
        params = {
            k_: v for k_, v in self.init_params_["non_kwargs"].items() if k_ != "adata"
        } | self.init_params_["kwargs"].get("module_kwargs", {})
        adata.uns[key_added] = {
            "params": {k_: v for k_, v in params.items() if v is not None},
            "arm_consensus": float(arm_consensus(arm_labels)),
            "n_types_used": len(used),
            "active_categories": self.active_categories.tolist(),
        }


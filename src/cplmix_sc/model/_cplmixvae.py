"""CplMixVAE: the user-facing model, a thin class over its mixins.

Training (:mod:`._training`), pruning (:mod:`._pruning`) and inference (:mod:`._inference`)
live in their own files; the maths lives in :mod:`cplmix_sc.module`, the start in
:mod:`cplmix_sc.start`.
"""

from __future__ import annotations

from typing import Literal

import pandas as pd
from anndata import AnnData
from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager
from scvi.data.fields import CategoricalObsField, LayerField
from scvi.model.base import BaseModelClass
from scvi.utils import setup_anndata_dsp

from .._backed import nonzero_fraction
from .._validation import (
    check_choice,
    check_counts,
    check_int,
    check_not_view,
    check_number,
    check_obs_key,
    check_query_batches,
    check_same_genes,
    first_non_integer,
    get_matrix,
    non_integer_message,
)
from ..module import CplMixVAEModule
from ..module._augment import AUGMENTATIONS
from ..module._input import MAX_SPARSE_INPUT_DENSITY
from ..module._likelihood import MAX_SPARSE_DENSITY
from ..train import CplMixTrainingPlan
from ._augmenter import Augmenter
from ._defaults import resolve_coupling
from ._ecosystem import EcosystemMixin
from ._inference import InferenceMixin
from ._pruning import PruningMixin
from ._saving import SavingMixin
from ._training import TrainingMixin


class CplMixVAE(
    TrainingMixin, PruningMixin, InferenceMixin, EcosystemMixin, SavingMixin, BaseModelClass
):
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
        prune. From ``MANY_TYPES`` (24) categories on, the ``"auto"`` defaults switch to the
        many-types setting (:mod:`cplmix_sc.model._defaults`, ``docs/model.md``, "Many
        types").
    n_state
        Dimension of the continuous state (paper: 2).
    n_arms
        Number of coupled arms ``A`` (``1``: the single-arm mixture VAE baseline).
    likelihood
        ``"nb"`` (negative binomial on counts, default) or ``"gaussian"`` (on log-normalised
        counts, the paper's choice).
    coupling
        ``"auto"`` (default): ``"aitchison"`` below 24 categories, and from 24 on
        ``"detached"`` with ``warmup_coupling=False`` and ``start_weight=10`` (module
        arguments below; each can be given explicitly). ``"aitchison"`` is Eqs. 47-48,
        ``"sigma"`` the reference code's d_σ, ``"detached"`` pulls each arm towards the
        other's stop-gradient posterior, which keeps sister types apart
        (:class:`~cplmix_sc.module.CplMixVAEModule` lists every choice).
    coupling_weight
        λ in Eq. 46.
    entropy_weight
        Weight of the per-cell categorical entropy in the minimised loss; ``-1`` is Eq. 46,
        positive values make posteriors confident (default).
    usage_weight
        Weight of ``KL(mean posterior over a mini-batch || target proportions)``: keeps
        categories in use.
    usage_target
        ``"start"`` (default): the proportions of the start's categories, so categories stay
        alive without being forced to equal sizes; ``"uniform"``: equal proportions.
    temperature
        Gumbel-softmax temperature τ.
    augmentation
        ``"simple"`` (binomial thinning, a fresh copy per arm and step), ``"learned"`` (a
        fresh copy per arm and step from ``augmenter``) or ``"none"``. Default: ``"learned"``
        if an ``augmenter`` is given, else ``"simple"`` (the comparison:
        ``docs/augmenter.md``).
    augmenter
        A trained :class:`~cplmix_sc.Augmenter` on the same genes (names and order). A frozen
        copy of it is built into the module (saved and loaded with the model; never trained
        further), and every training mini-batch gives each arm a fresh noisy copy of every
        cell, generated on the model's device.
    **module_kwargs
        Further :class:`~cplmix_sc.module.CplMixVAEModule` arguments (``n_hidden``,
        ``n_layers``, ``n_bottleneck``, ``thinning``, ``input_dropout``, ``state_dropout``,
        ``decoder``, ``warmup_weight``, ``start_weight``: the pull towards the start kept
        during the mixture phase, ``warmup_coupling``: whether the arms are coupled during
        the warm-up).

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
        coupling: Literal["auto", "aitchison", "sigma", "detached", "agreement", "js"] = "auto",
        coupling_weight: float = 1.0,
        entropy_weight: float = 3.0,
        usage_weight: float = 3.0,
        usage_target: Literal["uniform", "start"] = "start",
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
        coupling = resolve_coupling(coupling, n_categories, module_kwargs)
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
        density = nonzero_fraction(x)
        self.module.sparse_likelihood = bool(density <= MAX_SPARSE_DENSITY)
        self.module.sparse_input = bool(density <= MAX_SPARSE_INPUT_DENSITY)
        augmenter = None  # its architecture is in module_kwargs, its weights in the module
        self.init_excluded_genes_ = None  # set by train(): genes left out of the start
        self.init_label_names_ = None  # set by train(init_labels=...): label of each category
        self.init_ = None  # set by train(): the start used ("auto" resolved)
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
            if self._has_batch:
                batch = self.adata_manager.get_state_registry(REGISTRY_KEYS.BATCH_KEY)
                check_query_batches(adata, batch.original_key, batch.categorical_mapping)
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
        source = kwargs.get("source_registry")
        if source is not None and batch_key is not None:  # load(dir, adata): training batches
            batches = source["field_registries"][REGISTRY_KEYS.BATCH_KEY]["state_registry"]
            check_query_batches(adata, batch_key, batches["categorical_mapping"])
        check_obs_key(adata, batch_key, "batch_key")
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

"""Augmenter: the learned, type-preserving augmenter as a model of its own (supplement sec. F)."""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from anndata import AnnData
from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager
from scvi.data.fields import LayerField
from scvi.model.base import BaseModelClass, UnsupervisedTrainingMixin
from scvi.utils import setup_anndata_dsp

from .._validation import (
    check_counts,
    check_int,
    check_not_view,
    check_number,
    check_same_genes,
    first_non_integer,
    get_matrix,
    non_integer_message,
)
from ..module import AugmenterModule
from ..train import AugmenterTrainingPlan
from ..train._schedule import augmenter_epochs


class Augmenter(UnsupervisedTrainingMixin, BaseModelClass):
    """Learned type-preserving augmenter: a VAE-GAN that makes noisy copies of cells.

    A generator encodes each cell to a 10-dimensional code, concatenates Gaussian noise and
    decodes a noisy copy; a discriminator keeps the copies realistic, a triplet hinge stops
    the generator from ignoring the noise and a small latent closeness term keeps copies near
    their cell (supplement sec. F, Eqs. 70-74). No labels are used. Train it, check it with
    :meth:`augment` and :func:`cplmix_sc.pl.augmentation`, then give it to
    :class:`~cplmix_sc.CplMixVAE` (``CplMixVAE(adata, augmenter=aug)``): each arm then sees a
    fresh copy of every cell in every mini-batch.

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata` (raw counts).
    n_latent
        Size of the code ``z`` (paper: 10).
    n_noise
        Size of the noise concatenated to the code.
    n_hidden, n_layers
        Width and depth of encoder and decoder.
    margin
        α of the triplet hinge (Eq. 73), per gene (mean squared difference of log1p CP10k).
    gamma
        γ of Eq. 70, weight of ``KL(q(z|x) || q(z|x, n))``.
    **module_kwargs
        Further :class:`~cplmix_sc.module.AugmenterModule` arguments (``output``:
        ``"residual"`` copies, the default, or the paper's ``"decoder"`` copies;
        ``noise_scale``, ``triplet_weight``, ``adversarial_weight``, ``kl_weight``,
        ``dropout``). See ``docs/augmenter.md`` for what was measured.

    Examples
    --------
    >>> import cplmix_sc
    >>> adata = cplmix_sc.datasets.zeisel2015()
    >>> cplmix_sc.Augmenter.setup_anndata(adata)
    >>> aug = cplmix_sc.Augmenter(adata)
    >>> aug.train()
    >>> copies = aug.augment(n_copies=2)  # AnnData of counts, 2 copies per cell
    >>> cplmix_sc.CplMixVAE.setup_anndata(adata)
    >>> model = cplmix_sc.CplMixVAE(adata, n_categories=47, augmenter=aug)
    """

    _module_cls = AugmenterModule
    _training_plan_cls = AugmenterTrainingPlan

    def __init__(
        self,
        adata: AnnData | None = None,
        n_latent: int = 10,
        n_noise: int = 10,
        n_hidden: int = 128,
        n_layers: int = 2,
        margin: float = 0.01,
        gamma: float = 1.0,
        **module_kwargs,
    ):
        n_latent = check_int("n_latent", n_latent, 1)
        n_noise = check_int("n_noise", n_noise, 1)
        check_number("margin", margin, low=0.0)
        check_number("gamma", gamma, low=0.0)
        super().__init__(adata)
        layer = self.adata_manager.registry["setup_args"]["layer"]
        x, where = get_matrix(self.adata, layer)
        value = first_non_integer(x)
        if value is not None:
            raise ValueError(non_integer_message(where, value))
        self.module = self._module_cls(
            n_input=self.summary_stats.n_vars,
            n_latent=n_latent,
            n_noise=n_noise,
            n_hidden=n_hidden,
            n_layers=n_layers,
            margin=margin,
            gamma=gamma,
            **module_kwargs,
        )
        self._model_summary_string = (
            f"Augmenter: |z|={n_latent}, |n|={n_noise}, margin α={margin}, γ={gamma}."
        )
        self.init_params_ = self._get_init_params(locals())

    @property
    def module_kwargs(self) -> dict:
        """The module's constructor arguments: what rebuilds it inside a CplMixVAE."""
        return dict(self.module.init_kwargs)

    @property
    def gene_names(self) -> pd.Index:
        """Genes the augmenter was trained on, in order."""
        state = self.adata_manager.get_state_registry(REGISTRY_KEYS.X_KEY)
        return pd.Index(state.column_names)

    @classmethod
    @setup_anndata_dsp.dedent
    def setup_anndata(cls, adata: AnnData, layer: str | None = None, **kwargs):
        """Register an AnnData with raw counts for the augmenter.

        The same checks as :meth:`cplmix_sc.CplMixVAE.setup_anndata` (no batch key: the
        augmenter is label- and batch-free).

        Parameters
        ----------
        %(param_adata)s
        %(param_layer)s
        """
        check_not_view(adata)
        check_counts(adata, layer)
        source = kwargs.get("source_registry")
        if source is not None:
            genes = source["field_registries"][REGISTRY_KEYS.X_KEY]["state_registry"].get(
                "column_names"
            )
            if genes is not None:
                check_same_genes(pd.Index(genes), adata)
        setup_method_args = cls._get_setup_method_args(**locals())
        fields = [LayerField(REGISTRY_KEYS.X_KEY, layer, is_count_data=True)]
        manager = AnnDataManager(fields=fields, setup_method_args=setup_method_args)
        manager.register_fields(adata, **kwargs)
        cls.register_manager(manager)

    def _validate_anndata(self, adata: AnnData | None = None, copy_if_view: bool = False):
        if adata is not None and adata is not self.adata:
            check_not_view(adata)
            check_same_genes(self.gene_names, adata)
        return super()._validate_anndata(adata, copy_if_view=copy_if_view)

    def train(
        self,
        max_epochs: int | None = None,
        lr: float = 1e-3,
        batch_size: int = 256,
        adversarial_warmup_epochs: int | None = None,
        train_size: float = 1.0,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        plan_kwargs: dict | None = None,
        **trainer_kwargs,
    ):
        """Train G and D (Eq. 70), two Adam optimisers with manual optimisation.

        Parameters
        ----------
        max_epochs
            Default: about 400 optimiser steps' worth, between 10 and 200 epochs (33
            epochs for the 3,005 Zeisel cells).
        lr
            Adam learning rate of G and D.
        batch_size
            Mini-batch size.
        adversarial_warmup_epochs
            Epochs before the GAN terms switch on (default ``max_epochs // 5``).
        train_size
            Fraction of cells used for training.
        accelerator, devices
            Passed to Lightning.
        plan_kwargs
            Keyword arguments of :class:`~cplmix_sc.train.AugmenterTrainingPlan`.
        **trainer_kwargs
            Passed to :class:`scvi.train.Trainer`.
        """
        check_number("lr", lr, low=0.0)
        batch_size = check_int("batch_size", batch_size, 2)
        n_train = int(np.ceil(self.adata.n_obs * train_size))
        if batch_size > n_train:
            raise ValueError(
                f"batch_size={batch_size} is larger than the {n_train} training cells; "
                "use a smaller batch_size."
            )
        if max_epochs is None:
            max_epochs = augmenter_epochs(n_train, batch_size)
        max_epochs = check_int("max_epochs", max_epochs, 1)
        if adversarial_warmup_epochs is None:
            adversarial_warmup_epochs = max_epochs // 5
        plan_kwargs = {"lr": lr, "adversarial_warmup_epochs": adversarial_warmup_epochs,
                       **(plan_kwargs or {})}
        datasplitter_kwargs = dict(trainer_kwargs.pop("datasplitter_kwargs", None) or {})
        if n_train % batch_size == 1:  # batch norm cannot train on a mini-batch of one cell
            datasplitter_kwargs.setdefault("drop_last", True)
        self.module.train()
        super().train(
            max_epochs=max_epochs, batch_size=batch_size, train_size=train_size,
            accelerator=accelerator, devices=devices, plan_kwargs=plan_kwargs,
            datasplitter_kwargs=datasplitter_kwargs, **trainer_kwargs,
        )
        self.module.eval()

    @torch.inference_mode()
    def augment(
        self,
        adata: AnnData | None = None,
        n_copies: int = 1,
        batch_size: int = 1024,
        seed: int | None = None,
    ) -> AnnData:
        """Noisy copies of every cell as counts, for inspection and plots.

        Each copy decodes a fresh noise draw and samples negative binomial counts with the
        source cell's library size (as the arms of CplMixVAE receive them).

        Parameters
        ----------
        adata
            AnnData with the augmenter's genes; defaults to the one it was set up with.
        n_copies
            Copies per cell.
        batch_size
            Cells per generation batch.
        seed
            Seed of the noise and count draws (``None``: torch's current random state).

        Returns
        -------
        AnnData of ``n_copies * n_cells`` copies (copy-major: all cells' first copies, then
        the second ...) with integer counts in a CSR ``X``, the source's ``var``, the source's
        ``obs`` columns plus ``obs["source"]`` (the source cell's name) and ``obs["copy"]``.
        """
        n_copies = check_int("n_copies", n_copies, 1)
        adata = self._validate_anndata(adata)
        self.module.eval()
        rng = nullcontext() if seed is None else torch.random.fork_rng(devices=[])
        with rng:
            if seed is not None:
                torch.manual_seed(seed)
            loader = self._make_data_loader(adata=adata, batch_size=batch_size)
            blocks = []
            for tensors in loader:
                x = tensors[REGISTRY_KEYS.X_KEY].to(self.device)
                blocks.append(self.module.sample_counts(x, n_copies).cpu())
        counts = torch.cat(blocks, dim=1)  # (n_copies, N, G)
        n = counts.shape[1]
        x = sp.csr_matrix(counts.reshape(n_copies * n, -1).numpy().astype(np.float32))
        obs = pd.concat([adata.obs] * n_copies, ignore_index=True)
        obs = obs.drop(columns=[c for c in obs.columns if c.startswith("_scvi")])
        obs["source"] = np.tile(adata.obs_names.to_numpy(), n_copies)
        obs["copy"] = np.repeat(np.arange(n_copies), n)
        obs.index = [f"{s}-aug{c}" for s, c in zip(obs["source"], obs["copy"], strict=True)]
        return AnnData(x, obs=obs, var=adata.var.copy())

"""CplMixVAE: the user-facing model (thin; the maths lives in :mod:`cplmix_sc.module`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from anndata import AnnData
from scvi import REGISTRY_KEYS, settings
from scvi.data import AnnDataManager
from scvi.data.fields import CategoricalObsField, LayerField
from scvi.model.base import BaseModelClass, UnsupervisedTrainingMixin
from scvi.utils import setup_anndata_dsp
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA

from .._validation import check_choice, check_counts
from ..metrics import arm_consensus
from ..module import CplMixVAEModule, log_normalise
from ..train import CplMixTrainingPlan

logger = logging.getLogger(__name__)

INITS = ("kmeans", "random")


class CplMixVAE(UnsupervisedTrainingMixin, BaseModelClass):
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
        ``"teacher"`` (default): the proportions of the k-means start, so categories stay
        alive without being forced to equal sizes; ``"uniform"``: equal proportions.
    temperature
        Gumbel-softmax temperature τ.
    augmentation
        ``"simple"`` (binomial thinning, a fresh copy per arm and step) or ``"none"``.
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
        augmentation: Literal["simple", "none"] = "simple",
        **module_kwargs,
    ):
        super().__init__(adata)
        if int(n_categories) < 2:
            raise ValueError(f"`n_categories` must be at least 2, got {n_categories}.")
        if int(n_arms) < 1:
            raise ValueError(f"`n_arms` must be at least 1, got {n_arms}.")
        if int(n_state) < 1:
            raise ValueError(f"`n_state` must be at least 1, got {n_state}.")
        if temperature <= 0:
            raise ValueError(f"`temperature` must be positive, got {temperature}.")
        n_cells = self.summary_stats.n_cells
        if n_cells < n_categories:
            raise ValueError(
                f"The AnnData has {n_cells} cells but n_categories={n_categories}; "
                "use fewer categories than cells."
            )
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
            f"likelihood {likelihood}, coupling {coupling} (λ={coupling_weight})."
        )
        self.init_params_ = self._get_init_params(locals())

    @property
    def _has_batch(self) -> bool:
        return self.adata_manager.get_state_registry(REGISTRY_KEYS.BATCH_KEY).original_key != (
            "_scvi_batch"
        )

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

        Parameters
        ----------
        %(param_adata)s
        %(param_layer)s
        %(param_batch_key)s
            The batch conditions the decoders, as in scVI.
        """
        if adata.is_view:
            raise ValueError(
                "adata is a view (e.g. adata[mask]); make it an AnnData of its own with "
                "adata = adata[mask].copy() before setup_anndata."
            )
        check_counts(adata, layer)
        if batch_key is not None and batch_key not in adata.obs:
            raise KeyError(f"batch_key {batch_key!r} is not a column of adata.obs.")
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
        init: Literal["kmeans", "random"] = "kmeans",
        lr: float = 1e-3,
        batch_size: int = 256,
        train_size: float = 1.0,
        annotate: bool = True,
        key_added: str = "cpl",
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        plan_kwargs: dict | None = None,
        **trainer_kwargs,
    ):
        """Train the model, then write the types and states into the AnnData.

        Training has two phases. Unless ``init="random"`` (the paper) or the model was already
        trained, a warm-up of ``pretrain_epochs`` trains the full model while pulling every
        arm's ``q(c|x)`` towards a k-means clustering of the top 30 PCs of log-normalised
        counts (same category indices in every arm). Then the coupled mixture model alone is
        trained for ``max_epochs`` and refines, merges or splits those starting types.

        Parameters
        ----------
        max_epochs
            Epochs of the coupled mixture phase. Default: about 1,200 optimiser steps' worth,
            between 20 and 400 epochs (100 epochs for the 3,005 Zeisel cells).
        pretrain_epochs
            Epochs of the warm-up towards the k-means start; default ``max_epochs // 10``.
            Longer warm-ups lock the k-means partition in (on Zeisel, 25 epochs kept 46
            k-means-like categories at ARI 0.28; 10 epochs let the model reach 0.41).
        init
            ``"kmeans"`` (default) or ``"random"`` (no pretraining, as in the paper).
        lr
            Adam learning rate (paper: 1e-3).
        batch_size
            Mini-batch size.
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
        **trainer_kwargs
            Passed to :class:`scvi.train.Trainer`.
        """
        check_choice("init", init, INITS)
        n_cells = self.adata.n_obs
        if max_epochs is None:
            steps_per_epoch = max(1, int(np.ceil(n_cells * train_size / batch_size)))
            max_epochs = int(np.clip(1_200 // steps_per_epoch, 20, 400))
        if pretrain_epochs is None:
            pretrain_epochs = max(1, max_epochs // 10)
        plan_kwargs = {"lr": lr, "n_epochs_kl_warmup": None, **(plan_kwargs or {})}
        fit_kwargs = {
            "batch_size": batch_size,
            "train_size": train_size,
            "accelerator": accelerator,
            "devices": devices,
            "plan_kwargs": plan_kwargs,
            **trainer_kwargs,
        }
        if batch_size > n_cells * train_size:
            raise ValueError(
                f"batch_size={batch_size} is larger than the {int(n_cells * train_size)} "
                "training cells; use a smaller batch_size."
            )
        self.module.train()  # scvi-tools leaves eval mode after a first train() or load()
        if init == "kmeans" and not self.is_trained_ and pretrain_epochs > 0:
            self._fit_teacher()
            self.module.phase = "warmup"
            try:
                super().train(max_epochs=pretrain_epochs, **fit_kwargs)
            finally:
                self.module.phase = "mixture"
            self.module.train()
        super().train(max_epochs=max_epochs, **fit_kwargs)
        if annotate:
            self.annotate(key_added=key_added)

    def _fit_teacher(self) -> None:
        """k-means on the top PCs of log-normalised counts: the warm-up's starting categories."""
        x = self.adata_manager.get_from_registry(REGISTRY_KEYS.X_KEY)
        x = x.toarray() if sp.issparse(x) else np.asarray(x)
        x = torch.as_tensor(x, dtype=torch.float32)
        logx = log_normalise(x, x.sum(-1, keepdim=True)).numpy()
        n_pcs = min(self.module.teacher_loadings.shape[1], logx.shape[1] - 1, logx.shape[0] - 1)
        pca = PCA(n_pcs, random_state=settings.seed).fit(logx)
        km = KMeans(self.module.n_categories, n_init=10, random_state=settings.seed)
        km.fit(pca.transform(logx))
        counts = np.bincount(km.labels_, minlength=self.module.n_categories)
        self.module.set_teacher(
            torch.as_tensor(pca.mean_, dtype=torch.float32),
            torch.as_tensor(pca.components_.T, dtype=torch.float32),
            torch.as_tensor(km.cluster_centers_, dtype=torch.float32),
            torch.as_tensor(counts + 1.0, dtype=torch.float32),
        )

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
        fit_kwargs = {
            "batch_size": batch_size,
            "train_size": 1.0,
            "plan_kwargs": {"lr": lr, "n_epochs_kl_warmup": None},
            **trainer_kwargs,
        }
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
            with torch.no_grad():
                mask[torch.as_tensor(removed, device=mask.device)] = False
            if done:
                break
            self.module.train()
            UnsupervisedTrainingMixin.train(self, max_epochs=fine_tune_epochs, **fit_kwargs)
        self.module.eval()
        self.prune_history_ = pd.DataFrame(history)
        if annotate:
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
        in ``adata`` changes.
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

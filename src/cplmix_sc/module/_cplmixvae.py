"""The coupled mixture VAE module: A arms, their losses and the coupling (supplement sec. B-D).

Shapes: ``A`` arms, ``B`` cells in a mini-batch, ``G`` genes, ``K`` categories, ``S`` state
dimensions, ``D`` bottleneck size.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from scvi import REGISTRY_KEYS
from scvi.module.base import BaseModuleClass, LossOutput, auto_move_data
from torch import nn

from .._validation import check_choice, check_number
from ._arms import ArmLinear, ArmMLP
from ._augment import AUGMENTATIONS, thin_counts
from ._coupling import COUPLINGS
from ._likelihood import nb_nll

LIKELIHOODS = ("nb", "gaussian")
USAGE_TARGETS = ("uniform", "teacher")
DECODERS = ("mlp", "linear")
#: scale of the log-normalised input and of the Gaussian likelihood's target
NORM_SCALE = 1e4


def log_normalise(x: torch.Tensor, library: torch.Tensor) -> torch.Tensor:
    """``log1p(x / library * 1e4)``: the encoders' input and the Gaussian likelihood's target."""
    return torch.log1p(x / library.clamp_min(1.0) * NORM_SCALE)


class CplMixVAEModule(BaseModuleClass):
    """A coupled mixture VAEs: categorical type ``c`` and type-dependent state ``s`` per arm.

    Each arm (sec. B, L.1) encodes its copy of a cell to a ``D``-dimensional bottleneck,
    then to ``q(c|x)`` (one softmax) and to ``q(s|x, c)``, a Gaussian whose mean and variance
    depend on the bottleneck *and* the category; the decoder models ``p(x|s, c)``. The loss is
    Eq. 46 plus the categorical regularisers of :meth:`loss`.

    Parameters
    ----------
    n_input
        Number of genes ``G``.
    n_batch
        Number of batches; a one-hot batch conditions the decoder, as in scVI.
    n_categories
        Number of categories ``K``.
    n_state
        Dimension of the continuous state ``S`` (paper: 2).
    n_arms
        Number of arms ``A`` (1 gives the single-arm mixture VAE).
    n_hidden
        Width of the hidden layers.
    n_layers
        Number of hidden layers in encoder and decoder.
    n_bottleneck
        Size ``D`` of the bottleneck before the categorical softmax (paper: 10).
    likelihood
        ``"nb"``: negative binomial on counts with the observed library size (scVI style);
        ``"gaussian"``: Gaussian on ``log1p`` of normalised counts (the paper's choice).
    coupling
        ``"aitchison"`` (Eqs. 47-48) or ``"sigma"`` (d_σ of Prop. 3, guarded), or one of the
        head-dominated terms of :mod:`cplmix_sc.module._coupling`: ``"detached"`` (each arm
        pulled towards the other's stop-gradient posterior), ``"agreement"``
        (``-log P(c_a = c_b)``), ``"js"``, ``"skl"``, ``"aitchison_top"``, ``"detached_hard"``.
        With many types the Aitchison distance erases sister types (its floored tail makes
        any disagreement cost up to ~170 per cell); ``"detached"`` keeps them
        (``benchmarks/results/fine_mech.md``).
    coupling_weight
        λ of Eq. 46.
    entropy_weight
        Weight of the per-cell categorical entropy ``H(c_a|x_a)`` in the minimised loss.
        Eq. 46 *rewards* entropy (``-1``); a positive value penalises it (confident types).
    usage_weight
        Weight of the penalty ``KL(q̄ || π)`` between the batch-mean posterior ``q̄`` and the
        target category proportions ``π`` (category usage).
    usage_target
        ``π`` of the usage term: ``"uniform"`` (then the term is the reward for the entropy of
        ``q̄``, up to a constant) or ``"teacher"``: the proportions of the k-means start,
        which keeps categories alive without forcing equal sizes (uniform if no start).
    temperature
        Gumbel-softmax temperature τ (paper: 1).
    augmentation
        ``"simple"``: binomial thinning, a fresh copy per arm and step; ``"learned"``: a
        fresh copy per arm and step from the frozen learned augmenter (``augmenter_kwargs``);
        ``"none"``.
    thinning
        Fraction of UMIs kept by the ``"simple"`` augmentation, in (0, 1] (exact binomial
        thinning; on the CPU by the compiled sampler of :mod:`cplmix_sc.module._augment`).
    input_dropout
        Dropout on the encoders' input (sec. L.1).
    state_dropout
        Dropout on the state before decoding (sec. L.1). ``0.5`` stops the decoder from
        explaining type differences with the state (Zeisel level2 ARI 0.41 instead of 0.35)
        but the state then collapses on the simulator (state recovery 0.3 instead of 0.8);
        the default keeps the state meaningful.
    n_teacher_pcs
        Principal components of the warm-up's k-means start (see :meth:`set_teacher`).
    warmup_weight
        Weight of the cross-entropy towards the k-means start during the warm-up. It must
        be large: the reconstruction term is thousands of nats per cell.
    decoder
        ``"mlp"`` (default, as in the paper) or ``"linear"``: per category a log-scale profile
        plus a linear effect of the state (monotone traversals by construction; it measured
        worse on Zeisel, ARI 0.30).
    warmup_coupling
        Whether the coupling term is on during the warm-up. ``False``: the warm-up pulls both
        arms towards the same start without the coupling (which works against a many-type
        start: ``benchmarks/results/fine_types.md``).
    augmenter_kwargs
        Constructor arguments of an :class:`~cplmix_sc.module.AugmenterModule`; required by
        ``augmentation="learned"``. The augmenter is built here (so save/load rebuild it and
        its weights travel in the state dict), frozen (no gradients, not in the optimiser)
        and always in eval mode; :meth:`set_augmenter` copies trained weights in.
    """

    def __init__(
        self,
        n_input: int,
        n_batch: int = 0,
        n_categories: int = 10,
        n_state: int = 2,
        n_arms: int = 2,
        n_hidden: int = 128,
        n_layers: int = 2,
        n_bottleneck: int = 10,
        likelihood: Literal["nb", "gaussian"] = "nb",
        coupling: str = "aitchison",
        coupling_weight: float = 1.0,
        entropy_weight: float = 3.0,
        usage_weight: float = 3.0,
        usage_target: Literal["uniform", "teacher"] = "teacher",
        temperature: float = 1.0,
        augmentation: Literal["simple", "learned", "none"] = "simple",
        thinning: float = 0.8,
        input_dropout: float = 0.1,
        state_dropout: float = 0.0,
        n_teacher_pcs: int = 30,
        warmup_weight: float = 100.0,
        decoder: Literal["mlp", "linear"] = "mlp",
        augmenter_kwargs: dict | None = None,
        warmup_coupling: bool = True,
    ):
        super().__init__()
        check_choice("likelihood", likelihood, LIKELIHOODS)
        check_choice("coupling", coupling, COUPLINGS)
        check_choice("augmentation", augmentation, AUGMENTATIONS)
        check_choice("usage_target", usage_target, USAGE_TARGETS)
        check_choice("decoder", decoder, DECODERS)
        self.n_input = n_input
        self.n_batch = n_batch
        self.n_categories = n_categories
        self.n_state = n_state
        self.n_arms = n_arms
        self.likelihood = likelihood
        self.coupling = coupling
        self.coupling_weight = coupling_weight
        #: whether the coupling is on during the warm-up (the teacher already aligns the arms)
        self.warmup_coupling = bool(warmup_coupling)
        #: multiplies coupling_weight; set per epoch by train.CouplingWarmup (not saved)
        self.coupling_scale = 1.0
        #: NB lgamma terms on the non-zero counts only (on the CPU); set by the model from its
        #: data's density (module._likelihood.MAX_SPARSE_DENSITY), not saved
        self.sparse_likelihood = False
        self.entropy_weight = entropy_weight
        self.usage_weight = usage_weight
        self.usage_target = usage_target
        self.temperature = temperature
        self.augmentation = augmentation
        self.thinning = check_number("thinning", thinning, low=0.0, high=1.0)
        if augmentation == "learned" and augmenter_kwargs is None:
            raise ValueError(
                'augmentation="learned" needs a trained augmenter: build the model with '
                "CplMixVAE(adata, augmenter=aug) (aug a trained cplmix_sc.Augmenter)."
            )
        self.augmenter = None
        if augmenter_kwargs is not None:
            if augmenter_kwargs.get("n_input") != n_input:
                raise ValueError(
                    f"The augmenter was built for {augmenter_kwargs.get('n_input')} genes, the "
                    f"model has {n_input}; train the augmenter on the model's genes."
                )
            from ._augmenter import AugmenterModule  # it imports log_normalise from here

            self.augmenter = AugmenterModule(**augmenter_kwargs)
            self.augmenter.requires_grad_(False)
            self.augmenter.eval()
        #: "mixture" (the model) or "warmup" (the model plus a pull of q(c|x) towards the
        #: teacher clustering stored in the ``teacher_*`` buffers; see :meth:`set_teacher`)
        self.phase = "mixture"
        self.warmup_weight = warmup_weight
        hidden = [n_hidden] * n_layers
        a = n_arms
        self.input_dropout = nn.Dropout(input_dropout)
        self.encoder = ArmMLP(a, n_input, hidden)
        self.bottleneck = ArmLinear(a, n_hidden, n_bottleneck)
        self.category_head = ArmLinear(a, n_bottleneck, n_categories)
        self.state_encoder = ArmMLP(a, n_bottleneck + n_categories, [n_hidden])
        self.state_mean = ArmLinear(a, n_hidden, n_state)
        self.state_logvar = ArmLinear(a, n_hidden, n_state)
        self.state_dropout = nn.Dropout(state_dropout)
        self.decoder_kind = decoder
        if decoder == "mlp":
            self.decoder = ArmMLP(a, n_state + n_categories + n_batch, hidden[::-1])
            self.decoder_out = ArmLinear(a, n_hidden, n_input)
        else:
            # per category: a profile plus a linear effect of the state (log scale);
            # state_loadings[a, k] holds the (S x G) slopes of category k, flattened
            self.type_profile = nn.Parameter(torch.zeros(a, n_categories, n_input))
            self.state_loadings = nn.Parameter(
                0.01 * torch.randn(a, n_categories, n_state * n_input)
            )
            if n_batch > 0:
                self.batch_profile = nn.Parameter(torch.zeros(a, n_batch, n_input))
        # teacher clustering for the warm-up: PCA of log-normalised counts + centroids
        self.register_buffer("teacher_mean", torch.zeros(n_input))
        self.register_buffer("teacher_loadings", torch.zeros(n_input, n_teacher_pcs))
        self.register_buffer("teacher_centroids", torch.zeros(n_categories, n_teacher_pcs))
        # a teacher given per cell (e.g. Leiden): reference cells in PC space and their labels,
        # looked up by nearest reference cell; only needed during the warm-up, so not saved
        self.register_buffer("teacher_points", torch.zeros(0, n_teacher_pcs), persistent=False)
        self.register_buffer(
            "teacher_point_labels", torch.zeros(0, dtype=torch.long), persistent=False
        )
        # π of the usage term: uniform, or the teacher's proportions (usage_target="teacher")
        self.register_buffer("usage_prior", torch.full((n_categories,), 1.0 / n_categories))
        # categories still in use: pruning (CplMixVAE.prune) switches entries off; a pruned
        # category keeps its index (labels are never renumbered) but q(c|x) = 0 for it
        self.register_buffer("category_mask", torch.ones(n_categories, dtype=torch.bool))
        # indices of the surviving categories, derived from the mask (not saved; refreshed by
        # set_category_mask and after load_state_dict) so the loss needs no host sync per step
        self.register_buffer("active_index", torch.arange(n_categories), persistent=False)
        self._pruned = False
        self.register_load_state_dict_post_hook(lambda module, _: module._refresh_active())
        # NB inverse dispersion / Gaussian log-variance, per arm and gene
        self.gene_param = nn.Parameter(torch.zeros(a, 1, n_input))

    # ------------------------------------------------------------------ scvi-tools hooks
    def _get_inference_input(self, tensors):
        return {"x": tensors[REGISTRY_KEYS.X_KEY]}

    def _get_generative_input(self, tensors, inference_outputs):
        return {
            "state": inference_outputs["state"],
            "category": inference_outputs["category"],
            "bottleneck": inference_outputs["bottleneck"],
            "batch_index": tensors[REGISTRY_KEYS.BATCH_KEY],
        }

    def train(self, mode: bool = True):
        """Set train/eval mode; the frozen augmenter always stays in eval mode."""
        super().train(mode)
        if self.augmenter is not None:
            self.augmenter.eval()
        return self

    @torch.no_grad()
    def set_augmenter(self, augmenter: nn.Module) -> None:
        """Copy a trained augmenter's weights into the frozen one built by the constructor."""
        if self.augmenter is None:
            raise ValueError("This module has no augmenter (built without augmenter_kwargs).")
        self.augmenter.load_state_dict(augmenter.state_dict())
        self.augmenter.eval()

    def make_copies(self, x: torch.Tensor) -> torch.Tensor:
        """One copy of the mini-batch per arm, ``(A, B, G)``; perturbed only in training.

        ``"learned"``: each arm gets its own noisy copy from the frozen augmenter, generated
        on the device with fresh noise and NB counts every step.
        """
        if self.training and self.augmentation == "simple":
            return thin_counts(x, self.n_arms, self.thinning)
        if self.training and self.augmentation == "learned":
            return self.augmenter.sample_counts(x, self.n_arms)
        return x.unsqueeze(0).expand(self.n_arms, *x.shape)

    @auto_move_data
    def inference(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Encode each arm's copy to the bottleneck, q(c|x) and q(s|x, c)."""
        copies = self.make_copies(x)
        library = copies.sum(-1, keepdim=True)
        h = self.encoder(self.input_dropout(log_normalise(copies, library)))
        bottleneck = self.bottleneck(h)
        logits = self.category_head(bottleneck)
        # pruned categories (see ``category_mask``) get probability exactly 0
        logits = logits.masked_fill(~self.category_mask, float("-inf"))
        log_probs = F.log_softmax(logits, dim=-1)  # softmax applied once (not twice, as in MMIDAS)
        if self.training:
            category = F.gumbel_softmax(logits, tau=self.temperature, hard=False)
        else:
            category = log_probs.exp()
        hs = self.state_encoder(torch.cat([bottleneck, category], dim=-1))
        qs_m = self.state_mean(hs)
        qs_v = self.state_logvar(hs).clamp(-12.0, 8.0).exp()
        state = qs_m + qs_v.sqrt() * torch.randn_like(qs_m) if self.training else qs_m
        return {
            "bottleneck": bottleneck,
            "logits": logits,
            "log_probs": log_probs,
            "category": category,
            "qs_m": qs_m,
            "qs_v": qs_v,
            "state": state,
        }

    def state_given_category(
        self, bottleneck: torch.Tensor, category_index: torch.Tensor
    ) -> torch.Tensor:
        """Mean of ``q(s|x, c)`` with ``c`` one-hot at ``category_index`` (B,), ``(A, B, S)``."""
        onehot = F.one_hot(category_index.long(), self.n_categories).to(bottleneck.dtype)
        onehot = onehot.unsqueeze(0).expand(bottleneck.shape[0], -1, -1)
        return self.state_mean(self.state_encoder(torch.cat([bottleneck, onehot], dim=-1)))

    def _batch_onehot(self, batch_index: torch.Tensor, n_arms: int) -> torch.Tensor:
        onehot = F.one_hot(batch_index.view(-1).long(), self.n_batch).float()
        return onehot.unsqueeze(0).expand(n_arms, -1, -1)

    @auto_move_data
    def generative(
        self,
        state: torch.Tensor,
        category: torch.Tensor,
        bottleneck: torch.Tensor,
        batch_index: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Decode ``(s, c[, batch])`` to per-gene parameters, ``(A, B, G)``."""
        state = self.state_dropout(state)
        if self.decoder_kind == "linear":
            a, b, _ = state.shape
            slopes = torch.bmm(category, self.state_loadings).view(a, b, self.n_state, -1)
            out = torch.bmm(category, self.type_profile) + (state.unsqueeze(-1) * slopes).sum(2)
            if self.n_batch > 0:
                out = out + torch.bmm(
                    self._batch_onehot(batch_index, state.shape[0]), self.batch_profile
                )
            return {"decoded": out}
        parts = [state, category]
        if self.n_batch > 0:
            parts.append(self._batch_onehot(batch_index, state.shape[0]))
        out = self.decoder_out(self.decoder(torch.cat(parts, dim=-1)))
        return {"decoded": out}

    @torch.no_grad()
    def expected_expression(
        self,
        state: torch.Tensor,
        category_index: torch.Tensor,
        batch_index: torch.Tensor | None = None,
        arm: int = 0,
    ) -> torch.Tensor:
        """Decoded mean expression per 10,000 counts for given ``(s, c[, batch])``, ``(N, G)``.

        ``state`` is ``(N, S)``, ``category_index`` and ``batch_index`` are ``(N,)``; one arm's
        decoder is used (arms' decoders differ). With the NB likelihood this is
        ``1e4 * softmax(decoder(s, c))``, the expected normalised counts of Eq. 46's p(x|s,c);
        with the Gaussian likelihood ``expm1`` of the decoded log-normalised mean.
        """
        n = state.shape[0]
        a = self.n_arms
        category = F.one_hot(category_index.long(), self.n_categories).to(state.dtype)
        if batch_index is None:
            batch_index = torch.zeros(n, 1, dtype=torch.long, device=state.device)
        was_training = self.training
        self.eval()  # no state dropout while decoding
        try:
            out = self.generative(
                state=state.unsqueeze(0).expand(a, -1, -1),
                category=category.unsqueeze(0).expand(a, -1, -1),
                bottleneck=state.new_zeros(a, n, 1),
                batch_index=batch_index.view(-1, 1),
            )["decoded"][arm]
        finally:
            self.train(was_training)
        if self.likelihood == "nb":
            return NORM_SCALE * F.softmax(out, dim=-1)
        return torch.expm1(out).clamp_min(0.0)

    # ------------------------------------------------------------------ loss (Eq. 46)
    def reconstruction_nll(self, x: torch.Tensor, decoded: torch.Tensor) -> torch.Tensor:
        """``-log p(x | s_a, c_a)`` of the unperturbed cell for every arm, ``(A, B)``."""
        library = x.sum(-1, keepdim=True)
        if self.likelihood == "nb":
            mu = library * F.softmax(decoded, dim=-1)
            theta = self.gene_param.exp()
            return nb_nll(x, mu, theta, sparse=self.sparse_likelihood and x.device.type == "cpu")
        target = log_normalise(x, library)
        logvar = self.gene_param
        nll = 0.5 * ((target - decoded).pow(2) / logvar.exp() + logvar + math.log(2 * math.pi))
        return nll.sum(-1)

    def loss(
        self,
        tensors: dict[str, torch.Tensor],
        inference_outputs: dict[str, torch.Tensor],
        generative_outputs: dict[str, torch.Tensor],
        kl_weight: float = 1.0,
    ) -> LossOutput:
        """Negative of Eq. 46 plus the categorical regularisers, averaged over cells.

        ``sum_a w (NLL_a + kl_weight KL_a + entropy_weight H_a) + usage_weight sum_a w KL(q̄_a||π)
        + λ sum_{a<b} d²(c_a, c_b)``, with ``w = max(A - 1, 1)`` as in Eq. 46 (each arm's
        entropy appears in its ``A - 1`` pairs). ``entropy_weight = -1, usage_weight = 0``
        is Eq. 46 exactly. ``q̄_a`` is arm a's posterior averaged over the mini-batch and ``π``
        the target proportions (``usage_prior``); with a uniform ``π`` the term is
        ``log K - H(q̄_a)``, a reward for using all categories. It keeps categories in use while
        a positive ``entropy_weight`` makes each cell's posterior confident (METHOD.md,
        calibration facts).
        """
        x = tensors[REGISTRY_KEYS.X_KEY]
        a = self.n_arms
        w = float(max(a - 1, 1))
        nll = self.reconstruction_nll(x, generative_outputs["decoded"])  # (A, B)
        qs_m, qs_v = inference_outputs["qs_m"], inference_outputs["qs_v"]
        kl_s = 0.5 * (qs_m.pow(2) + qs_v - qs_v.log() - 1.0).sum(-1)  # KL(q(s|x,c) || N(0, I))
        log_p = inference_outputs["log_probs"]  # (A, B, K)
        prior = self.usage_prior
        pruned = self._pruned
        if pruned:  # every categorical term over the surviving categories only
            active = self.active_index
            log_p = log_p.index_select(-1, active)
            prior = prior.index_select(-1, active)
            prior = prior / prior.sum()
        p = log_p.exp()
        entropy = -(p * log_p).sum(-1)  # (A, B)
        mean_p = p.mean(1)  # (A, K)
        log_prior = prior.clamp_min(1e-6).log()
        usage = (mean_p * (mean_p.clamp_min(1e-12).log() - log_prior)).sum(-1)  # KL, (A,)
        if a > 1 and (self.warmup_coupling or self.phase != "warmup"):
            ia, ib = torch.triu_indices(a, a, 1, device=x.device)
            d2 = COUPLINGS[self.coupling](log_p[ia], log_p[ib]).sum(0)  # (B,)
        else:
            d2 = torch.zeros_like(entropy[0])
        per_cell = (
            w * (nll + kl_weight * kl_s + self.entropy_weight * entropy).sum(0)
            + self.coupling_weight * self.coupling_scale * d2
        )
        loss = per_cell.mean() + self.usage_weight * w * usage.sum()
        extra = {}
        if self.phase == "warmup":
            target = self.teacher_labels(x)
            if pruned:  # teacher labels index all K categories; map to the active ones
                lookup = torch.full_like(self.category_mask, -100, dtype=torch.long)
                lookup[active] = torch.arange(len(active), device=x.device)
                target = lookup[target]
            target = target.expand(a, -1) if target.dim() == 1 else target  # (A, B)
            ce = F.nll_loss(log_p.reshape(-1, log_p.shape[-1]), target.reshape(-1))
            loss = loss + self.warmup_weight * w * a * ce
            extra["teacher_ce"] = ce.detach()
        return LossOutput(
            loss=loss,
            reconstruction_loss=w * nll.sum(0),
            kl_local=w * kl_s.sum(0),
            extra_metrics={
                "coupling": d2.mean().detach(),
                "entropy": entropy.mean().detach(),
                "usage": usage.mean().detach(),
                **extra,
            },
        )

    # ------------------------------------------------------------------ pruning
    @torch.no_grad()
    def set_category_mask(self, mask: torch.Tensor) -> None:
        """Set which categories survive (``True``); pruned ones get ``q(c|x) = 0``."""
        mask = torch.as_tensor(mask, dtype=torch.bool, device=self.category_mask.device)
        if mask.shape != self.category_mask.shape or not bool(mask.any()):
            raise ValueError(
                f"The mask must have {self.n_categories} entries, at least one of them True."
            )
        self.category_mask.copy_(mask)
        self._refresh_active()

    def _refresh_active(self) -> None:
        self._pruned = not bool(self.category_mask.all())
        self.active_index = self.category_mask.nonzero().squeeze(-1)

    # ------------------------------------------------------------------ warm-up teacher
    @torch.no_grad()
    def set_teacher(
        self,
        mean: torch.Tensor,
        loadings: torch.Tensor,
        centroids: torch.Tensor,
        weights: torch.Tensor | None = None,
    ) -> None:
        """Store a clustering (PCA of log-normalised counts + k-means centroids) to warm up.

        During the ``"warmup"`` phase each arm's ``q(c|x)`` is pulled (cross-entropy) towards
        the teacher's nearest-centroid label of the unperturbed cell, so that all arms start
        from the same categories with the same indices. Labels are computed from ``x`` on the
        fly, so no per-cell bookkeeping is needed and mini-batches can come from any loader.
        """
        p = loadings.shape[1]
        self.teacher_mean.copy_(mean)
        self.teacher_loadings.zero_()
        self.teacher_loadings[:, :p] = loadings
        self.teacher_centroids.zero_()
        self.teacher_centroids[:, :p] = centroids
        if weights is not None and self.usage_target == "teacher":
            self.usage_prior.copy_(weights / weights.sum())

    @torch.no_grad()
    def set_teacher_points(self, points: torch.Tensor, labels: torch.Tensor) -> None:
        """Give the teacher per cell: reference cells (PC coordinates) and their labels.

        Then :meth:`teacher_labels` returns the label of each cell's nearest reference cell
        (a training cell finds itself), which keeps partitions that are not Voronoi cells of
        centroids, such as a graph clustering's. Call after :meth:`set_teacher`.
        """
        p = self.teacher_loadings.shape[1]
        padded = points.new_zeros(points.shape[0], p)
        padded[:, : points.shape[1]] = points
        self.teacher_points = padded.to(self.teacher_loadings.device)
        self.teacher_point_labels = labels.long().to(self.teacher_loadings.device)

    def teacher_labels(self, x: torch.Tensor) -> torch.Tensor:
        """The teacher's label of each cell, ``(B,)``: nearest reference cell or centroid."""
        z = (log_normalise(x, x.sum(-1, keepdim=True)) - self.teacher_mean) @ self.teacher_loadings
        if self.teacher_points.shape[0] > 0:
            return self.teacher_point_labels[torch.cdist(z, self.teacher_points).argmin(-1)]
        return torch.cdist(z, self.teacher_centroids).argmin(-1)

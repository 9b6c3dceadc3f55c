"""The coupled mixture VAE module: A arms, their losses and the coupling (supplement sec. B-D).

Shapes: ``A`` arms, ``B`` cells in a mini-batch, ``G`` genes, ``K`` categories, ``S`` state
dimensions, ``D`` bottleneck size.
"""

from __future__ import annotations

import math
import warnings
from typing import Literal

import torch
import torch.nn.functional as F
from scvi import REGISTRY_KEYS
from scvi.module.base import BaseModuleClass, LossOutput, auto_move_data
from torch import nn

from .._validation import check_choice, check_int, check_number
from ._arms import ArmLinear, ArmMLP
from ._augment import AUGMENTATIONS
from ._augmenter import AugmenterModule
from ._coupling import COUPLINGS
from ._dropout import InputDropout
from ._input import EncoderInputMixin
from ._likelihood import nb_nll_logits
from ._normalise import NORM_SCALE, log_normalise
from ._start import StartMixin, _rename_teacher_buffers

LIKELIHOODS = ("nb", "gaussian")
USAGE_TARGETS = ("uniform", "start")
DECODERS = ("mlp", "linear")
class CplMixVAEModule(EncoderInputMixin, StartMixin, BaseModuleClass):
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
        (``-log P(c_a = c_b)``) or ``"js"`` (Jensen-Shannon).
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
        ``q̄``, up to a constant) or ``"start"``: the proportions of the start's categories,
        which keeps categories alive without forcing equal sizes (uniform if no start).
        ``"teacher"`` is the former name of ``"start"`` (deprecated).
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
        Dropout on the state before decoding (sec. L.1). A large value stops the decoder
        from explaining type differences with the state but can collapse the state; the
        default keeps the state meaningful (``docs/model.md``).
    n_start_pcs
        Principal components of the start's PCA (see :meth:`set_start`).
    warmup_weight
        Weight of the cross-entropy towards the start during the warm-up. It must
        be large: the reconstruction term is thousands of nats per cell.
    decoder
        ``"mlp"`` (default, as in the paper) or ``"linear"``: per category a log-scale profile
        plus a linear effect of the state (monotone traversals by construction; less accurate
        types, ``docs/model.md``).
    start_weight
        Weight of the same cross-entropy during the mixture phase (and prune's fine-tuning):
        0 (default) leaves the mixture phase free of the start; a small weight keeps the
        start as a prior the model can still leave where the data disagree.
    warmup_coupling
        Whether the coupling term is on during the warm-up. ``False``: the warm-up pulls both
        arms towards the same start without the coupling (which works against a many-type
        start: ``benchmarks/results/fine_mech.md``).
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
        usage_target: Literal["uniform", "start"] = "start",
        temperature: float = 1.0,
        augmentation: Literal["simple", "learned", "none"] = "simple",
        thinning: float = 0.8,
        input_dropout: float = 0.1,
        state_dropout: float = 0.0,
        n_start_pcs: int = 30,
        warmup_weight: float = 100.0,
        start_weight: float = 0.0,
        decoder: Literal["mlp", "linear"] = "mlp",
        augmenter_kwargs: dict | None = None,
        warmup_coupling: bool = True,
    ):
        super().__init__()
        usage_target = _check_arguments(
            likelihood=likelihood, coupling=coupling, augmentation=augmentation,
            usage_target=usage_target, decoder=decoder, n_input=n_input, n_batch=n_batch,
            n_categories=n_categories, n_state=n_state, n_arms=n_arms, n_hidden=n_hidden,
            n_layers=n_layers, n_bottleneck=n_bottleneck, n_start_pcs=n_start_pcs,
            coupling_weight=coupling_weight, usage_weight=usage_weight,
            entropy_weight=entropy_weight, warmup_weight=warmup_weight,
            start_weight=start_weight, temperature=temperature,
            input_dropout=input_dropout, state_dropout=state_dropout,
        )
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
        #: the torch NB formula's lgamma terms on the non-zero counts only (CPU without numba);
        #: set by the model from its data's density (module._likelihood.MAX_SPARSE_DENSITY)
        self.sparse_likelihood = False
        #: the encoders' input on its non-zero entries on the CPU (module._input); set by the
        #: model from its data's density (module._input.MAX_SPARSE_INPUT_DENSITY)
        self.sparse_input = False
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
        self.augmenter = _frozen_augmenter(augmenter_kwargs, n_input)
        self._init_start(warmup_weight, start_weight)
        self._build_networks(n_input, n_batch, n_categories, n_state, n_arms, n_hidden,
                             n_layers, n_bottleneck, input_dropout, state_dropout, decoder)
        self._register_buffers(n_input, n_categories, n_start_pcs)
        self._pruned = False
        self.register_load_state_dict_post_hook(lambda module, _: module._refresh_active())
        self._register_load_state_dict_pre_hook(_rename_teacher_buffers)
        # NB inverse dispersion / Gaussian log-variance, per arm and gene
        self.gene_param = nn.Parameter(torch.zeros(n_arms, 1, n_input))

    def _build_networks(self, n_input, n_batch, n_categories, n_state, n_arms, n_hidden,
                        n_layers, n_bottleneck, input_dropout, state_dropout, decoder) -> None:
        """Every arm's encoder, categorical head, state encoder and decoder (sec. B, L.1)."""
        hidden = [n_hidden] * n_layers
        a = n_arms
        self.input_dropout = InputDropout(input_dropout)  # nn.Dropout; compiled on the CPU
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

    def _register_buffers(self, n_input: int, n_categories: int, n_start_pcs: int) -> None:
        """The start, the usage term's target and the pruning mask (not trained)."""
        # the start for the warm-up: PCA of log-normalised counts + category centres
        self.register_buffer("start_mean", torch.zeros(n_input))
        self.register_buffer("start_loadings", torch.zeros(n_input, n_start_pcs))
        self.register_buffer("start_centers", torch.zeros(n_categories, n_start_pcs))
        # a start given per cell (e.g. Leiden): reference cells in PC space and their labels,
        # looked up by nearest reference cell; only needed during the warm-up, so not saved
        self.register_buffer("start_points", torch.zeros(0, n_start_pcs), persistent=False)
        self.register_buffer(
            "start_point_labels", torch.zeros(0, dtype=torch.long), persistent=False
        )
        # every training cell's start label by index (train.StartLabelTable; not saved)
        self.register_buffer(
            "start_cell_labels", torch.zeros(0, dtype=torch.long), persistent=False
        )
        # π of the usage term: uniform, or the start's proportions (usage_target="start")
        self.register_buffer("usage_prior", torch.full((n_categories,), 1.0 / n_categories))
        # categories still in use: pruning (CplMixVAE.prune) switches entries off; a pruned
        # category keeps its index (labels are never renumbered) but q(c|x) = 0 for it
        self.register_buffer("category_mask", torch.ones(n_categories, dtype=torch.bool))
        # indices of the surviving categories, derived from the mask (not saved; refreshed by
        # set_category_mask and after load_state_dict) so the loss needs no host sync per step
        self.register_buffer("active_index", torch.arange(n_categories), persistent=False)

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

    @auto_move_data
    def inference(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Encode each arm's copy to the bottleneck, q(c|x) and q(s|x, c)."""
        h = self.encode(x)  # each arm's copy, normalised, through its encoder
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

    def state_posterior_one_arm(
        self, bottleneck: torch.Tensor, category_index: torch.Tensor, arm: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of arm ``arm``'s ``q(s|x, c)``, ``c`` one-hot at
        ``category_index`` ``(B,)``, from that arm's bottleneck ``(B, D)``; ``(B, S)`` each.

        Only that arm's state encoder runs, in eval mode (running batch-normalisation
        statistics); used to sample states given a sampled type
        (:meth:`~cplmix_sc.CplMixVAE.get_normalized_expression`).
        """
        onehot = F.one_hot(category_index.long(), self.n_categories).to(bottleneck.dtype)
        hs = self.state_encoder.forward_arm(torch.cat([bottleneck, onehot], dim=-1), arm)
        logvar = self.state_logvar.forward_arm(hs, arm)
        return self.state_mean.forward_arm(hs, arm), logvar.clamp(-12.0, 8.0).exp()

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

        ``state`` is ``(N, S)``, ``category_index`` and ``batch_index`` are ``(N,)``; only arm
        ``arm``'s decoder is run (arms' decoders differ), in eval mode (no state dropout,
        running batch-normalisation statistics). With the NB likelihood this is
        ``1e4 * softmax(decoder(s, c))``, the expected normalised counts of Eq. 46's p(x|s,c);
        with the Gaussian likelihood ``expm1`` of the decoded log-normalised mean.
        """
        out = self._decode_eval(state, category_index, batch_index, arm)
        if self.likelihood == "nb":
            return NORM_SCALE * F.softmax(out, dim=-1)
        return torch.expm1(out).clamp_min(0.0)

    @torch.no_grad()
    def expected_proportions(
        self,
        state: torch.Tensor,
        category_index: torch.Tensor,
        batch_index: torch.Tensor | None = None,
        arm: int = 0,
    ) -> torch.Tensor:
        """:meth:`expected_expression` divided by its sum over genes (rows sum to 1)."""
        out = self._decode_eval(state, category_index, batch_index, arm)
        if self.likelihood == "nb":
            return F.softmax(out, dim=-1)
        out = torch.expm1(out).clamp_min_(0.0)
        return out.div_(out.sum(-1, keepdim=True).clamp_min(1e-30))

    def _decode_eval(self, state, category_index, batch_index, arm) -> torch.Tensor:
        """Arm ``arm``'s decoder output for ``(N,)`` category and batch indices, eval mode."""
        category = F.one_hot(category_index.long(), self.n_categories).to(state.dtype)
        batch = None
        if self.n_batch > 0:
            if batch_index is None:
                batch_index = torch.zeros(state.shape[0], dtype=torch.long, device=state.device)
            batch = F.one_hot(batch_index.view(-1).long(), self.n_batch).to(state.dtype)
        was_training = self.training
        self.eval()
        try:
            return self._decode_arm(state, category, batch, arm)
        finally:
            self.train(was_training)

    def _decode_arm(
        self, state: torch.Tensor, category: torch.Tensor, batch: torch.Tensor | None, arm: int
    ) -> torch.Tensor:
        """Arm ``arm``'s decoder output for ``(N, S)`` states, ``(N, K)`` categories and
        ``(N, n_batch)`` one-hot batches (``None`` without batches), in eval mode: what
        :meth:`generative` gives for that arm, ``(N, G)``."""
        if self.decoder_kind == "linear":
            slopes = (category @ self.state_loadings[arm]).view(state.shape[0], self.n_state, -1)
            out = category @ self.type_profile[arm] + (state.unsqueeze(-1) * slopes).sum(1)
            return out if batch is None else out + batch @ self.batch_profile[arm]
        parts = [state, category] if batch is None else [state, category, batch]
        return self.decoder_out.forward_arm(
            self.decoder.forward_arm(torch.cat(parts, dim=-1), arm), arm
        )

    # ------------------------------------------------------------------ loss (Eq. 46)
    def reconstruction_nll(self, x: torch.Tensor, decoded: torch.Tensor) -> torch.Tensor:
        """``-log p(x | s_a, c_a)`` of the unperturbed cell for every arm, ``(A, B)``."""
        library = x.sum(-1, keepdim=True)
        if self.likelihood == "nb":  # the CPU's compiled kernel, else the torch formula
            sparse = self.sparse_likelihood and x.device.type == "cpu"
            return nb_nll_logits(x, decoded, self.gene_param, sparse=sparse)
        target = log_normalise(x, library)
        logvar = self.gene_param
        nll = 0.5 * ((target - decoded).pow(2) / logvar.exp() + logvar + math.log(2 * math.pi))
        return nll.sum(-1)

    def generative_terms(
        self,
        tensors: dict[str, torch.Tensor],
        inference_outputs: dict[str, torch.Tensor],
        generative_outputs: dict[str, torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        """The generative model's terms per arm and cell, ``(A, B)`` each.

        ``"reconstruction"``: ``-log p(x | s_a, c_a)`` of the unperturbed cell;
        ``"kl"``: ``KL(q(s|x, c) || N(0, I))``. The same terms as in :meth:`loss`, without the
        ``w`` factor, the coupling, usage, entropy and warm-up terms.
        """
        nll = self.reconstruction_nll(tensors[REGISTRY_KEYS.X_KEY], generative_outputs["decoded"])
        qs_m, qs_v = inference_outputs["qs_m"], inference_outputs["qs_v"]
        kl_s = 0.5 * (qs_m.pow(2) + qs_v - qs_v.log() - 1.0).sum(-1)
        return {"reconstruction": nll, "kl": kl_s}

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
        a positive ``entropy_weight`` makes each cell's posterior confident (``docs/model.md``,
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
        pull = (self.warmup_weight if self.phase == "warmup"
                else self.start_weight if self.has_start else 0.0)
        if pull > 0:
            # -1: a cell without a starting category
            target = self.start_labels(x, tensors.get(REGISTRY_KEYS.INDICES_KEY))
            if pruned:  # start labels index all K categories; map to the active ones
                lookup = torch.full_like(self.category_mask, -100, dtype=torch.long)
                lookup[active] = torch.arange(len(active), device=x.device)
                target = torch.where(target >= 0, lookup[target.clamp_min(0)], -100)
            target = target.where(target >= 0, -100).expand(a, -1)  # (A, B)
            ce = self._warmup_ce(log_p, target)
            loss = loss + pull * w * a * ce
            extra["warmup_ce"] = ce.detach()
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
        self.has_start = self.has_start or bool(self.start_loadings.any())
        self._pruned = not bool(self.category_mask.all())
        self.active_index = self.category_mask.nonzero().squeeze(-1)


def _frozen_augmenter(augmenter_kwargs: dict | None, n_input: int) -> AugmenterModule | None:
    """The learned augmenter built from its arguments, frozen and in eval mode (or ``None``)."""
    if augmenter_kwargs is None:
        return None
    if augmenter_kwargs.get("n_input") != n_input:
        raise ValueError(
            f"The augmenter was built for {augmenter_kwargs.get('n_input')} genes, the "
            f"model has {n_input}; train the augmenter on the model's genes."
        )
    augmenter = AugmenterModule(**augmenter_kwargs)
    augmenter.requires_grad_(False)
    return augmenter.eval()


def _check_arguments(**args) -> str:
    """Check :class:`CplMixVAEModule`'s arguments (clear errors before any network is built);
    returns ``usage_target`` with its former name ``"teacher"`` renamed."""
    for name, choices in (("likelihood", LIKELIHOODS), ("coupling", COUPLINGS),
                          ("augmentation", AUGMENTATIONS), ("decoder", DECODERS)):
        check_choice(name, args[name], choices)
    usage_target = args["usage_target"]
    if usage_target == "teacher":
        warnings.warn('usage_target="teacher" is now called "start".', FutureWarning,
                      stacklevel=4)
        usage_target = "start"
    check_choice("usage_target", usage_target, USAGE_TARGETS)
    for name, low in (("n_input", 1), ("n_batch", 0), ("n_categories", 2), ("n_state", 1),
                      ("n_arms", 1), ("n_hidden", 1), ("n_layers", 1), ("n_bottleneck", 1),
                      ("n_start_pcs", 1)):
        check_int(name, args[name], low)
    # weights of loss terms: NaN would only surface as a non-finite loss mid-training
    for name in ("coupling_weight", "usage_weight", "warmup_weight", "start_weight"):
        check_number(name, args[name], low=0.0, low_inclusive=True)
    # any sign: -1 rewards the entropy as Eq. 46 does
    check_number("entropy_weight", args["entropy_weight"], low=-math.inf)
    check_number("temperature", args["temperature"], low=0.0)
    for name in ("input_dropout", "state_dropout"):
        check_number(name, args[name], low=0.0, high=1.0, low_inclusive=True,
                     high_inclusive=False)
    return usage_target

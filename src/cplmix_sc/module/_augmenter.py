"""The type-preserving augmenter: a VAE-GAN generator G and a discriminator D (supplement sec. F).

G encodes a cell ``x`` to ``q(z|x)`` (``|z| = 10``), and, with Gaussian noise ``n``
concatenated, to ``q(z|x, n)``; one decoder maps both to negative binomial means: the
noise-free reconstruction ``x_¬n`` and the noisy copy ``x_n``. The objective is Eq. 70,

    min_G max_D  V(D, G) - R(G) + T_α(G) + γ d(G).

Unlike the reference code, nothing is binarised on the way to D or to the triplet term, so
both send gradient into G and its noise path:

- the triplet term (Eq. 73) compares log-normalised *expected* expression (a smooth function
  of the decoder output);
- D (Eq. 71) sees log-normalised *relaxed count samples*: a Gaussian draw with the NB's
  mean and variance (reparameterised), rounded with a straight-through gradient. D
  therefore sees integer-valued profiles with real zeros, as in the data, and G still
  receives the gradient of ``log D``.

Counts (for :meth:`AugmenterModule.sample_counts`, the user's ``augment()`` and CplMixVAE's
arms) are drawn from the NB itself. Shapes: ``B`` cells, ``G`` genes, ``Z`` latent size.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from scvi import REGISTRY_KEYS
from scvi.distributions import NegativeBinomial
from scvi.module.base import BaseModuleClass, LossOutput, auto_move_data
from torch import nn

from .._validation import check_choice
from ._normalise import NORM_SCALE, log_normalise

OUTPUTS = ("residual", "decoder")


def _mlp(n_in: int, hidden: list[int], norm: bool = True, dropout: float = 0.0) -> nn.Sequential:
    layers: list[nn.Module] = []
    for n_out in hidden:
        layers.append(nn.Linear(n_in, n_out))
        if norm:
            layers.append(nn.BatchNorm1d(n_out, momentum=0.01, eps=1e-3))
        layers.append(nn.LeakyReLU(0.2) if not norm else nn.ReLU())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        n_in = n_out
    return nn.Sequential(*layers)


def gaussian_kl(m1, v1, m2, v2) -> torch.Tensor:
    """``KL(N(m1, v1) || N(m2, v2))`` summed over the last axis (diagonal covariances)."""
    return 0.5 * (v1 / v2 + (m1 - m2).pow(2) / v2 - 1.0 + v2.log() - v1.log()).sum(-1)


def relaxed_counts(mu: torch.Tensor, theta: torch.Tensor | None) -> torch.Tensor:
    """A differentiable NB count draw: integer values forward, gradient w.r.t. ``mu`` backward.

    ``y = μ + sqrt(μ + μ²/θ) ε`` (the NB's mean and variance, Gaussian approximation; cheap
    and reparameterised), clamped at 0 and rounded with a straight-through estimator, so D
    sees integer profiles with zeros while G receives the gradient of ``round(y)`` as if it
    were ``y``. ``theta=None``: Poisson variance ``μ``.
    """
    var = mu if theta is None else mu + mu.pow(2) / theta
    sd = var.clamp_min(1e-8).sqrt()
    y = (mu + sd * torch.randn_like(mu)).clamp_min(0.0)
    return y + (y.round() - y).detach()


class AugmenterModule(BaseModuleClass):
    """Generator and discriminator of the type-preserving augmenter (Eqs. 70-74).

    Parameters
    ----------
    n_input
        Number of genes ``G``.
    n_latent
        Size of ``z`` (paper: 10 for scRNA-seq).
    n_noise
        Size of the noise ``n`` concatenated to the encoding.
    n_hidden, n_layers
        Width and depth of the encoder and decoder (the discriminator has one hidden layer
        of width ``n_hidden``).
    noise_scale
        Standard deviation of ``n``.
    margin
        α of the triplet hinge (Eq. 73), in units of the *mean over genes* of squared
        differences of log-normalised expression, so it does not grow with ``G``.
    triplet_weight, adversarial_weight
        Weights of ``T_α`` and of the generator's adversarial term; both are multiplied by
        ``G`` to be on the scale of the reconstruction log-likelihood (a sum over genes).
    gamma
        γ of Eq. 70: weight of ``d(G) = KL(q(z|x) || q(z|x, n))`` (Eq. 74). The paper asks
        for ``γ << 1`` relative to its other terms; here the reconstruction is a sum over
        genes (thousands of nats per cell), so ``γ = 1`` is still small against it. With
        ``γ = 0.01`` the noise path moved codes to other types on Zeisel.
    kl_weight
        Weight of ``KL(q(z|x) || N(0, I))``: ``R(G)`` is taken as a VAE evidence lower bound.
    dropout
        Dropout in the discriminator.
    output
        How ``x_n`` is made: ``"residual"`` (default): the cell's own profile times the
        decoder's change from ``z`` to ``z_n`` (keeps fine types; measured on Zeisel, see
        ``docs/augmenter.md``); ``"decoder"``: decoded from ``z_n`` alone, as in the paper.
    """

    def __init__(
        self,
        n_input: int,
        n_latent: int = 10,
        n_noise: int = 10,
        n_hidden: int = 128,
        n_layers: int = 2,
        noise_scale: float = 1.0,
        margin: float = 0.01,
        triplet_weight: float = 1.0,
        adversarial_weight: float = 0.01,
        gamma: float = 1.0,
        kl_weight: float = 1.0,
        dropout: float = 0.2,
        output: Literal["residual", "decoder"] = "residual",
    ):
        super().__init__()
        #: the constructor's arguments (CplMixVAE rebuilds a frozen copy from them)
        self.init_kwargs = {
            "n_input": n_input, "n_latent": n_latent, "n_noise": n_noise, "n_hidden": n_hidden,
            "n_layers": n_layers, "noise_scale": noise_scale, "margin": margin,
            "triplet_weight": triplet_weight, "adversarial_weight": adversarial_weight,
            "gamma": gamma, "kl_weight": kl_weight, "dropout": dropout, "output": output,
        }
        check_choice("output", output, OUTPUTS)
        self.output = output
        self.n_input = n_input
        self.n_latent = n_latent
        self.n_noise = n_noise
        self.noise_scale = noise_scale
        self.margin = margin
        self.triplet_weight = triplet_weight
        self.adversarial_weight = adversarial_weight
        self.gamma = gamma
        self.kl_weight = kl_weight
        self.last_fakes: tuple[torch.Tensor, torch.Tensor] | None = None
        hidden = [n_hidden] * n_layers
        # generator G
        self.encoder = _mlp(n_input, hidden)
        self.z_mean = nn.Linear(n_hidden, n_latent)
        self.z_logvar = nn.Linear(n_hidden, n_latent)
        # noise path: q(z|x, n) from (encoding, n)
        self.noise_encoder = _mlp(n_hidden + n_noise, [n_hidden])
        self.zn_mean = nn.Linear(n_hidden, n_latent)
        self.zn_logvar = nn.Linear(n_hidden, n_latent)
        self.decoder = nn.Sequential(_mlp(n_latent, hidden[::-1]), nn.Linear(n_hidden, n_input))
        self.log_theta = nn.Parameter(torch.zeros(n_input))
        # discriminator D (logit of "real")
        self.discriminator = nn.Sequential(
            _mlp(n_input, [n_hidden], norm=False, dropout=dropout), nn.Linear(n_hidden, 1)
        )

    # ------------------------------------------------------------------ parameter groups
    def generator_parameters(self) -> list[nn.Parameter]:
        """All parameters of G (everything but D)."""
        d = {id(p) for p in self.discriminator.parameters()}
        return [p for p in self.parameters() if id(p) not in d]

    def discriminator_parameters(self) -> list[nn.Parameter]:
        """The parameters of D."""
        return list(self.discriminator.parameters())

    # ------------------------------------------------------------------ scvi-tools hooks
    def _get_inference_input(self, tensors):
        return {"x": tensors[REGISTRY_KEYS.X_KEY]}

    def _get_generative_input(self, tensors, inference_outputs):
        return {"z": inference_outputs["z"], "z_noisy": inference_outputs["z_noisy"],
                "x": tensors[REGISTRY_KEYS.X_KEY]}

    @auto_move_data
    def inference(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> dict:
        """``q(z|x)`` and, with noise ``n`` (drawn if not given), ``q(z|x, n)``; samples of both."""
        h = self.encoder(log_normalise(x, x.sum(-1, keepdim=True)))
        qz_m, qz_v = self.z_mean(h), self.z_logvar(h).clamp(-12.0, 8.0).exp()
        if noise is None:
            noise = self.noise_scale * torch.randn(x.shape[0], self.n_noise, device=x.device)
        qzn_m, qzn_v = self._noisy_posterior(h, qz_m, noise)
        if self.training:
            z = qz_m + qz_v.sqrt() * torch.randn_like(qz_m)
            z_noisy = qzn_m + qzn_v.sqrt() * torch.randn_like(qzn_m)
        else:
            z, z_noisy = qz_m, qzn_m
        return {"qz_m": qz_m, "qz_v": qz_v, "qzn_m": qzn_m, "qzn_v": qzn_v,
                "z": z, "z_noisy": z_noisy, "noise": noise,
                "library": x.sum(-1, keepdim=True)}

    @auto_move_data
    def generative(self, z: torch.Tensor, z_noisy: torch.Tensor, x: torch.Tensor) -> dict:
        """NB proportions of ``x_¬n`` (decoded from z) and of the noisy copy ``x_n``.

        ``output="decoder"``: ``x_n`` is decoded from ``z_n`` alone (the paper's design).
        ``output="residual"``: ``x_n`` is the cell's own profile moved by the change the
        decoder predicts from ``z`` to ``z_n``, ``x_n ∝ x · exp(f(z_n) - f(z))``; the copy
        keeps what the 10-dimensional code cannot hold (fine types) and varies along the
        learned directions.
        """
        logits, logits_noisy = self.decoder(z), self.decoder(z_noisy)
        if self.output == "residual":
            logits_noisy = x.clamp_min(1e-8).log() + logits_noisy - logits
        return {"px_clean": F.softmax(logits, dim=-1), "px_noisy": F.softmax(logits_noisy, -1)}

    # ------------------------------------------------------------------ terms of Eq. 70
    def discriminate(self, x: torch.Tensor) -> torch.Tensor:
        """Logit of D for count profiles ``x`` (real or relaxed), ``(B,)``."""
        return self.discriminator(log_normalise(x, x.sum(-1, keepdim=True))).squeeze(-1)

    def fakes(self, inference_outputs: dict, generative_outputs: dict) -> tuple:
        """Relaxed count samples of ``x_¬n`` and ``x_n`` (what D judges), differentiable in G."""
        lib = inference_outputs["library"]
        theta = self.log_theta.exp()
        return (
            relaxed_counts(lib * generative_outputs["px_clean"], theta),
            relaxed_counts(lib * generative_outputs["px_noisy"], self._copy_theta()),
        )

    def _copy_theta(self) -> torch.Tensor | None:
        """Inverse dispersion of the copies' counts: Poisson (``None``) for residual copies.

        A residual copy starts from the cell's *observed* counts, which already carry the
        cell's variability; an NB draw on top (with the reconstruction's dispersion) measured
        too noisy on Zeisel (type-preservation ratio 0.60 with a logistic regression).
        """
        return None if self.output == "residual" else self.log_theta.exp()

    def triplet(self, x: torch.Tensor, generative_outputs: dict) -> torch.Tensor:
        """Eq. 73, ``max(||x - x_¬n||² - ||x - x_n||² + α, 0)`` per cell, ``(B,)``.

        On log-normalised expression (expected for the generated profiles); squared
        distances are averaged over genes.
        """
        target = log_normalise(x, x.sum(-1, keepdim=True))
        # residual copies start from the cell itself: x_¬n = x, the hinge is max(α - d_n, 0)
        clean = target if self.output == "residual" else torch.log1p(
            NORM_SCALE * generative_outputs["px_clean"]
        )
        noisy = torch.log1p(NORM_SCALE * generative_outputs["px_noisy"])
        d_clean = (target - clean).pow(2).mean(-1)
        d_noisy = (target - noisy).pow(2).mean(-1)
        return F.relu(d_clean - d_noisy + self.margin)

    def discriminator_loss(self, x: torch.Tensor, fake_clean, fake_noisy) -> torch.Tensor:
        """``-V(D, G)`` of Eq. 71 (D maximises V): real ``x`` vs both generated samples."""
        real = self.discriminate(x)
        f1, f2 = self.discriminate(fake_clean), self.discriminate(fake_noisy)
        bce = F.binary_cross_entropy_with_logits
        return (bce(real, torch.ones_like(real)) + bce(f1, torch.zeros_like(f1))
                + bce(f2, torch.zeros_like(f2)))

    def loss(
        self,
        tensors: dict[str, torch.Tensor],
        inference_outputs: dict[str, torch.Tensor],
        generative_outputs: dict[str, torch.Tensor],
        adversarial: bool = True,
    ) -> LossOutput:
        """The generator's part of Eq. 70, averaged over cells.

        ``-R(G)`` (NB negative log-likelihood of ``x`` under ``x_¬n`` plus ``kl_weight``
        ``KL(q(z|x) || N(0, I))``, Eq. 72) ``+ G (triplet_weight T_α + adversarial_weight
        V_G) + γ d(G)``, with ``V_G`` the non-saturating form of the generator's side of
        Eq. 71 (``-log D`` of both generated samples) and ``d(G)`` Eq. 74. With
        ``adversarial=False`` the GAN term is left out (D's own step is
        :meth:`discriminator_loss`; the relaxed samples D judged here are kept, detached,
        in ``last_fakes`` for it).
        """
        x = tensors[REGISTRY_KEYS.X_KEY]
        lib = inference_outputs["library"]
        theta = self.log_theta.exp()
        nll = -NegativeBinomial(mu=lib * generative_outputs["px_clean"], theta=theta).log_prob(
            x
        ).sum(-1)
        qz_m, qz_v = inference_outputs["qz_m"], inference_outputs["qz_v"]
        kl_prior = 0.5 * (qz_m.pow(2) + qz_v - qz_v.log() - 1.0).sum(-1)
        closeness = gaussian_kl(qz_m, qz_v, inference_outputs["qzn_m"], inference_outputs["qzn_v"])
        trip = self.triplet(x, generative_outputs)
        g = float(self.n_input)
        loss = nll + self.kl_weight * kl_prior + self.gamma * closeness
        loss = loss + g * self.triplet_weight * trip
        extra = {"triplet": trip.mean().detach(), "closeness": closeness.mean().detach()}
        if adversarial:
            fake_clean, fake_noisy = self.fakes(inference_outputs, generative_outputs)
            f1, f2 = self.discriminate(fake_clean), self.discriminate(fake_noisy)
            fool = (F.binary_cross_entropy_with_logits(f1, torch.ones_like(f1), reduction="none")
                    + F.binary_cross_entropy_with_logits(f2, torch.ones_like(f2),
                                                         reduction="none"))
            loss = loss + g * self.adversarial_weight * fool
            extra["generator_adv"] = fool.mean().detach()
            # what D judged, detached: the training plan's D step reuses it
            self.last_fakes = (fake_clean.detach(), fake_noisy.detach())
        return LossOutput(
            loss=loss.mean(),
            reconstruction_loss=nll,
            kl_local=kl_prior,
            extra_metrics=extra,
        )

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def sample_counts(self, x: torch.Tensor, n_copies: int = 1, noise: bool = True) -> torch.Tensor:
        """Noisy copies of ``x`` as NB counts, ``(n_copies, B, G)``; a fresh ``n`` per copy.

        Each copy decodes ``z_n`` drawn from ``q(z|x, n)`` and draws counts with the source
        cell's library size (Poisson for residual copies, NB for decoded ones).
        ``noise=False`` uses ``z ~ q(z|x)`` instead of ``z_n`` (the noise-free path; a
        diagnostic). Runs with the module's current mode (call
        ``eval()`` for frozen batch-norm statistics).
        """
        b = x.shape[0]
        xs = x.repeat(n_copies, 1)
        # the encoder once per cell (eval-mode batch norm acts per cell), then per copy
        h = self.encoder(log_normalise(x, x.sum(-1, keepdim=True))).repeat(n_copies, 1)
        qz_m, qz_v = self.z_mean(h), self.z_logvar(h).clamp(-12.0, 8.0).exp()
        z = qz_m + qz_v.sqrt() * torch.randn_like(qz_m)
        z_noisy = z
        if noise:
            n = self.noise_scale * torch.randn(h.shape[0], self.n_noise, device=x.device)
            m, v = self._noisy_posterior(h, qz_m, n)
            z_noisy = m + v.sqrt() * torch.randn_like(m)
        px = self.generative(z, z_noisy, xs)["px_noisy"]
        mu = xs.sum(-1, keepdim=True) * px
        theta = self._copy_theta()
        counts = (torch.poisson(mu) if theta is None
                  else NegativeBinomial(mu=mu, theta=theta).sample())
        return counts.view(n_copies, b, -1)

    def _noisy_posterior(self, h, qz_m, noise) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of ``q(z|x, n)``: the noise-free mean plus a shift from ``(h, n)``.

        The residual form starts the noisy code at the cell's own code; the triplet term
        (Eq. 73) then pushes it away and γ d(G) (Eq. 74) holds it near.
        """
        hn = self.noise_encoder(torch.cat([h, noise], dim=-1))
        return qz_m + self.zn_mean(hn), self.zn_logvar(hn).clamp(-12.0, 8.0).exp()

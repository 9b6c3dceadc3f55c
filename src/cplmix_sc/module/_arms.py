"""Networks for A independent arms computed together.

Every arm of CplMixVAE is an independent autoencoder (supplement sec. A). Instead of a
Python loop over A small networks, each layer holds an ``(A, n_in, n_out)`` weight and
is applied to an ``(A, batch, n_in)`` input with one batched matmul.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ._input import sparse_arm_linear


class ArmLinear(nn.Module):
    """``A`` independent linear maps applied with one :func:`torch.baddbmm`.

    Parameters
    ----------
    n_arms
        Number of arms ``A``.
    n_in, n_out
        Input and output sizes of each arm's map.
    """

    def __init__(self, n_arms: int, n_in: int, n_out: int):
        super().__init__()
        bound = 1.0 / math.sqrt(max(n_in, 1))
        self.weight = nn.Parameter(torch.empty(n_arms, n_in, n_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n_arms, 1, n_out).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(A, B, n_in)`` to ``(A, B, n_out)``."""
        return torch.baddbmm(self.bias, x, self.weight)

    def forward_arm(self, x: torch.Tensor, arm: int) -> torch.Tensor:
        """Map ``(B, n_in)`` to ``(B, n_out)`` with arm ``arm``'s map only."""
        return torch.addmm(self.bias[arm], x, self.weight[arm])

    def forward_sparse(self, offsets, cols, values) -> torch.Tensor:
        """Map a sparse ``(A, B, n_in)`` input to ``(A, B, n_out)``: arm ``a``'s entries
        ``values[a]`` at columns ``cols``, rows by ``offsets``
        (:func:`~cplmix_sc.module._input.nonzero_entries`; CPU only)."""
        return sparse_arm_linear(offsets, cols, values, self.weight, self.bias)


class ArmBatchNorm(nn.Module):
    """Batch normalisation with separate statistics and affine parameters per arm."""

    def __init__(self, n_arms: int, n_features: int):
        super().__init__()
        self.bn = nn.BatchNorm1d(n_arms * n_features, momentum=0.01, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b, f = x.shape
        y = self.bn(x.transpose(0, 1).reshape(b, a * f))
        return y.reshape(b, a, f).transpose(0, 1)

    def forward_arm(self, x: torch.Tensor, arm: int) -> torch.Tensor:
        """Normalise ``(B, F)`` with arm ``arm``'s running statistics (eval mode only)."""
        if self.training:
            raise RuntimeError("forward_arm uses the running statistics: call eval() first.")
        f = x.shape[-1]
        part = slice(arm * f, (arm + 1) * f)
        bn = self.bn
        return torch.nn.functional.batch_norm(
            x, bn.running_mean[part], bn.running_var[part], bn.weight[part], bn.bias[part],
            training=False, eps=bn.eps,
        )


class ArmMLP(nn.Module):
    """Per-arm multilayer perceptron: Linear -> BatchNorm -> ReLU -> Dropout blocks.

    Parameters
    ----------
    n_arms
        Number of arms.
    n_in
        Input size.
    n_hidden
        Hidden layer sizes (one block per entry).
    dropout
        Dropout rate after each block.
    """

    def __init__(self, n_arms: int, n_in: int, n_hidden: list[int], dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = []
        sizes = [n_in, *n_hidden]
        for i in range(len(n_hidden)):
            layers += [
                ArmLinear(n_arms, sizes[i], sizes[i + 1]),
                ArmBatchNorm(n_arms, sizes[i + 1]),
                nn.ReLU(),
            ]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        self.layers = nn.Sequential(*layers)
        self.n_out = sizes[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    def forward_sparse(self, offsets, cols, values) -> torch.Tensor:
        """:meth:`forward` of a sparse input (:meth:`ArmLinear.forward_sparse`)."""
        h = self.layers[0].forward_sparse(offsets, cols, values)
        return self.layers[1:](h)

    def forward_arm(self, x: torch.Tensor, arm: int) -> torch.Tensor:
        """Arm ``arm``'s network alone on ``(B, n_in)`` (eval mode: running statistics)."""
        for layer in self.layers:
            x = layer.forward_arm(x, arm) if hasattr(layer, "forward_arm") else layer(x)
        return x

"""The encoders' input: each arm's copy of the cells, log-normalised, with input dropout.

Every arm encodes its own copy of a cell (supplement sec. A): binomially thinned counts with
``augmentation="simple"``, a learned augmenter's counts with ``"learned"``, the cell itself
with ``"none"`` and in evaluation. The copy is log-normalised (:func:`log_normalise`) and goes
through input dropout into the encoder's first layer.

Sparse input on the CPU
-----------------------
Single-cell counts are mostly zero, and a zero stays zero through thinning, normalisation and
dropout, and adds nothing to the first layer's product. For data with at most
:data:`MAX_SPARSE_INPUT_DENSITY` non-zero entries (``sparse_input``, set by the model from
its data), the CPU path therefore works on the mini-batch's non-zero entries only: they are
thinned, normalised and dropped out as a ``(A, nnz)`` array, and the first layer multiplies
them into its weights with a compiled kernel (:class:`_SparseFirstLayer`; its backward pass
gives the weights' gradient from the same entries). The thinning and dropout kernels draw a
random number only for non-zero entries, in the order of the dense ``(A, B, G)`` array, so the
sparse path draws the same numbers and gives the dense path's encoder input and output, up to
float rounding (``tests/module/test_input.py``). The learned augmenter, a GPU and float64 use
the dense path.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from ._augment import thin_counts
from ._compiled import njit_cached, split_work
from ._normalise import log_normalise

#: the sparse input path is used for data with at most this share of non-zero entries
#: (below it the first layer on the non-zero entries is cheaper than the dense product:
#: ``benchmarks/results/speed.md``)
MAX_SPARSE_INPUT_DENSITY = 0.15


class EncoderInputMixin:
    """:class:`~cplmix_sc.module.CplMixVAEModule`'s input side: :meth:`make_copies` and
    :meth:`encode` (the ``encoder``, ``input_dropout``, ``augmentation``, ``thinning`` and
    ``sparse_input`` attributes are the module's)."""

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

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Every arm's encoder output for its copy of the cells ``x`` ``(B, G)``: ``(A, B, H)``."""
        if self._sparse_path(x):
            return self._encode_sparse(x)
        copies = self.make_copies(x)
        if copies.stride(0) == 0:  # every arm sees the same cells: normalise them once
            normalised = log_normalise(x, x.sum(-1, keepdim=True)).expand_as(copies)
        else:
            normalised = log_normalise(copies, copies.sum(-1, keepdim=True))
        return self.encoder(self.input_dropout(normalised))

    def _sparse_path(self, x: torch.Tensor) -> bool:
        return (self.sparse_input and sparse_kernels_apply(x)
                and not (self.training and self.augmentation == "learned"))

    def _encode_sparse(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`encode` on the non-zero entries of ``x`` (see the module docstring)."""
        offsets, rows, cols, values = nonzero_entries(x)
        a = self.n_arms
        if self.training and self.augmentation == "simple":
            counts = thin_counts(values, a, self.thinning)  # (A, nnz)
            library = counts.new_zeros(a, x.shape[0]).index_add_(1, rows, counts)
            normalised = log_normalise(counts, library[:, rows])
        else:  # every arm sees the same cells
            normalised = normalise_entries(values, rows, x.shape[0]).expand(a, -1)
        normalised = self.input_dropout(normalised)
        return self.encoder.forward_sparse(offsets, cols, normalised)


def sparse_kernels_apply(x: torch.Tensor) -> bool:
    """Whether the compiled kernels of this module can take ``x``: a float32 ``(B, G)``
    matrix on the CPU without gradient, with numba available."""
    return (x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 2
            and not x.requires_grad and _kernels() is not None)


def normalise_entries(values: torch.Tensor, rows: torch.Tensor, n_rows: int) -> torch.Tensor:
    """:func:`log_normalise` of non-zero entries (:func:`nonzero_entries`), each by its row's
    total."""
    library = values.new_zeros(n_rows).index_add_(0, rows, values)
    return log_normalise(values, library[rows])


def nonzero_entries(x: torch.Tensor):
    """The non-zero entries of ``x`` ``(B, G)`` in row-major order: ``offsets`` ``(B + 1,)``
    (row ``b``'s entries are ``offsets[b]:offsets[b + 1]``), their ``rows`` and ``cols`` and
    their ``values`` (a CSR layout, with the row of each entry)."""
    dense = x.contiguous().numpy()
    offsets = torch.zeros(x.shape[0] + 1, dtype=torch.int64)
    _kernels()[0](dense, offsets.numpy())
    n = int(offsets[-1])
    rows = torch.empty(n, dtype=torch.int64)
    cols = torch.empty(n, dtype=torch.int64)
    values = torch.empty(n, dtype=x.dtype)
    _kernels()[1](dense, offsets.numpy(), rows.numpy(), cols.numpy(), values.numpy())
    return offsets, rows, cols, values


def sparse_arm_linear(offsets, cols, values, weight, bias) -> torch.Tensor:
    """``(A, B, n_out)``: each arm's ``x_a @ weight[a] + bias[a]`` for the sparse ``x_a`` with
    entries ``values[a]`` at ``cols`` (rows by ``offsets``: :func:`nonzero_entries`)."""
    return _SparseFirstLayer.apply(offsets, cols, values, weight, bias)


class _SparseFirstLayer(torch.autograd.Function):
    """:func:`sparse_arm_linear` by the compiled kernels; no gradient for the input."""

    @staticmethod
    def forward(ctx, offsets, cols, values, weight, bias):
        a, b, h = weight.shape[0], offsets.shape[0] - 1, weight.shape[2]
        values = values.detach().contiguous()
        out = bias.detach().expand(a, b, h).contiguous()
        args = (offsets.numpy(), cols.numpy(), values.numpy(),
                weight.detach().contiguous().numpy(), out.numpy())
        kernel = _kernels()[2]
        split_work(b, lambda lo, hi: kernel(*args, lo, hi))  # cells across threads
        ctx.save_for_backward(offsets, cols, values)
        ctx.weight_shape = weight.shape
        return out

    @staticmethod
    def backward(ctx, grad_out):
        offsets, cols, values = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        grad_weight = grad_out.new_zeros(ctx.weight_shape)
        args = (offsets.numpy(), cols.numpy(), values.numpy(), grad_out.numpy(),
                grad_weight.numpy())
        kernel = _kernels()[3]
        split_work(grad_weight.shape[0], lambda lo, hi: kernel(*args, lo, hi), min_size=1)
        return None, None, None, grad_weight, grad_out.sum(1, keepdim=True)


@lru_cache(maxsize=1)
def _kernels():
    """The compiled kernels (non-zero counts per row, non-zero entries, forward, weight
    gradient), or None without numba."""
    kernels = [njit_cached(fn, fastmath=True)
               for fn in (_count_kernel, _nonzero_kernel, _forward_kernel, _backward_kernel)]
    return None if any(k is None for k in kernels) else tuple(kernels)


def _count_kernel(x, offsets):  # pragma: no cover - compiled by numba
    """``offsets[b + 1]``: the non-zero entries of rows ``0..b``."""
    total = 0
    for b in range(x.shape[0]):
        for g in range(x.shape[1]):
            total += x[b, g] != 0.0
        offsets[b + 1] = total


def _nonzero_kernel(x, offsets, rows, cols, values):  # pragma: no cover - compiled by numba
    for b in range(x.shape[0]):
        j = offsets[b]
        for g in range(x.shape[1]):
            v = x[b, g]
            if v != 0.0:
                rows[j] = b
                cols[j] = g
                values[j] = v
                j += 1


def _forward_kernel(offsets, cols, values, weight, out, lo, hi):  # pragma: no cover - numba
    """``out[a, b] += sum_j values[a, j] * weight[a, cols[j]]`` over row ``b``'s entries,
    for rows ``lo <= b < hi``."""
    for a in range(weight.shape[0]):
        for b in range(lo, hi):
            row = out[a, b]
            for j in range(offsets[b], offsets[b + 1]):
                v = values[a, j]
                w = weight[a, cols[j]]
                for h in range(row.shape[0]):
                    row[h] += v * w[h]


def _backward_kernel(offsets, cols, values, grad_out, grad_weight, lo, hi):  # pragma: no cover
    """``grad_weight[a, cols[j]] += values[a, j] * grad_out[a, b]`` over every entry, for
    arms ``lo <= a < hi``."""
    for a in range(lo, hi):
        for b in range(offsets.shape[0] - 1):
            g = grad_out[a, b]
            for j in range(offsets[b], offsets[b + 1]):
                v = values[a, j]
                row = grad_weight[a, cols[j]]
                for h in range(g.shape[0]):
                    row[h] += v * g[h]

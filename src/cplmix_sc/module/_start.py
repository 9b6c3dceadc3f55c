"""The start inside the module: its buffers' contents, each cell's start label, and the
warm-up's cross-entropy towards it (the start is fit by :mod:`cplmix_sc.start`)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._input import nonzero_entries, normalise_entries, sparse_arm_linear, sparse_kernels_apply
from ._normalise import log_normalise


class StartMixin:
    """:class:`~cplmix_sc.module.CplMixVAEModule`'s start: ``set_start``, ``start_labels``
    and the warm-up's cross-entropy (the ``start_*`` buffers are registered by the module)."""

    def _init_start(self, warmup_weight: float, start_weight: float) -> None:
        """The start's attributes, before any start is set (buffers: the module's)."""
        #: "mixture" (the model) or "warmup" (the model plus a pull of q(c|x) towards the
        #: start stored in the ``start_*`` buffers; see :meth:`set_start`)
        self.phase = "mixture"
        self.warmup_weight = warmup_weight
        #: the same pull during the mixture phase (0: none)
        self.start_weight = start_weight
        #: whether a start is set (:meth:`set_start`; after loading, from its buffers)
        self.has_start = False
        #: some reference cells have no starting category (label -1; from init_labels)
        self.start_partial = False

    @torch.no_grad()
    def set_start(
        self,
        mean: torch.Tensor,
        loadings: torch.Tensor,
        centers: torch.Tensor,
        weights: torch.Tensor | None = None,
        points: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> None:
        """Store the start (a PCA of log-normalised counts and its categories) to warm up.

        During the ``"warmup"`` phase each arm's ``q(c|x)`` is pulled (cross-entropy) towards
        the start's label of the unperturbed cell (:meth:`start_labels`), so that all arms
        start from the same categories with the same indices. Labels are computed from ``x``
        on the fly, so no per-cell bookkeeping is needed and mini-batches can come from any
        loader. ``weights`` (cells per category) set the usage term's target when
        ``usage_target="start"``. With ``points`` (reference cells' PC coordinates) and their
        ``labels``, a cell gets its nearest reference cell's label (a training cell finds
        itself), which keeps partitions that are not Voronoi cells of the centres, such as a
        graph clustering's; without them, its nearest centre's.
        """
        p = loadings.shape[1]
        self.has_start = True
        self.start_mean.copy_(mean)
        self.start_loadings.zero_()
        self.start_loadings[:, :p] = loadings
        self.start_centers.zero_()
        self.start_centers[:, :p] = centers
        if weights is not None and self.usage_target == "start":
            self.usage_prior.copy_(weights / weights.sum())
        device = self.start_loadings.device
        #: some reference cells have no starting category (label -1; from init_labels)
        self.start_partial = labels is not None and bool((labels < 0).any())
        if points is None:
            self.start_points = self.start_points.new_zeros(0, self.start_points.shape[1])
            self.start_point_labels = self.start_point_labels.new_zeros(0)
            return
        padded = points.new_zeros(points.shape[0], self.start_loadings.shape[1])
        padded[:, : points.shape[1]] = points
        self.start_points = padded.to(device)
        self.start_point_labels = labels.long().to(device)

    def _warmup_ce(self, log_p: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of the arms' ``q(c|x)`` towards the start's labels, over the
        cells that have one (``-100``: none); 0 for a mini-batch where none has."""
        log_p, target = log_p.reshape(-1, log_p.shape[-1]), target.reshape(-1)
        if not self.start_partial:  # every cell labelled: the plain mean
            return F.nll_loss(log_p, target)
        total = F.nll_loss(log_p, target, reduction="sum")
        return total / (target >= 0).sum().clamp_min(1)

    @torch.no_grad()
    def set_cell_start_labels(self, labels: torch.Tensor | None) -> None:
        """Keep every training cell's start label, ``(n_cells,)`` (``None``: drop them).

        :meth:`start_labels` then looks a mini-batch's labels up by the cells' indices
        instead of searching the reference cells every step. The labels must be
        :meth:`start_labels` of the same cells (the table only saves the search); they are
        not saved with the model and belong to one ``train()`` call's data.
        """
        device = self.start_point_labels.device
        if labels is None:
            self.start_cell_labels = self.start_point_labels.new_zeros(0)
        else:
            self.start_cell_labels = torch.as_tensor(labels, dtype=torch.long).to(device)

    def start_labels(self, x: torch.Tensor, indices: torch.Tensor | None = None) -> torch.Tensor:
        """The start's label of each cell, ``(B,)``: nearest reference cell or centre.

        With ``indices`` (the cells' rows in the training data) and a table of every cell's
        label (:meth:`set_cell_start_labels`), the labels are looked up in the table.
        """
        if indices is not None and self.start_cell_labels.numel() > 0:
            return self.start_cell_labels[indices.view(-1).long()]
        z = (log_normalise(x, x.sum(-1, keepdim=True)) - self.start_mean) @ self.start_loadings
        if self.start_points.shape[0] > 0:
            return self.start_point_labels[_nearest(z, self.start_points)]
        return _nearest(z, self.start_centers)


    def _start_coordinates(self, x: torch.Tensor) -> torch.Tensor:
        """The start's PC coordinates of cells ``x``; from the non-zero counts alone on the
        CPU path of sparse data (``sparse_input``: the encoders' sparse kernel)."""
        mean, loadings = self.start_mean, self.start_loadings
        if not (self.sparse_input and sparse_kernels_apply(x)):
            return (log_normalise(x, x.sum(-1, keepdim=True)) - mean) @ loadings
        offsets, rows, cols, values = nonzero_entries(x)
        normalised = normalise_entries(values, rows, x.shape[0])
        shift = -(mean @ loadings).view(1, 1, -1)
        return sparse_arm_linear(offsets, cols, normalised[None], loadings[None], shift)[0]

    @torch.no_grad()
    def start_labels_grouped(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`start_labels` of many cells, each searched among fewer reference cells.

        Cells are grouped by their nearest category centre; a group looks for its cells'
        nearest reference cells among the reference cells of every category that is one of
        the :data:`GROUP_CANDIDATES` nearest centres of one of its cells, not among all of
        them. It gives the full search's label to all but a few cells near the border of two
        categories (99.7% of the cells of a 200,000-cell start of 50 categories,
        ``benchmarks/results/speed.md``), at a fraction of its cost. A start without
        reference cells, or with reference cells without a category (``start_partial``),
        gets the full search.
        """
        if self.start_points.shape[0] == 0 or self.start_partial:
            return self.start_labels(x)
        z = self._start_coordinates(x)
        labels, points = self.start_point_labels, self.start_points
        n_cand = min(GROUP_CANDIDATES, self.start_centers.shape[0])
        near = torch.cdist(z, self.start_centers).topk(n_cand, largest=False).indices
        out = torch.empty(z.shape[0], dtype=torch.long, device=z.device)
        for k in torch.unique(near[:, 0]).tolist():
            group = (near[:, 0] == k).nonzero().view(-1)
            ref = torch.isin(labels, torch.unique(near[group])).nonzero().view(-1)
            for cells in group.split(_GROUP_ROWS):
                out[cells] = labels[ref[_nearest(z[cells], points[ref])]]
        return out


#: :meth:`StartMixin.start_labels_grouped`: nearest category centres whose reference cells a
#: cell's group searches
GROUP_CANDIDATES = 2
#: cells of a group searched at a time (their distances to 20,000 points take 80 MB)
_GROUP_ROWS = 1024

#: points per block of the nearest-point search: the least value of each block first, then
#: the index within the best block (on the CPU a plain argmin over 20,000 points per cell
#: costs several times this two-stage search, which gives the same index)
_BLOCK = 128


def _nearest(z: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Index of each row's nearest point, ``(B,)``, as ``torch.cdist(z, points).argmin(-1)``.

    Every warm-up step looks up up to :data:`~cplmix_sc.start.MAX_START_CELLS` reference
    cells. The squared distance less the row's own ``|z|²`` (the same order),
    ``|p|² - 2 z·p``, is one matrix product, without cdist's clamp and square root over the
    ``(B, N)`` matrix; its argmin is taken per block of :data:`_BLOCK` points (the first
    block holding a row's least value, then the first index in it: argmin's tie rule).
    Equal to cdist's index up to float32 ties.
    """
    pad = -points.shape[0] % _BLOCK
    bias = points.pow(2).sum(-1)
    if pad:  # padding points at infinite distance
        points = torch.cat([points, points.new_zeros(pad, points.shape[1])])
        bias = torch.cat([bias, bias.new_full((pad,), math.inf)])
    d = torch.addmm(bias, z, points.T, alpha=-2.0).view(z.shape[0], -1, _BLOCK)
    block = d.amin(-1).argmin(-1)
    within = d[torch.arange(z.shape[0], device=z.device), block].argmin(-1)
    return block * _BLOCK + within


#: buffer names before the start had one name (models saved and checkpoints written then)
_OLD_BUFFERS = {"teacher_mean": "start_mean", "teacher_loadings": "start_loadings",
                "teacher_centroids": "start_centers"}


def _rename_teacher_buffers(state_dict, prefix, *args) -> None:
    """Load a state dict saved before the ``teacher_*`` buffers were renamed ``start_*``."""
    for old, new in _OLD_BUFFERS.items():
        if prefix + old in state_dict:
            state_dict[prefix + new] = state_dict.pop(prefix + old)

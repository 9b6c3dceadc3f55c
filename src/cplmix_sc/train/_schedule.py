"""Every default number of epochs, from one rule: a fixed number of optimiser steps.

Defaults are set in optimiser steps, so that a phase does about the same work whatever the
number of cells, and converted to epochs for the data at hand (figures: ``docs/model.md``).
"""

from __future__ import annotations

import numpy as np

#: the mini-batch of ``train(batch_size=None)`` ...
BATCH_SIZE = 256
#: ... doubled, up to ``LARGE_BATCH_SIZE``, while an epoch would take more than this many
#: steps (more than 65,536 training cells): at that size every phase is bounded by epochs, not
#: steps (``MIXTURE_EPOCHS``), and a larger mini-batch spreads the per-step cost over more
#: cells (``benchmarks/results/speed.md``)
MAX_EPOCH_STEPS = 256
LARGE_BATCH_SIZE = 1024
#: the coupled mixture phase of :meth:`~cplmix_sc.CplMixVAE.train` (40 epochs of Zeisel)
MIXTURE_STEPS = 480
#: ... bounded to this range of epochs
MIXTURE_EPOCHS = (20, 400)
#: the warm-up towards the start (10 epochs of Zeisel's graph start) ...
WARMUP_STEPS = 120
#: ... or this many steps per category of the start if more: a start of many categories
#: needs a longer warm-up to be imprinted (``benchmarks/results/fine_mech.md``); at most as
#: long as the mixture phase
WARMUP_STEPS_PER_CATEGORY = 5
#: with the many-types defaults (``n_categories >= 24``, :mod:`cplmix_sc.model._defaults`):
#: this many steps per category, at most ``MANY_TYPES_WARMUP_CAP`` times the mixture phase
#: (5 per category left a Smart-seq-like TUNE draw of 94 types at ARI 0.30 after the
#: warm-up against 0.45 for its start; 10 imprint it: ``benchmarks/results/fine_types.md``)
MANY_TYPES_WARMUP_STEPS_PER_CATEGORY = 10
MANY_TYPES_WARMUP_CAP = 3
#: :meth:`~cplmix_sc.CplMixVAE.prune`'s fine-tuning: this share of the mixture phase ...
FINE_TUNE_SHARE = 10
#: ... and at least this many epochs
FINE_TUNE_MIN_EPOCHS = 5
#: the augmenter's training (:meth:`~cplmix_sc.Augmenter.train`, 33 epochs of Zeisel)
AUGMENTER_STEPS = 400
#: ... bounded to this range of epochs
AUGMENTER_EPOCHS = (10, 200)


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Optimiser steps in one epoch over ``n_train`` cells."""
    return max(1, int(np.ceil(n_train / batch_size)))


def default_batch_size(n_train: int) -> int:
    """Mini-batch size for ``n_train`` training cells: :data:`BATCH_SIZE`, doubled up to
    :data:`LARGE_BATCH_SIZE` while an epoch would take more than :data:`MAX_EPOCH_STEPS`
    steps (256 up to 65,536 cells, 512 up to 131,072, then 1,024)."""
    size = BATCH_SIZE
    while size < LARGE_BATCH_SIZE and steps_per_epoch(n_train, size) > MAX_EPOCH_STEPS:
        size *= 2
    return size


def _epochs(steps: int, n_train: int, batch_size: int, bounds: tuple[int, int]) -> int:
    return int(np.clip(steps // steps_per_epoch(n_train, batch_size), *bounds))


def mixture_epochs(n_train: int, batch_size: int) -> int:
    """Default epochs of the coupled mixture phase (:data:`MIXTURE_STEPS`)."""
    return _epochs(MIXTURE_STEPS, n_train, batch_size, MIXTURE_EPOCHS)


def warmup_epochs(n_train: int, batch_size: int, max_epochs: int, n_categories: int = 0,
                  many_types: bool = False) -> int:
    """Default epochs of the warm-up: ``max(WARMUP_STEPS, WARMUP_STEPS_PER_CATEGORY * K)``
    steps (``K``: the start's non-empty categories) rounded up to whole epochs, at least 1
    and at most ``max_epochs``; with ``many_types``, ``MANY_TYPES_WARMUP_STEPS_PER_CATEGORY``
    steps per category and at most ``MANY_TYPES_WARMUP_CAP * max_epochs``."""
    per_category = MANY_TYPES_WARMUP_STEPS_PER_CATEGORY if many_types else WARMUP_STEPS_PER_CATEGORY
    cap = max_epochs * (MANY_TYPES_WARMUP_CAP if many_types else 1)
    steps = max(WARMUP_STEPS, per_category * n_categories)
    return max(1, min(-(-steps // steps_per_epoch(n_train, batch_size)), cap))


def fine_tune_epochs(n_train: int, batch_size: int) -> int:
    """Default epochs of each fine-tuning of :meth:`~cplmix_sc.CplMixVAE.prune`:
    ``max(5, E // 10)``, ``E`` the default mixture phase for the same cells."""
    return max(FINE_TUNE_MIN_EPOCHS, mixture_epochs(n_train, batch_size) // FINE_TUNE_SHARE)


def augmenter_epochs(n_train: int, batch_size: int) -> int:
    """Default epochs of the augmenter's training (:data:`AUGMENTER_STEPS`)."""
    return _epochs(AUGMENTER_STEPS, n_train, batch_size, AUGMENTER_EPOCHS)

"""glibc's thresholds during a training phase (cplmix_sc.train._allocator)."""

import resource
import sys

import numpy as np
import pytest

from cplmix_sc.train._allocator import _glibc, steady_heap

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or _glibc() is None,
                                reason="glibc only")

SIZE = 16 * 2**20  # a step's (arms, cells, genes) float32 buffer for 1,024 cells x 2,000 genes


def _faults_per_step(n_steps=10, n_buffers=3):
    """Page faults per 'step' that allocates, touches and frees a few large buffers."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(n_steps):
        buffers = [np.empty(SIZE // 4, dtype=np.float32) for _ in range(n_buffers)]
        for b in buffers:
            b.fill(1.0)  # touch every page
        del buffers
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / n_steps


def test_steady_heap_reuses_a_steps_buffers_instead_of_page_faulting():
    pages = 3 * SIZE // 4096
    with steady_heap():
        _faults_per_step(2)  # the heap grows once
        # the freed buffers stay on the heap (glibc's defaults give back part of them:
        # about 200 faults per step on this machine)
        assert _faults_per_step() < 0.01 * pages
    assert _faults_per_step() < pages  # afterwards: glibc's steady state, no fresh mmaps

"""CplMixTrainingPlan's optimiser, and the start's thread limit."""

from __future__ import annotations

import numpy as np
import torch

from cplmix_sc.module import CplMixVAEModule
from cplmix_sc.train import CplMixTrainingPlan


def test_adam_is_fused_and_keeps_scvi_tools_settings():
    plan = CplMixTrainingPlan(CplMixVAEModule(20, n_categories=3), lr=2e-3, weight_decay=1e-5)
    optimizer = plan.configure_optimizers()["optimizer"]
    assert isinstance(optimizer, torch.optim.Adam)
    assert optimizer.defaults["fused"] is True
    assert optimizer.defaults["lr"] == 2e-3 and optimizer.defaults["weight_decay"] == 1e-5
    assert optimizer.defaults["eps"] == plan.eps


def test_fit_start_runs_on_one_blas_and_openmp_thread(monkeypatch):
    from threadpoolctl import threadpool_info

    import cplmix_sc.start._fit as fit

    seen = []
    divisive = fit.divisive_start

    def spy(*args, **kwargs):
        seen.extend(lib["num_threads"] for lib in threadpool_info())
        return divisive(*args, **kwargs)

    monkeypatch.setattr(fit, "divisive_start", spy)
    rng = np.random.default_rng(0)
    x = rng.poisson(2.0, (120, 30)).astype(np.float32)
    start = fit.fit_start(x, "divisive", 3, 5, seed=0)
    assert start.counts.sum() == 120
    assert seen and set(seen) == {1}

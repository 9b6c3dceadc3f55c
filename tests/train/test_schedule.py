"""Default epochs (cplmix_sc.train._schedule)."""

from cplmix_sc import CplMixVAE
from cplmix_sc.train import _schedule


def test_warmup_grows_with_the_categories_up_to_the_mixture_phase():
    # Zeisel-sized: 2,705 training cells at batch 256 = 11 steps per epoch
    assert _schedule.warmup_epochs(2705, 256, 40) == 11  # 120 steps, rounded up
    assert _schedule.warmup_epochs(2705, 256, 40, n_categories=10) == 11
    assert _schedule.warmup_epochs(2705, 256, 40, n_categories=47) == 22  # 5 x 47 = 235 steps
    assert _schedule.warmup_epochs(2705, 256, 40, n_categories=120) == 40  # at most max_epochs
    assert _schedule.warmup_epochs(2705, 256, 0) == 1  # at least one epoch
    # many types: 10 steps per category, at most 3 x max_epochs
    assert _schedule.warmup_epochs(2705, 256, 40, n_categories=47, many_types=True) == 43
    assert _schedule.warmup_epochs(5640, 256, 21, n_categories=94, many_types=True) == 41
    assert _schedule.warmup_epochs(2705, 256, 10, n_categories=120, many_types=True) == 30


def test_default_warmup_is_set_from_the_fitted_start(easy_sim, monkeypatch):
    """A k-means start of 30 categories (the many-types defaults): 10 x 30 = 300 warm-up
    steps; one of 3 categories: the 120-step floor."""
    import scvi

    from cplmix_sc import CplMixVAE
    from cplmix_sc.model import _training

    seen = {}
    real = _training.TrainingMixin._fit_phase

    def record(self, run, fit_kwargs, phase, n_epochs, *args, **kwargs):
        seen[phase] = n_epochs
        return real(self, run, fit_kwargs, phase, 1, *args, **kwargs)

    monkeypatch.setattr(_training.TrainingMixin, "_fit_phase", record)
    scvi.settings.seed = 0
    adata = easy_sim
    CplMixVAE.setup_anndata(adata)
    model = CplMixVAE(adata, n_categories=30)
    model.train(max_epochs=60, init="kmeans", batch_size=128, enable_progress_bar=False,
                annotate=False)
    steps = _schedule.steps_per_epoch(adata.n_obs, 128)  # train_size=1
    assert steps >= 3
    assert seen == {"warmup": -(-300 // steps), "mixture": 60}  # 30 >= 24: 10 per category
    model = CplMixVAE(adata, n_categories=3)
    model.train(max_epochs=60, init="kmeans", batch_size=128, enable_progress_bar=False,
                annotate=False)
    assert seen["warmup"] == -(-120 // steps)


def test_default_batch_size_keeps_an_epoch_within_256_steps_up_to_1024_cells():
    from cplmix_sc.train import default_batch_size

    assert default_batch_size(3_005) == 256
    assert default_batch_size(65_536) == 256  # 256 steps of 256 cells
    assert default_batch_size(65_537) == 512
    assert default_batch_size(131_072) == 512
    assert default_batch_size(200_000) == 1024
    assert default_batch_size(5_000_000) == 1024  # at most 1,024 cells


def test_train_uses_the_default_batch_size(easy_sim, monkeypatch):
    """``batch_size=None`` resolves by the training cells (a rule scaled down here)."""
    import cplmix_sc.train._schedule as schedule

    monkeypatch.setattr(schedule, "MAX_EPOCH_STEPS", 2)
    adata = easy_sim.copy()
    CplMixVAE.setup_anndata(adata)
    model = CplMixVAE(adata, n_categories=3)
    model.train(max_epochs=1, warmup_epochs=0, init="random", annotate=False)
    n = adata.n_obs
    expected = 256 if n <= 512 else 512 if n <= 1024 else 1024
    assert model.trainer.num_training_batches == -(-n // expected)

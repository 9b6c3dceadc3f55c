"""Default epochs (cplmix_sc.train._schedule)."""

from cplmix_sc.train import _schedule


def test_warmup_grows_with_the_categories_up_to_the_mixture_phase():
    # Zeisel-sized: 2,705 training cells at batch 256 = 11 steps per epoch
    assert _schedule.warmup_epochs(2705, 256, 40) == 11  # 120 steps, rounded up
    assert _schedule.warmup_epochs(2705, 256, 40, n_categories=10) == 11
    assert _schedule.warmup_epochs(2705, 256, 40, n_categories=47) == 22  # 5 x 47 = 235 steps
    assert _schedule.warmup_epochs(2705, 256, 40, n_categories=120) == 40  # at most max_epochs
    assert _schedule.warmup_epochs(2705, 256, 0) == 1  # at least one epoch

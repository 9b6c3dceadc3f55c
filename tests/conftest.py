import logging
import os
import warnings

import matplotlib
import pytest

matplotlib.use("Agg")
os.environ.setdefault("PYTHONHASHSEED", "0")
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
logging.getLogger("lightning.fabric").setLevel(logging.ERROR)
warnings.filterwarnings("ignore", ".*does not have many workers.*")


@pytest.fixture
def easy_sim():
    """Small simulated data with well separated types and a strong state."""
    return make_easy_sim()


def make_easy_sim():
    """The data of :func:`easy_sim`, for module-scoped fixtures."""
    import cplmix_sc

    return cplmix_sc.datasets.synthetic(
        n_cells=400, n_genes=200, n_types=4, n_markers=15, n_activity=30, n_housekeeping=20,
        marker_effect=2.5, state_effect=1.5, seed=1,
    )


#: the short training of most tests (files that need other values derive theirs from it)
QUICK = {"max_epochs": 3, "warmup_epochs": 1, "batch_size": 128, "enable_progress_bar": False}

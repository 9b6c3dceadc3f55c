"""Agreement between independently trained models (random restarts)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd
import scvi
from anndata import AnnData
from sklearn.metrics import adjusted_rand_score

from ..metrics._matching import match_labels
from ..train._progress import progress_line


@dataclass
class RunConsensus:
    """Result of :func:`run_consensus`.

    Attributes
    ----------
    labels
        ``(n_runs, n_cells)`` type per run, each run's categories renamed to the first run's
        by maximal overlap (categories with no partner keep ``n_categories + index``).
    consensus
        Majority type per cell over the aligned runs (ties: the first run's).
    stability
        Fraction of runs whose aligned type equals the consensus, per cell.
    pairwise_ari
        ARI between every pair of runs (a symmetric DataFrame, 1 on the diagonal).
    seeds
        The seeds used.
    models
        The trained models (``keep_models=True``), else an empty list.
    """

    labels: np.ndarray
    consensus: np.ndarray
    stability: np.ndarray
    pairwise_ari: pd.DataFrame
    seeds: list[int]
    models: list

    @property
    def mean_ari(self) -> float:
        """Mean ARI over pairs of runs."""
        a = self.pairwise_ari.to_numpy()
        iu = np.triu_indices_from(a, 1)
        return float(a[iu].mean()) if iu[0].size else 1.0


def consensus_from_labels(labels: np.ndarray, n_categories: int | None = None):
    """Align several labellings of the same cells to the first and take the majority.

    Returns ``(aligned, consensus, stability, pairwise_ari)`` as in :class:`RunConsensus`.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.shape[0] < 2:
        raise ValueError("Need at least two labellings, as an (n_runs, n_cells) array.")
    n = labels.shape[0]
    k = int(labels.max()) + 1 if n_categories is None else n_categories
    aligned = np.empty_like(labels)
    aligned[0] = labels[0]
    for r in range(1, n):
        match = {v: u for u, v in match_labels(labels[0], labels[r]).items()}  # run r -> run 0
        aligned[r] = [match.get(int(c), k + int(c)) for c in labels[r]]
    top = int(aligned.max()) + 1
    votes = np.zeros((labels.shape[1], top))
    for r in range(n):
        votes[np.arange(labels.shape[1]), aligned[r]] += 1.0 + (1e-3 if r == 0 else 0.0)
    consensus = votes.argmax(1)
    stability = (aligned == consensus[None]).mean(0)
    ari = np.eye(n)
    for i, j in combinations(range(n), 2):
        ari[i, j] = ari[j, i] = adjusted_rand_score(labels[i], labels[j])
    return aligned, consensus, stability, pd.DataFrame(ari)


def run_consensus(
    adata: AnnData,
    n_runs: int = 3,
    seeds: Sequence[int] | None = None,
    n_categories: int = 10,
    model_kwargs: dict | None = None,
    train_kwargs: dict | None = None,
    key_added: str = "cpl_runs",
    keep_models: bool = False,
) -> RunConsensus:
    """Train several models from different seeds and measure how much their types agree.

    Types that a method finds for real come back in every restart; categories that split a
    type arbitrarily, or merge types differently, do not. Each run's categories are matched
    to the first run's by maximal cell overlap; the consensus type of a cell is the majority
    over runs and its stability the fraction of runs that agree with it.

    ``adata`` must be set up with :meth:`~cplmix_sc.CplMixVAE.setup_anndata`. Writes
    ``obs[f"{key_added}_type"]`` (categorical consensus), ``obs[f"{key_added}_stability"]``
    and ``uns[key_added]`` (seeds, pairwise ARI, mean ARI); nothing else (each model is
    trained with ``annotate=False``). Each trained run prints one line
    (:func:`cplmix_sc.train.progress_line`).

    Parameters
    ----------
    adata
        Set-up AnnData.
    n_runs
        Number of models (ignored if ``seeds`` is given).
    seeds
        Seeds (``scvi.settings.seed``) of the runs; default ``0 .. n_runs - 1``.
    n_categories
        Categories per model.
    model_kwargs, train_kwargs
        Passed to :class:`~cplmix_sc.CplMixVAE` and its ``train``.
    key_added
        Prefix of the keys written.
    keep_models
        Return the trained models in ``result.models`` (memory: one model each).

    Returns
    -------
    :class:`RunConsensus`.
    """
    from ..model import CplMixVAE

    seeds = list(range(n_runs)) if seeds is None else [int(s) for s in seeds]
    if len(seeds) < 2:
        raise ValueError("run_consensus needs at least two runs (n_runs >= 2).")
    train_kwargs = {"annotate": False, **(train_kwargs or {})}
    if train_kwargs["annotate"]:
        raise ValueError("run_consensus writes its own keys; do not pass annotate=True.")
    labels, models = [], []
    for i, seed in enumerate(seeds):
        start = time.perf_counter()
        scvi.settings.seed = seed
        model = CplMixVAE(adata, n_categories=n_categories, **(model_kwargs or {}))
        model.train(**train_kwargs)
        labels.append(model.predict())
        progress_line(f"consensus run {i + 1}/{len(seeds)} (seed {seed}): "
                      f"{len(np.unique(labels[-1]))} types in {time.perf_counter() - start:.0f} s")
        if keep_models:
            models.append(model)
    aligned, consensus, stability, ari = consensus_from_labels(np.stack(labels), n_categories)
    ari.index = ari.columns = seeds
    names = [str(c) for c in np.unique(consensus)]
    adata.obs[f"{key_added}_type"] = pd.Categorical(consensus.astype(str), categories=names)
    adata.obs[f"{key_added}_stability"] = stability.astype(np.float32)
    res = RunConsensus(aligned, consensus, stability, ari, seeds, models)
    adata.uns[key_added] = {
        "seeds": seeds,
        "pairwise_ari": ari.to_numpy(),
        "mean_ari": res.mean_ari,
    }
    return res

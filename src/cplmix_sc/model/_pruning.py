"""Pruning of :class:`~cplmix_sc.CplMixVAE`: remove the categories the arms do not agree on
(choosing K, supplement sec. J)."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch
from scvi import REGISTRY_KEYS

from .._validation import check_key_added
from ..metrics import category_consensus_from_labels
from ..train import _schedule as schedule
from ..train._progress import progress_line
from ._training import is_global_zero


class PruningMixin:
    """:meth:`prune` and :attr:`active_categories`. Needs ``self.module``, ``self.train``,
    ``self._posterior`` and ``self.annotate``."""

    @property
    def active_categories(self) -> np.ndarray:
        """Indices of the categories not pruned (all of them before :meth:`prune`)."""
        return np.flatnonzero(self.module.category_mask.cpu().numpy())

    @torch.inference_mode()
    def _keep_best(self, best: dict, candidates, rnd: int, unused: list, patience: int) -> bool:
        """``prune(patience=...)``: record this round in ``best`` (in place) if its mean
        consensus over the categories in use is the highest so far; whether ``patience``
        rounds have passed without a better one."""
        mean_used = float(candidates.mean())
        if mean_used > best["mean"]:
            best.update(mean=mean_used, round=rnd, unused=unused,
                        state={k: v.detach().clone()
                               for k, v in self.module.state_dict().items()})
        return rnd - best["round"] >= patience

    def _check_prune_args(self, key_added, min_consensus, n_prune, min_categories,
                          patience) -> bool:
        """Refuse bad :meth:`prune` arguments; whether ``n_prune`` is a fraction."""
        if not self.is_trained_:
            raise ValueError("Train the model before pruning: call `model.train()` first.")
        check_key_added(key_added)
        if not 0.0 <= min_consensus <= 1.0:
            raise ValueError(f"`min_consensus` must be in [0, 1], got {min_consensus}.")
        fraction = isinstance(n_prune, float) and not float(n_prune).is_integer()
        if fraction and not 0.0 < n_prune < 1.0:
            raise ValueError(f"A fractional `n_prune` must be in (0, 1), got {n_prune}.")
        if (not fraction and n_prune < 1) or min_categories < 1:
            raise ValueError("`n_prune` and `min_categories` must be at least 1.")
        if self.module.n_arms < 2:
            raise ValueError("Pruning by consensus needs at least two arms (n_arms >= 2).")
        if patience is not None and patience < 1:
            raise ValueError(f"`patience` must be at least 1, got {patience}.")
        return fraction

    def _prune_stats(self, batch_size: int | None) -> dict:
        """Consensus per category, the Fig. S9a log-ratio and the reconstruction NLL."""
        self.module.eval()
        held_out = getattr(self, "validation_indices", None)
        held_out = held_out if held_out is not None and len(held_out) else None
        loader = self._make_data_loader(
            adata=self.adata, indices=held_out, batch_size=batch_size or 1024
        )
        nll, n = 0.0, 0
        for tensors in loader:
            _, _, losses = self.module(tensors)
            nll += float(losses.reconstruction_loss["reconstruction_loss"].sum())
            n += tensors[REGISTRY_KEYS.X_KEY].shape[0]
        w = max(self.module.n_arms - 1, 1) * self.module.n_arms
        post = self._posterior(batch_size=batch_size)
        probs = post["log_probs"].exp().mean(0).numpy()[:, self.active_categories]
        table = category_consensus_from_labels(
            post["log_probs"].argmax(-1).numpy(), self.module.n_categories,
            active=self.module.category_mask.cpu().numpy(),
        )
        return {
            "table": table,
            "log_ratio": float(np.log(probs.max(1).mean() / max(probs.min(1).mean(), 1e-30))),
            "reconstruction": nll / max(n, 1) / w,
            "reconstruction_on": "held-out" if held_out is not None else "training",
        }

    def prune(
        self,
        min_consensus: float = 0.6,
        n_prune: int | float = 1,
        min_categories: int = 2,
        max_rounds: int | None = None,
        patience: int | None = None,
        fine_tune_epochs: int | None = None,
        lr: float = 1e-3,
        batch_size: int | None = None,
        annotate: bool = True,
        key_added: str = "cpl",
        **trainer_kwargs,
    ) -> pd.DataFrame:
        """Remove categories the arms do not agree on, with fine-tuning, until all agree.

        Start from more categories than you expect types (:meth:`train` with a generous
        ``n_categories``). Each round measures every surviving category's consensus between
        arms (:func:`cplmix_sc.tl.category_consensus`: Jaccard index of the cells the arms put
        in it, on all cells without augmentation), removes categories that no cell's consensus
        label uses, then, if some category is below ``min_consensus``, removes the
        ``n_prune`` least consistent ones and fine-tunes the model for ``fine_tune_epochs``.
        It stops when every surviving category reaches ``min_consensus`` (the chosen K), at
        ``min_categories`` or after ``max_rounds``.

        With ``patience`` the choice is the paper's "K where consensus is high": pruning also
        stops once ``patience`` rounds have passed without a higher mean consensus (over the
        categories in use), and the model is put back as it was measured in the best round
        (its weights and categories, less that round's unused ones; nothing of that round
        removed). Removing several categories per round (``n_prune`` > 1 or a fraction) makes
        it faster.

        Neither rule finds the true number of many subtle types
        (``benchmarks/results/fine_types.md``, "Pruning from 1.5 K"): with the start kept as
        a prior (``start_weight``) the arms agree on every category and pruning stops at
        once; with free arms some categories stay below the threshold at every K and the mean
        consensus keeps rising as categories go, so ``patience`` keeps the fewest tried.

        A removed category is masked: ``q(c|x) = 0`` for it, so it leaves the categorical
        head and the decoder's input, and its cells move to the categories that remain.
        Labels are never renumbered: a surviving category keeps its index, so ``cpl_type``
        values stay comparable before and after pruning. :attr:`active_categories` lists the
        survivors; ``get_type_probabilities`` keeps all ``n_categories`` columns, with
        exact zeros for pruned ones. Pruning is saved with the model.

        Parameters
        ----------
        min_consensus
            Consensus every category must reach to stop.
        n_prune
            Categories removed per round (besides unused ones): an integer, or a fraction in
            (0, 1) of the categories below ``min_consensus`` (rounded up).
        min_categories
            Never go below this many categories.
        max_rounds
            Stop after this many rounds (default: until the rule stops it).
        patience
            If given, stop after this many rounds without a better mean consensus over the
            categories in use and keep the best round's model (see above); default ``None``:
            the threshold rule only, the last round's model is kept.
        fine_tune_epochs
            Epochs of training after each removal; default ``max(5, E // 10)`` with ``E`` the
            default number of epochs of :meth:`train` for this data.
        lr, batch_size, **trainer_kwargs
            As in :meth:`train`.
        annotate, key_added
            Call :meth:`annotate` at the end (default) with this prefix.

        Each round prints one line (:func:`cplmix_sc.train.progress_line`): surviving
        categories, consensus, the categories removed and the seconds since the previous
        line (the previous round's fine-tuning and this round's measurement).

        Returns
        -------
        DataFrame, one row per round (also in ``prune_history_``): ``round``, ``n_categories``
        (surviving before the round's removal), ``mean_consensus``, ``min_consensus``,
        ``log_ratio`` (log of E[max_c q(c|x)] / E[min_c q(c|x)], Fig. S9a),
        ``reconstruction`` (mean NLL per cell and arm; held-out cells if the model was
        trained with ``train_size < 1``), ``removed`` (categories removed after measuring)
        and ``consensus`` (dict category -> consensus); with ``patience``, ``selected``
        (``True`` on the round whose model was kept).
        """
        fraction = self._check_prune_args(key_added, min_consensus, n_prune, min_categories,
                                          patience)
        if fine_tune_epochs is None:
            fine_tune_epochs = schedule.fine_tune_epochs(
                self.adata.n_obs, batch_size or schedule.default_batch_size(self.adata.n_obs))
        history = []
        mask = self.module.category_mask
        best = {"mean": -np.inf, "round": None, "state": None, "unused": []}
        clock = time.perf_counter()
        for rnd in range(10**6 if max_rounds is None else max_rounds + 1):
            stats = self._prune_stats(batch_size)
            table = stats["table"]
            cons = table["consensus"]
            unused = table.index[table["n_cells"] == 0].tolist()
            candidates = cons.drop(unused).sort_values(kind="stable")
            done = (
                (candidates >= min_consensus).all()
                or len(candidates) <= min_categories
                or (max_rounds is not None and rnd == max_rounds)
            )
            removed = _round_removals(len(table), unused, candidates, min_consensus, n_prune,
                                      fraction, min_categories, done)
            history.append(
                {
                    "round": rnd,
                    "n_categories": len(table),
                    "mean_consensus": float(cons.mean()),
                    "min_consensus": float(cons.min()),
                    "log_ratio": stats["log_ratio"],
                    "reconstruction": stats["reconstruction"],
                    "reconstruction_on": stats["reconstruction_on"],
                    "removed": removed,
                    "consensus": {int(k): round(float(v), 4) for k, v in cons.items()},
                }
            )
            stop = patience is not None and self._keep_best(best, candidates, rnd, unused,
                                                            patience)
            if stop:
                history[-1]["removed"] = removed = []
            progress_line(_round_line(history[-1], time.perf_counter() - clock))
            clock = time.perf_counter()
            if stop or not removed:
                break
            new_mask = mask.clone()
            new_mask[torch.as_tensor(removed, device=mask.device)] = False
            self.module.set_category_mask(new_mask)
            if done:
                break
            # the trained model skips the warm-up; the non-finite guard and checks apply
            self.train(max_epochs=fine_tune_epochs, lr=lr, batch_size=batch_size,
                       annotate=False, **trainer_kwargs)
        if best["round"] is not None and best["round"] != history[-1]["round"]:
            self.module.load_state_dict(best["state"])
            restored = self.module.category_mask.clone()
            if best["unused"]:
                restored[torch.as_tensor(best["unused"], device=restored.device)] = False
            self.module.set_category_mask(restored)
        self.module.eval()
        self.prune_history_ = pd.DataFrame(history)
        if patience is not None:
            self.prune_history_["selected"] = self.prune_history_["round"] == best["round"]
        if annotate and is_global_zero():
            self.annotate(key_added=key_added)
        return self.prune_history_


def _round_line(entry: dict, seconds: float) -> str:
    """One progress line for a round of :meth:`PruningMixin.prune`."""
    removed = ", ".join(map(str, entry["removed"])) or "none"
    return (
        f"prune round {entry['round']}: {entry['n_categories']} categories, consensus "
        f"min {entry['min_consensus']:.2f} mean {entry['mean_consensus']:.2f}; removed: "
        f"{removed} ({seconds:.0f} s)"
    )


def _round_removals(n_surviving: int, unused: list, candidates, min_consensus: float,
                    n_prune, fraction: bool, min_categories: int, done: bool) -> list[int]:
    """The categories one :meth:`~PruningMixin.prune` round removes: the unused ones, then (if
    not ``done``) the ``n_prune`` least consistent below ``min_consensus`` (a fraction of
    those below it, rounded up, if ``fraction``), never leaving fewer than
    ``min_categories``."""
    room = max(n_surviving - len(unused) - min_categories, 0)
    below = candidates[candidates < min_consensus].index
    n_low = int(np.ceil(n_prune * len(below))) if fraction else int(n_prune)
    low = [] if done else below[:n_low]
    removed = [int(c) for c in unused] + [int(c) for c in list(low)[:room]]
    return removed[: max(n_surviving - min_categories, 0)]

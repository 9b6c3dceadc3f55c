"""Inference of :class:`~cplmix_sc.CplMixVAE`: type probabilities, types, states, decoded
expression, and :meth:`annotate`, which writes them into an AnnData (scanpy ``tl`` style)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from scvi import REGISTRY_KEYS

from .._validation import check_key_added
from ..metrics import arm_consensus

#: cells per mini-batch of the posterior queries when none is given (scvi-tools' default, 128,
#: spends more time slicing the AnnData than computing; results do not depend on it)
INFERENCE_BATCH_SIZE = 1024


class InferenceMixin:
    """Posterior queries and :meth:`annotate`. Needs ``self.module`` and scvi-tools'
    ``_validate_anndata`` and ``_make_data_loader``."""

    @torch.inference_mode()
    def _posterior(
        self,
        adata: AnnData | None = None,
        indices: Sequence[int] | None = None,
        batch_size: int | None = None,
    ) -> dict[str, torch.Tensor]:
        """Per-arm log q(c|x), bottleneck and state (for the consensus type), on the CPU."""
        self._check_trained()
        adata = self._validate_anndata(adata)
        self.module.eval()
        loader = self._make_data_loader(adata=adata, indices=indices,
                                        batch_size=batch_size or INFERENCE_BATCH_SIZE)
        out: dict[str, list[torch.Tensor]] = {"log_probs": [], "bottleneck": [], "state": []}
        for tensors in loader:
            inf = self.module.inference(tensors[REGISTRY_KEYS.X_KEY])
            out["log_probs"].append(inf["log_probs"].cpu())
            out["bottleneck"].append(inf["bottleneck"].cpu())
            types = inf["log_probs"].exp().mean(0).argmax(-1)
            out["state"].append(self.module.state_given_category(inf["bottleneck"], types).cpu())
        return {k: torch.cat(v, dim=1) for k, v in out.items()}

    def get_type_probabilities(
        self,
        adata: AnnData | None = None,
        arm: int | None = None,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """Posterior ``q(c|x)`` per cell, ``(n_cells, n_categories)``.

        Parameters
        ----------
        adata
            AnnData with the same genes; defaults to the one the model was set up with.
        arm
            One arm's posterior; ``None`` (default) gives the consensus, the mean over arms.
        batch_size
            Cells per inference batch (default :data:`INFERENCE_BATCH_SIZE`).
        """
        log_p = self._posterior(adata, batch_size=batch_size)["log_probs"]
        return self._arm_or_mean(log_p.exp(), arm).numpy()

    def _arm_or_mean(self, values: torch.Tensor, arm: int | None) -> torch.Tensor:
        if arm is None:
            return values.mean(0)
        self._check_arm(arm)
        return values[arm]

    def predict(self, adata: AnnData | None = None, batch_size: int | None = None) -> np.ndarray:
        """Consensus type per cell: argmax of the posterior averaged over arms."""
        return self.get_type_probabilities(adata, batch_size=batch_size).argmax(1)

    def get_state(
        self, adata: AnnData | None = None, arm: int = 0, batch_size: int | None = None
    ) -> np.ndarray:
        """Posterior mean of the state given the consensus type, ``(n_cells, n_state)``.

        The state is type-dependent: it is computed by ``q(s|x, c)`` with ``c`` the one-hot
        consensus type. Arms' state coordinates are not aligned with each other (each arm may
        rotate or flip its state), so one arm's state is returned (``arm``, default 0).
        """
        state = self._posterior(adata, batch_size=batch_size)["state"]
        return self._arm_or_mean(state, arm).numpy()

    def get_arm_labels(self, adata: AnnData | None = None, batch_size: int | None = None):
        """Argmax category of every arm, ``(n_arms, n_cells)``."""
        return self._posterior(adata, batch_size=batch_size)["log_probs"].argmax(-1).numpy()

    @torch.inference_mode()
    def decode_expression(
        self,
        state: np.ndarray,
        types: np.ndarray | Sequence[int],
        batch: np.ndarray | Sequence[int] | None = None,
        arm: int = 0,
    ) -> np.ndarray:
        """Expected expression per 10,000 counts decoded from given states and types.

        The generative side of the model, ``E[x | s, c]`` (Eq. 46's p(x|s,c)) normalised to
        10,000 counts: what :func:`cplmix_sc.tl.traversal` sweeps.

        Parameters
        ----------
        state
            ``(n, n_state)`` state coordinates (arm ``arm``'s coordinates, as from
            :meth:`get_state`).
        types
            ``(n,)`` category indices.
        batch
            ``(n,)`` batch codes (integer codes of the registered batch key); required when the
            model was set up with a ``batch_key``.
        arm
            Whose decoder to use.

        Returns
        -------
        ``(n, n_genes)`` array of expected counts per 10,000.
        """
        self._check_trained()
        self._check_arm(arm)
        state = np.asarray(state, dtype=np.float32)
        if state.ndim != 2 or state.shape[1] != self.module.n_state:
            raise ValueError(
                f"`state` must have shape (n, {self.module.n_state}), got {state.shape}."
            )
        types = np.asarray(types)
        if types.shape != (state.shape[0],):
            raise ValueError(f"`types` must have shape ({state.shape[0]},), got {types.shape}.")
        k = self.module.n_categories
        if types.size and (types.min() < 0 or types.max() >= k):
            raise ValueError(f"`types` must be category indices in [0, {k - 1}].")
        batch_t = None
        if self._has_batch:
            if batch is None:
                raise ValueError(
                    "This model was set up with a batch_key: pass `batch` (integer codes)."
                )
            batch_t = torch.as_tensor(np.asarray(batch), dtype=torch.long, device=self.device)
        out = self.module.expected_expression(
            torch.as_tensor(state, device=self.device),
            torch.as_tensor(types, device=self.device),
            batch_t,
            arm=arm,
        )
        return out.cpu().numpy()

    def _check_trained(self) -> None:
        """Refuse inference on an untrained model (its types would come from random weights)."""
        if not self.is_trained_:
            raise ValueError(
                "The model is not trained: call `model.train()` first (or load a trained model "
                "with `CplMixVAE.load`); an untrained model's types come from random weights."
            )

    def _check_arm(self, arm: int) -> None:
        if not 0 <= arm < self.module.n_arms:
            raise ValueError(f"`arm` must be in [0, {self.module.n_arms - 1}], got {arm}.")

    def annotate(
        self,
        adata: AnnData | None = None,
        key_added: str = "cpl",
        batch_size: int | None = None,
    ) -> None:
        """Write types, confidences and states into ``adata`` (scanpy ``tl`` style).

        Writes ``obs[f"{key_added}_type"]`` (categorical: category indices as strings),
        ``obs[f"{key_added}_type_confidence"]`` (consensus probability of that type),
        ``obs[f"{key_added}_arm_agreement"]`` (fraction of arms whose own argmax is that type),
        ``obsm[f"X_{key_added}_state"]``, ``obsm[f"{key_added}_type_probs"]`` and
        ``uns[key_added]`` (model parameters and the mean inter-arm agreement). Nothing else
        in ``adata`` changes (a new ``adata`` is also registered: ``obs["_scvi_batch"]`` and
        ``uns["_scvi_*"]``). A new ``adata`` must have the model's genes in the same order
        and pass the checks of :meth:`setup_anndata` (all-zero genes are allowed); views are
        refused rather than copied in place.
        """
        check_key_added(key_added)
        adata = self._validate_anndata(adata)
        post = self._posterior(adata, batch_size=batch_size)
        probs_arm = post["log_probs"].exp()
        probs = probs_arm.mean(0).numpy()
        types = probs.argmax(1)
        arm_labels = probs_arm.argmax(-1).numpy()
        k = self.module.n_categories
        names = [str(i) for i in range(k)]
        used = [names[i] for i in range(k) if np.any(types == i)]
        adata.obs[f"{key_added}_type"] = pd.Categorical(
            [names[t] for t in types], categories=used
        )
        adata.obs[f"{key_added}_type_confidence"] = probs.max(1).astype(np.float32)
        adata.obs[f"{key_added}_arm_agreement"] = (arm_labels == types[None]).mean(0).astype(
            np.float32
        )
        adata.obsm[f"X_{key_added}_state"] = post["state"][0].numpy().astype(np.float32)
        adata.obsm[f"{key_added}_type_probs"] = probs.astype(np.float32)
        params = {
            k_: v for k_, v in self.init_params_["non_kwargs"].items() if k_ != "adata"
        } | self.init_params_["kwargs"].get("module_kwargs", {})
        adata.uns[key_added] = {
            "params": {k_: v for k_, v in params.items() if v is not None},
            "arm_consensus": float(arm_consensus(arm_labels)),
            "n_types_used": len(used),
            "active_categories": self.active_categories.tolist(),
        }

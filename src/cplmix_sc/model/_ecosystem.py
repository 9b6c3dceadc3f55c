"""scvi-tools' inference names on CplMixVAE: latent, normalized expression, DE, ELBO, PPC.

The methods keep scvi-tools' names, signatures and return types (``VAEMixin``,
``RNASeqMixin``), so that scanpy and ``scvi.criticism`` work on a trained model. Differential
expression goes through scvi-tools' own ``_de_core`` / ``DifferentialComputation``.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Number
from typing import Literal

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from scvi import REGISTRY_KEYS
from scvi.distributions import NegativeBinomial
from scvi.model._utils import _get_batch_code_from_category, scrna_raw_counts_properties
from scvi.model.base._de_core import _de_core

from .._validation import check_choice, check_int

#: representations of :meth:`EcosystemMixin.get_latent_representation`; the first is the
#: default (kNN purity of Zeisel's published labels, ``benchmarks/results/latent.md``)
REPRESENTATIONS = ("bottleneck", "state", "type_probabilities")
#: the column :meth:`~cplmix_sc.CplMixVAE.annotate` writes with its default ``key_added``
TYPE_KEY = "cpl_type"


def mean_log_ratio(cells_per_change: int):
    """scvi-tools' ``change_fn``: log2 ratios of the means of disjoint sets of samples.

    The returned function takes samples ``x``, ``y`` (``(n_x, G)`` and ``(n_y, G)`` arrays,
    rows in random order) and a pseudocount, splits the first ``n = min(n_x, n_y)`` rows of
    each into ``n // cells_per_change`` consecutive sets (one set of ``n`` rows if
    ``n < cells_per_change``), and returns
    ``log2(mean(x_set) + pseudocounts) - log2(mean(y_set) + pseudocounts)`` per set,
    ``(n_sets, G)``, in float32. ``cells_per_change=1`` is scvi-tools' log-fold change.
    """

    def change(x, y, pseudocounts):
        n, g = min(len(x), len(y)), x.shape[1]
        m = max(min(cells_per_change, n), 1)
        n = n // m * m
        x = np.asarray(x[:n], dtype=np.float32).reshape(-1, m, g).mean(1)
        y = np.asarray(y[:n], dtype=np.float32).reshape(-1, m, g).mean(1)
        pc = np.float32(pseudocounts)
        return np.log2(x + pc) - np.log2(y + pc)

    return change


class EcosystemMixin:
    """scvi-tools' ``VAEMixin``/``RNASeqMixin`` methods for :class:`~cplmix_sc.CplMixVAE`.

    Arms' states (and bottlenecks) are not aligned with each other, so a state is always one
    documented arm's (``arm``, default 0), never an average; types are the consensus (the
    posterior averaged over arms).
    """

    # ------------------------------------------------------------------ checks
    def _gene_mask(self, adata: AnnData, gene_list: Sequence[str] | None):
        if gene_list is None:
            return slice(None)
        genes = pd.Index([gene_list] if isinstance(gene_list, str) else list(gene_list))
        missing = genes.difference(adata.var_names)
        if len(missing):
            raise ValueError(
                f"{len(missing)} of the {len(genes)} genes in `gene_list` are not in "
                f"adata.var_names (e.g. {list(missing[:3])})."
            )
        return adata.var_names.isin(genes)

    # ------------------------------------------------------------------ latent
    def get_latent_representation(
        self,
        adata: AnnData | None = None,
        indices: Sequence[int] | None = None,
        representation: Literal["bottleneck", "state", "type_probabilities"] = "bottleneck",
        arm: int = 0,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """A per-cell representation for ``sc.pp.neighbors(adata, use_rep=...)`` and UMAPs.

        Parameters
        ----------
        adata
            AnnData with the model's genes; defaults to the one the model was set up with.
        indices
            Cells of ``adata`` to use (default: all).
        representation
            - ``"bottleneck"`` (default): arm ``arm``'s ``n_bottleneck``-dimensional encoding,
              from which both ``q(c|x)`` and ``q(s|x, c)`` are computed. On Zeisel it gave the
              purest 15-nearest neighbourhoods of the published ``level1``/``level2`` labels
              (``benchmarks/results/latent.md``).
            - ``"state"``: mean of ``q(s|x, c)`` given the consensus type ``c``, arm ``arm``
              (as :meth:`get_state`; ``(n, n_state)``). Meaningful within a type only.
            - ``"type_probabilities"``: the consensus ``q(c|x)`` (as
              :meth:`get_type_probabilities`, mean over arms; ``arm`` is not used).
        arm
            Whose bottleneck or state (arms' coordinates are not aligned, so never an average).
        batch_size
            Cells per inference batch.

        Returns
        -------
        ``(n_cells, d)`` array.
        """
        self._check_trained()
        check_choice("representation", representation, REPRESENTATIONS)
        self._check_arm(arm)
        post = self._posterior(adata, indices=indices, batch_size=batch_size)
        if representation == "type_probabilities":
            return post["log_probs"].exp().mean(0).numpy()
        return post[representation][arm].numpy()

    # ------------------------------------------------------------------ expression
    @torch.inference_mode()
    def _decode_rho(
        self,
        x: torch.Tensor,
        batch: torch.Tensor,
        transform_batch: list,
        n_samples: int,
        arm: int,
        sample: bool,
    ) -> torch.Tensor:
        """Expression proportions over genes, ``(n_samples, B, G)``.

        ``sample=False``: consensus type and state mean; ``True``: ``c ~ q(c|x)`` (consensus)
        and ``s ~ q(s|x, c)`` of arm ``arm``, ``n_samples`` times. Batches in
        ``transform_batch`` (codes; ``None``: the cell's own) are averaged.
        """
        inf = self.module.inference(x)
        return self._rho_from_posterior(
            inf["log_probs"].exp().mean(0), inf["bottleneck"], batch, transform_batch,
            n_samples, arm, sample,
        )

    @torch.inference_mode()
    def _rho_from_posterior(
        self,
        probs: torch.Tensor,
        bottleneck: torch.Tensor,
        batch: torch.Tensor,
        transform_batch: list,
        n_samples: int,
        arm: int,
        sample: bool,
    ) -> torch.Tensor:
        """:meth:`_decode_rho` from the encoder's outputs: the consensus ``q(c|x)``
        ``(B, K)`` and the bottlenecks ``(A, B, D)``; only arm ``arm``'s state and decoder
        are computed."""
        module = self.module
        b = probs.shape[0]
        bottleneck = bottleneck[arm]
        if sample:
            types = torch.distributions.Categorical(probs=probs).sample((n_samples,)).reshape(-1)
            mean, var = module.state_posterior_one_arm(
                bottleneck.repeat(n_samples, 1), types, arm
            )
            state = mean + var.sqrt() * torch.randn_like(mean)
        else:
            types = probs.argmax(-1).repeat(n_samples)
            state = module.state_posterior_one_arm(bottleneck, types[:b], arm)[0]
            state = state.repeat(n_samples, 1)
        rho = None
        for code in transform_batch:
            batch_index = batch.view(-1) if code is None else torch.full_like(
                batch.view(-1), int(code)
            )
            expr = module.expected_proportions(
                state, types, batch_index.repeat(n_samples) if self._has_batch else None, arm=arm
            )
            rho = expr if rho is None else rho.add_(expr)
        if len(transform_batch) > 1:
            rho = rho.div_(len(transform_batch))
        return rho.view(n_samples, b, -1)

    def _de_model_fn(self, adata: AnnData, batch_size: int | None, arm: int = 0):
        """``model_fn`` of scvi-tools' DE: as :meth:`get_normalized_expression` with
        ``n_samples_overall`` (each sample: a cell drawn uniformly from ``indices``, its type
        from the consensus ``q(c|x)``, its state from arm ``arm``'s ``q(s|x, c)``), but with
        every cell encoded once for all the calls of one DE."""
        post = self._posterior(adata, batch_size=batch_size)
        probs = post["log_probs"].exp().mean(0)
        bottleneck = post["bottleneck"]
        batch = torch.as_tensor(
            np.asarray(self.get_from_registry(adata, REGISTRY_KEYS.BATCH_KEY))
        ).view(-1)
        manager = self.get_anndata_manager(adata, required=True)
        chunk = max(batch_size or 0, 4096)

        @torch.inference_mode()
        def model_fn(_adata, indices, transform_batch, n_samples_overall) -> np.ndarray:
            codes = _get_batch_code_from_category(manager, transform_batch)
            indices = torch.as_tensor(np.asarray(indices), dtype=torch.long)
            cells = indices[torch.randint(len(indices), (int(n_samples_overall),))]
            out = []
            for part in cells.split(chunk):
                rho = self._rho_from_posterior(
                    probs[part].to(self.device), bottleneck[:, part].to(self.device),
                    batch[part].to(self.device), codes, 1, arm, sample=True,
                )
                out.append(rho[0].cpu())
            return torch.cat(out).numpy()

        return model_fn

    def _loader(self, adata, indices, batch_size):
        adata = self._validate_anndata(adata)
        self.module.eval()
        indices = np.arange(adata.n_obs) if indices is None else np.asarray(indices)
        return adata, indices, self._make_data_loader(
            adata=adata, indices=indices, batch_size=batch_size
        )

    @torch.inference_mode()
    def get_normalized_expression(
        self,
        adata: AnnData | None = None,
        indices: Sequence[int] | None = None,
        transform_batch: Sequence[Number | str] | None = None,
        gene_list: Sequence[str] | None = None,
        library_size: float | Literal["latent"] = 1,
        n_samples: int = 1,
        n_samples_overall: int | None = None,
        batch_size: int | None = None,
        return_mean: bool = True,
        return_numpy: bool | None = None,
        silent: bool = True,
        arm: int = 0,
    ) -> np.ndarray | pd.DataFrame:
        """Decoded expression per cell: scvi-tools' ``RNASeqMixin.get_normalized_expression``.

        Each cell is decoded from its consensus type and its state given that type by arm
        ``arm``'s decoder (the mean of ``p(x|s, c)`` as proportions over genes, as scVI's
        ``rho``); with ``n_samples > 1`` the type is drawn from the consensus ``q(c|x)`` and
        the state from arm ``arm``'s ``q(s|x, c)`` for each sample. Shares the decoder path of
        :meth:`decode_expression` (``module.expected_expression``).

        Parameters
        ----------
        adata, indices
            As in :meth:`get_latent_representation`.
        transform_batch
            Batch(es) to decode with (categories of the registered ``batch_key``); ``None``:
            each cell's own. Several are averaged.
        gene_list
            Return these genes only (all must be in ``var_names``).
        library_size
            Scale of the proportions: ``1`` (default) gives proportions summing to 1 over all
            genes, ``1e4`` counts per 10,000; ``"latent"``: each cell's observed total count.
        n_samples
            Posterior samples of type and state per cell.
        n_samples_overall
            Total samples over the selected cells (scvi-tools' differential expression);
            overrides ``n_samples`` and returns ``(n_samples_overall, n_genes)``.
        batch_size
            Cells per inference batch.
        return_mean
            Average the ``n_samples`` samples.
        return_numpy
            Return an array instead of a DataFrame (cells x genes); forced when
            ``n_samples > 1`` and ``return_mean=False``.
        silent
            Unused (scvi-tools' signature).
        arm
            Whose state and decoder.

        Returns
        -------
        ``(n_cells, n_genes)`` DataFrame (or array), or ``(n_samples, n_cells, n_genes)``.
        """
        self._check_trained()
        self._check_arm(arm)
        if not (library_size == "latent" or (
            isinstance(library_size, Number) and library_size > 0
        )):
            raise ValueError(f"`library_size` must be positive or 'latent', got {library_size!r}.")
        n_samples = check_int("n_samples", n_samples, 1)
        adata, indices, loader = self._loader(adata, indices, batch_size)
        if n_samples_overall is not None:
            n_samples = check_int("n_samples_overall", n_samples_overall, 1) // max(
                len(indices), 1
            ) + 1
        gene_mask = self._gene_mask(adata, gene_list)
        codes = _get_batch_code_from_category(
            self.get_anndata_manager(adata, required=True), transform_batch
        )
        sample = n_samples > 1
        out = []
        for tensors in loader:
            x = tensors[REGISTRY_KEYS.X_KEY].to(self.device)
            rho = self._decode_rho(
                x, tensors[REGISTRY_KEYS.BATCH_KEY].to(self.device), codes, n_samples, arm, sample
            )
            scale = x.sum(-1, keepdim=True) if library_size == "latent" else float(library_size)
            out.append((rho * scale)[..., gene_mask].cpu())
        exprs = torch.cat(out, dim=1).numpy()  # (n_samples, n_cells, n_genes)
        if n_samples_overall is not None:
            flat = exprs.reshape(-1, exprs.shape[-1])
            return flat[torch.randint(flat.shape[0], (n_samples_overall,)).numpy()]
        if n_samples > 1 and not return_mean:
            return exprs
        exprs = exprs.mean(0)
        if return_numpy:
            return exprs
        return pd.DataFrame(
            exprs, index=adata.obs_names[indices], columns=adata.var_names[gene_mask]
        )

    def differential_expression(
        self,
        adata: AnnData | None = None,
        groupby: str | None = None,
        group1: Sequence[str] | str | None = None,
        group2: str | None = None,
        idx1: Sequence[int] | Sequence[bool] | str | None = None,
        idx2: Sequence[int] | Sequence[bool] | str | None = None,
        mode: Literal["vanilla", "change"] = "change",
        delta: float = 0.25,
        batch_size: int | None = None,
        all_stats: bool = True,
        batch_correction: bool = False,
        batchid1: Sequence[str] | None = None,
        batchid2: Sequence[str] | None = None,
        fdr_target: float = 0.05,
        silent: bool = False,
        cells_per_change: int = 100,
        **kwargs,
    ) -> pd.DataFrame:
        """Differential expression between groups of cells, by scvi-tools' DE core.

        As :meth:`scvi.model.SCVI.differential_expression` (``mode="change"``: Boyeau et al.
        2019, from :meth:`get_normalized_expression` samples, in which type and state are
        drawn from the posterior), with scvi-tools' columns (``proba_de``, ``bayes_factor``,
        ``lfc_mean``, ``lfc_median``, ``is_de_fdr_<fdr_target>``, raw-count statistics, ...),
        one block of rows per group of ``group1``.

        One difference: the change compared with ``delta`` is the log2 ratio of the two
        groups' *mean* expression, each averaged over ``cells_per_change`` posterior samples
        (random cells of the group), rather than the mean over pairs of single cells of their
        log2 ratios. A type's expression moves with its state (often by several-fold), and
        the log of an average is not the average of logs: the fold change of mean expression
        is the one of empirical and simulated group means (``cells_per_change=1`` gives
        scvi-tools' per-cell change). ``lfc_*`` and ``proba_de`` describe the distribution of
        these ratios over ``n_samples_overall // cells_per_change`` disjoint sets of samples
        (50 with the defaults; ``n_samples_overall`` can be passed in ``**kwargs``).

        Parameters
        ----------
        adata
            AnnData with the model's genes (default: the model's).
        groupby
            ``obs`` column of the groups; default ``"cpl_type"`` (the model's types, written by
            :meth:`annotate` if absent).
        group1
            Groups to test (default: every group, each against the rest).
        group2
            The group to compare against (default: the rest of the cells).
        idx1, idx2
            Cells (indices, boolean masks or a query string) instead of ``groupby`` groups.
        mode, delta, batch_size, all_stats, fdr_target, silent
            As in scvi-tools (``mode="change"`` is the default here).
        batch_correction, batchid1, batchid2
            As in scvi-tools: with ``batch_correction=True``, expression is decoded in the
            batches ``batchid1``/``batchid2`` (default: all) rather than each cell's own.
        cells_per_change
            Posterior samples averaged on each side of one change sample (see above); used
            unless ``change_fn`` is passed in ``**kwargs``.
        **kwargs
            Passed to :meth:`scvi.model.base.DifferentialComputation.get_bayes_factors`
            (e.g. ``n_samples_overall``, ``change_fn``, ``pseudocounts``).

        Returns
        -------
        DataFrame indexed by gene, with the group in ``comparison``/``group1``.
        """
        self._check_trained()
        adata = self._validate_anndata(adata)
        if groupby is None and idx1 is None:
            groupby = TYPE_KEY
            if groupby not in adata.obs:
                self.annotate(adata)
        if idx1 is None:
            if groupby not in adata.obs:
                raise ValueError(f"`groupby`={groupby!r} is not a column of adata.obs.")
            # groups by their values, also when given as numbers for "0", "1", ... labels
            present = {str(v): v for v in pd.unique(adata.obs[groupby].dropna())}
            group1 = None if group1 is None else (
                [group1] if isinstance(group1, str | Number) else list(group1)
            )
            unknown = [g for g in [*(group1 or []), *([] if group2 is None else [group2])]
                       if str(g) not in present]
            if unknown:
                names = sorted(present)
                raise ValueError(
                    f"Group(s) {unknown} not found in adata.obs[{groupby!r}]; groups with "
                    f"cells: {names[:10]}{' ...' if len(names) > 10 else ''}."
                )
            group1 = None if group1 is None else [present[str(g)] for g in group1]
            group2 = None if group2 is None else present[str(group2)]
        model_fn = self._de_model_fn(adata, batch_size)
        if mode == "change" and kwargs.get("change_fn") is None:
            m = check_int("cells_per_change", cells_per_change, 1)
            kwargs["change_fn"] = mean_log_ratio(m)
        return _de_core(
            self.get_anndata_manager(adata, required=True),
            model_fn,
            None,
            groupby,
            group1,
            group2,
            idx1,
            idx2,
            all_stats,
            scrna_raw_counts_properties,
            adata.var_names,
            mode,
            batchid1,
            batchid2,
            delta,
            batch_correction,
            fdr_target,
            silent,
            **kwargs,
        )

    # ------------------------------------------------------------------ ELBO and PPC
    @torch.inference_mode()
    def _generative_terms(self, adata, indices, batch_size) -> dict[str, np.ndarray]:
        """Per cell, averaged over arms: reconstruction NLL and state KL (eval mode)."""
        self._check_trained()
        _, _, loader = self._loader(adata, indices, batch_size)
        out = {"reconstruction": [], "kl": []}
        for tensors in loader:
            inf, gen = self.module.forward(tensors, compute_loss=False)
            terms = self.module.generative_terms(tensors, inf, gen)
            for key in out:
                out[key].append(terms[key].mean(0).cpu())
        return {k: torch.cat(v).numpy().astype(np.float64) for k, v in out.items()}

    def get_elbo(
        self,
        adata: AnnData | None = None,
        indices: Sequence[int] | None = None,
        batch_size: int | None = None,
        return_mean: bool = True,
    ) -> float | np.ndarray:
        """Evidence lower bound of the generative model (higher is better), as scvi-tools'.

        ``-(NLL + KL)`` per cell, in eval mode (no augmentation, no dropout): the negative
        binomial (or Gaussian) NLL of the unperturbed cell decoded from the posterior mean of
        the state and the soft ``q(c|x)``, plus ``KL(q(s|x, c) || N(0, I))``; without the
        coupling, usage, entropy and warm-up terms of the training loss. Arms are combined
        by the mean over arms (each arm is a full generative model). Equals ``-(recon +
        kl_local) / (w A)`` of the training loss's ``LossOutput`` on the same cells in eval
        mode, ``w = max(A - 1, 1)``.

        Returns
        -------
        The mean over cells, or per cell with ``return_mean=False``.
        """
        terms = self._generative_terms(adata, indices, batch_size)
        elbo = -(terms["reconstruction"] + terms["kl"])
        return float(elbo.mean()) if return_mean else elbo

    def get_reconstruction_error(
        self,
        adata: AnnData | None = None,
        indices: Sequence[int] | None = None,
        batch_size: int | None = None,
        return_mean: bool = True,
    ) -> dict[str, float | np.ndarray]:
        """``{"reconstruction_loss": NLL}``, mean over arms, as scvi-tools returns it.

        The NLL term of :meth:`get_elbo` (positive; lower is better, as the value scvi-tools'
        ``get_reconstruction_error`` returns).
        """
        nll = self._generative_terms(adata, indices, batch_size)["reconstruction"]
        return {"reconstruction_loss": float(nll.mean()) if return_mean else nll}

    @torch.inference_mode()
    def posterior_predictive_sample(
        self,
        adata: AnnData | None = None,
        indices: Sequence[int] | None = None,
        transform_batch: Sequence[Number | str] | None = None,
        n_samples: int = 1,
        gene_list: Sequence[str] | None = None,
        batch_size: int | None = None,
        silent: bool = True,
        arm: int = 0,
    ):
        """Counts drawn from ``p(x̂ | x)`` for :class:`scvi.criticism.PosteriorPredictiveCheck`.

        Per sample: ``c ~`` consensus ``q(c|x)``, ``s ~ q(s|x, c)`` (arm ``arm``), then counts
        from arm ``arm``'s likelihood with the cell's observed library size (NB; with the
        Gaussian likelihood, the sampled log-normalised value mapped back to counts and
        rounded).

        Returns
        -------
        A ``sparse.GCXS`` array, cells x genes, with a third axis of ``n_samples``
        samples when ``n_samples > 1`` (scvi-tools' layout).
        """
        import sparse

        self._check_trained()
        self._check_arm(arm)
        n_samples = check_int("n_samples", n_samples, 1)
        adata, _, loader = self._loader(adata, indices, batch_size)
        gene_mask = self._gene_mask(adata, gene_list)
        codes = _get_batch_code_from_category(
            self.get_anndata_manager(adata, required=True), transform_batch
        )
        module = self.module
        out = []
        for tensors in loader:
            x = tensors[REGISTRY_KEYS.X_KEY].to(self.device)
            rho = self._decode_rho(
                x, tensors[REGISTRY_KEYS.BATCH_KEY].to(self.device), codes, n_samples, arm,
                sample=True,
            )  # (n_samples, B, G)
            library = x.sum(-1, keepdim=True)
            if module.likelihood == "nb":
                theta = module.gene_param[arm].exp()
                counts = NegativeBinomial(mu=rho * library, theta=theta).sample()
            else:
                mean = torch.log1p(rho * 1e4)
                y = mean + module.gene_param[arm].mul(0.5).exp() * torch.randn_like(mean)
                counts = torch.round(torch.expm1(y).clamp_min(0.0) * library / 1e4)
            counts = counts[..., gene_mask].permute(1, 2, 0).cpu().numpy()
            out.append(sparse.GCXS.from_numpy(counts[..., 0] if n_samples == 1 else counts))
        return sparse.concatenate(out, axis=0)

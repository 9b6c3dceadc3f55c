"""A ground-truth simulator of counts with cell types and a type-dependent continuous state."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp


def synthetic(
    n_cells: int = 3000,
    n_genes: int = 1000,
    n_types: int = 12,
    n_markers: int = 10,
    n_activity: int = 60,
    n_housekeeping: int = 60,
    frac_unresponsive: float = 0.25,
    marker_effect: float = 0.9,
    state_effect: float = 3.0,
    type_noise: float = 0.1,
    library_size: float = 3000.0,
    dispersion: float = 5.0,
    sparse: bool = True,
    seed: int = 0,
) -> ad.AnnData:
    """Simulate UMI counts with discrete types and a type-dependent continuous state.

    Every cell has a type ``t`` and a scalar state ``s ~ Uniform(-1, 1)``. Gene means are
    ``log μ_g = b_g + m_tg + s β_tg`` (then normalised over genes and scaled by the cell's
    library size), and counts are negative binomial with inverse dispersion ``dispersion``.

    Gene roles (``var["role"]``):

    - ``"marker"``: ``n_markers`` per type, up by ``marker_effect`` in that type
      (``var["marker_of"]``); unaffected by the state.
    - ``"activity"`` (IEG-like): slopes ``β_tg ~ N(0, state_effect²)`` drawn *per type*, so
      the same state moves different genes, in different directions, in different types.
    - ``"housekeeping"``: highly expressed; small type-specific slopes
      (``N(0, (state_effect / 4)²)``).
    - ``"background"``: small random type differences (``type_noise``) only.

    A fraction ``frac_unresponsive`` of the types have all slopes zero (``obs["responsive"]``).

    Parameters
    ----------
    n_cells, n_genes, n_types
        Size of the data set; types have equal expected proportions.
    n_markers, n_activity, n_housekeeping
        Genes of each role; the rest are background genes.
    frac_unresponsive
        Fraction of types whose expression does not depend on the state.
    marker_effect, state_effect, type_noise
        Log-scale effect sizes (see above). A larger ``state_effect`` makes the state a
        stronger confounder of clustering.
    library_size
        Median UMIs per cell (log-normal, sd 0.3 on the log scale).
    dispersion
        Negative binomial inverse dispersion θ.
    sparse
        Store ``.X`` as CSR.
    seed
        Random seed; the same seed gives the same data.

    Returns
    -------
    AnnData with counts in ``.X``; ``obs["type"]``, ``obs["state"]``, ``obs["responsive"]``;
    ``var["role"]``, ``var["marker_of"]``, ``var["base"]`` (``b_g``); ``varm["slopes"]``
    (genes x types β), ``varm["type_effects"]`` (genes x types ``m_tg``) and
    ``uns["simulation"]`` (the parameters).
    """
    n_special = _check_sizes(n_cells, n_genes, n_types, n_markers, n_activity, n_housekeeping)
    rng = np.random.default_rng(seed)
    roles = np.array(
        ["marker"] * (n_types * n_markers)
        + ["activity"] * n_activity
        + ["housekeeping"] * n_housekeeping
        + ["background"] * (n_genes - n_special)
    )
    marker_of = np.full(n_genes, -1)
    marker_of[: n_types * n_markers] = np.repeat(np.arange(n_types), n_markers)
    base = rng.normal(0.0, 1.0, n_genes)
    base[roles == "housekeeping"] += 2.5
    effects = rng.normal(0.0, type_noise, (n_types, n_genes))
    effects[marker_of[None, :] == np.arange(n_types)[:, None]] += marker_effect
    n_unresp = round(frac_unresponsive * n_types)
    responsive = np.ones(n_types, dtype=bool)
    responsive[rng.choice(n_types, n_unresp, replace=False)] = False
    slopes = np.zeros((n_types, n_genes))
    act, hk = roles == "activity", roles == "housekeeping"
    slopes[:, act] = rng.normal(0.0, state_effect, (n_types, act.sum()))
    slopes[:, hk] = rng.normal(0.0, state_effect / 4, (n_types, hk.sum()))
    slopes[~responsive] = 0.0

    types = rng.integers(0, n_types, n_cells)
    state = rng.uniform(-1.0, 1.0, n_cells)
    log_mu = base[None] + effects[types] + state[:, None] * slopes[types]
    prop = np.exp(log_mu - log_mu.max(1, keepdims=True))
    prop /= prop.sum(1, keepdims=True)
    lib = np.exp(rng.normal(np.log(library_size), 0.3, n_cells))
    mu = prop * lib[:, None]
    counts = rng.poisson(rng.gamma(dispersion, mu / dispersion)).astype(np.float32)

    names = _gene_names(roles, n_types, n_markers)
    type_names = [f"T{t}" for t in range(n_types)]
    obs = pd.DataFrame(
        {
            "type": pd.Categorical([type_names[t] for t in types], categories=type_names),
            "state": state.astype(np.float32),
            "responsive": responsive[types],
        },
        index=[f"cell{i}" for i in range(n_cells)],
    )
    var = pd.DataFrame(
        {"role": pd.Categorical(roles), "marker_of": marker_of}, index=names.astype(str)
    )
    adata = ad.AnnData(X=sp.csr_matrix(counts) if sparse else counts, obs=obs, var=var)
    adata.varm["slopes"] = slopes.T.astype(np.float32)
    adata.var["base"] = base.astype(np.float32)
    adata.varm["type_effects"] = effects.T.astype(np.float32)
    adata.uns["simulation"] = {
        "n_types": n_types,
        "state_effect": state_effect,
        "marker_effect": marker_effect,
        "frac_unresponsive": frac_unresponsive,
        "responsive_types": [type_names[t] for t in np.flatnonzero(responsive)],
        "seed": seed,
    }
    return adata


def _gene_names(roles: np.ndarray, n_types: int, n_markers: int) -> np.ndarray:
    """``Mk{type}_{i}`` markers, ``Ieg{i}`` activity, ``Hkg{i}`` housekeeping, ``Gene{i}``."""
    names = np.empty(len(roles), dtype=object)
    names[: n_types * n_markers] = [
        f"Mk{t}_{i}" for t in range(n_types) for i in range(n_markers)
    ]
    for role, prefix in (("activity", "Ieg"), ("housekeeping", "Hkg"), ("background", "Gene")):
        names[roles == role] = [f"{prefix}{i}" for i in range((roles == role).sum())]
    return names


def _check_sizes(n_cells, n_genes, n_types, n_markers, n_activity, n_housekeeping) -> int:
    """Refuse sizes that cannot hold the requested genes or types; the special genes' count."""
    n_special = n_types * n_markers + n_activity + n_housekeeping
    if n_special > n_genes:
        raise ValueError(
            f"n_genes={n_genes} is too small for {n_types} types x {n_markers} markers + "
            f"{n_activity} activity + {n_housekeeping} housekeeping genes ({n_special})."
        )
    if n_types < 1 or n_cells < n_types:
        raise ValueError("Need at least one type and at least as many cells as types.")
    return n_special

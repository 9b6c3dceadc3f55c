"""A family of many-type simulators: classes > subclasses > types, with a type-dependent state."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

PLATFORMS = ("10x", "smartseq")


def _split(rng: np.random.Generator, n_items: int, n_groups: int, alpha: float) -> np.ndarray:
    """Assign ``n_items`` to ``n_groups`` (every group non-empty), Dirichlet(alpha) sizes."""
    group = np.arange(n_items) % n_groups  # one item per group first
    extra = n_items - n_groups
    if extra > 0:
        p = rng.dirichlet(np.full(n_groups, alpha))
        group[n_groups:] = rng.choice(n_groups, extra, p=p)
    return np.sort(group)


def synthetic_hierarchy(
    seed: int = 0,
    n_types: int | None = None,
    n_cells: int | None = None,
    n_genes: int = 1500,
    platform: str | None = None,
    cells_per_type: float = 60.0,
    max_cells: int = 8000,
    type_effect: tuple[float, float] = (1.2, 2.2),
    n_type_markers: tuple[int, int] = (4, 8),
) -> ad.AnnData:
    """Simulate counts of many types in a class > subclass > type hierarchy, with a state.

    Every quantity not given is drawn from ``np.random.default_rng(seed)``; the same seed
    gives the same data, distinct seeds give distinct structures. Gene means of cell ``i`` of
    type ``t`` (subclass ``u(t)``, class ``v(u)``) with state ``s_i ~ Uniform(-1, 1)`` are

        log μ_ig = b_g + C_vg + U_ug + T_tg + ε_tg + s_i β_tg

    normalised over genes and scaled by the cell's depth, then counts are drawn.

    Structure (the documented distributions):

    - ``n_types ~ UniformInt[24, 120]``; ``n_classes ~ UniformInt[2, 5]``;
      ``n_subclasses = clip(round(n_types / UniformInt[3, 6]), n_classes, n_types)``.
      Subclasses are split among classes and types among subclasses with every group
      non-empty and the rest assigned by Dirichlet(2) proportions (unequal branching).
    - Type proportions: ``log w_t ~ N(0, 0.5²)``, normalised (unequal sizes; about a 3-fold
      range between the 10th and 90th percentiles); each type gets at least 15 cells.
    - ``n_cells = clip(round(cells_per_type · n_types), 3000, max_cells)`` when not given.
    - Baseline ``b_g ~ N(0, 1.2²)``; 10% of genes are housekeeping-like (``+2``).
    - Class markers ``C``: 30 genes per class, effect ``Uniform(1.5, 3)``.
      Subclass markers ``U``: 10 genes per subclass, effect ``Uniform(1, 2)``.
      Type markers ``T`` (what tells sister types apart): ``UniformInt[n_type_markers]``
      genes per type, effect ``Uniform(type_effect)`` on the log scale, 80% up and 20%
      down; marker genes are drawn at random from all non-state genes, so a gene can mark
      several types (as in real data). ``ε_tg ~ N(0, 0.05²)`` on every gene.
    - State: 3 shared programs (20 genes each, loadings ``N(0, 1)``) and, per responsive
      type, a type-specific program (10 genes, slopes ``N(0, 1)``), all scaled by
      ``state_effect ~ Uniform(1, 2)``. A responsive type's slopes are
      ``β_t = state_effect · (Σ_p w_tp L_p + L_t)`` with ``w_tp ~ N(0, 1)``. A fraction
      ``~ Uniform(0.15, 0.4)`` of the types is unresponsive (``β_t = 0``).
    - Depth, ``platform ~ {"10x", "smartseq"}`` with equal odds:
      ``"10x"`` (UMI-like): library ``~ LogNormal(log Uniform(2000, 6000), 0.35)``, counts
      NB with inverse dispersion ``θ ~ Uniform(5, 15)``.
      ``"smartseq"`` (read-like): molecules as for 10x with ``Uniform(3000, 8000)`` per
      cell and ``θ ~ Uniform(2, 5)``, then reads ``~ Poisson(molecules · a_g)`` with a
      per-gene amplification ``a_g ~ LogNormal(log 20, 0.5)`` (gene-length-like bias):
      large, overdispersed, integer counts.

    Parameters
    ----------
    seed
        Random seed of the structure and of the counts.
    n_types
        Number of types (drawn from ``[24, 120]`` if ``None``).
    n_cells
        Number of cells (see above if ``None``).
    n_genes
        Number of genes (at least 400).
    platform
        ``"10x"`` or ``"smartseq"`` (drawn if ``None``).
    cells_per_type, max_cells
        Size rule used when ``n_cells`` is ``None``.
    type_effect
        Range of the type markers' log-scale effect (sets the difficulty).
    n_type_markers
        Range (inclusive) of the number of markers per type.

    Returns
    -------
    AnnData with integer counts in ``.X`` (CSR); ``obs``: ``type``, ``subclass``, ``class``
    (categoricals), ``state`` (the true state coordinate), ``responsive`` (bool);
    ``var["role"]`` (``"state"`` for program genes, else ``"other"``) and
    ``uns["simulation"]`` (the drawn structure and parameters).
    """
    rng = np.random.default_rng(seed)
    if n_types is None:
        n_types = int(rng.integers(24, 121))
    if n_types < 2:
        raise ValueError(f"n_types must be at least 2, got {n_types}.")
    if n_genes < 400:
        raise ValueError(f"n_genes must be at least 400, got {n_genes}.")
    if platform is None:
        platform = str(rng.choice(PLATFORMS))
    if platform not in PLATFORMS:
        raise ValueError(f"platform must be one of {PLATFORMS}, got {platform!r}.")
    n_classes, n_sub, sub_class, type_sub, type_class = _tree(rng, n_types)
    if n_cells is None:
        n_cells = int(np.clip(round(cells_per_type * n_types), 3000, max_cells))
    if n_cells < 15 * n_types:
        raise ValueError(f"n_cells={n_cells} is fewer than 15 per type ({n_types} types).")

    responsive, frac_unresp, is_state, base, effects, state_effect, slopes = _genes(
        rng, n_types, n_genes, n_classes, n_sub, type_class, type_sub, type_effect,
        n_type_markers)
    types, state, x, depth, theta = _cells(rng, n_cells, n_types, n_genes, base, effects,
                                           slopes, platform)
    adata = _as_anndata(x, types, state, responsive, type_sub, type_class, sub_class,
                        is_state, slopes)
    adata.uns["simulation"] = {
        "seed": seed,
        "n_types": n_types,
        "n_subclasses": n_sub,
        "n_classes": n_classes,
        "platform": platform,
        "depth": depth,
        "theta": theta,
        "state_effect": state_effect,
        "frac_unresponsive": frac_unresp,
        "type_effect": list(type_effect),
        "n_type_markers": list(n_type_markers),
        "responsive_types": [f"T{t}" for t in np.flatnonzero(responsive)],
        "type_subclass": [f"S{u}" for u in type_sub],
        "subclass_class": [f"C{v}" for v in sub_class],
    }
    return adata


def _tree(rng, n_types: int):
    """Classes > subclasses > types: counts and each group's parent."""
    n_classes = int(min(rng.integers(2, 6), n_types))
    per_sub = int(rng.integers(3, 7))
    n_sub = int(np.clip(round(n_types / per_sub), n_classes, n_types))
    sub_class = _split(rng, n_sub, n_classes, 2.0)
    type_sub = _split(rng, n_types, n_sub, 2.0)
    type_class = sub_class[type_sub]
    return n_classes, n_sub, sub_class, type_sub, type_class


def _genes(rng, n_types, n_genes, n_classes, n_sub, type_class, type_sub, type_effect,
           n_type_markers):
    """Baseline, class/subclass/type marker effects and the state's slopes per type."""
    # state programs first, the rest can be markers
    n_shared, shared_len, own_len = 3, 20, 10
    frac_unresp = float(rng.uniform(0.15, 0.4))
    responsive = np.ones(n_types, dtype=bool)
    responsive[rng.choice(n_types, round(frac_unresp * n_types), replace=False)] = False
    state_pool = rng.choice(n_genes, n_genes // 4, replace=False)
    is_state = np.zeros(n_genes, dtype=bool)
    is_state[state_pool] = True
    other = np.flatnonzero(~is_state)
    base = rng.normal(0.0, 1.2, n_genes)
    base[rng.random(n_genes) < 0.1] += 2.0
    effects = rng.normal(0.0, 0.05, (n_types, n_genes))
    for v in range(n_classes):
        g = rng.choice(other, 30, replace=False)
        effects[np.ix_(type_class == v, g)] += rng.uniform(1.5, 3.0, 30)
    for u in range(n_sub):
        g = rng.choice(other, 10, replace=False)
        effects[np.ix_(type_sub == u, g)] += rng.uniform(1.0, 2.0, 10)
    markers = []
    for t in range(n_types):
        m = int(rng.integers(n_type_markers[0], n_type_markers[1] + 1))
        g = rng.choice(other, m, replace=False)
        sign = np.where(rng.random(m) < 0.8, 1.0, -1.0)
        effects[t, g] += sign * rng.uniform(*type_effect, m)
        markers.append(g)
    state_effect = float(rng.uniform(1.0, 2.0))
    slopes = np.zeros((n_types, n_genes))
    programs = np.zeros((n_shared, n_genes))
    for p in range(n_shared):
        g = rng.choice(state_pool, shared_len, replace=False)
        programs[p, g] = rng.normal(0.0, 1.0, shared_len)
    for t in np.flatnonzero(responsive):
        own = np.zeros(n_genes)
        g = rng.choice(state_pool, own_len, replace=False)
        own[g] = rng.normal(0.0, 1.0, own_len)
        slopes[t] = state_effect * (rng.normal(0.0, 1.0, n_shared) @ programs + own)

    return responsive, frac_unresp, is_state, base, effects, state_effect, slopes


def _cells(rng, n_cells, n_types, n_genes, base, effects, slopes, platform):
    """Each cell's type, state and counts (UMI-like or read-like depth)."""
    log_w = rng.normal(0.0, 0.5, n_types)
    w = np.exp(log_w) / np.exp(log_w).sum()
    sizes = 15 + rng.multinomial(n_cells - 15 * n_types, w)
    types = rng.permutation(np.repeat(np.arange(n_types), sizes))
    state = rng.uniform(-1.0, 1.0, n_cells)
    log_mu = base[None] + effects[types] + state[:, None] * slopes[types]
    prop = np.exp(log_mu - log_mu.max(1, keepdims=True))
    prop /= prop.sum(1, keepdims=True)
    if platform == "10x":
        depth = float(rng.uniform(2000, 6000))
        theta = float(rng.uniform(5, 15))
    else:
        depth = float(rng.uniform(3000, 8000))
        theta = float(rng.uniform(2, 5))
    lib = np.exp(rng.normal(np.log(depth), 0.35, n_cells))
    mu = prop * lib[:, None]
    counts = rng.poisson(rng.gamma(theta, mu / theta))
    amplification = None
    if platform == "smartseq":
        amplification = np.exp(rng.normal(np.log(20.0), 0.5, n_genes))
        counts = rng.poisson(counts * amplification[None])
    x = sp.csr_matrix(counts.astype(np.int32))

    return types, state, x, depth, theta


def _as_anndata(x, types, state, responsive, type_sub, type_class, sub_class, is_state,
                slopes) -> ad.AnnData:
    """The counts with the hierarchy, the true state and the genes' roles."""
    n_types, n_sub = len(type_sub), len(sub_class)
    n_classes, n_genes = int(sub_class.max()) + 1, x.shape[1]
    n_cells = x.shape[0]
    type_names = np.array([f"T{t}" for t in range(n_types)])
    sub_names = np.array([f"S{u}" for u in range(n_sub)])
    class_names = np.array([f"C{v}" for v in range(n_classes)])
    obs = pd.DataFrame(
        {
            "type": pd.Categorical(type_names[types], categories=type_names),
            "subclass": pd.Categorical(sub_names[type_sub[types]], categories=sub_names),
            "class": pd.Categorical(class_names[type_class[types]], categories=class_names),
            "state": state.astype(np.float32),
            "responsive": responsive[types],
        },
        index=[f"cell{i}" for i in range(n_cells)],
    )
    var = pd.DataFrame(
        {"role": pd.Categorical(np.where(is_state, "state", "other"))},
        index=[f"Gene{g}" for g in range(n_genes)],
    )
    adata = ad.AnnData(X=x, obs=obs, var=var)
    adata.varm["slopes"] = slopes.T.astype(np.float32)
    return adata

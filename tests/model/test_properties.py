"""Property-based: varied small AnnData either work end to end or raise our documented errors."""

import os
import re

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_robustness import (
    ANNOTATE_OBS,
    ANNOTATE_OBSM,
    SCVI_OBS,
    SCVI_UNS,
    assert_unchanged,
    fingerprint,
)

from cplmix_sc import CplMixVAE

#: the messages of docs/robustness.md that these inputs can trigger; anything else is a bug
DOCUMENTED = [
    r"NaN or infinite value\(s\); CplMixVAE needs finite counts",
    r"contains negative values \(min .*\); it looks scaled or centred",
    r"cells have no counts in .*sc\.pp\.filter_cells\(adata, min_counts=1\)",
    r"genes have no counts in .*sc\.pp\.filter_genes\(adata, min_counts=1\)",
    r"holds non-integer values .*likelihood='gaussian'",
    r"cells but n_categories=\d+; use fewer categories than cells",
    r"gene\(s\); CplMixVAE needs at least 2",
    r"`batch_size` must be at least 2",
    r"batch_size=\d+ is larger than the \d+ training cells",
    r"adata\.obs\['batch'\] has \d+ missing value",
    r"has shape .*; CplMixVAE needs at least one cell and one gene",
]


@st.composite
def anndatas(draw):
    n_cells = draw(st.integers(1, 30))
    n_genes = draw(st.integers(1, 10))
    dtype = draw(st.sampled_from([np.float32, np.float64, np.int32, np.int64]))
    rate = draw(st.sampled_from([0.5, 4.0, 20.0]))  # sparse-ish to dense counts
    seed = draw(st.integers(0, 2**16))
    x = np.random.default_rng(seed).poisson(rate, (n_cells, n_genes)).astype(np.float64)
    flaw = draw(st.sampled_from(["none"] * 4 + ["fraction", "negative", "nan"]))
    if flaw == "fraction":
        x = x * 0.5
    elif flaw == "negative":
        x[0, 0] = -1
    elif flaw == "nan":
        x[-1, -1] = np.nan
    if np.issubdtype(dtype, np.integer):
        x = np.nan_to_num(np.round(x), nan=0)
    x = x.astype(dtype)
    fmt = draw(st.sampled_from(["dense", "csr", "csc"]))
    adata = ad.AnnData({"dense": np.asarray, "csr": sp.csr_matrix, "csc": sp.csc_matrix}[fmt](x))
    adata.obs_names = [f"c{i}" for i in range(n_cells)]
    adata.var_names = [f"g{i}" for i in range(n_genes)]
    labels = draw(st.sampled_from(["none", "one", "two", "with_nan"]))
    batch_key = None
    if labels != "none":
        batch_key = "batch"
        values = np.array(["a", "b"], dtype=object)[np.arange(n_cells) % (1 if labels == "one"
                                                                          else 2)]
        if labels == "with_nan":
            values[0] = None
        adata.obs["batch"] = values
    adata.obs["qc"] = np.arange(n_cells, dtype=float)
    adata.obsm["X_umap"] = np.zeros((n_cells, 2))
    n_categories = draw(st.integers(2, 5))
    likelihood = draw(st.sampled_from(["nb", "gaussian"]))
    return adata, batch_key, n_categories, likelihood


@pytest.mark.filterwarnings("ignore")
#: more examples: CPLMIX_HYPOTHESIS_EXAMPLES=200 pytest tests/test_properties.py
@settings(
    max_examples=int(os.environ.get("CPLMIX_HYPOTHESIS_EXAMPLES", 25)),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(anndatas())
def test_setup_train_annotate_work_or_raise_documented_errors(case):
    adata, batch_key, n_categories, likelihood = case
    before = fingerprint(adata)
    dense_x = None if sp.issparse(adata.X) else adata.X
    stage = "setup"
    try:
        CplMixVAE.setup_anndata(adata, batch_key=batch_key)
        stage = "init"
        model = CplMixVAE(adata, n_categories=n_categories, likelihood=likelihood, n_hidden=8)
        stage = "train"
        model.train(max_epochs=1, warmup_epochs=1, batch_size=min(8, adata.n_obs),
                    enable_progress_bar=False)
        stage = "done"
    except (ValueError, TypeError, KeyError) as err:
        msg = str(err)
        assert any(re.search(p, msg) for p in DOCUMENTED), f"{stage}: undocumented error {msg!r}"
    if stage == "done":
        probs = adata.obsm["cpl_type_probs"]
        assert probs.shape == (adata.n_obs, n_categories)
        assert np.isfinite(probs).all()
    if dense_x is not None and not dense_x.flags["C_CONTIGUOUS"]:  # pragma: no cover
        return  # scvi-tools makes a Fortran-ordered X C-ordered (same values)
    assert_unchanged(
        adata, before, obs_added=SCVI_OBS | ANNOTATE_OBS, obsm_added=ANNOTATE_OBSM,
        uns_added=SCVI_UNS | {"cpl"},
    )


"""Checks on user input that raise errors naming the problem and the fix.

Every check here only *reads* the AnnData: nothing is converted, copied into it or densified
(sparse matrices are checked through their stored values; dense ones row block by row block).
The matrix of a backed AnnData (``read_h5ad(path, backed="r")``) is read from the file a block
of rows at a time (:mod:`cplmix_sc._backed`), never whole.
The messages are listed in ``docs/robustness.md``; keep both in sync.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from ._backed import check_backed_format, is_backed, row_blocks

#: rows of a dense matrix checked at a time (bounds the temporary memory of the checks)
_BLOCK_ROWS = 4096


def check_choice(name: str, value, choices) -> None:
    """Refuse an option string that is not one of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"`{name}` must be one of {list(choices)}, got {value!r}.")


def check_int(name: str, value, minimum: int) -> int:
    """An integer (Python or NumPy, not bool) at least ``minimum``; returns it as ``int``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be an integer, got {value!r} ({type(value).__name__}).")
    if value < minimum:
        raise ValueError(f"`{name}` must be at least {minimum}, got {value}.")
    return int(value)


def check_number(
    name: str,
    value,
    *,
    low: float,
    high: float | None = None,
    low_inclusive: bool = False,
    high_inclusive: bool = True,
) -> float:
    """A real number in ``(low, high]`` (``[low, ...`` with ``low_inclusive``, ``..., high)``
    without ``high_inclusive``); NaN and infinities are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise TypeError(f"`{name}` must be a finite number, got {value!r}.")
    too_low = value < low if low_inclusive else value <= low
    too_high = high is not None and (value > high if high_inclusive else value >= high)
    if too_low or too_high:
        left = "[" if low_inclusive else "("
        right = "inf)" if high is None else f"{high}]" if high_inclusive else f"{high})"
        raise ValueError(f"`{name}` must be in {left}{low}, {right}, got {value}.")
    return float(value)


def check_key_added(key_added, name: str = "key_added") -> str:
    """A key to write results under: a non-empty string without ``'/'``; returns it.

    ``'/'`` separates groups in an ``.h5ad`` file: ``write_h5ad`` writes such a key as nested
    groups and ``read_h5ad`` cannot read the file back (and a non-string key leaves a partly
    written file). Checking it first fails before anything is computed or written.
    """
    if not isinstance(key_added, str):
        raise TypeError(
            f"`{name}` must be a string (the prefix of the obs/obsm/uns keys written), got "
            f"{key_added!r} ({type(key_added).__name__}); pass e.g. {name}='cpl'."
        )
    if not key_added or "/" in key_added:
        raise ValueError(
            f"`{name}` must be a non-empty string without '/' ('/' separates groups in an "
            f".h5ad file: read_h5ad could not read the written file back), got {key_added!r}; "
            f"pass e.g. {name}='cpl'."
        )
    return key_added


def check_not_view(adata: AnnData, name: str = "adata") -> None:
    """Refuse views (``adata[mask]``): scvi-tools would turn them into copies in place.

    Backed AnnData (``read_h5ad(path, backed="r")``) are accepted: their matrix stays in the
    file and is read a block of rows at a time (see ``docs/scaling.md``).
    """
    if not isinstance(adata, AnnData):
        raise TypeError(f"`{name}` must be an AnnData, got {type(adata).__name__}.")
    if adata.is_view:
        raise ValueError(
            f"{name} is a view (e.g. adata[mask]); make it an AnnData of its own with "
            "adata = adata[mask].copy() first."
        )


def get_matrix(adata: AnnData, layer: str | None):
    """``adata.X`` or ``adata.layers[layer]`` and how to name it in messages."""
    if layer is not None and layer not in adata.layers:
        raise KeyError(
            f"Layer {layer!r} is not in adata.layers (available: {list(adata.layers)}). "
            "Pass the layer that holds the raw counts, or layer=None to use adata.X."
        )
    x = adata.X if layer is None else adata.layers[layer]
    where = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
    if x is None:
        raise ValueError(f"{where} is empty; CplMixVAE needs a cells x genes count matrix.")
    return x, where


def _value_blocks(x) -> Iterator[np.ndarray]:
    """The stored values of ``x`` in blocks, without densifying a sparse matrix.

    A backed matrix is read from its file a block of rows at a time.
    """
    if is_backed(x):
        for block in row_blocks(x):
            yield np.asarray(block.data) if sp.issparse(block) else block
        return
    if sp.issparse(x):
        yield np.asarray(x.data)
        return
    if not isinstance(x, np.ndarray):
        raise TypeError(
            f"Unsupported matrix type {type(x).__name__}; use a numpy array or a scipy "
            "CSR/CSC matrix."
        )
    for start in range(0, x.shape[0], _BLOCK_ROWS):
        yield x[start : start + _BLOCK_ROWS]


def check_values(x, where: str) -> bool:
    """Refuse non-numeric, non-finite and negative values; return whether all are integers."""
    dtype = x.dtype
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        raise TypeError(
            f"{where} has dtype {dtype}; it must hold numbers (integer or float counts). "
            f"Convert it, e.g. {where} = {where}.astype(np.float32), if the strings are numbers."
        )
    n_bad = 0
    low = 0
    for block in _value_blocks(x):
        if block.size == 0:
            continue
        if np.issubdtype(dtype, np.floating):
            n_bad += int(block.size - np.isfinite(block).sum())
            if n_bad:
                continue
        low = min(low, block.min())
    if n_bad:
        raise ValueError(
            f"{where} contains {n_bad} NaN or infinite value(s); CplMixVAE needs finite "
            "counts. Pass the layer with raw counts (e.g. layer='counts') or fix the matrix."
        )
    if low < 0:
        raise ValueError(
            f"{where} contains negative values (min {low:.3g}); it looks scaled or "
            "centred. Pass raw counts (e.g. layer='counts')."
        )
    return first_non_integer(x) is None


def first_non_integer(x) -> float | None:
    """A value of ``x`` that is not an integer, or ``None``."""
    if np.issubdtype(x.dtype, np.integer):
        return None
    for block in _value_blocks(x):
        bad = block != np.round(block)
        if bad.any():
            return float(block[bad].flat[0])
    return None


def non_integer_message(where: str, value: float) -> str:
    return (
        f"{where} holds non-integer values (e.g. {value:.4g}), so it looks normalised or "
        "log-transformed, but likelihood='nb' models raw counts. Pass the layer with counts "
        "in setup_anndata (e.g. layer='counts'), restore them (e.g. round(expm1(x)) for "
        "log1p UMIs), or use likelihood='gaussian' if the data are not counts (e.g. TPM)."
    )


def check_nonempty(x, where: str, adata: AnnData, genes: bool = True) -> None:
    """Refuse cells (and, with ``genes``, genes) whose values are all zero."""
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(
            f"{where} has shape {x.shape}; CplMixVAE needs at least one cell and one gene."
        )
    checks = [(1, "cells", adata.obs_names, "they carry no information about their type. "
               "Remove them first, e.g. sc.pp.filter_cells(adata, min_counts=1).")]
    if genes:
        checks.append((0, "genes", adata.var_names,
                       "remove them first, e.g. sc.pp.filter_genes(adata, min_counts=1)."))
    backed_totals = _backed_totals(x) if is_backed(x) else None
    for axis, what, labels, fix in checks:
        if backed_totals is not None:
            totals = backed_totals[axis]
        else:
            totals = np.asarray(x.sum(axis=axis, dtype=np.float64)).ravel()
        empty = np.flatnonzero(totals == 0)
        if empty.size:
            names = ", ".join(map(str, labels[empty[:3]]))
            raise ValueError(
                f"{empty.size} of {x.shape[1 - axis]} {what} have no counts in {where} "
                f"(e.g. {names}); {fix}"
            )


def _backed_totals(x) -> tuple[np.ndarray, np.ndarray]:
    """``(gene totals, cell totals)`` of a backed matrix, in one pass over its row blocks."""
    genes = np.zeros(x.shape[1], dtype=np.float64)
    cells = []
    for block in row_blocks(x):
        genes += np.asarray(block.sum(axis=0, dtype=np.float64)).ravel()
        cells.append(np.asarray(block.sum(axis=1, dtype=np.float64)).ravel())
    return genes, np.concatenate(cells) if cells else np.zeros(0)


def check_unique_var_names(adata: AnnData, name: str = "adata") -> None:
    """Refuse duplicated gene names: genes are matched, saved and reported by name."""
    names = adata.var_names
    if not names.has_duplicates:
        return
    dup = names[names.duplicated()].unique()
    raise ValueError(
        f"{name}.var_names has {len(dup)} duplicated gene name(s) (e.g. "
        f"{', '.join(map(repr, dup[:3].tolist()))}); the model matches, saves and reports genes "
        f"by name, so each name must be unique. Make them unique with "
        f"{name}.var_names_make_unique() (or remove the duplicated genes) first."
    )


def check_counts(adata: AnnData, layer: str | None, genes: bool = True) -> bool:
    """All checks of the count matrix; returns whether every value is an integer.

    Refuses duplicated ``var_names``, a missing layer, a missing or non-numeric matrix,
    NaN/inf, negative values and all-zero cells (and all-zero genes with ``genes=True``).
    Non-integer values are *not* refused here: only ``likelihood="nb"`` needs integers,
    checked by the model.
    """
    check_unique_var_names(adata)
    x, where = get_matrix(adata, layer)
    check_backed_format(x, where)
    is_integer = check_values(x, where)
    check_nonempty(x, where, adata, genes=genes)
    return is_integer


def check_obs_key(adata: AnnData, key: str | None, name: str) -> None:
    """A categorical obs column without missing values."""
    if key is None:
        return
    if key not in adata.obs:
        raise KeyError(
            f"{name} {key!r} is not a column of adata.obs (columns: {list(adata.obs.columns)})."
        )
    missing = int(pd.isna(adata.obs[key]).sum())
    if missing:
        raise ValueError(
            f"adata.obs[{key!r}] has {missing} missing value(s); fill them (e.g. "
            f"adata.obs[{key!r}] = adata.obs[{key!r}].astype(str)) or remove those cells."
        )


def check_same_genes(reference: pd.Index, adata: AnnData) -> None:
    """Refuse an AnnData whose genes (names and order) differ from the model's."""
    names = adata.var_names
    if len(names) == len(reference) and (names == reference).all():
        return
    missing = reference.difference(names)
    extra = names.difference(reference)
    if missing.empty:
        fix = (
            "Select and order the model's genes with "
            "adata = adata[:, model.adata.var_names].copy()."
        )
    else:
        fix = (
            f"The model cannot use data without {len(missing)} of its genes (e.g. "
            f"{', '.join(map(str, missing[:3]))}); use an AnnData measured on the same genes."
        )
    if missing.empty and extra.empty:
        problem = "has the model's genes in a different order"
    else:
        problem = (
            f"has {len(names)} genes, the model {len(reference)} ({len(missing)} of the "
            f"model's missing, {len(extra)} others)"
        )
    raise ValueError(f"The AnnData {problem}. {fix}")


def check_query_batches(adata: AnnData, key: str, seen) -> None:
    """Batches of new data (``annotate``, ``load`` with an AnnData) must be ones the model was
    trained on: a decoder is conditioned on its batch and has no setting for an unseen one."""
    if key not in adata.obs:
        raise KeyError(
            f"The model was trained with batch_key={key!r}, which is not a column of this "
            f"adata.obs; add adata.obs[{key!r}] with one of the training batches per cell "
            f"({_preview(seen)})."
        )
    values = adata.obs[key]
    n_missing = int(pd.isna(values).sum())
    if n_missing:
        raise ValueError(
            f"adata.obs[{key!r}] has {n_missing} missing value(s); set each cell's batch to one "
            f"of the training batches ({_preview(seen)}), or remove those cells."
        )
    seen = pd.Index(seen)
    unseen = pd.Index(pd.unique(np.asarray(values, dtype=object))).difference(seen, sort=False)
    if len(unseen) == 0:
        return
    as_text = seen.astype(str)
    if pd.Index(unseen.astype(str)).isin(as_text).all():
        raise ValueError(
            f"adata.obs[{key!r}] holds {list(unseen[:5])} ({type(unseen[0]).__name__}) where "
            f"the model's batches are {_preview(seen)} ({type(seen[0]).__name__}); convert "
            f"them, e.g. adata.obs[{key!r}] = adata.obs[{key!r}].astype(str)."
        )
    raise ValueError(
        f"adata.obs[{key!r}] has batches the model was not trained on: {_preview(unseen)}. "
        f"The decoders are conditioned on the batch, so each cell needs one of the training "
        f"batches ({_preview(seen)}): map a new batch to its closest training batch (e.g. the "
        f"same platform or donor group), or train a model that includes it "
        "(docs/robustness.md, 'Batches of new data')."
    )


def _preview(values, n: int = 8) -> str:
    values = [str(v) for v in values]
    return ", ".join(values[:n]) + (f" and {len(values) - n} more" if len(values) > n else "")

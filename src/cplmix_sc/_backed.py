"""Count matrices of backed (on-disk) AnnData, read a block of rows at a time.

``anndata.read_h5ad(path, backed="r")`` keeps ``adata.X`` in the file: an
:class:`h5py.Dataset` for a dense matrix, an :class:`anndata.abc.CSRDataset` for a CSR one.
Nothing here reads the whole matrix at once: rows are read in blocks of at most
:data:`BLOCK_ENTRIES` matrix entries (dense) or of as many rows (sparse), in increasing order
(h5py needs increasing indices).
"""

from __future__ import annotations

from collections.abc import Iterator

import h5py
import numpy as np
import scipy.sparse as sp
from anndata.abc import CSCDataset, CSRDataset

#: matrix entries (rows x genes) read from the file at a time
BLOCK_ENTRIES = 8_000_000


def is_backed(x) -> bool:
    """Whether ``x`` is a matrix stored in a file (``adata.X`` of a backed AnnData)."""
    return isinstance(x, h5py.Dataset | CSRDataset | CSCDataset)


def block_rows(n_genes: int) -> int:
    """Rows read at a time from a matrix with ``n_genes`` columns."""
    return max(1, BLOCK_ENTRIES // max(int(n_genes), 1))


def check_backed_format(x, where: str) -> None:
    """Refuse a backed CSC matrix: reading its rows would read the whole file each time."""
    if isinstance(x, CSCDataset):
        raise ValueError(
            f"{where} is a CSC sparse matrix on disk; CplMixVAE reads cells (rows), which a "
            "CSC file can only serve by reading all of it. Store the counts as CSR, e.g. "
            "adata = adata.to_memory(); adata.X = adata.X.tocsr(); adata.write_h5ad(path), "
            "then read it again with backed='r'."
        )


def row_blocks(x, rows: np.ndarray | None = None) -> Iterator[np.ndarray | sp.csr_matrix]:
    """In-memory blocks of rows of a backed matrix (all rows, or the increasing ``rows``).

    Dense data give NumPy arrays, CSR data CSR matrices, in the file's dtype.
    """
    n, g = x.shape
    step = block_rows(g)
    if rows is None:
        for start in range(0, n, step):
            yield x[start : min(start + step, n)]
        return
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size > 1 and np.any(np.diff(rows) <= 0):
        raise ValueError("rows must be strictly increasing to be read from a backed matrix.")
    for start in range(0, rows.size, step):
        chunk = rows[start : start + step]
        if chunk.size == chunk[-1] - chunk[0] + 1:  # consecutive rows: one contiguous read
            yield x[int(chunk[0]) : int(chunk[-1]) + 1]
        else:
            yield x[chunk]


def read_rows(x, rows: np.ndarray | None = None) -> sp.csr_matrix:
    """Rows of a backed matrix as one in-memory CSR matrix (never a dense copy of them all).

    Dense blocks are converted to CSR as they are read, so host memory holds the non-zero
    entries of ``rows`` plus one block.
    """
    blocks = [b if sp.issparse(b) else sp.csr_matrix(b) for b in row_blocks(x, rows)]
    if not blocks:
        return sp.csr_matrix((0, x.shape[1]), dtype=x.dtype)
    return sp.vstack(blocks, format="csr")


def nonzero_fraction(x, dense_rows: int = 100) -> float:
    """Fraction of non-zero entries of a count matrix, in memory or backed, without reading it.

    Sparse (in memory or a CSR file): exact, from the number of stored entries. Dense: from the
    first ``dense_rows`` rows (as scvi-tools' registration reads them).
    """
    n, g = x.shape
    if sp.issparse(x):
        return x.nnz / max(n * g, 1)
    if isinstance(x, CSRDataset | CSCDataset):
        return x.group["data"].shape[0] / max(n * g, 1)
    block = np.asarray(x[: min(n, dense_rows)])
    return np.count_nonzero(block) / max(block.size, 1)

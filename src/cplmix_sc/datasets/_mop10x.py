"""BICCN mouse primary motor cortex (MOp) 10x v2/v3 data, as processed by the Allen Institute.

The NeMO archive holds one "processed/analysis" folder per AIBS 10x dataset (e.g.
``10X_cells_v2_AIBS``, ``10X_cells_v3_AIBS``). What the files look like was checked against
public code that reads them (not against the files themselves, which could not be downloaded
here):

* ``matrix.mtx.gz``: MatrixMarket, genes x cells (an R script reads it with ``readMM`` and sets
  ``rownames = features$V2``, ``colnames = barcodes``);
* ``features.tsv.gz``: 10x-style, no header; column 1 gene ID, column 2 gene symbol;
* ``barcode.tsv``: one cell name per row after a header; R's ``write.csv`` quoting (``"","x"``
  then ``"1","<cell>"``) is assumed from a public R script that strips quotes and commas and a
  shell script that writes that layout for a dataset lacking the file. The parser takes the
  last comma-separated, unquoted field of each line, so a plain one-name-per-line file works
  too;
* ``umi_counts.h5``: a CellRanger HDF5 matrix (read with ``scanpy.read_10x_h5`` in a public
  script); its barcodes are the cell names' prefix before the first ``"L"`` (e.g.
  ``AAACCTGAGAGTGAGA-1`` of ``AAACCTGAGAGTGAGA-1L8TX_...``), as two public scripts map them;
* ``cluster.membership.csv``: index column = cell name, one column (``x``) = ``cluster_id``;
* ``cluster.annotation.csv``: one row per cluster with ``cluster_id``, ``cluster_label``,
  ``subclass_label``, ``class_label`` (and ``cluster_color``, ``size``);
* ``QC.csv``: index column and a column ``x`` listing the cells that passed QC;
* ``sample_metadata.csv`` (optional): index column = cell name, per-cell metadata.
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse as sp

from ._registry import (
    READ_ERRORS,
    REGISTRY,
    DatasetFileError,
    DatasetNotFoundError,
    damaged_file,
    data_dir,
    fetch,
    manual_steps,
    read_csv,
)

DATASETS = ("10X_cells_v2_AIBS", "10X_cells_v3_AIBS")
MTX_FILES = ("matrix.mtx.gz", "features.tsv.gz", "barcode.tsv")
ANNOTATION_FILES = ("cluster.annotation.csv", "cluster.membership.csv")
LABELS = ("class_label", "subclass_label", "cluster_label")
#: what reading a cut, damaged or garbled file raises (gzip: EOFError/BadGzipFile/zlib.error;
#: h5py: OSError; scipy.io.mmread and pandas: ValueError and its subclasses)
#: first lines of barcode.tsv / features.tsv taken for a header (compared in lower case)
BARCODE_HEADERS = {"", "x", "barcode", "barcodes", "cell", "cells", "cell_id", "cell_name",
                   "cell_names", "sample_name", "name", "names"}
FEATURE_HEADERS = {"", "x", "id", "ids", "gene", "genes", "gene_id", "gene_ids", "geneid",
                   "feature_id", "ensembl_id", "gene_symbol", "symbol", "name"}
REFETCH = (
    "Delete it and download it again (mop10x(path, download=True) downloads the missing files, "
    "or see the manual steps in the DatasetNotFoundError that mop10x raises without it)."
)


def _folder(root: Path, name: str, single: bool) -> Path:
    sub = root / name
    if sub.is_dir() or not single:
        return sub
    return root  # a single dataset may sit directly in ``path``


def _has_counts(folder: Path) -> bool:
    return (folder / "umi_counts.h5").is_file() or all(
        (folder / f).is_file() or (folder / f.removesuffix(".gz")).is_file() for f in MTX_FILES
    )


def _missing(folder: Path, qc: bool) -> list[str]:
    need = [*ANNOTATION_FILES, *(["QC.csv"] if qc else [])]
    out = [f for f in need if not (folder / f).is_file()]
    if not _has_counts(folder):
        out += [
            f
            for f in MTX_FILES
            if not ((folder / f).is_file() or (folder / f.removesuffix(".gz")).is_file())
        ]
    return out


def _existing(path: Path) -> Path:
    """``path``, or ``path`` without ``.gz`` when only the uncompressed file is there."""
    if not path.is_file() and path.suffix == ".gz":
        return path.with_suffix("")
    return path


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _count_mismatch(path: Path, what: str, found: int, header: str | None, matrix: str,
                    n: int, axis: str, hint: str = "") -> DatasetFileError:
    after = f" after its header line {header!r}" if header is not None else ""
    return DatasetFileError(
        f"{path} lists {found} {what}{after}, but {matrix} has {n} {axis}: {hint}the file is "
        "incomplete or damaged (e.g. a cut download or a lost line), or it belongs to another "
        f"matrix, and reading it would pair {what} with the wrong counts. {REFETCH}"
    )


def _read_barcodes(path: Path, n: int, matrix: str) -> np.ndarray:
    """The cell names of barcode.tsv, one per matrix column; a header line is recognised.

    A header is the first line when its first field is empty (R's ``write.csv``: ``"","x"``)
    or its name is a column name such as ``x`` or ``barcode`` (see ``BARCODE_HEADERS``); it is
    never inferred from the number of lines, which would shift every barcode by one when the
    file is one line short.
    """
    rows, lines = [], []
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if line:
                    lines.append(line)
                    rows.append([f.strip().strip('"').strip() for f in line.split(",")])
    except READ_ERRORS as err:
        raise damaged_file(path, err, REFETCH) from err
    first = rows[0] if rows else None
    has_header = first is not None and (
        (len(first) > 1 and first[0] == "") or first[-1].lower() in BARCODE_HEADERS
    )
    body = rows[1:] if has_header else rows
    names = [r[-1] for r in body]
    if len(names) != n:
        hint = ""
        numbers = [r[0] for r in body if len(r) > 1]
        if len(numbers) == len(body) and all(x.isdigit() for x in numbers):
            gap = next((i for i, x in enumerate(numbers) if int(x) != i + 1), None)
            if gap is not None:  # R's write.csv numbers the rows 1, 2, ...
                hint = (f"its row numbers skip from {gap} to {numbers[gap]} at line "
                        f"{gap + 1 + has_header}; ")
        if not has_header and len(names) == n + 1:
            hint += f"its first line {names[0]!r} may be a header of a form not recognised; "
        raise _count_mismatch(path, "cell barcodes", len(names),
                              lines[0] if has_header else None, matrix, n,
                              "cells (columns)", hint)
    return np.asarray(names, dtype=object)


def _read_features(path: Path, n: int, matrix: str) -> pd.DataFrame:
    """gene_ids and gene_symbol of features.tsv (10x: no header; one is recognised)."""
    try:
        with _open(path) as fh:
            feats = pd.read_csv(fh, sep="\t", header=None, dtype=str, na_filter=False)
    except READ_ERRORS as err:
        raise damaged_file(path, err, REFETCH) from err
    header = None
    if len(feats) and str(feats.iat[0, 0]).strip().lower() in FEATURE_HEADERS:
        header = "\t".join(feats.iloc[0].astype(str))
        feats = feats.iloc[1:]
    if len(feats) != n:
        raise _count_mismatch(path, "genes", len(feats), header, matrix, n, "genes (rows)")
    symbol = feats.iloc[:, 1] if feats.shape[1] > 1 else feats.iloc[:, 0]
    return pd.DataFrame(
        {"gene_ids": feats.iloc[:, 0].to_numpy(), "gene_symbol": symbol.to_numpy()}
    )


def _read_mtx(folder: Path) -> tuple[sp.csr_matrix, np.ndarray, pd.DataFrame]:
    path = _existing(folder / "matrix.mtx.gz")
    try:
        with _open(path) as fh:
            m = scipy.io.mmread(fh)
    except READ_ERRORS as err:
        raise damaged_file(path, err, REFETCH) from err
    m = sp.csr_matrix(m.T, dtype=np.float32)  # cells x genes
    var = _read_features(_existing(folder / "features.tsv.gz"), m.shape[1], path.name)
    return m, _read_barcodes(folder / "barcode.tsv", m.shape[0], path.name), var


def _read_h5(path: Path) -> tuple[sp.csr_matrix, np.ndarray, pd.DataFrame]:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "matrix" in f:  # CellRanger >= 3
                g = f["matrix"]
                ids = g["features"]["id"][:].astype(str)
                names = g["features"]["name"][:].astype(str)
            else:  # CellRanger 2: one group per genome
                g = f[next(iter(f.keys()))]
                ids, names = g["genes"][:].astype(str), g["gene_names"][:].astype(str)
            shape = tuple(int(s) for s in g["shape"][:])  # genes x cells, CSC over cells
            data, indices, indptr = g["data"][:], g["indices"][:], g["indptr"][:]
            barcodes = g["barcodes"][:].astype(str)
    except (StopIteration, *READ_ERRORS) as err:
        raise damaged_file(path, err, REFETCH) from err
    lengths = {"barcodes": (len(barcodes), shape[1]), "genes": (len(ids), shape[0]),
               "indptr": (len(indptr), shape[1] + 1)}
    wrong = {k: v for k, v in lengths.items() if v[0] != v[1]}
    if wrong:
        what = ", ".join(f"{k} {a} (shape says {b})" for k, (a, b) in wrong.items())
        raise DatasetFileError(
            f"{path} does not match its own shape {shape}: {what}; the file is damaged or "
            f"incomplete. {REFETCH}"
        )
    try:
        m = sp.csc_matrix((data, indices, indptr), shape=shape)
    except ValueError as err:
        raise damaged_file(path, err, REFETCH) from err
    return (
        sp.csr_matrix(m.T, dtype=np.float32),
        np.asarray(barcodes, dtype=object),
        pd.DataFrame({"gene_ids": ids, "gene_symbol": names}),
    )


def _match_h5_barcodes(barcodes: np.ndarray, cells: pd.Index, name: str) -> np.ndarray:
    """Map umi_counts.h5 barcodes onto the full cell names (prefix before the first 'L')."""
    if pd.Index(barcodes).isin(cells).any():
        return barcodes
    short = pd.Series(cells.to_numpy(), index=[c.split("L")[0] for c in cells])
    if short.index.has_duplicates:
        raise ValueError(
            f"{name}: umi_counts.h5 barcodes cannot be matched to cell names uniquely; "
            "use matrix.mtx.gz, features.tsv.gz and barcode.tsv instead."
        )
    long = short.reindex(barcodes).to_numpy(dtype=object)
    unmatched = pd.isna(long)
    long[unmatched] = barcodes[unmatched]  # cells without annotation keep their short barcode
    return long


def _refuse_duplicates(index: pd.Index, path: Path, what: str) -> None:
    if index.has_duplicates:
        dup = index[index.duplicated()].unique()
        raise DatasetFileError(
            f"{path} lists {len(dup)} {what} more than once (e.g. {list(dup[:3])}); the "
            f"file is damaged or was edited. {REFETCH}"
        )


def _read_dataset(folder: Path, name: str, qc: bool) -> ad.AnnData:
    if (folder / "umi_counts.h5").is_file():
        counts_file = folder / "umi_counts.h5"
        x, barcodes, var = _read_h5(counts_file)
        h5 = True
    else:
        counts_file = folder / "barcode.tsv"
        x, barcodes, var = _read_mtx(folder)
        h5 = False
    membership_path = folder / "cluster.membership.csv"
    membership = read_csv(membership_path, REFETCH, index_col=0)
    if membership.shape[1] < 1:
        raise DatasetFileError(f"{membership_path} needs a cluster id column.")
    membership = membership.iloc[:, [0]].set_axis(["cluster_id"], axis=1)
    membership.index = membership.index.astype(str)
    _refuse_duplicates(membership.index, membership_path, "cell(s)")
    annotation_path = folder / "cluster.annotation.csv"
    annotation = read_csv(annotation_path, REFETCH)
    annotation = annotation.loc[:, ~annotation.columns.str.startswith("Unnamed:")]
    if "cluster_id" not in annotation:
        raise DatasetFileError(f"{annotation_path} lacks a 'cluster_id' column.")
    lacking = [c for c in LABELS if c not in annotation]
    if lacking:
        raise DatasetFileError(f"{annotation_path} lacks columns {lacking}.")
    _refuse_duplicates(pd.Index(annotation["cluster_id"]), annotation_path, "cluster id(s)")
    obs = membership.join(annotation.set_index("cluster_id"), on="cluster_id", how="left")
    if obs["cluster_label"].isna().any():
        raise DatasetFileError(
            f"{name}: cluster ids of cluster.membership.csv not in the annotation."
        )
    if qc:
        passed = read_csv(folder / "QC.csv", REFETCH, index_col=0)
        col = "x" if "x" in passed else passed.columns[0]
        obs = obs.loc[obs.index.isin(passed[col].astype(str))]
    meta_path = folder / "sample_metadata.csv"
    if meta_path.is_file():
        meta = read_csv(meta_path, REFETCH, index_col=0, low_memory=False)
        meta.index = meta.index.astype(str)
        _refuse_duplicates(meta.index, meta_path, "cell(s)")
        meta = meta.drop(columns=[c for c in meta if c in obs])
        obs = obs.join(meta, how="left")
    if h5:
        barcodes = _match_h5_barcodes(barcodes, obs.index, name)
    _refuse_duplicates(pd.Index(barcodes), counts_file, "cell barcode(s)")
    position = pd.Index(barcodes).get_indexer(obs.index)
    if (position < 0).any():
        raise DatasetFileError(
            f"{name}: {(position < 0).sum()} annotated cells of cluster.membership.csv have no "
            f"counts column in {counts_file}, e.g. {list(obs.index[position < 0][:3])}: the "
            "count files and the annotation come from different folders or releases, or the "
            "count files are damaged; download the folder's files again."
        )
    obs["dataset"] = name
    var.index = ad.utils.make_index_unique(pd.Index(var["gene_symbol"].astype(str)))
    return ad.AnnData(X=x[position], obs=obs, var=var)


def mop10x(
    path: str | Path | None = None,
    *,
    datasets: Sequence[str] = DATASETS,
    qc: bool = True,
    download: bool = False,
) -> ad.AnnData:
    """BICCN mouse primary motor cortex (MOp) 10x v2 and v3 cells (Allen Institute, NeMO).

    Reads the AIBS "processed/analysis" folders of the BICCN MOp 10x single-cell data from the
    NeMO archive (CC BY 4.0; Yao et al. 2021): counts from ``matrix.mtx.gz`` +
    ``features.tsv.gz`` + ``barcode.tsv`` (or a CellRanger ``umi_counts.h5``), cluster labels
    from ``cluster.membership.csv`` + ``cluster.annotation.csv``, the QC pass list ``QC.csv``
    and, if present, ``sample_metadata.csv``. Only annotated cells are kept (and, with ``qc``,
    those in ``QC.csv``). The module docstring lists which file layouts were checked in public
    code and which were assumed. No paper-specific cell or gene selection is applied.

    Parameters
    ----------
    path
        Folder holding one sub-folder per dataset (``path/10X_cells_v3_AIBS/...``); with a
        single dataset its files may sit in ``path`` itself. Default:
        ``$CPLMIX_DATA_DIR/mop10x`` (else pooch's user cache).
    datasets
        NeMO folder names to read, concatenated in this order (default: single cells, 10x v2
        and v3).
    qc
        Keep only the cells listed in ``QC.csv``.
    download
        Download missing files with pooch (URLs in ``_registry.py``; no checksum is known, so
        the first download is not verified). Files already present are never downloaded.

    Returns
    -------
    AnnData, cells x genes (genes shared by all datasets, in the first dataset's order). ``X``:
    integer UMI counts as sparse CSR float32. ``obs`` (index: cell name): ``cluster_id``,
    ``cluster_label``, ``subclass_label``, ``class_label`` (categorical), the other annotation
    and sample-metadata columns, and ``dataset``. ``var`` (index: gene symbol made unique):
    ``gene_ids``, ``gene_symbol``.

    Raises
    ------
    DatasetNotFoundError
        When files are missing (and ``download`` is off or fails), naming them and the
        manual steps.
    DatasetFileError
        (a ``ValueError``) When a file cannot be read (a cut gzip or ``.h5``, a garbled CSV)
        or disagrees with the others: ``barcode.tsv`` or ``features.tsv.gz`` listing more or
        fewer names than the matrix has columns or rows (a header line of ``barcode.tsv`` is
        recognised, never guessed from the count), a cell listed twice. The message names
        the file and the fix.

    References
    ----------
    Yao Z. et al. (2021) A transcriptomic and epigenomic cell atlas of the mouse primary motor
    cortex. Nature 598:103-110. BICCN (2021) A multimodal cell census and atlas of the mammalian
    primary motor cortex. Nature 598:86-102.
    """
    datasets = list(datasets)
    if not datasets:
        raise ValueError("datasets must name at least one NeMO folder, e.g. '10X_cells_v3_AIBS'.")
    root = Path(path).expanduser() if path is not None else data_dir() / "mop10x"
    single = len(datasets) == 1
    folders = {d: _folder(root, d, single) for d in datasets}
    missing = {d: _missing(f, qc) for d, f in folders.items()}
    if download and any(missing.values()):
        for d, files in missing.items():
            if not files or any(f"{d}/{f}" not in REGISTRY["mop10x"] for f in files):
                continue  # complete, or a folder the registry does not know
            for f in [*files, "sample_metadata.csv"]:
                if not (folders[d] / f).is_file():
                    fetch("mop10x", f"{d}/{f}", folders[d])
        missing = {d: _missing(f, qc) for d, f in folders.items()}
    if any(missing.values()):
        lines = "; ".join(
            f"{folders[d]}: {', '.join(files)}" for d, files in missing.items() if files
        )
        where = "" if root.is_dir() else f" (the data folder {root} does not exist)"
        raise DatasetNotFoundError(
            f"mop10x: missing file(s) {lines}{where}.\n"
            + manual_steps("mop10x", root, datasets=", ".join(datasets))
        )

    parts = [_read_dataset(folders[d], d, qc) for d in datasets]
    if len(parts) == 1:
        adata = parts[0]
    else:
        shared = parts[0].var_names
        for p in parts[1:]:
            shared = shared[shared.isin(p.var_names)]
        adata = ad.concat([p[:, shared] for p in parts], join="inner", merge="first")
    for col in (*LABELS, "dataset"):
        adata.obs[col] = pd.Categorical(adata.obs[col].astype(str))
    adata.uns["dataset"] = {"name": "mop10x", "datasets": datasets, "qc": qc}
    return adata

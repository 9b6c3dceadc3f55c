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

from ._registry import REGISTRY, DatasetNotFoundError, data_dir, fetch, manual_steps

DATASETS = ("10X_cells_v2_AIBS", "10X_cells_v3_AIBS")
MTX_FILES = ("matrix.mtx.gz", "features.tsv.gz", "barcode.tsv")
ANNOTATION_FILES = ("cluster.annotation.csv", "cluster.membership.csv")
LABELS = ("class_label", "subclass_label", "cluster_label")


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


def _open(path: Path):
    if not path.is_file() and path.suffix == ".gz":
        path = path.with_suffix("")
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _read_barcodes(path: Path, n: int) -> np.ndarray:
    names = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if line:
                names.append(line.split(",")[-1].strip().strip('"').strip())
    if len(names) == n + 1:
        names = names[1:]  # header row
    if len(names) != n:
        raise ValueError(f"{path.name} lists {len(names)} cells, matrix.mtx has {n} columns.")
    return np.asarray(names, dtype=object)


def _read_mtx(folder: Path) -> tuple[sp.csr_matrix, np.ndarray, pd.DataFrame]:
    with _open(folder / "matrix.mtx.gz") as fh:
        m = scipy.io.mmread(fh)
    m = sp.csr_matrix(m.T, dtype=np.float32)  # cells x genes
    with _open(folder / "features.tsv.gz") as fh:
        feats = pd.read_csv(fh, sep="\t", header=None, dtype=str)
    if len(feats) != m.shape[1]:
        raise ValueError(
            f"features.tsv lists {len(feats)} genes, matrix.mtx has {m.shape[1]} rows."
        )
    symbol = feats.iloc[:, 1] if feats.shape[1] > 1 else feats.iloc[:, 0]
    var = pd.DataFrame({"gene_ids": feats.iloc[:, 0].to_numpy(), "gene_symbol": symbol.to_numpy()})
    return m, _read_barcodes(folder / "barcode.tsv", m.shape[0]), var


def _read_h5(path: Path) -> tuple[sp.csr_matrix, np.ndarray, pd.DataFrame]:
    import h5py

    with h5py.File(path, "r") as f:
        if "matrix" in f:  # CellRanger >= 3
            g = f["matrix"]
            ids = g["features"]["id"][:].astype(str)
            names = g["features"]["name"][:].astype(str)
        else:  # CellRanger 2: one group per genome
            g = f[next(iter(f.keys()))]
            ids, names = g["genes"][:].astype(str), g["gene_names"][:].astype(str)
        shape = tuple(int(s) for s in g["shape"][:])  # genes x cells, CSC over cells
        m = sp.csc_matrix((g["data"][:], g["indices"][:], g["indptr"][:]), shape=shape)
        barcodes = g["barcodes"][:].astype(str)
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


def _read_dataset(folder: Path, name: str, qc: bool) -> ad.AnnData:
    if (folder / "umi_counts.h5").is_file():
        x, barcodes, var = _read_h5(folder / "umi_counts.h5")
        h5 = True
    else:
        x, barcodes, var = _read_mtx(folder)
        h5 = False
    membership = pd.read_csv(folder / "cluster.membership.csv", index_col=0)
    if membership.shape[1] < 1:
        raise ValueError(f"{name}/cluster.membership.csv needs a cluster id column.")
    membership = membership.iloc[:, [0]].set_axis(["cluster_id"], axis=1)
    membership.index = membership.index.astype(str)
    annotation = pd.read_csv(folder / "cluster.annotation.csv")
    annotation = annotation.loc[:, ~annotation.columns.str.startswith("Unnamed:")]
    if "cluster_id" not in annotation:
        raise ValueError(f"{name}/cluster.annotation.csv lacks a 'cluster_id' column.")
    lacking = [c for c in LABELS if c not in annotation]
    if lacking:
        raise ValueError(f"{name}/cluster.annotation.csv lacks columns {lacking}.")
    obs = membership.join(annotation.set_index("cluster_id"), on="cluster_id", how="left")
    if obs["cluster_label"].isna().any():
        raise ValueError(f"{name}: cluster ids of cluster.membership.csv not in the annotation.")
    if qc:
        passed = pd.read_csv(folder / "QC.csv", index_col=0)
        col = "x" if "x" in passed else passed.columns[0]
        obs = obs.loc[obs.index.isin(passed[col].astype(str))]
    meta_path = folder / "sample_metadata.csv"
    if meta_path.is_file():
        meta = pd.read_csv(meta_path, index_col=0, low_memory=False)
        meta.index = meta.index.astype(str)
        meta = meta.drop(columns=[c for c in meta if c in obs])
        obs = obs.join(meta, how="left")
    if h5:
        barcodes = _match_h5_barcodes(barcodes, obs.index, name)
    if pd.Index(barcodes).has_duplicates:
        raise ValueError(f"{name}: the count matrix lists some cell barcodes twice.")
    position = pd.Index(barcodes).get_indexer(obs.index)
    if (position < 0).any():
        raise ValueError(
            f"{name}: {(position < 0).sum()} annotated cells have no counts column, "
            f"e.g. {list(obs.index[position < 0][:3])}."
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

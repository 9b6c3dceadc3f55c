"""Tasic et al. 2018 mouse VISp + ALM Smart-seq (Allen Brain Map release of 2018-06-14).

File format (checked against public code that reads these files, not against the files):

* ``mouse_{R}_2018-06-14_exon-matrix.csv`` / ``..._intron-matrix.csv``: genes x cells read
  counts, comma separated, with a header row of sample names (its first field is the index
  column's name) and the first column holding the gene's Entrez ID, rows in the order of
  ``genes-rows.csv`` (a public curation script checks ``rows == genes["gene_entrez_id"]``).
  VISp: 15,413 cells; ALM: 10,068 cells; 45,768 genes (numbers printed in the MMIDAS authors'
  data-preparation notebook, AllenInstitute/Dist_MMIDAS ``notebooks/1_data_prep.ipynb``).
* ``..._genes-rows.csv``: columns ``gene_symbol, gene_id, chromosome, gene_entrez_id,
  gene_name`` (printed in that notebook).
* ``..._samples-columns.csv``: one row per cell with ``sample_name`` (matching the matrix
  header), ``class``, ``subclass``, ``cluster``, ``brain_region``, ``brain_subregion``,
  ``seq_batch``, ``sex``, ``confusion_score`` and more (column names used in that notebook and
  in other public scripts). The authors read it with ``encoding="unicode_escape"``, so it is
  not clean UTF-8; it is read here as UTF-8 with undecodable bytes replaced.

Assumed, not verified: that the intron matrix has exactly the exon matrix's layout (same rows
and columns), as its name and the human MTG release of the same date suggest.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ._registry import (
    READ_ERRORS,
    DatasetFileError,
    DatasetNotFoundError,
    damaged_file,
    data_dir,
    fetch,
    manual_steps,
    read_csv,
)

RELEASE = "2018-06-14"
KINDS = ("exon-matrix", "intron-matrix", "genes-rows", "samples-columns")
#: The classes kept by the paper's selection.
PAPER_CLASSES = ("GABAergic", "Glutamatergic")
#: ``cluster`` values dropped by the paper's selection (low quality, and the CR and Meis2 types).
PAPER_DROP_CLUSTERS = ("Low Quality", "CR Lhx5", "Meis2 Adamts19")
#: Renamings applied by the authors so that both regions' labels match their taxonomy tree.
PAPER_RENAME = {
    "L6b VISp Col8a1 Rprm": "L6b Col8a1 Rprm",
    "L6 CT ALM Nxph2 Sla": "L6 CT Nxph2 Sla",
}
CHUNK_GENES = 1000
#: what pandas raises on a cut or garbled CSV (ParserError and EmptyDataError are ValueErrors)


def _refetch(path: Path) -> str:
    region = "VISp" if "_VISp_" in path.name else "ALM"
    return (
        f"Delete it (and mouse_{region}_gene_expression_matrices_{RELEASE}.zip, if it is "
        "still there: the zip is not unpacked again) and download it again with "
        "tasic2018(path, download=True), or unzip the release's zip again."
    )


def _file_name(region: str, kind: str) -> str:
    return f"mouse_{region}_{RELEASE}_{kind}.csv"


def _find(root: Path, region: str, kind: str) -> Path | None:
    name = _file_name(region, kind)
    for folder in (root, root / f"mouse_{region}_gene_expression_matrices_{RELEASE}"):
        if (folder / name).is_file():
            return folder / name
    return None


def _resolve(root: Path, regions: Sequence[str], kinds: Sequence[str], download: bool):
    missing = [(r, k) for r in regions for k in kinds if _find(root, r, k) is None]
    if missing and download:
        for region in dict.fromkeys(r for r, _ in missing):
            fetch("tasic2018", region, root)
        missing = [(r, k) for r, k in missing if _find(root, r, k) is None]
    if missing:
        names = ", ".join(_file_name(r, k) for r, k in missing)
        where = "does not exist" if not root.is_dir() else "exists"
        raise DatasetNotFoundError(
            f"tasic2018: missing file(s) {names}; the data folder {root} {where}.\n"
            + manual_steps("tasic2018", root)
        )
    return {(r, k): _find(root, r, k) for r in regions for k in kinds}


def _read_counts(path: Path, columns: np.ndarray, gene_ids: np.ndarray) -> sp.csr_matrix:
    """Read a genes x cells count CSV in row chunks; return cells x genes CSR (float32).

    Only the cell columns at positions ``columns`` (of the header, after the gene column)
    are kept. Rows must be the genes of ``gene_ids`` in that order.
    """
    blocks, ids = [], []
    reader = read_csv(path, _refetch(path), index_col=0, chunksize=CHUNK_GENES)
    row = 0
    while True:
        try:
            chunk = next(reader)
        except StopIteration:
            break
        except READ_ERRORS as err:
            raise damaged_file(path, err, _refetch(path), f" after {row} gene rows") from err
        try:
            values = chunk.to_numpy(dtype=np.float64)[:, columns]
        except ValueError as err:  # a text field among the counts
            raise damaged_file(path, err, _refetch(path),
                               f" in gene rows {row + 1}-{row + len(chunk)}") from err
        finite = np.isfinite(values).all(axis=1)
        if not finite.all():
            gene = chunk.index[np.flatnonzero(~finite)[0]]
            raise DatasetFileError(
                f"{path} has missing values in the row of gene {gene} (gene row "
                f"{row + np.flatnonzero(~finite)[0] + 1}): a short row, the file is damaged or "
                f"incomplete (e.g. a cut download). {_refetch(path)}"
            )
        if values.size and (not np.array_equal(values, np.round(values)) or values.min() < 0):
            raise DatasetFileError(
                f"{path} holds non-count values (negative or fractional)."
            )
        blocks.append(sp.csr_matrix(values.astype(np.float32)))
        ids.append(chunk.index.to_numpy())
        row += len(chunk)
    rows = np.concatenate(ids) if ids else np.array([])
    if len(rows) != len(gene_ids) or not np.array_equal(
        rows.astype(str), np.asarray(gene_ids).astype(str)
    ):
        short = len(rows) < len(gene_ids) and np.array_equal(
            rows.astype(str), np.asarray(gene_ids)[: len(rows)].astype(str)
        )
        cause = (
            "the file is incomplete (e.g. a cut download). " + _refetch(path)
            if short
            else "the files come from different releases."
        )
        raise DatasetFileError(
            f"{path} has {len(rows)} gene rows, genes-rows.csv lists {len(gene_ids)}: its rows "
            f"are not the genes of genes-rows.csv in the same order (compared by "
            f"gene_entrez_id); {cause}"
        )
    return sp.vstack(blocks).T.tocsr() if blocks else sp.csr_matrix((len(columns), 0))


def _header(path: Path) -> pd.Index:
    return read_csv(path, _refetch(path), index_col=0, nrows=0).columns


def _refuse_duplicates(names: pd.Series, where: str) -> None:
    dup = names[names.duplicated()].unique()
    if len(dup):
        raise DatasetFileError(
            f"{where} lists {len(dup)} sample(s) more than once (e.g. {list(dup[:3])}), which "
            "would give cells with the same obs_names; the file is damaged or was edited. "
            "Remove the repeated rows, or unzip the release's files again."
        )


def _paper_mask(obs: pd.DataFrame) -> np.ndarray:
    return (obs["class"].isin(PAPER_CLASSES) & ~obs["cluster"].isin(PAPER_DROP_CLUSTERS)).to_numpy()


def tasic2018(
    path: str | Path | None = None,
    *,
    regions: Sequence[str] = ("VISp", "ALM"),
    exons_and_introns: bool = True,
    paper_selection: bool = True,
    download: bool = False,
) -> ad.AnnData:
    """Tasic et al. (2018) mouse VISp and ALM Smart-seq v4 cells, as used by cpl-mixVAE/MMIDAS.

    Reads the Allen Brain Map "Mouse V1 & ALM SMART-seq" gene expression matrices (release
    2018-06-14; also GEO GSE115746): ``mouse_{VISp,ALM}_2018-06-14_{exon-matrix,
    intron-matrix,genes-rows,samples-columns}.csv``, directly in ``path`` or in the
    ``mouse_{region}_gene_expression_matrices_2018-06-14/`` folders the zips unpack to. The
    count matrices are read in chunks of genes and only the selected cells are kept, as
    sparse matrices. ``data/README.md`` lists sources, sizes and licence.

    Parameters
    ----------
    path
        Folder with the files. Default: ``$CPLMIX_DATA_DIR/tasic2018`` (else pooch's user
        cache, see :func:`cplmix_sc.datasets._registry.data_dir`).
    regions
        Which regions to read (``"VISp"``, ``"ALM"``); cells are concatenated in this order.
    exons_and_introns
        ``X`` = exon + intron counts (as in Tasic et al. 2018's clustering). If ``False``,
        ``X`` = exon counts and the intron files are not needed. The authors' MMIDAS
        data-preparation notebook uses the exon matrix only: pass ``False`` (or use
        ``layers["exon"]``) to follow it exactly.
    paper_selection
        Apply the cpl-mixVAE/MMIDAS paper's cell selection, as coded in the authors'
        notebook (AllenInstitute/Dist_MMIDAS ``notebooks/1_data_prep.ipynb``): keep cells with
        ``class`` in ``{"GABAergic", "Glutamatergic"}``, drop ``cluster == "Low Quality"`` and
        the two clusters ``"CR Lhx5"`` (the CR type) and ``"Meis2 Adamts19"`` (the Meis2 type),
        and rename ``"L6b VISp Col8a1 Rprm"`` to ``"L6b Col8a1 Rprm"`` and
        ``"L6 CT ALM Nxph2 Sla"`` to ``"L6 CT Nxph2 Sla"`` (the authors' renaming, so that both
        regions match their taxonomy; the original label stays in ``obs["cluster_original"]``).
        On the full release this gives 22,365 cells (printed in that notebook); the paper
        reports 115 types (the number of distinct ``cluster`` values; not checked here).
    download
        Download the missing zips with pooch into ``path`` (no checksum is known yet, so the
        first download is not verified; see ``data/README.md``). Files already present are
        never downloaded again.

    Returns
    -------
    AnnData, cells x genes. ``X``: integer read counts as sparse CSR float32 (exon + intron, or
    exon only); ``layers["exon"]``: exon counts (only when ``exons_and_introns``). ``obs``
    (index ``sample_name``): every column of ``samples-columns.csv`` plus ``region``;
    ``class``, ``subclass`` and ``cluster`` are categorical. ``var`` (index: ``gene_symbol``
    made unique): ``gene_symbol``, ``gene_entrez_id`` and the other ``genes-rows.csv`` columns.

    Raises
    ------
    DatasetNotFoundError
        When files are missing (and ``download`` is off or fails), naming them and the
        manual steps.
    DatasetFileError
        (a ``ValueError``) When a file cannot be parsed (a cut or garbled CSV), a count
        matrix has missing or non-count values or other genes than ``genes-rows.csv``, or a
        sample is listed twice (which would duplicate ``obs_names``); the message names the
        file and the fix.

    See Also
    --------
    select_paper_genes : the paper's 5,032-gene selection.

    References
    ----------
    Tasic B. et al. (2018) Shared and distinct transcriptomic cell types across neocortical
    areas. Nature 563:72-78. Marghi Y. et al. (2024) Joint inference of discrete cell types and
    continuous type-specific variability in single-cell datasets with MMIDAS. Nat. Comput.
    Sci. 4:706-722.
    """
    regions = list(regions)
    bad = [r for r in regions if r not in ("VISp", "ALM")]
    if bad or not regions:
        raise ValueError(f"regions must be a non-empty subset of ('VISp', 'ALM'), got {regions}.")
    root = Path(path).expanduser() if path is not None else data_dir() / "tasic2018"
    kinds = KINDS if exons_and_introns else tuple(k for k in KINDS if k != "intron-matrix")
    files = _resolve(root, regions, kinds, download)

    xs, exons, obss, var = [], [], [], None
    for region in regions:
        genes = _region_genes(files, region, regions[0], var)
        var = genes if var is None else var
        samples, x, exon = _read_region(files, region, genes, paper_selection,
                                        exons_and_introns)
        xs.append(x)
        if exon is not None:
            exons.append(exon)
        obss.append(samples)

    obs = pd.concat(obss, ignore_index=True)
    if len(regions) > 1:
        _refuse_duplicates(
            obs["sample_name"],
            " and ".join(str(files[r, "samples-columns"]) for r in regions) + " together",
        )
    obs.index = pd.Index(obs.pop("sample_name").to_numpy(), name=None)
    if paper_selection:
        obs["cluster_original"] = obs["cluster"]
        obs["cluster"] = obs["cluster"].replace(PAPER_RENAME)
    for col in ("class", "subclass", "cluster", "region"):
        obs[col] = pd.Categorical(obs[col].astype(str))
    var = var.copy()
    var.index = ad.utils.make_index_unique(pd.Index(var["gene_symbol"].astype(str)))
    X = sp.vstack(xs).tocsr()
    if X.nnz and X.data.max() >= 2**24:
        raise ValueError("Counts exceed float32's exact integer range (2**24).")
    adata = ad.AnnData(X=X, obs=obs, var=var)
    if exons_and_introns:
        adata.layers["exon"] = sp.vstack(exons).tocsr()
    adata.uns["dataset"] = {
        "name": "tasic2018",
        "regions": regions,
        "counts": "exon+intron" if exons_and_introns else "exon",
        "paper_selection": paper_selection,
    }
    return adata


def _region_genes(files: dict, region: str, first_region: str, var) -> pd.DataFrame:
    """A region's ``genes-rows.csv``, checked against the first region's genes."""
    genes_path = files[region, "genes-rows"]
    genes = read_csv(genes_path, _refetch(genes_path))
    if "gene_symbol" not in genes or "gene_entrez_id" not in genes:
        raise DatasetFileError(f"{genes_path} lacks gene_symbol/gene_entrez_id columns.")
    if var is not None and not np.array_equal(
        var["gene_entrez_id"].to_numpy(), genes["gene_entrez_id"].to_numpy()
    ):
        raise DatasetFileError(
            f"The regions' genes-rows.csv files list different genes ({genes_path} differs "
            f"from {files[first_region, 'genes-rows']})."
        )
    return genes


def _read_region(files: dict, region: str, genes: pd.DataFrame, paper_selection: bool,
                 exons_and_introns: bool):
    """One region's selected samples and their counts: ``(samples, X, exon or None)``."""
    samples_path = files[region, "samples-columns"]
    samples = read_csv(samples_path, _refetch(samples_path), encoding_errors="replace",
                       low_memory=False)
    for col in ("sample_name", "class", "subclass", "cluster"):
        if col not in samples:
            raise DatasetFileError(f"{samples_path} lacks column {col!r}.")
    samples["sample_name"] = samples["sample_name"].astype(str)
    _refuse_duplicates(samples["sample_name"], str(samples_path))
    samples["region"] = region
    keep = _paper_mask(samples) if paper_selection else np.ones(len(samples), bool)
    samples = samples.loc[keep]

    header = _header(files[region, "exon-matrix"]).astype(str)
    position = header.get_indexer(samples["sample_name"])
    if (position < 0).any():
        lost = samples["sample_name"].to_numpy()[position < 0][:3]
        raise DatasetFileError(
            f"{(position < 0).sum()} samples of {samples_path.name} are not columns of "
            f"{files[region, 'exon-matrix']}, e.g. {list(lost)}."
        )
    exon = _read_counts(files[region, "exon-matrix"], position, genes["gene_entrez_id"])
    if not exons_and_introns:
        return samples, exon, None
    intron_path = files[region, "intron-matrix"]
    if not _header(intron_path).astype(str).equals(header):
        raise DatasetFileError(f"{intron_path}'s columns differ from the exon matrix's.")
    return samples, exon + _read_counts(intron_path, position, genes["gene_entrez_id"]), exon


def select_paper_genes(
    adata: ad.AnnData,
    n_genes: int = 5032,
    *,
    gene_list: str | Path | Sequence[str] | None = None,
    layer: str | None = None,
) -> ad.AnnData:
    """The paper's 5,032-gene selection for :func:`tasic2018` (exact list, or an approximation).

    The MMIDAS authors do not derive the genes in code: their notebook
    (AllenInstitute/Dist_MMIDAS ``notebooks/1_data_prep.ipynb``) reads a fixed list,
    ``genes_SS_ALM-VISp.csv`` (one column ``genes``, 5,032 symbols), distributed with their
    data, not in the repository, and not found in any public source while writing this.

    * With ``gene_list`` (that CSV's path, any CSV/text file with a ``genes`` column or one
      symbol per line, or a sequence of symbols), the genes are exactly that list, in its
      order; symbols missing from ``adata`` raise an error.
    * Without it, an **approximation**: the ``n_genes`` genes with the largest standard
      deviation of ``log1p(CPM)`` over the cells of ``adata`` (CPM = counts / cell total
      x 1e6). This is the rule the same authors code for their 10x data
      (``get_hvg`` in their earlier MMIDAS code: ``argsort(std(log1p(1e6 * x / sum)))``,
      largest first); that it produced the Smart-seq list is an assumption, and the selected
      genes will not match the published list exactly.

    Parameters
    ----------
    adata
        Cells x genes counts, e.g. from :func:`tasic2018` (ideally after the paper selection).
    n_genes
        How many genes the approximation keeps (ignored with ``gene_list``).
    gene_list
        The exact list (see above).
    layer
        Counts layer to rank genes on (default ``X``).

    Returns
    -------
    A new AnnData with the selected genes; ``var["paper_gene_rank"]`` gives each gene's rank
    (0 = most variable, or its position in ``gene_list``) and ``uns["gene_selection"]`` says
    which rule was used.
    """
    if gene_list is not None:
        if isinstance(gene_list, (str, Path)):
            table = pd.read_csv(gene_list, header=None, dtype=str)
            first = str(table.iloc[0, 0]).strip()
            if "genes" in table.iloc[0].astype(str).str.strip().tolist():
                col = table.iloc[0].astype(str).str.strip().tolist().index("genes")
                genes = table.iloc[1:, col].str.strip().tolist()
            elif first.lower() in {"gene", "genes", "gene_symbol", "symbol", "x", ""}:
                genes = table.iloc[1:, 0].str.strip().tolist()
            else:
                genes = table.iloc[:, 0].str.strip().tolist()
        else:
            genes = [str(g) for g in gene_list]
        missing = [g for g in genes if g not in adata.var_names]
        if missing:
            raise KeyError(
                f"{len(missing)} of {len(genes)} genes of gene_list are not in adata.var_names, "
                f"e.g. {missing[:5]}; pass adata from tasic2018() (var_names are gene symbols)."
            )
        out = adata[:, genes].copy()
        out.var["paper_gene_rank"] = np.arange(len(genes))
        out.uns["gene_selection"] = {"rule": "gene_list", "n_genes": len(genes)}
        return out

    x = adata.layers[layer] if layer is not None else adata.X
    x = sp.csr_matrix(x, dtype=np.float64)
    totals = np.asarray(x.sum(axis=1)).ravel()
    if (totals <= 0).any():
        raise ValueError("Some cells have no counts; remove them before selecting genes.")
    cpm = sp.diags(1e6 / totals) @ x
    cpm.data = np.log1p(cpm.data)
    mean = np.asarray(cpm.mean(axis=0)).ravel()
    sq = np.asarray(cpm.multiply(cpm).mean(axis=0)).ravel()
    std = np.sqrt(np.maximum(sq - mean**2, 0.0))
    n = min(int(n_genes), adata.n_vars)
    order = np.argsort(-std, kind="stable")[:n]
    out = adata[:, order].copy()
    out.var["paper_gene_rank"] = np.arange(n)
    out.uns["gene_selection"] = {
        "rule": "approximation: top std of log1p(CPM)",
        "n_genes": n,
    }
    return out

"""Every remote file the dataset loaders know: URLs, hashes and the manual download steps.

This module is the one place where URLs and checksums live. Downloads go through
:func:`pooch.retrieve` into :func:`data_dir` (the ``CPLMIX_DATA_DIR`` environment variable,
else pooch's per-user cache directory for ``cplmix_sc``).

Checksums: none of the files below could be downloaded while writing this module (no network
access to the hosts), so every ``known_hash`` is ``None``. Pooch then does **not** verify the
first download; it records nothing and trusts the server. Fill in ``sha256:...`` values here
once a download has been checked by hand (``pooch.file_hash(path)``).

URL provenance (none was fetched from here; each was read in public code that downloads it):

* Allen Brain Map "Mouse V1 & ALM SMART-seq" zips (Tasic et al. 2018):
  ``.../well_known_file_download/694413985`` (VISp) is used by a public curation script that
  records its size as 305,703,326 bytes and reads ``mouse_VISp_2018-06-14_exon-matrix.csv`` and
  ``..._genes-rows.csv`` from the root of the zip; ``.../694413179`` (ALM) appears in a public R
  script's comment (``unzip mouse_ALM_gene_expression_matrices_2018-06-14.zip``). The landing
  page is https://portal.brain-map.org/atlases-and-data/rnaseq/mouse-v1-and-alm-smart-seq.
* NeMO (BICCN MOp, AIBS 10x processed analysis folders): the ``10X_cells_v3_AIBS`` folder URL
  under ``biccn/grant/u19_zeng/...`` is cited in a public README; the ``10X_cells_v2_AIBS`` folder
  URL under ``biccn/lab/zeng/...10x_v2/mouse/...`` is used by a public R script that downloads
  ``QC.csv``, ``barcode.tsv``, ``cluster.annotation.csv``, ``cluster.membership.csv``,
  ``features.tsv.gz`` and ``matrix.mtx.gz`` from it; ``sample_metadata.csv`` is downloaded from
  the same folders by a public shell script. NeMO has moved folders before (older scripts use
  ``biccn/lab/zeng/transcriptome/scell/10X/processed/analysis/...``): if a URL fails, browse
  https://data.nemoarchive.org/biccn/ for the folder name.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are not on disk and could not (or may not) be downloaded."""


class DatasetFileError(ValueError):
    """A dataset's file is on disk but cannot be used: cut, damaged, or inconsistent with the
    other files of the dataset. The message names the file and the fix."""


@dataclass(frozen=True)
class Remote:
    """One remote file.

    Attributes
    ----------
    url
        Where to download it from.
    fname
        The local file name (for archives: the archive's name before unpacking).
    known_hash
        ``"sha256:..."`` or ``None`` when not verified (the first download is then not checked).
    size
        Size in bytes where a public source states it, else ``None``.
    unzip
        Whether the file is a zip archive to unpack in place.
    """

    url: str
    fname: str
    known_hash: str | None = None
    size: int | None = None
    unzip: bool = False


_ALLEN = "https://celltypes.brain-map.org/api/v2/well_known_file_download"
# NeMO folder URLs, read in public scripts (see the module docstring); not fetched from here.
_NEMO = {
    "10X_cells_v2_AIBS": (
        "https://data.nemoarchive.org/biccn/lab/zeng/transcriptome/scell/10x_v2/mouse/"
        "processed/analysis/10X_cells_v2_AIBS/"
    ),
    "10X_cells_v3_AIBS": (
        "https://data.nemoarchive.org/biccn/grant/u19_zeng/zeng/transcriptome/scell/10x_v3/"
        "mouse/processed/analysis/10X_cells_v3_AIBS/"
    ),
}
MOP10X_FILES = (
    "matrix.mtx.gz",
    "features.tsv.gz",
    "barcode.tsv",
    "cluster.annotation.csv",
    "cluster.membership.csv",
    "QC.csv",
    "sample_metadata.csv",
)

REGISTRY: dict[str, dict[str, Remote]] = {
    "tasic2018": {
        "VISp": Remote(
            f"{_ALLEN}/694413985",
            "mouse_VISp_gene_expression_matrices_2018-06-14.zip",
            size=305_703_326,
            unzip=True,
        ),
        "ALM": Remote(
            f"{_ALLEN}/694413179",
            "mouse_ALM_gene_expression_matrices_2018-06-14.zip",
            unzip=True,
        ),
    },
    "mop10x": {f"{ds}/{f}": Remote(url + f, f) for ds, url in _NEMO.items() for f in MOP10X_FILES},
}

MANUAL = {
    "tasic2018": """\
Get the Allen Brain Map "Mouse V1 & ALM SMART-seq" gene expression matrices (Tasic et al.
2018, GEO GSE115746):
  1. open https://portal.brain-map.org/atlases-and-data/rnaseq/mouse-v1-and-alm-smart-seq
     and download "Gene expression matrices" for VISp and ALM
     ({visp_url} and {alm_url}),
  2. unzip both into {path} (directly, or keeping the folders
     mouse_VISp_gene_expression_matrices_2018-06-14/ and
     mouse_ALM_gene_expression_matrices_2018-06-14/),
  so that it holds mouse_{{VISp,ALM}}_2018-06-14_{{exon-matrix,intron-matrix,genes-rows,
  samples-columns}}.csv. Or call with download=True when online.""",
    "mop10x": """\
Get the BICCN mouse primary motor cortex (MOp) 10x processed data (Allen Institute, Yao et al.
2021) from the NeMO archive (CC BY 4.0):
  1. for each dataset folder ({datasets}) download {files}
     from https://data.nemoarchive.org/biccn/ (e.g. {example}),
  2. put each folder's files into {path}/<folder name>/ (e.g. {path}/10X_cells_v3_AIBS/).
  A CellRanger umi_counts.h5 from the same folder may replace matrix.mtx.gz, features.tsv.gz and
  barcode.tsv. Or call with download=True when online.""",
}


def data_dir() -> Path:
    """The download cache: ``$CPLMIX_DATA_DIR``, else pooch's user cache for ``cplmix_sc``."""
    env = os.environ.get("CPLMIX_DATA_DIR")
    if env:
        return Path(env).expanduser()
    import pooch

    return Path(pooch.os_cache("cplmix_sc"))


def manual_steps(dataset: str, path: Path, **extra: str) -> str:
    """The manual download instructions for ``dataset``, with ``path`` filled in."""
    if dataset == "tasic2018":
        reg = REGISTRY["tasic2018"]
        return MANUAL[dataset].format(path=path, visp_url=reg["VISp"].url, alm_url=reg["ALM"].url)
    datasets = extra.get("datasets", ", ".join(_NEMO))
    return MANUAL[dataset].format(
        path=path,
        datasets=datasets,
        files=", ".join(MOP10X_FILES),
        example=_NEMO["10X_cells_v3_AIBS"],
    )


def fetch(dataset: str, key: str, dest: Path) -> Path:
    """Download ``REGISTRY[dataset][key]`` into the folder ``dest`` (unpacking zips there).

    Raises
    ------
    DatasetNotFoundError
        When the download fails (offline, moved URL, checksum mismatch), with the manual steps.
    """
    import pooch

    remote = REGISTRY[dataset][key]
    dest.mkdir(parents=True, exist_ok=True)
    processor = pooch.Unzip(extract_dir=str(dest)) if remote.unzip else None
    try:
        return _retrieve(pooch, remote, dest, processor)
    except Exception as err:  # network errors differ by backend (requests, ftplib, OSError)
        raise DatasetNotFoundError(
            f"Downloading {remote.url} for {dataset} failed ({type(err).__name__}: {err}).\n"
            + manual_steps(dataset, dest.parent if "/" in key else dest)
        ) from err


def _retrieve(pooch, remote: Remote, dest: Path, processor) -> Path:
    out = pooch.retrieve(
        remote.url,
        known_hash=remote.known_hash,
        fname=remote.fname,
        path=str(dest),
        processor=processor,
        progressbar=False,
    )
    return Path(out[0]).parent if isinstance(out, list) and out else Path(out)


#: what reading a cut, damaged or garbled file raises
READ_ERRORS = (EOFError, OSError, zlib.error, ValueError, UnicodeDecodeError, KeyError)


def damaged_file(path: Path, err: BaseException, refetch: str, where: str = "") -> DatasetFileError:
    """The error for a file that cannot be read: names the file, the cause and how to refetch."""
    return DatasetFileError(
        f"{path} cannot be read{where} ({type(err).__name__}: {str(err).strip()}); the file "
        f"is damaged or incomplete (e.g. a cut download). {refetch}"
    )


def read_csv(path: Path, refetch: str, **kwargs) -> pd.DataFrame:
    """``pd.read_csv`` whose parse errors name the file (:func:`damaged_file`)."""
    try:
        return pd.read_csv(path, **kwargs)
    except READ_ERRORS as err:
        raise damaged_file(path, err, refetch) from err

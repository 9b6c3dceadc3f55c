"""Loaders for the paper's public data, on tiny fixtures written in the public file formats."""

import csv
import gzip
import io
import re
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.io
import scipy.sparse as sp

import cplmix_sc
from cplmix_sc.datasets import DatasetFileError, DatasetNotFoundError, _registry, _tasic2018

# --------------------------------------------------------------------------------------------
# Tasic 2018 fixture: the Allen "gene expression matrices" CSVs (R write.csv style quoting)
# --------------------------------------------------------------------------------------------

N_GENES = 12
SYMBOLS = [
    "Sst",
    "Vip",
    "Pvalb",
    "Lamp5",
    "Rorb",
    "Fezf2",
    "Gad1",
    "Slc17a7",
    "Meis2",
    "Lhx5",
    "Aqp4",
    "Sst",
]  # a duplicated symbol on purpose
ENTREZ = [20604 + 7 * i for i in range(N_GENES)]
# (class, subclass, cluster) per region; 20 cells each, cycling through these.
TYPES = {
    "VISp": [
        ("GABAergic", "Sst", "Sst Calb2 Pdlim5"),
        ("GABAergic", "Vip", "Vip Rspo4 Rxfp1 Chat"),
        ("GABAergic", "Meis2", "Meis2 Adamts19"),
        ("Glutamatergic", "CR", "CR Lhx5"),
        ("Glutamatergic", "L6b", "L6b VISp Col8a1 Rprm"),
        ("Glutamatergic", "L2/3 IT", "L2/3 IT VISp Rrad"),
        ("Glutamatergic", "Low Quality", "Low Quality"),
        ("Non-Neuronal", "Astro", "Astro Aqp4"),
        ("Low Quality", "Low Quality", "Low Quality"),
        ("No Class", "No Class", "Doublet VISp L5 NP and L6 CT"),
    ],
    "ALM": [
        ("GABAergic", "Pvalb", "Pvalb Reln Itm2a"),
        ("Glutamatergic", "L6 CT", "L6 CT ALM Nxph2 Sla"),
        ("Glutamatergic", "L5 PT", "L5 PT ALM Slco2a1"),
        ("GABAergic", "Meis2", "Meis2 Adamts19"),
        ("Non-Neuronal", "Oligo", "Oligo Opalin"),
    ],
}


def _rng(region):
    return np.random.default_rng(0 if region == "VISp" else 1)


def _samples(region):
    types = TYPES[region]
    rows = []
    for j in range(20):
        cls, sub, clu = types[j % len(types)]
        rows.append(
            {
                "sample_name": f"{region}_F1S4_{j:03d}",
                "sample_id": 500_000_000 + j,
                "seq_batch": "L8TX_171026_01",
                "sex": "M" if j % 2 else "F",
                "brain_hemisphere": "L",
                "brain_region": region,
                "brain_subregion": "L5" if j % 3 else "L6",
                "class": cls,
                "subclass": sub,
                "cluster": clu,
                "confusion_score": round(0.1 * (j % 7), 2),
                "genotype": "Rbp4-Cre_KL100/wt;Ai14(RCL-tdT)/wt" if j else "Gad2-IRES-Cre/wt \xb5",
            }
        )
    return pd.DataFrame(rows)


def _counts(region):
    rng = _rng(region)
    exon = rng.poisson(3.0, size=(N_GENES, 20)) * (rng.random((N_GENES, 20)) < 0.6)
    exon[0, 0] = 70_000  # large counts stay exact
    intron = rng.poisson(1.0, size=(N_GENES, 20))
    return exon.astype(np.int64), intron.astype(np.int64)


def _write_matrix(path, values, samples):
    """Genes x cells, as R's write.csv writes it: quoted header and row names."""
    with open(path, "w", newline="") as fh:
        fh.write(",".join(['""', *[f'"{s}"' for s in samples]]) + "\n")
        for gid, row in zip(ENTREZ, values, strict=True):
            fh.write(",".join([f'"{gid}"', *map(str, row)]) + "\n")


def write_tasic(root, regions=("VISp", "ALM"), subfolders=False, introns=True):
    genes = pd.DataFrame(
        {
            "gene_symbol": SYMBOLS,
            "gene_id": [500_729_000 + i for i in range(N_GENES)],
            "chromosome": [str(1 + i % 19) for i in range(N_GENES)],
            "gene_entrez_id": ENTREZ,
            "gene_name": [f"gene {s}, 'quoted'" for s in SYMBOLS],
        }
    )
    for region in regions:
        folder = (
            root / f"mouse_{region}_gene_expression_matrices_2018-06-14" if subfolders else root
        )
        folder.mkdir(parents=True, exist_ok=True)
        stem = folder / f"mouse_{region}_2018-06-14"
        samples = _samples(region)
        exon, intron = _counts(region)
        _write_matrix(f"{stem}_exon-matrix.csv", exon, samples["sample_name"])
        if introns:
            _write_matrix(f"{stem}_intron-matrix.csv", intron, samples["sample_name"])
        genes.to_csv(f"{stem}_genes-rows.csv", index=False, quoting=csv.QUOTE_NONNUMERIC)
        with open(f"{stem}_samples-columns.csv", "wb") as fh:  # latin-1: not clean UTF-8
            fh.write(samples.to_csv(index=False, quoting=csv.QUOTE_NONNUMERIC).encode("latin-1"))
    return root


@pytest.fixture
def tasic_dir(tmp_path):
    return write_tasic(tmp_path / "tasic")


@pytest.fixture
def no_pooch(monkeypatch):
    """Fail the test if pooch is asked to download anything."""
    import pooch

    def boom(*args, **kwargs):
        raise AssertionError(f"pooch.retrieve called: {args} {kwargs}")

    monkeypatch.setattr(pooch, "retrieve", boom)


def _dense(x):
    return x.toarray() if sp.issparse(x) else np.asarray(x)


def test_tasic2018_reads_the_public_layout(tasic_dir, no_pooch):
    a = cplmix_sc.datasets.tasic2018(tasic_dir, paper_selection=False, download=True)
    assert a.shape == (40, N_GENES)
    assert sp.issparse(a.X) and a.X.dtype == np.float32
    x = _dense(a.X)
    assert np.array_equal(x, np.round(x)) and x.min() >= 0
    ev, iv = _counts("VISp")
    ea, ia = _counts("ALM")
    np.testing.assert_array_equal(x, np.vstack([(ev + iv).T, (ea + ia).T]))
    np.testing.assert_array_equal(_dense(a.layers["exon"]), np.vstack([ev.T, ea.T]))
    assert x[0, 0] == 70_000 + iv[0, 0]
    assert list(a.obs_names[:2]) == ["VISp_F1S4_000", "VISp_F1S4_001"]
    assert a.obs_names[-1] == "ALM_F1S4_019"
    for col in ("class", "subclass", "cluster", "region", "brain_subregion", "confusion_score"):
        assert col in a.obs
    assert a.obs["region"].value_counts().to_dict() == {"VISp": 20, "ALM": 20}
    assert isinstance(a.obs["cluster"].dtype, pd.CategoricalDtype)
    assert a.var_names.is_unique and list(a.var_names[:2]) == ["Sst", "Vip"]
    assert a.var_names[-1] != "Sst" and a.var["gene_symbol"].iloc[-1] == "Sst"
    assert a.var["gene_entrez_id"].tolist() == ENTREZ
    assert "cluster_original" not in a.obs


def test_tasic2018_paper_selection(tasic_dir, monkeypatch):
    monkeypatch.setattr(_tasic2018, "CHUNK_GENES", 5)  # several chunks
    a = cplmix_sc.datasets.tasic2018(tasic_dir)
    full = pd.concat([_samples("VISp"), _samples("ALM")], ignore_index=True)
    keep = full["class"].isin(["GABAergic", "Glutamatergic"]) & ~full["cluster"].isin(
        ["Low Quality", "CR Lhx5", "Meis2 Adamts19"]
    )
    assert list(a.obs_names) == full.loc[keep, "sample_name"].tolist()
    assert set(a.obs["class"]) == {"GABAergic", "Glutamatergic"}
    clusters = set(a.obs["cluster"])
    assert not clusters & {"Low Quality", "CR Lhx5", "Meis2 Adamts19"}
    assert not any(c.startswith(("CR", "Meis2")) for c in clusters)
    assert {"L6b Col8a1 Rprm", "L6 CT Nxph2 Sla"} <= clusters
    assert "L6b VISp Col8a1 Rprm" in set(a.obs["cluster_original"])
    # the counts of the kept cells are those of the unfiltered load
    b = cplmix_sc.datasets.tasic2018(tasic_dir, paper_selection=False)
    np.testing.assert_array_equal(_dense(a.X), _dense(b[a.obs_names].X))


def test_tasic2018_exon_only_one_region_in_zip_folders(tmp_path, no_pooch):
    root = write_tasic(tmp_path / "t", regions=("ALM",), subfolders=True, introns=False)
    a = cplmix_sc.datasets.tasic2018(
        root, regions=("ALM",), exons_and_introns=False, paper_selection=False
    )
    assert a.shape == (20, N_GENES) and "exon" not in a.layers
    np.testing.assert_array_equal(_dense(a.X), _counts("ALM")[0].T)
    assert set(a.obs["region"]) == {"ALM"}


def test_tasic2018_missing_folder_and_file_errors(tmp_path, tasic_dir, no_pooch):
    with pytest.raises(DatasetNotFoundError) as err:
        cplmix_sc.datasets.tasic2018(tmp_path / "nowhere")
    msg = str(err.value)
    assert "does not exist" in msg and "mouse_VISp_2018-06-14_exon-matrix.csv" in msg
    assert "portal.brain-map.org" in msg and "download=True" in msg
    assert str(tmp_path / "nowhere") in msg

    (tasic_dir / "mouse_ALM_2018-06-14_intron-matrix.csv").unlink()
    with pytest.raises(
        DatasetNotFoundError, match=re.escape("mouse_ALM_2018-06-14_intron-matrix.csv")
    ):
        cplmix_sc.datasets.tasic2018(tasic_dir)
    # ... which exon-only loading does not need
    a = cplmix_sc.datasets.tasic2018(tasic_dir, exons_and_introns=False, paper_selection=False)
    assert a.n_obs == 40
    with pytest.raises(ValueError, match="regions"):
        cplmix_sc.datasets.tasic2018(tasic_dir, regions=("MOp",))


def test_tasic2018_download_goes_through_the_registry(tmp_path, monkeypatch):
    import pooch

    calls = []

    def fake_retrieve(url, known_hash, fname, path, processor, progressbar):
        calls.append((url, known_hash, fname))
        region = "VISp" if "694413985" in url else "ALM"
        write_tasic(Path(path), regions=(region,), subfolders=True)  # what unzipping yields
        return [str(Path(path) / "x.csv")]

    monkeypatch.setattr(pooch, "retrieve", fake_retrieve)
    monkeypatch.setenv("CPLMIX_DATA_DIR", str(tmp_path / "cache"))
    a = cplmix_sc.datasets.tasic2018(download=True, paper_selection=False)
    assert a.n_obs == 40
    reg = _registry.REGISTRY["tasic2018"]
    assert calls == [(reg[r].url, None, reg[r].fname) for r in ("VISp", "ALM")]
    assert (tmp_path / "cache" / "tasic2018").is_dir()


def test_tasic2018_offline_download_error(tmp_path, monkeypatch):
    import pooch

    def offline(*args, **kwargs):
        raise ConnectionError("no route to host")

    monkeypatch.setattr(pooch, "retrieve", offline)
    with pytest.raises(DatasetNotFoundError) as err:
        cplmix_sc.datasets.tasic2018(tmp_path / "t", download=True)
    msg = str(err.value)
    assert "no route to host" in msg and "694413985" in msg and "unzip" in msg
    assert isinstance(err.value.__cause__, ConnectionError)


def _tasic_file(root, region, kind):
    return root / f"mouse_{region}_2018-06-14_{kind}.csv"


def test_tasic2018_duplicated_sample_rows_are_refused(tasic_dir, no_pooch):
    # formerly both rows were kept: two cells with the same obs_names (only anndata's warning)
    samples = _tasic_file(tasic_dir, "VISp", "samples-columns")
    lines = samples.read_bytes().splitlines(keepends=True)
    samples.write_bytes(b"".join([*lines, lines[1]]))
    with pytest.raises(DatasetFileError) as err:
        cplmix_sc.datasets.tasic2018(tasic_dir, paper_selection=False)
    msg = str(err.value)
    assert msg.startswith(f"{samples} lists 1 sample(s) more than once (e.g. ['VISp_F1S4_000'])")
    assert "same obs_names" in msg and "Remove the repeated rows" in msg


def test_tasic2018_sample_in_both_regions_is_refused(tasic_dir, no_pooch):
    for kind in ("samples-columns", "exon-matrix", "intron-matrix"):
        path = _tasic_file(tasic_dir, "ALM", kind)
        path.write_bytes(path.read_bytes().replace(b"ALM_F1S4_003", b"VISp_F1S4_003"))
    with pytest.raises(DatasetFileError, match=re.escape(
            f"{_tasic_file(tasic_dir, 'VISp', 'samples-columns')} and "
            f"{_tasic_file(tasic_dir, 'ALM', 'samples-columns')} together lists 1 sample(s) more "
            "than once (e.g. ['VISp_F1S4_003'])")):
        cplmix_sc.datasets.tasic2018(tasic_dir, paper_selection=False)


def test_tasic2018_parse_errors_name_the_file(tasic_dir, no_pooch, monkeypatch):
    exon = _tasic_file(tasic_dir, "ALM", "exon-matrix")
    good = exon.read_text()
    lines = good.splitlines(keepends=True)
    # a row with one field too many: pandas' ParserError, formerly without the file's name
    exon.write_text("".join([*lines[:5], lines[5].rstrip("\n") + ",7\n", *lines[6:]]))
    with pytest.raises(DatasetFileError, match=re.escape(f"{exon} cannot be read after 0 gene "
                                                         "rows (ParserError: ")):
        cplmix_sc.datasets.tasic2018(tasic_dir, paper_selection=False)
    monkeypatch.setattr(_tasic2018, "CHUNK_GENES", 5)  # in the second chunk: where it is
    exon.write_text("".join([*lines[:8], lines[8].rstrip("\n") + ",7\n", *lines[9:]]))
    with pytest.raises(DatasetFileError, match=re.escape(f"{exon} cannot be read after 5 gene "
                                                         "rows (ParserError: ")):
        cplmix_sc.datasets.tasic2018(tasic_dir, paper_selection=False)
    # text among the counts (gene row 8)
    exon.write_text("".join([*lines[:8], lines[8].rsplit(",", 1)[0] + ",x1\n", *lines[9:]]))
    with pytest.raises(DatasetFileError, match=re.escape(f"{exon} cannot be read in gene rows "
                                                         "6-10 (ValueError: could not convert")):
        cplmix_sc.datasets.tasic2018(tasic_dir, paper_selection=False)
    # cut in the middle of a line (a cut download): formerly "holds non-count values"
    exon.write_text(good[: good.index(lines[8]) + 30])
    with pytest.raises(DatasetFileError, match=re.escape(
            f"{exon} has missing values in the row of gene {ENTREZ[7]} (gene row 8): a short "
            "row, the file is damaged or incomplete (e.g. a cut download). Delete it (and "
            "mouse_ALM_gene_expression_matrices_2018-06-14.zip")):
        cplmix_sc.datasets.tasic2018(tasic_dir, paper_selection=False)
    # cut at the end of a line: fewer genes than genes-rows.csv
    exon.write_text("".join(lines[:8]))
    with pytest.raises(DatasetFileError, match=re.escape(
            f"{exon} has 7 gene rows, genes-rows.csv lists {N_GENES}") + r".*the file is "
            r"incomplete \(e\.g\. a cut download\)\. Delete it"):
        cplmix_sc.datasets.tasic2018(tasic_dir, paper_selection=False)
    exon.write_text(good)
    genes = _tasic_file(tasic_dir, "VISp", "genes-rows")
    genes.write_text(genes.read_text() + '1,2,3,4,5,6,"7\n')  # an unclosed quote
    with pytest.raises(DatasetFileError, match=re.escape(f"{genes} cannot be read (ParserError")):
        cplmix_sc.datasets.tasic2018(tasic_dir, paper_selection=False)


def test_select_paper_genes(tasic_dir, tmp_path):
    a = cplmix_sc.datasets.tasic2018(tasic_dir)
    g = cplmix_sc.datasets.select_paper_genes(a, n_genes=5)
    x = _dense(a.X).astype(float)
    logcpm = np.log1p(x / x.sum(1, keepdims=True) * 1e6)
    expected = np.argsort(-logcpm.std(0), kind="stable")[:5]
    assert list(g.var_names) == list(a.var_names[expected])
    assert g.var["paper_gene_rank"].tolist() == list(range(5))
    assert "approximation" in g.uns["gene_selection"]["rule"]
    assert g.n_obs == a.n_obs and "gene_symbol" in g.var
    # the exact list, as the authors' genes_SS_ALM-VISp.csv (column "genes")
    pd.DataFrame({"genes": ["Rorb", "Sst", "Vip"]}).to_csv(tmp_path / "genes.csv", index=False)
    h = cplmix_sc.datasets.select_paper_genes(a, gene_list=tmp_path / "genes.csv")
    assert list(h.var_names) == ["Rorb", "Sst", "Vip"]
    assert h.uns["gene_selection"]["rule"] == "gene_list"
    np.testing.assert_array_equal(_dense(h.X)[:, 0], _dense(a[:, "Rorb"].X).ravel())
    with pytest.raises(KeyError, match="Nope"):
        cplmix_sc.datasets.select_paper_genes(a, gene_list=["Sst", "Nope"])
    assert cplmix_sc.datasets.select_paper_genes(a).n_vars == N_GENES  # 5032 > 12 genes


# --------------------------------------------------------------------------------------------
# BICCN MOp 10x fixture: NeMO "processed/analysis" folders of the AIBS 10x datasets
# --------------------------------------------------------------------------------------------

GENES10X = ["Snap25", "Gad1", "Slc17a7", "Sst", "Pvalb", "Vip", "Aqp4", "Mog", "Fezf2", "Rorb"]
CLUSTERS = pd.DataFrame(
    {
        "cluster_id": [1, 2, 3, 4],
        "cluster_label": ["Lamp5 Pdlim5_1", "Sst Chodl", "L5 IT S100b", "Astro Aqp4_Gfap"],
        "subclass_label": ["Lamp5", "Sst", "L5 IT", "Astro"],
        "class_label": ["GABAergic", "GABAergic", "Glutamatergic", "Non-Neuronal"],
        "cluster_color": ["#FF88AD", "#B0B200", "#50B2AD", "#665C47"],
        "size": [5, 4, 3, 2],
    }
)


def _cells(name, n=14):
    lib = "L8TX_180221_01_B10" if "v2" in name else "L8TX_190430_01_F08"
    return [f"{''.join('ACGT'[(i >> (2 * k)) % 4] for k in range(16))}-1{lib}" for i in range(n)]


def _mop_counts(name, n_genes):
    rng = np.random.default_rng(2 if "v2" in name else 3)
    return rng.poisson(2.0, size=(n_genes, 14)) * (rng.random((n_genes, 14)) < 0.5)


def _mop_genes(name):
    return GENES10X + (["Xist"] if "v3" in name else [])


def write_mop(folder, name, h5=False):
    folder.mkdir(parents=True, exist_ok=True)
    cells, genes = _cells(name), _mop_genes(name)
    counts = _mop_counts(name, len(genes))
    if h5:  # CellRanger 3 layout, barcodes = the cell names' prefix before "L"
        m = sp.csc_matrix(counts)
        with h5py.File(folder / "umi_counts.h5", "w") as f:
            g = f.create_group("matrix")
            g["barcodes"] = np.array([c.split("L")[0] for c in cells], dtype="S")
            g["data"], g["indices"], g["indptr"] = m.data.astype(np.int32), m.indices, m.indptr
            g["shape"] = np.array(m.shape, dtype=np.int32)
            ft = g.create_group("features")
            ft["id"] = np.array([f"ENSMUSG{i:011d}" for i in range(len(genes))], dtype="S")
            ft["name"] = np.array(genes, dtype="S")
            ft["feature_type"] = np.array(["Gene Expression"] * len(genes), dtype="S")
    else:
        buf = io.BytesIO()
        scipy.io.mmwrite(buf, sp.coo_matrix(counts))
        (folder / "matrix.mtx.gz").write_bytes(gzip.compress(buf.getvalue()))
        feats = "".join(f"ENSMUSG{i:011d}\t{g}\tGene Expression\n" for i, g in enumerate(genes))
        (folder / "features.tsv.gz").write_bytes(gzip.compress(feats.encode()))
        lines = ['"","x"'] + [f'"{i + 1}","{c}"' for i, c in enumerate(cells)]
        (folder / "barcode.tsv").write_text("\n".join(lines) + "\n")
    # cells 0..11 annotated (12, 13 not); cell 11 fails QC
    ids = [1 + i % 4 for i in range(12)]
    pd.DataFrame({"x": ids}, index=cells[:12]).to_csv(
        folder / "cluster.membership.csv", quoting=csv.QUOTE_NONNUMERIC
    )
    CLUSTERS.to_csv(folder / "cluster.annotation.csv", index=False)
    pd.DataFrame({"x": cells[:11]}, index=range(1, 12)).to_csv(folder / "QC.csv")
    pd.DataFrame(
        {"library_id": ["L8TX"] * 14, "gene.counts": np.arange(14) * 100}, index=cells
    ).to_csv(folder / "sample_metadata.csv")
    return folder


@pytest.fixture
def mop_dir(tmp_path):
    root = tmp_path / "mop"
    for name in ("10X_cells_v2_AIBS", "10X_cells_v3_AIBS"):
        write_mop(root / name, name)
    return root


def test_mop10x_reads_the_nemo_layout(mop_dir, no_pooch):
    a = cplmix_sc.datasets.mop10x(mop_dir, download=True)
    assert a.shape == (22, len(GENES10X))  # 11 QC-passed annotated cells per dataset
    assert list(a.var_names) == GENES10X  # genes shared by v2 and v3
    x = _dense(a.X)
    assert a.X.dtype == np.float32 and np.array_equal(x, np.round(x)) and x.min() >= 0
    v2 = _mop_counts("10X_cells_v2_AIBS", len(GENES10X))
    np.testing.assert_array_equal(x[:11], v2[:, :11].T)
    v3 = _mop_counts("10X_cells_v3_AIBS", len(GENES10X) + 1)
    np.testing.assert_array_equal(x[11:], v3[: len(GENES10X), :11].T)
    assert list(a.obs_names[:11]) == _cells("10X_cells_v2_AIBS")[:11]
    for col in ("cluster_id", "cluster_label", "subclass_label", "class_label", "dataset"):
        assert col in a.obs
    assert a.obs["cluster_id"].tolist()[:4] == [1, 2, 3, 4]
    assert a.obs["class_label"].iloc[3] == "Non-Neuronal"
    assert a.obs["subclass_label"].iloc[2] == "L5 IT"
    assert a.obs["dataset"].value_counts().to_dict() == {
        "10X_cells_v2_AIBS": 11,
        "10X_cells_v3_AIBS": 11,
    }
    assert a.obs["gene.counts"].iloc[1] == 100
    b = cplmix_sc.datasets.mop10x(mop_dir, qc=False)
    assert b.n_obs == 24


def test_mop10x_umi_counts_h5_matches_mtx(tmp_path, no_pooch):
    name = "10X_cells_v3_AIBS"
    mtx = cplmix_sc.datasets.mop10x(write_mop(tmp_path / "a", name), datasets=[name])
    h5 = cplmix_sc.datasets.mop10x(write_mop(tmp_path / "b", name, h5=True), datasets=[name])
    assert list(h5.obs_names) == list(mtx.obs_names)
    assert list(h5.var_names) == _mop_genes(name) == list(mtx.var_names)
    np.testing.assert_array_equal(_dense(h5.X), _dense(mtx.X))


def test_mop10x_errors(tmp_path, mop_dir, no_pooch):
    with pytest.raises(DatasetNotFoundError) as err:
        cplmix_sc.datasets.mop10x(tmp_path / "nowhere")
    msg = str(err.value)
    assert "does not exist" in msg and "cluster.membership.csv" in msg
    assert "nemoarchive" in msg and "download=True" in msg
    (mop_dir / "10X_cells_v3_AIBS" / "QC.csv").unlink()
    with pytest.raises(DatasetNotFoundError, match=re.escape("QC.csv")):
        cplmix_sc.datasets.mop10x(mop_dir)
    assert cplmix_sc.datasets.mop10x(mop_dir, qc=False).n_obs == 24
    (mop_dir / "10X_cells_v2_AIBS" / "barcode.tsv").unlink()
    with pytest.raises(DatasetNotFoundError, match=re.escape("barcode.tsv")):
        cplmix_sc.datasets.mop10x(mop_dir, qc=False)


def test_mop10x_download_and_offline(tmp_path, monkeypatch):
    import pooch

    calls = []

    def fake_retrieve(url, known_hash, fname, path, processor, progressbar):
        calls.append(url)
        name = Path(path).name
        src = write_mop(tmp_path / "src" / name, name)
        Path(path).mkdir(parents=True, exist_ok=True)
        (Path(path) / fname).write_bytes((src / fname).read_bytes())
        return str(Path(path) / fname)

    monkeypatch.setattr(pooch, "retrieve", fake_retrieve)
    a = cplmix_sc.datasets.mop10x(tmp_path / "dl", download=True)
    assert a.n_obs == 22 and len(calls) == 2 * len(_registry.MOP10X_FILES)
    assert all(u.startswith("https://data.nemoarchive.org/biccn/") for u in calls)

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(pooch, "retrieve", offline)
    with pytest.raises(DatasetNotFoundError, match="network is unreachable") as err:
        cplmix_sc.datasets.mop10x(tmp_path / "dl2", download=True)
    assert "10X_cells_v3_AIBS" in str(err.value)


# --------------------------------------------------------------------------------------------
# mop10x: files that are cut, one line short, or inconsistent are refused, naming the file
# --------------------------------------------------------------------------------------------

V3 = "10X_cells_v3_AIBS"


def _lines(path):
    return path.read_text().splitlines(keepends=True)


def test_mop10x_barcodes_one_line_short_are_refused(tmp_path, no_pooch):
    # the lost barcode is that of an unannotated cell (13): formerly the header line was taken
    # for the first barcode and every cell silently got its neighbour's counts
    folder = write_mop(tmp_path / "a", V3)
    barcodes = folder / "barcode.tsv"
    barcodes.write_text("".join(_lines(barcodes)[:-1]))
    with pytest.raises(DatasetFileError) as err:
        cplmix_sc.datasets.mop10x(folder, datasets=[V3])
    msg = str(err.value)
    assert f"{barcodes} lists 13 cell barcodes after its header line '\"\",\"x\"', but " in msg
    assert "matrix.mtx.gz has 14 cells (columns)" in msg
    assert "wrong counts" in msg and "download it again" in msg and "download=True" in msg
    # a line lost in the middle: R's row numbers say where
    folder = write_mop(tmp_path / "b", V3)
    lines = _lines(folder / "barcode.tsv")
    (folder / "barcode.tsv").write_text("".join(lines[:6] + lines[7:]))
    with pytest.raises(DatasetFileError, match=r"lists 13 cell barcodes .*its row numbers skip "
                       r"from 5 to 7 at line 7; the file is incomplete"):
        cplmix_sc.datasets.mop10x(folder, datasets=[V3])


def test_mop10x_barcode_header_is_recognised_not_guessed(tmp_path, no_pooch):
    name = V3
    ref = cplmix_sc.datasets.mop10x(write_mop(tmp_path / "ref", name), datasets=[name])
    folder = write_mop(tmp_path / "plain", name)
    cells = _cells(name)
    (folder / "barcode.tsv").write_text("\n".join(cells) + "\n")  # one name a line, no header
    plain = cplmix_sc.datasets.mop10x(folder, datasets=[name])
    assert list(plain.obs_names) == list(ref.obs_names)
    np.testing.assert_array_equal(_dense(plain.X), _dense(ref.X))
    # one line too many without a header: formerly its first line was dropped as a "header"
    (folder / "barcode.tsv").write_text("\n".join(["AAAAAAAAAAAAAAAA-1L8TX", *cells]) + "\n")
    with pytest.raises(DatasetFileError, match=r"lists 15 cell barcodes, but matrix\.mtx\.gz "
                       r"has 14 cells \(columns\): its first line 'AAAAAAAAAAAAAAAA-1L8TX' may "
                       r"be a header"):
        cplmix_sc.datasets.mop10x(folder, datasets=[name])


def _write_features(folder, lines):
    (folder / "features.tsv.gz").write_bytes(gzip.compress("".join(lines).encode()))


def test_mop10x_features_with_a_header_or_one_line_short(tmp_path, no_pooch):
    name = V3
    ref = cplmix_sc.datasets.mop10x(write_mop(tmp_path / "ref", name), datasets=[name])
    folder = write_mop(tmp_path / "a", name)
    genes = gzip.decompress((folder / "features.tsv.gz").read_bytes()).decode()
    genes = genes.splitlines(keepends=True)
    header = "gene_id\tgene_symbol\tfeature_type\n"
    _write_features(folder, [header, *genes])  # a header line is recognised and skipped
    a = cplmix_sc.datasets.mop10x(folder, datasets=[name])
    assert list(a.var_names) == list(ref.var_names)
    # a header and one gene short: formerly every gene took its neighbour's name
    _write_features(folder, [header, *genes[:-1]])
    with pytest.raises(DatasetFileError) as err:
        cplmix_sc.datasets.mop10x(folder, datasets=[name])
    msg = str(err.value)
    path = folder / "features.tsv.gz"
    assert f"{path} lists {len(genes) - 1} genes after its header line " in msg
    assert f"matrix.mtx.gz has {len(genes)} genes (rows)" in msg and "download it again" in msg
    _write_features(folder, genes[:-1])  # no header, one gene short
    with pytest.raises(DatasetFileError, match=re.escape(f"{path} lists {len(genes) - 1} genes,")):
        cplmix_sc.datasets.mop10x(folder, datasets=[name])


def test_mop10x_cut_gzip_and_h5_name_the_file(tmp_path, no_pooch):
    folder = write_mop(tmp_path / "a", V3)
    mtx = folder / "matrix.mtx.gz"
    data = mtx.read_bytes()
    for damaged, cause in [(data[: len(data) // 2], "EOFError"), (b"not gzip" * 8, "BadGzipFile")]:
        mtx.write_bytes(damaged)  # formerly a bare EOFError / gzip.BadGzipFile
        with pytest.raises(DatasetFileError) as err:
            cplmix_sc.datasets.mop10x(folder, datasets=[V3])
        msg = str(err.value)
        assert msg.startswith(f"{mtx} cannot be read ({cause}") and "cut download" in msg
        assert "Delete it and download it again" in msg
    folder = write_mop(tmp_path / "b", V3)
    feats = folder / "features.tsv.gz"
    feats.write_bytes(feats.read_bytes()[:-12])
    with pytest.raises(DatasetFileError, match=re.escape(f"{feats} cannot be read (EOFError")):
        cplmix_sc.datasets.mop10x(folder, datasets=[V3])
    folder = write_mop(tmp_path / "c", V3, h5=True)
    h5 = folder / "umi_counts.h5"
    h5.write_bytes(h5.read_bytes()[:2000])  # formerly a bare OSError from h5py
    with pytest.raises(DatasetFileError) as err:
        cplmix_sc.datasets.mop10x(folder, datasets=[V3])
    assert str(err.value).startswith(f"{h5} cannot be read (OSError")
    assert "download it again" in str(err.value)


def test_mop10x_h5_inconsistent_with_its_shape(tmp_path, no_pooch):
    folder = write_mop(tmp_path / "a", V3, h5=True)
    with h5py.File(folder / "umi_counts.h5", "r+") as f:
        barcodes = f["matrix/barcodes"][:]
        del f["matrix/barcodes"]
        f["matrix/barcodes"] = barcodes[:-1]
    with pytest.raises(DatasetFileError, match=re.escape(
            f"{folder / 'umi_counts.h5'} does not match its own shape (")
            + r".*barcodes 13 \(shape says 14\)"):
        cplmix_sc.datasets.mop10x(folder, datasets=[V3])


def test_mop10x_duplicated_rows_and_parse_errors_name_the_file(tmp_path, no_pooch):
    folder = write_mop(tmp_path / "a", V3)
    membership = folder / "cluster.membership.csv"
    lines = _lines(membership)
    membership.write_text("".join([*lines, lines[3]]))  # a cell listed twice
    with pytest.raises(DatasetFileError, match=re.escape(f"{membership} lists 1 cell(s) more "
                                                         f"than once (e.g. ['{_cells(V3)[2]}'])")):
        cplmix_sc.datasets.mop10x(folder, datasets=[V3])
    folder = write_mop(tmp_path / "b", V3)
    annotation = folder / "cluster.annotation.csv"
    annotation.write_text(annotation.read_text() + "9,a,b,c,d,e,f,g,h,i,j\n")
    with pytest.raises(DatasetFileError, match=re.escape(f"{annotation} cannot be read "
                                                         "(ParserError")):
        cplmix_sc.datasets.mop10x(folder, datasets=[V3])

import warnings
from importlib import resources

import pandas as pd
import pytest

import cplmix_sc.genesets as gs

# Sizes of the shipped lists. The HKG counts are the ones the HRT Atlas paper reports
# (3,277 mouse and 2,176 human genes); the IEGs are the 19 rapid primary response genes of
# Tyssowski et al. 2018.
EXPECTED_SIZES = {
    ("ieg", "mouse"): 19,
    ("ieg", "human"): 19,
    ("hkg", "mouse"): 3277,
    ("hkg", "human"): 2176,
}
SETS = sorted(EXPECTED_SIZES)


@pytest.mark.parametrize(("name", "species"), SETS)
def test_each_set_loads_clean(name, species):
    genes = gs.load(name, species)
    assert len(genes) == EXPECTED_SIZES[name, species]
    assert len(set(genes)) == len(genes), "duplicates"
    assert genes == sorted(genes)
    for g in genes:
        assert isinstance(g, str)
        assert g and g == g.strip(), f"empty or padded entry {g!r}"
        assert not g.startswith("#"), "a comment line leaked in"
        assert " " not in g and "," not in g and ";" not in g
    # spreadsheet-mangled symbols ('7-Mar', '9-Sep') must not appear
    assert not any(g[0].isdigit() and "-" in g for g in genes)


@pytest.mark.parametrize(("name", "species"), SETS)
def test_data_files_cite_their_source(name, species):
    text = (resources.files("cplmix_sc.genesets") / "_data" / f"{species}_{name}.txt").read_text()
    header = [line for line in text.splitlines() if line.startswith("#")]
    joined = "\n".join(header)
    assert "DOI: 10." in joined and "commit " in joined and "Count: " in joined
    assert f"Count: {EXPECTED_SIZES[name, species]} genes" in joined


def test_species_spelling():
    mouse_ieg, human_ieg = gs.load("ieg", "mouse"), gs.load("ieg", "human")
    # mouse symbols: capital first letter, rest lower case; human: all upper case
    assert all(g[0].isupper() and g[1:] == g[1:].lower() for g in mouse_ieg)
    assert all(g == g.upper() for g in human_ieg)
    # the human IEGs are the mouse IEGs upper-cased (the documented ortholog rule)
    assert human_ieg == sorted(g.upper() for g in mouse_ieg)


def test_known_members():
    mouse_ieg = set(gs.load("ieg"))
    assert {"Fos", "Fosb", "Arc", "Egr1", "Egr2", "Egr3", "Egr4", "Npas4", "Junb", "Nr4a1"} <= (
        mouse_ieg
    )
    assert {"FOS", "ARC", "EGR1", "NPAS4", "JUNB"} <= set(gs.load("ieg", "human"))
    # delayed primary response genes of the same table are deliberately left out
    assert not {"Bdnf", "Nr4a3", "Tac1"} & mouse_ieg

    mouse_hkg = set(gs.load("hkg", "mouse"))
    assert {"Psmb2", "Tbp", "Hsp90ab1", "Eef1d", "Polr2c"} <= mouse_hkg
    assert not {"Gapdh", "Actb", "Fos"} & mouse_hkg  # not HK genes in the HRT Atlas mouse list
    human_hkg = set(gs.load("hkg", "human"))
    assert {"GAPDH", "PSMB2", "RPLP0", "EEF2", "PPIA"} <= human_hkg
    assert "ACTB" not in human_hkg
    # the three dates of the mirror were restored to gene symbols
    assert {"MARCH5", "MARCH7", "SEPT9"} <= human_hkg
    # IEGs are not housekeeping genes
    assert not mouse_ieg & mouse_hkg
    assert not set(gs.load("ieg", "human")) & human_hkg


def test_load_is_case_insensitive_and_returns_a_copy():
    assert gs.load("IEG", "Mouse") == gs.load("ieg", "mouse")
    assert gs.load("Hkg", species="HUMAN") == gs.load("hkg", "human")
    genes = gs.load("ieg")
    genes.append("not-a-gene")
    assert "not-a-gene" not in gs.load("ieg")


def test_unknown_name_or_species():
    with pytest.raises(ValueError, match=r"'ieg', 'hkg'"):
        gs.load("markers")
    with pytest.raises(ValueError, match=r"'mouse', 'human'"):
        gs.load("ieg", species="rat")
    with pytest.raises(ValueError, match=r"'mouse', 'human'"):
        gs.load("hkg", species=None)


def test_available_lists_every_set():
    table = gs.available()
    assert isinstance(table, pd.DataFrame)
    assert list(table.columns) == ["name", "species", "n_genes", "source", "doi"]
    assert sorted(zip(table["name"], table["species"], strict=True)) == SETS
    for row in table.itertuples():
        assert row.n_genes == len(gs.load(row.name, row.species))
        assert row.doi.startswith("10.")
        assert row.source
    by_set = table.set_index(["name", "species"])
    assert by_set.loc[("hkg", "mouse"), "doi"] == "10.1093/nar/gkaa609"
    assert by_set.loc[("ieg", "mouse"), "doi"] == "10.1016/j.neuron.2018.04.001"


def test_match_ignores_case_and_keeps_var_names_order():
    var_names = pd.Index(["ACTB", "EGR1", "fos", "Gapdh", "ARC", "NPAS4", "JUNB"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hits = gs.match(["Fos", "Arc", "Egr1", "Npas4", "Junb"], var_names)
    assert hits == ["EGR1", "fos", "ARC", "NPAS4", "JUNB"]
    # exact comparison finds none of the differently spelt genes
    with pytest.warns(UserWarning):
        assert gs.match(["Fos", "Arc"], var_names, case_sensitive=True) == []
    assert gs.match(["Gapdh"], var_names, case_sensitive=True) == ["Gapdh"]
    # a single string is one gene, not a sequence of letters
    assert gs.match("Fos", var_names) == ["fos"]


def test_match_warns_when_few_genes_match():
    mouse_ieg = gs.load("ieg", "mouse")
    var_names = ["Fos", "Arc", "Gapdh"]  # 2 of 19 IEGs present
    with pytest.warns(UserWarning, match=r"Only 2 of 19 genes .*species"):
        assert gs.match(mouse_ieg, var_names) == ["Fos", "Arc"]
    # the realistic mistake: human IEGs against Ensembl IDs
    with pytest.warns(UserWarning, match=r"Only 0 of 19"):
        assert gs.match(gs.load("ieg", "human"), ["ENSG00000170345"]) == []
    # at least half present: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        half = [g.upper() for g in mouse_ieg[:10]]
        assert gs.match(mouse_ieg, half) == half

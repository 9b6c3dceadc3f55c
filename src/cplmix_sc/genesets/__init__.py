"""Gene sets for interpreting a cell-state variable: immediate early and housekeeping genes.

The cpl-mixVAE paper reads the continuous state of a cell type through marker genes, immediate
early genes (IEG) and housekeeping genes (HKG) ordered along the state. This module ships the
IEG and HKG lists as plain text files (``_data/{species}_{name}.txt``), each with a ``#``
header that cites its source, the repository file and commit it was copied from, how it was
derived and its gene count:

======  =======  =======  ==============================================================
name    species  n_genes  source
======  =======  =======  ==============================================================
ieg     mouse    19       Tyssowski et al. (2018), rapid primary response genes
ieg     human    19       the mouse list with symbols upper-cased (ortholog rule)
hkg     mouse    3277     HRT Atlas v1.0 (Hounkpe et al. 2021)
hkg     human    2176     HRT Atlas v1.0 (Hounkpe et al. 2021)
======  =======  =======  ==============================================================

Gene symbols are those of the source (its genome release); genes renamed since then, such as
human ``AES`` (now ``TLE5``), are not translated. :func:`match` maps a set onto the spelling of
a data set's ``var_names``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from functools import cache
from importlib import resources

import pandas as pd

__all__ = ["available", "load", "match"]

_NAMES = ("ieg", "hkg")
_SPECIES = ("mouse", "human")

# (name, species) -> short citation and DOI of the source; the data file holds the details.
_SETS: dict[tuple[str, str], dict[str, str]] = {
    ("ieg", "mouse"): {
        "source": "Tyssowski et al. 2018, Neuron (rapid primary response genes)",
        "doi": "10.1016/j.neuron.2018.04.001",
    },
    ("ieg", "human"): {
        "source": (
            "Tyssowski et al. 2018, Neuron (rapid primary response genes); "
            "human = mouse symbols upper-cased"
        ),
        "doi": "10.1016/j.neuron.2018.04.001",
    },
    ("hkg", "mouse"): {
        "source": "Hounkpe et al. 2021, Nucleic Acids Res. (HRT Atlas v1.0)",
        "doi": "10.1093/nar/gkaa609",
    },
    ("hkg", "human"): {
        "source": "Hounkpe et al. 2021, Nucleic Acids Res. (HRT Atlas v1.0)",
        "doi": "10.1093/nar/gkaa609",
    },
}


def _choice(value: object, allowed: tuple[str, ...], what: str) -> str:
    """Return ``value`` lower-cased if it is one of ``allowed``; raise a ValueError otherwise."""
    key = value.lower() if isinstance(value, str) else value
    if key not in allowed:
        options = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"Unknown {what} {value!r}; allowed values are {options}.")
    return key


@cache
def _read(name: str, species: str) -> tuple[str, ...]:
    """Gene symbols of one shipped file, without comment and blank lines."""
    path = resources.files(__name__) / "_data" / f"{species}_{name}.txt"
    if not path.is_file():  # pragma: no cover - every registered set ships a file
        raise FileNotFoundError(
            f"The {species} {name!r} gene set is not shipped with this installation ({path})."
        )
    genes = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            genes.append(line)
    return tuple(genes)


def load(name: str, species: str = "mouse") -> list[str]:
    """Gene symbols of a shipped gene set.

    Parameters
    ----------
    name
        ``"ieg"`` (immediate early genes) or ``"hkg"`` (housekeeping genes); case-insensitive.
    species
        ``"mouse"`` (symbols like ``Fos``) or ``"human"`` (symbols like ``FOS``);
        case-insensitive.

    Returns
    -------
    A new, sorted list of unique gene symbols in the spelling of the source. To select them
    from a data set whose capitalisation differs, pass the result to :func:`match`.

    Raises
    ------
    ValueError
        If ``name`` or ``species`` is not one of the allowed values; the message lists them.

    Notes
    -----
    - ``ieg``, mouse: the 19 rapid primary response genes (rPRG) of Tyssowski et al. (2018),
      Table S2 -- the classic IEGs (``Fos``, ``Arc``, ``Egr1``, ``Npas4``, ``Junb``, ...)
      induced within minutes of neuronal activity without new protein synthesis. The delayed
      primary response genes of the same table are not included.
    - ``ieg``, human: no published human list was used. The human symbols are the mouse symbols
      upper-cased; for these 19 genes that is the HGNC symbol of the one-to-one ortholog, but
      the set itself was measured in mouse neurons.
    - ``hkg``: the housekeeping genes of the HRT Atlas v1.0 (Hounkpe et al. 2021), derived from
      11,281 human and 507 mouse RNA-seq samples of healthy tissues and cells: 3,277 mouse and
      2,176 human genes, as reported in the paper. They are broadly and stably expressed, but
      not necessarily constant along every state of every cell type.

    Each data file's header gives the repository, path and commit it was copied from.

    References
    ----------
    Tyssowski K.M. et al. (2018) Different neuronal activity patterns induce different gene
    expression programs. Neuron 98:530-546. doi:10.1016/j.neuron.2018.04.001

    Hounkpe B.W., Chenou F., de Lima F., De Paula E.V. (2021) HRT Atlas v1.0 database:
    redefining human and mouse housekeeping genes and candidate reference transcripts by mining
    massive RNA-seq datasets. Nucleic Acids Research 49:D947-D955. doi:10.1093/nar/gkaa609

    Examples
    --------
    >>> import cplmix_sc.genesets as gs
    >>> "Npas4" in gs.load("ieg")
    True
    >>> len(gs.load("HKG", species="human"))
    2176
    """
    name = _choice(name, _NAMES, "gene set name")
    species = _choice(species, _SPECIES, "species")
    return list(_read(name, species))


def available() -> pd.DataFrame:
    """The shipped gene sets.

    Returns
    -------
    One row per gene set with columns ``name``, ``species``, ``n_genes`` (equal to
    ``len(load(name, species))``), ``source`` (short citation) and ``doi``.

    Examples
    --------
    >>> import cplmix_sc.genesets as gs
    >>> gs.available()[["name", "species", "n_genes"]].to_numpy().tolist()[0]
    ['ieg', 'mouse', 19]
    """
    rows = [
        {
            "name": name,
            "species": species,
            "n_genes": len(_read(name, species)),
            "source": meta["source"],
            "doi": meta["doi"],
        }
        for (name, species), meta in _SETS.items()
    ]
    return pd.DataFrame(rows, columns=["name", "species", "n_genes", "source", "doi"])


def match(
    genes: Iterable[str], var_names: Iterable[str], *, case_sensitive: bool = False
) -> list[str]:
    """Entries of ``var_names`` that belong to ``genes``.

    Useful when a data set spells gene symbols differently from the gene set, e.g. upper-case
    mouse symbols (``FOS`` for ``Fos``).

    Parameters
    ----------
    genes
        Gene symbols, e.g. the output of :func:`load`. A single string counts as one gene.
    var_names
        The data set's gene names, e.g. ``adata.var_names``.
    case_sensitive
        Compare symbols exactly instead of ignoring case.

    Returns
    -------
    The matching entries of ``var_names``, in their spelling and order (ready for
    ``adata[:, result]``). Genes absent from ``var_names`` are skipped.

    Warns
    -----
    UserWarning
        If fewer than half of the distinct ``genes`` are found, saying how many were. That
        usually means the wrong ``species`` was passed to :func:`load`, or ``var_names`` holds
        IDs (e.g. Ensembl) instead of symbols.

    Examples
    --------
    >>> import cplmix_sc.genesets as gs
    >>> gs.match(["Fos", "Arc", "Egr1"], ["ARC", "GAPDH", "FOS", "EGR1"])
    ['ARC', 'FOS', 'EGR1']
    """
    if isinstance(genes, str):
        genes = [genes]

    def key(symbol: object) -> str:
        symbol = str(symbol)
        return symbol if case_sensitive else symbol.casefold()

    wanted = {key(g) for g in genes}
    hits = [v for v in var_names if key(v) in wanted]
    n_found = len({key(v) for v in hits})
    if wanted and n_found < len(wanted) / 2:
        warnings.warn(
            f"Only {n_found} of {len(wanted)} genes were found in var_names. Check the species "
            "passed to cplmix_sc.genesets.load() (mouse symbols look like 'Fos', human ones like "
            "'FOS') and that var_names holds gene symbols rather than e.g. Ensembl IDs.",
            UserWarning,
            stacklevel=2,
        )
    return hits

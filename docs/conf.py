"""Sphinx configuration for the cplmix_sc documentation.

Build (from the repository root)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

``CPLMIX_DOCS_OFFLINE=1`` turns intersphinx off (no network needed); the offline build must be
warning-free. Notebooks are copied from ``tutorials/`` into ``docs/notebooks/`` (generated, not
tracked) and executed by myst-nb during the build, so their figures and tables appear on the
site: the quickstart on the bundled Zeisel data in full, the Smart-seq and MOp notebooks on
their simulated stand-ins in quick mode unless ``CPLMIX_TASIC_DIR`` / ``CPLMIX_MOP_DIR`` point
to the data (``CPLMIX_TUTORIAL_QUICK=auto``, set here unless already set; each notebook says
on its page which mode ran). ``CPLMIX_DOCS_EXECUTE=0`` renders them without outputs (fast).
A failing cell fails the build. ``tests/test_tutorials.py`` executes them in quick mode.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))
# the notebooks' kernels import this checkout's package; quick mode on stand-in data only
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
)
os.environ.setdefault("CPLMIX_TUTORIAL_QUICK", "auto")
# figures inline in the executed notebooks, also when MPLBACKEND=Agg is exported (.ci/run)
os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"

import cplmix_sc  # noqa: E402

OFFLINE = os.environ.get("CPLMIX_DOCS_OFFLINE", "0") not in ("", "0", "false", "False")

# -- notebooks: tutorials/*.ipynb -> docs/notebooks/ (generated) -------------------------------
_NB_DIR = HERE / "notebooks"
_NB_DIR.mkdir(exist_ok=True)
for _old in _NB_DIR.glob("*.ipynb"):
    if not (ROOT / "tutorials" / _old.name).exists():
        _old.unlink()
for _nb in sorted((ROOT / "tutorials").glob("*.ipynb")):
    _dst = _NB_DIR / _nb.name
    if not _dst.exists() or _dst.read_bytes() != _nb.read_bytes():
        shutil.copyfile(_nb, _dst)

# -- project -----------------------------------------------------------------------------------
project = "cplmix_sc"
author = "cplmix_sc developers"
copyright = "2026, cplmix_sc developers"
release = cplmix_sc.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx_autodoc_typehints",
]
if not OFFLINE:
    extensions.append("sphinx.ext.intersphinx")

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
master_doc = "index"
exclude_patterns = ["_build", "README.md", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]
templates_path = ["_templates"]

# -- MyST / myst-nb ----------------------------------------------------------------------------
myst_enable_extensions = ["colon_fence", "dollarmath", "deflist"]
myst_heading_anchors = 3
EXECUTE = os.environ.get("CPLMIX_DOCS_EXECUTE", "1") not in ("", "0", "false", "False")
nb_execution_mode = "force" if EXECUTE else "off"
nb_execution_timeout = 1800  # seconds per cell (training on 2 CPU cores)
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_output_stderr = "remove"  # Lightning's and scvi-tools' warnings are not part of the page
nb_merge_streams = True

# -- autodoc / autosummary / napoleon ----------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = True
autodoc_member_order = "groupwise"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "inherited-members": False, "show-inheritance": False}
autodoc_mock_imports: list[str] = []
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = True
napoleon_use_param = True
napoleon_custom_sections = [("Warns", "params_style")]
typehints_defaults = "comma"
always_document_param_types = False

# -- intersphinx (needs the network; off with CPLMIX_DOCS_OFFLINE=1) ---------------------------
intersphinx_mapping = {
    "python": ("https://docs.python.org/3", None),
    "numpy": ("https://numpy.org/doc/stable/", None),
    "scipy": ("https://docs.scipy.org/doc/scipy/", None),
    "pandas": ("https://pandas.pydata.org/docs/", None),
    "anndata": ("https://anndata.readthedocs.io/en/stable/", None),
    "scanpy": ("https://scanpy.readthedocs.io/en/stable/", None),
    "scvi": ("https://docs.scvi-tools.org/en/stable/", None),
    "torch": ("https://pytorch.org/docs/stable/", None),
    "lightning": ("https://lightning.ai/docs/pytorch/stable/", None),
    "matplotlib": ("https://matplotlib.org/stable/", None),
}

# -- HTML (scverse style: sphinx-book-theme) ---------------------------------------------------
html_theme = "sphinx_book_theme"
html_title = "cplmix_sc"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
}
html_static_path: list[str] = []

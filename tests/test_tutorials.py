"""Every notebook in tutorials/ executes top to bottom in stand-in + quick mode.

The notebooks read ``CPLMIX_TUTORIAL_QUICK=1`` (tiny data and budgets) and, with the real-data
path variables unset, run on bundled or simulated stand-ins, so this needs no download.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

TUTORIALS = Path(__file__).resolve().parents[1] / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("*.ipynb"))
REAL_DATA_VARS = ("CPLMIX_TASIC_DIR", "CPLMIX_MOP_DIR")
CELL_TIMEOUT = 120  # seconds per cell
KERNEL = "cplmix-sc-tests"


def test_tutorials_exist():
    names = {p.name for p in NOTEBOOKS}
    assert {"zeisel_quickstart.ipynb", "smartseq_alm_visp.ipynb", "mop_10x.ipynb"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_has_no_stored_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs, f"{path.name}: clear the outputs before committing"
            assert cell.execution_count is None, f"{path.name}: clear the execution counts"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path, monkeypatch, tmp_path):
    monkeypatch.setenv("CPLMIX_TUTORIAL_QUICK", "1")
    for var in REAL_DATA_VARS:
        monkeypatch.delenv(var, raising=False)
    # the kernel imports this checkout's package, also when it is not installed
    src = str(Path(__file__).resolve().parents[1] / "src")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("MPLBACKEND", "agg")
    # one thread: on a shared CPU, PyTorch's thread pool oversubscribed by other jobs made
    # these tiny models ~20x slower
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MKL_NUM_THREADS", "1")
    # a kernel spec for this interpreter, so that another "python3" kernel cannot be picked up
    spec_dir = tmp_path / "jupyter" / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "cplmix_sc tests",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=CELL_TIMEOUT,
        kernel_name=KERNEL,
        resources={"metadata": {"path": str(tmp_path)}},  # files the notebook writes go here
    )
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as err:  # pragma: no cover - report it
        pytest.fail(f"{path.name} failed in stand-in + quick mode:\n{err}", pytrace=False)
    errors = [
        out
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if out.output_type == "error"
    ]
    assert not errors, f"{path.name}: {errors[0]['ename']}: {errors[0]['evalue']}"

"""The prepared GPU check runs end to end with tiny sizes on the CPU (DRY_RUN=1)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_dry_run(tmp_path):
    env = {**os.environ, "DRY_RUN": "1", "OUT": str(tmp_path), "PYTHON": sys.executable,
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("card: ")
    # every figure line names the device; both models and the scale run reported
    figures = [x for x in lines if x.startswith("[")]
    assert any(" cplmix " in x and "prune=" in x for x in figures)
    assert any(" scvi " in x for x in figures)
    assert any("ratio CplMixVAE/scVI" in x for x in figures)
    assert any("cells x 300 genes" in x for x in figures)
    assert (tmp_path / "gpu_check.jsonl").is_file()

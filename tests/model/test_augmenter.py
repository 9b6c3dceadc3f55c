import conftest
import numpy as np
import pytest
import scipy.sparse as sp
import scvi
import torch
from scvi import REGISTRY_KEYS

import cplmix_sc
from cplmix_sc import Augmenter, CplMixVAE
from cplmix_sc.module import AugmenterModule
from cplmix_sc.train import AugmenterTrainingPlan

AUG_QUICK = {"max_epochs": 3, "adversarial_warmup_epochs": 1, "batch_size": 128,
             "enable_progress_bar": False}
QUICK = {**conftest.QUICK, "max_epochs": 2}


@pytest.fixture
def sim():
    return _sim()


def _sim():
    return cplmix_sc.datasets.synthetic(
        n_cells=300, n_genes=120, n_types=3, n_markers=10, n_activity=20, n_housekeeping=10,
        marker_effect=2.5, state_effect=1.5, seed=2,
    )


@pytest.fixture(scope="module")
def trained():
    """A trained augmenter, trained once for the module (the tests only read it)."""
    sim = _sim()
    scvi.settings.seed = 0
    Augmenter.setup_anndata(sim)
    aug = Augmenter(sim)
    aug.train(**AUG_QUICK)
    return sim, aug


def _batch(n=64, g=50, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return {REGISTRY_KEYS.X_KEY: torch.poisson(3 * torch.rand(n, g, generator=gen))}


def _noise_grad(module, term: str) -> float:
    """Norm of the gradient that one term of Eq. 70 sends into the noise path."""
    module.zero_grad()
    tensors = _batch(g=module.n_input)
    inf, gen = module.inference(tensors[REGISTRY_KEYS.X_KEY]), None
    gen = module.generative(inf["z"], inf["z_noisy"], tensors[REGISTRY_KEYS.X_KEY])
    x = tensors[REGISTRY_KEYS.X_KEY]
    if term == "triplet":
        value = module.triplet(x, gen).mean()
    else:  # the generator's GAN term: fool D with both relaxed samples
        _fake_clean, fake_noisy = module.fakes(inf, gen)
        value = -torch.nn.functional.logsigmoid(module.discriminate(fake_noisy)).mean()
    value.backward()
    noise_path = [*module.noise_encoder.parameters(), *module.zn_mean.parameters()]
    return float(sum(p.grad.norm() for p in noise_path if p.grad is not None))


@pytest.mark.parametrize("output", ["residual", "decoder"])
@pytest.mark.parametrize("term", ["triplet", "adversarial"])
def test_gradient_reaches_noise_path(term, output):
    torch.manual_seed(0)
    # margin large: the hinge is active
    module = AugmenterModule(n_input=50, margin=1.0, output=output)
    module.train()
    assert _noise_grad(module, term) > 1e-6


def test_discriminator_only_from_its_own_loss():
    torch.manual_seed(0)
    module = AugmenterModule(n_input=50)
    tensors = _batch(g=50)
    _, _, out = module(tensors, loss_kwargs={"adversarial": False})
    out.loss.backward()
    # without the GAN term, no gradient reaches D; with it, G's loss also backpropagates into D
    assert all(p.grad is None for p in module.discriminator_parameters())
    assert all(p.grad is not None for p in module.zn_mean.parameters())
    fakes = module.last_fakes
    assert fakes is None
    module.zero_grad()
    _inf, _gen, out = module(tensors, loss_kwargs={"adversarial": True})
    fake_clean, fake_noisy = module.last_fakes
    # relaxed samples are integer-valued (not binarised) and not cut from G's graph in the loss
    assert torch.equal(fake_noisy, fake_noisy.round()) and fake_noisy.max() > 1
    d_loss = module.discriminator_loss(tensors[REGISTRY_KEYS.X_KEY], fake_clean, fake_noisy)
    d_loss.backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in module.generator_parameters())


def test_generator_and_discriminator_step_separately(sim):
    scvi.settings.seed = 0
    Augmenter.setup_anndata(sim)
    aug = Augmenter(sim)
    plan = AugmenterTrainingPlan(aug.module)
    opt_g, opt_d = plan.configure_optimizers()
    g_ids = {id(p) for group in opt_g.param_groups for p in group["params"]}
    d_ids = {id(p) for group in opt_d.param_groups for p in group["params"]}
    assert g_ids.isdisjoint(d_ids)
    assert d_ids == {id(p) for p in aug.module.discriminator.parameters()}
    assert len(g_ids) + len(d_ids) == len(list(aug.module.parameters()))
    assert plan.automatic_optimization is False
    d_before = [p.detach().clone() for p in aug.module.discriminator.parameters()]
    g_before = aug.module.zn_mean.weight.detach().clone()
    # adversarial from the first epoch: both move
    aug.train(max_epochs=1, adversarial_warmup_epochs=0, batch_size=128,
              enable_progress_bar=False)
    assert not torch.equal(g_before, aug.module.zn_mean.weight)
    assert any(not torch.equal(a, b)
               for a, b in zip(d_before, aug.module.discriminator.parameters(), strict=True))
    assert "discriminator_loss_train" in aug.history
    # during the adversarial warm-up, D is not stepped
    scvi.settings.seed = 0
    aug2 = Augmenter(sim)
    d_before = [p.detach().clone() for p in aug2.module.discriminator.parameters()]
    aug2.train(max_epochs=1, adversarial_warmup_epochs=1, batch_size=128,
               enable_progress_bar=False)
    assert all(torch.equal(a, b)
               for a, b in zip(d_before, aug2.module.discriminator.parameters(), strict=True))


def test_augment_returns_noisy_integer_copies(trained):
    adata, aug = trained
    copies = aug.augment(n_copies=2, seed=0)
    assert copies.shape == (2 * adata.n_obs, adata.n_vars)
    assert sp.issparse(copies.X)
    x = copies.X.toarray()
    np.testing.assert_array_equal(x, np.round(x))
    assert (x >= 0).all()
    assert list(copies.var_names) == list(adata.var_names)
    assert (copies.obs["source"].to_numpy()[: adata.n_obs] == adata.obs_names).all()
    src = adata.X.toarray() if sp.issparse(adata.X) else adata.X
    first, second = x[: adata.n_obs], x[adata.n_obs:]
    assert (first != second).any(1).mean() > 0.95  # copies differ from each other
    assert (first != src).any(1).mean() > 0.95  # and from the source
    # same seed, same copies; the global random state is left alone
    np.testing.assert_array_equal(aug.augment(n_copies=2, seed=0).X.toarray(), x)
    with pytest.raises(ValueError, match="n_copies"):
        aug.augment(n_copies=0)


def test_save_load_augmenter(trained, tmp_path):
    adata, aug = trained
    aug.save(tmp_path / "aug", overwrite=True)
    loaded = Augmenter.load(tmp_path / "aug", adata=adata)
    for (k, a), b in zip(aug.module.state_dict().items(), loaded.module.state_dict().values(),
                         strict=True):
        assert torch.equal(a, b), k
    np.testing.assert_array_equal(
        aug.augment(seed=3).X.toarray(), loaded.augment(seed=3).X.toarray()
    )


def test_cplmixvae_with_augmenter_frozen_and_saved(trained, tmp_path):
    adata, aug = trained
    CplMixVAE.setup_anndata(adata)
    model = CplMixVAE(adata, n_categories=3, augmenter=aug)
    assert model.module.augmentation == "learned"
    frozen = model.module.augmenter
    assert not any(p.requires_grad for p in frozen.parameters())
    before = {k: v.clone() for k, v in frozen.state_dict().items()}
    for k, v in aug.module.state_dict().items():
        assert torch.equal(before[k], v)
    # the arms get different copies in training, generated from the augmenter
    model.module.train()
    assert not frozen.training
    x = torch.as_tensor(adata.X[:32].toarray(), dtype=torch.float32)
    copies = model.module.make_copies(x)
    assert copies.shape == (2, 32, adata.n_vars)
    assert not torch.equal(copies[0], copies[1])
    assert not torch.equal(copies[0], x)
    model.module.eval()
    assert torch.equal(model.module.make_copies(x)[0], x)
    model.train(**QUICK)
    for k, v in frozen.state_dict().items():  # not trained further
        assert torch.equal(before[k], v), k
    probs = model.get_type_probabilities()
    model.save(tmp_path / "m", overwrite=True)
    loaded = CplMixVAE.load(tmp_path / "m", adata=adata)
    assert loaded.module.augmentation == "learned"
    for k, v in loaded.module.augmenter.state_dict().items():
        assert torch.equal(before[k], v), k
    np.testing.assert_allclose(loaded.get_type_probabilities(), probs, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(loaded.predict(), model.predict())


def test_learned_needs_augmenter_and_same_genes(trained):
    adata, aug = trained
    CplMixVAE.setup_anndata(adata)
    with pytest.raises(ValueError, match="augmenter=aug"):
        CplMixVAE(adata, n_categories=3, augmentation="learned")
    with pytest.raises(ValueError, match="does not use the augmenter"):
        CplMixVAE(adata, n_categories=3, augmentation="simple", augmenter=aug)
    other = adata[:, ::-1].copy()
    CplMixVAE.setup_anndata(other)
    with pytest.raises(ValueError, match="another order"):
        CplMixVAE(other, n_categories=3, augmenter=aug)
    fewer = adata[:, :100].copy()
    CplMixVAE.setup_anndata(fewer)
    with pytest.raises(ValueError, match="20 of the augmenter's genes missing"):
        CplMixVAE(fewer, n_categories=3, augmenter=aug)
    fresh = adata.copy()
    fresh.uns.clear()  # a copy shares scvi-tools' registration ids
    Augmenter.setup_anndata(fresh)
    untrained = Augmenter(fresh)
    CplMixVAE.setup_anndata(adata)
    with pytest.raises(ValueError, match="not trained"):
        CplMixVAE(adata, n_categories=3, augmenter=untrained)
    with pytest.raises(ValueError, match="genes"):
        aug.augment(fewer)
    # the other augmentations are still there
    for choice in ("simple", "none"):
        assert CplMixVAE(adata, n_categories=3, augmentation=choice).module.augmentation == choice


def test_augmentation_plot_draws_the_data(trained, tmp_path):
    import matplotlib.pyplot as plt

    adata, aug = trained
    copies = aug.augment(seed=0)
    real = adata.copy()
    cplmix_sc.tl.embed_augmented(real, copies)
    assert real.obsm["X_aug_pca"].shape == (real.n_obs, 2)
    assert copies.obsm["X_aug_pca"].shape == (copies.n_obs, 2)
    gene = str(real.var_names[0])
    fig = cplmix_sc.pl.augmentation(real, copies, genes=[gene], color="type", show=False,
                                    save=tmp_path / "aug.png")
    assert (tmp_path / "aug.png").exists()
    ax_gene, ax_real, ax_aug = fig.axes[:3]
    # histograms: real and augmented densities of that gene, each integrating to 1
    def lognorm(a):
        x = a.X.toarray()
        return np.log1p(x / x.sum(1, keepdims=True) * 1e4)[:, 0]

    values, copy_values = lognorm(real), lognorm(copies)
    edges = np.histogram_bin_edges(np.concatenate([values, copy_values]), bins=30)
    patches = ax_gene.patches
    assert len(patches) == 60
    for drawn, v in ((patches[:30], values), (patches[30:], copy_values)):
        heights = np.array([p.get_height() for p in drawn])
        expected, _ = np.histogram(v, bins=edges, density=True)
        np.testing.assert_allclose(heights, expected, rtol=1e-5)
    # embedding: the points drawn are the coordinates, in the same limits
    np.testing.assert_allclose(ax_real.collections[0].get_offsets(), real.obsm["X_aug_pca"])
    np.testing.assert_allclose(ax_aug.collections[0].get_offsets(), copies.obsm["X_aug_pca"])
    assert ax_real.get_xlim() == ax_aug.get_xlim()
    plt.close(fig)
    with pytest.raises(KeyError, match="embed_augmented"):
        cplmix_sc.pl.augmentation(adata, copies, genes=[gene], show=False)

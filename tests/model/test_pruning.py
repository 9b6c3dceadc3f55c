"""Consensus between arms and pruning of categories."""

import numpy as np
import pandas as pd
import pytest
import scvi
import torch
from conftest import QUICK, make_easy_sim

import cplmix_sc
from cplmix_sc import CplMixVAE


def test_category_consensus_definition():
    arms = np.array([
        [0, 0, 0, 1, 1, 2, 2, 2],
        [0, 0, 1, 1, 1, 2, 2, 0],
    ])
    df = cplmix_sc.tl.category_consensus_from_labels(arms, n_categories=4)
    # category 0: arm0 {0,1,2}, arm1 {0,1,7} -> 2 / 4; category 1: {3,4} vs {2,3,4} -> 2 / 3
    np.testing.assert_allclose(df["consensus"], [0.5, 2 / 3, 2 / 3, 0.0])
    assert df.loc[3, "n_cells"] == 0 and df["n_cells"].sum() == 8
    three = cplmix_sc.tl.category_consensus_from_labels(np.vstack([arms, arms[0]]), 4)
    # pairs (0,1), (0,2), (1,2): category 0 -> (0.5 + 1 + 0.5) / 3
    assert three.loc[0, "consensus"] == pytest.approx(2 / 3)
    one = cplmix_sc.tl.category_consensus_from_labels(arms[:1], 4)
    assert one["consensus"].tolist() == [1.0, 1.0, 1.0, 0.0]
    active = cplmix_sc.tl.category_consensus_from_labels(arms, 4, active=[1, 1, 0, 0])
    assert active.index.tolist() == [0, 1]


@pytest.fixture(scope="module")
def trained6_dir(tmp_path_factory):
    """A model with 6 categories trained once for the module, saved with its data."""
    adata = make_easy_sim()
    scvi.settings.seed = 0
    CplMixVAE.setup_anndata(adata)
    model = CplMixVAE(adata, n_categories=6)
    model.train(**QUICK)
    path = tmp_path_factory.mktemp("trained6") / "model"
    model.save(path, save_anndata=True)
    return path


@pytest.fixture
def trained6(trained6_dir):
    """A fresh copy of that model and its annotated data for each test (tests prune it)."""
    model = CplMixVAE.load(trained6_dir)
    return model, model.adata


def test_prune_masks_categories_keeps_labels_and_saves(trained6, tmp_path):
    model, adata = trained6
    before = adata.obs["cpl_type"].astype(str).to_numpy()
    hist = model.prune(min_consensus=1.0, n_prune=2, max_rounds=1, fine_tune_epochs=1,
                       batch_size=128, enable_progress_bar=False)
    assert list(hist.columns[:6]) == [
        "round", "n_categories", "mean_consensus", "min_consensus", "log_ratio",
        "reconstruction",
    ]
    removed = sorted(c for r in hist["removed"] for c in r)
    assert removed and len(model.active_categories) == 6 - len(removed)
    assert set(model.active_categories).isdisjoint(removed)
    assert hist.loc[0, "n_categories"] == 6
    assert np.isfinite(hist["reconstruction"]).all()
    probs = model.get_type_probabilities()
    assert probs.shape == (adata.n_obs, 6)
    assert (probs[:, removed] == 0).all()
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    pred = model.predict()
    assert set(np.unique(pred)) <= set(model.active_categories)
    # labels are not renumbered: cells of surviving categories mostly keep their label
    after = adata.obs["cpl_type"].astype(str).to_numpy()
    kept = np.isin(before.astype(int), model.active_categories)
    assert (after[kept] == before[kept]).mean() > 0.5
    assert adata.uns["cpl"]["active_categories"] == model.active_categories.tolist()
    # training again after pruning keeps the mask; save/load keeps it too
    model.train(max_epochs=1, batch_size=128, enable_progress_bar=False)
    assert set(np.unique(model.predict())) <= set(model.active_categories)
    model.save(tmp_path / "m", overwrite=True)
    loaded = CplMixVAE.load(tmp_path / "m", adata=adata)
    np.testing.assert_array_equal(loaded.active_categories, model.active_categories)
    # the loss's cached active indices are rebuilt from the loaded mask
    assert loaded.module._pruned
    np.testing.assert_array_equal(loaded.module.active_index.numpy(), model.active_categories)
    with pytest.raises(ValueError, match="at least one of them True"):
        loaded.module.set_category_mask(np.zeros(6, dtype=bool))
    np.testing.assert_array_equal(loaded.predict(), model.predict())
    assert loaded.prune_history_ is not None and len(loaded.prune_history_) == len(hist)


def test_prune_reports_one_line_per_round(trained6, capsys):
    model, _ = trained6
    capsys.readouterr()
    hist = model.prune(min_consensus=1.0, n_prune=1, max_rounds=1, fine_tune_epochs=1,
                       batch_size=128, enable_progress_bar=False, annotate=False)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("prune round")]
    assert len(lines) == len(hist) >= 1
    first = hist.iloc[0]
    assert lines[0].startswith(
        f"prune round 0: {first['n_categories']} categories, consensus min "
        f"{first['min_consensus']:.2f} mean {first['mean_consensus']:.2f}; removed: "
    )
    assert ", ".join(map(str, first["removed"])) in lines[0]


def test_prune_stops_when_consensus_reached(trained6):
    model, _ = trained6
    hist = model.prune(min_consensus=0.0, fine_tune_epochs=1, batch_size=128,
                       enable_progress_bar=False)
    assert len(hist) == 1  # nothing below 0: only unused categories can go
    assert all(c not in model.active_categories for c in hist.loc[0, "removed"])


def test_prune_errors(easy_sim):
    CplMixVAE.setup_anndata(easy_sim)
    model = CplMixVAE(easy_sim, n_categories=4)
    with pytest.raises(ValueError, match="Train the model"):
        model.prune()
    model.train(**QUICK)
    with pytest.raises(ValueError, match="min_consensus"):
        model.prune(min_consensus=2)
    one = CplMixVAE(easy_sim, n_categories=4, n_arms=1)
    one.train(**QUICK)
    with pytest.raises(ValueError, match="two arms"):
        one.prune()


def test_consensus_from_labels_aligns_and_votes():
    a = np.array([0, 0, 1, 1, 2, 2])
    b = np.array([5, 5, 3, 3, 4, 4])  # same partition, other names
    c = np.array([0, 0, 1, 1, 1, 2])  # one cell moved
    aligned, cons, stab, ari = cplmix_sc.tl.consensus_from_labels(np.stack([a, b, c]), 6)
    np.testing.assert_array_equal(aligned[1], a)
    np.testing.assert_array_equal(cons, a)
    np.testing.assert_allclose(stab, [1, 1, 1, 1, 2 / 3, 1])
    assert ari.iloc[0, 1] == 1.0 and ari.iloc[0, 2] < 1.0
    with pytest.raises(ValueError, match="two labellings"):
        cplmix_sc.tl.consensus_from_labels(a[None])


def test_run_consensus_writes_only_its_keys(easy_sim, capsys):
    CplMixVAE.setup_anndata(easy_sim)
    before_obs = set(easy_sim.obs.columns)
    # init="leiden": with 3 epochs (1 of warm-up) the k-means start that init="auto" picks on
    # these compact types is imprinted less (ARI 0.33 vs 0.47-0.86); with 20 both reach 1.0
    res = cplmix_sc.tl.run_consensus(easy_sim, n_runs=2, n_categories=4,
                                     train_kwargs={**QUICK, "init": "leiden"})
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("consensus run")]
    assert [ln.split(":")[0] for ln in lines] == [
        "consensus run 1/2 (seed 0)", "consensus run 2/2 (seed 1)"
    ]
    assert all(ln.endswith(" s") and " types in " in ln for ln in lines)
    assert res.labels.shape == (2, easy_sim.n_obs) and res.models == []
    assert set(easy_sim.obs.columns) - before_obs == {"cpl_runs_type", "cpl_runs_stability"}
    assert easy_sim.uns["cpl_runs"]["seeds"] == [0, 1]
    assert 0.0 <= res.mean_ari <= 1.0
    assert res.pairwise_ari.shape == (2, 2)
    assert ((res.stability == 0.5) | (res.stability == 1.0)).all()
    with pytest.raises(ValueError, match="at least two runs"):
        cplmix_sc.tl.run_consensus(easy_sim, n_runs=1)


def test_k_selection_and_arm_consensus_plots(trained6):
    import matplotlib.pyplot as plt

    model, _ = trained6
    hist = model.prune(min_consensus=1.0, n_prune=1, max_rounds=2, fine_tune_epochs=1,
                       batch_size=128, enable_progress_bar=False)
    ax = cplmix_sc.pl.k_selection(hist, show=False)
    np.testing.assert_array_equal(ax.get_lines()[0].get_xdata(), hist["n_categories"])
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), hist["mean_consensus"])
    np.testing.assert_allclose(ax.right_ax.get_lines()[0].get_ydata(), hist["log_ratio"])
    with pytest.raises(KeyError, match="prune"):
        cplmix_sc.pl.k_selection(hist.drop(columns="log_ratio"), show=False)
    labels = np.array([[0, 0, 1, 1, 2], [7, 7, 3, 3, 3]])
    ax2 = cplmix_sc.pl.arm_consensus(labels, show=False)
    img = ax2.get_images()[0].get_array()
    # rows normalised, matched categories on the diagonal
    np.testing.assert_allclose(np.diag(img)[:2], [1.0, 1.0])
    assert [t.get_text() for t in ax2.get_xticklabels()][:2] == ["7", "3"]
    with pytest.warns(FutureWarning, match="pass model.get_arm_labels"):
        ax3 = cplmix_sc.pl.arm_consensus(model, show=False)
    assert ax3.get_images()[0].get_array().shape[0] == len(np.unique(model.get_arm_labels()[0]))
    plt.close("all")


def test_prune_fine_tunes_for_the_documented_epochs(trained6, monkeypatch):
    """Default fine-tuning: max(5, E // 10), E the default mixture phase of train() for these
    cells (24 epochs for 400 cells at batch 256, where E = 240)."""
    from cplmix_sc.train import _schedule

    model, _ = trained6
    seen = []
    table = pd.DataFrame({"n_cells": 10, "consensus": 0.5}, index=pd.RangeIndex(6))
    stats = {"table": table, "log_ratio": 0.0, "reconstruction": 0.0,
             "reconstruction_on": "training"}
    monkeypatch.setattr(model, "_prune_stats", lambda batch_size: stats)  # every round prunes
    monkeypatch.setattr(model, "train", lambda **kw: seen.append(kw["max_epochs"]))
    model.prune(max_rounds=1, annotate=False)
    assert _schedule.mixture_epochs(400, 256) == 240
    assert seen == [24]


def _scripted_stats(model, means):
    """``_prune_stats`` whose round ``r`` gives every active category consensus ``means[r]``
    except the last active one (0.1: always the one removed)."""
    calls = []

    def stats(batch_size):
        active = model.active_categories
        cons = np.full(len(active), means[min(len(calls), len(means) - 1)])
        cons[-1] = 0.1
        calls.append(len(active))
        table = pd.DataFrame({"n_cells": 10, "consensus": cons}, index=active)
        return {"table": table, "log_ratio": 0.0, "reconstruction": 0.0,
                "reconstruction_on": "training"}

    return stats


def test_prune_patience_keeps_the_best_round(trained6, monkeypatch):
    """With ``patience`` pruning stops after that many rounds without a better mean consensus
    and the model is put back as measured in the best round (weights and categories)."""
    model, _ = trained6
    # mean over categories in use: round 0 0.45, round 1 0.82 (best), then 0.5, 0.5
    monkeypatch.setattr(model, "_prune_stats", _scripted_stats(model, [0.52, 0.96, 0.6, 0.6]))
    param = next(model.module.parameters())

    def fake_train(**kw):
        with torch.no_grad():
            param.add_(1.0)  # every fine-tuning changes the weights

    monkeypatch.setattr(model, "train", fake_train)
    before = param.detach().clone()
    hist = model.prune(min_consensus=0.99, n_prune=1, patience=2, annotate=False)
    assert hist["n_categories"].tolist() == [6, 5, 4, 3]
    assert hist["selected"].tolist() == [False, True, False, False]
    assert hist["removed"].iloc[-1] == []  # the stopping round removes nothing
    # round 1's model: its 5 categories (its removal undone) and the weights it was measured
    # with (after one fine-tuning; two more ran after it)
    assert len(model.active_categories) == 5
    assert torch.equal(param.detach(), before + 1.0)


def test_prune_fractional_n_prune(trained6, monkeypatch):
    """A fraction ``n_prune`` removes that share (rounded up) of the categories below
    ``min_consensus``."""
    model, _ = trained6
    cons = pd.Series([0.1, 0.2, 0.3, 0.9, 0.95, 1.0])

    def stats(batch_size):
        active = model.active_categories
        table = pd.DataFrame({"n_cells": 10, "consensus": cons[active].to_numpy()},
                             index=active)
        return {"table": table, "log_ratio": 0.0, "reconstruction": 0.0,
                "reconstruction_on": "training"}

    monkeypatch.setattr(model, "_prune_stats", stats)
    monkeypatch.setattr(model, "train", lambda **kw: None)
    hist = model.prune(min_consensus=0.5, n_prune=0.5, annotate=False)
    # 3 below 0.5 -> ceil(1.5) = 2 removed, then 1 below -> 1 removed, then none
    assert [len(r) for r in hist["removed"]] == [2, 1, 0]
    assert model.active_categories.tolist() == [3, 4, 5]
    with pytest.raises(ValueError, match="fractional"):
        model.prune(n_prune=1.5)
    with pytest.raises(ValueError, match="patience"):
        model.prune(patience=0)


def test_prune_patience_on_a_trained_model(trained6):
    """A real run: the kept model is the round of the best mean consensus over the categories
    in use, with that round's categories, and its labels use only those."""
    model, _ = trained6
    hist = model.prune(min_consensus=1.0, n_prune=0.5, patience=1, fine_tune_epochs=1,
                       batch_size=128, enable_progress_bar=False, annotate=False)
    assert hist["selected"].sum() == 1
    used_mean = [np.mean([v for v in c.values() if v > 0] or [0.0]) for c in hist["consensus"]]
    best = int(np.argmax(used_mean))
    assert hist["selected"].iloc[best]
    cons = hist["consensus"].iloc[best]  # the categories of that round -> consensus
    assert {c for c, v in cons.items() if v > 0} <= set(model.active_categories) <= set(cons)
    assert set(np.unique(model.predict())) <= set(model.active_categories)

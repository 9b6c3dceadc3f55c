import numpy as np
import pytest

from cplmix_sc.metrics import (
    arm_consensus,
    clustering_scores,
    hungarian_accuracy,
    state_recovery,
)


def test_permuted_labels_score_one():
    true = np.array(["a", "a", "b", "b", "c", "c"])
    pred = np.array([2, 2, 0, 0, 1, 1])
    s = clustering_scores(true, pred)
    assert s["ari"] == pytest.approx(1.0)
    assert s["ami"] == pytest.approx(1.0)
    assert s["accuracy"] == pytest.approx(1.0)


def test_missing_labels_are_ignored_and_accuracy_is_one_to_one():
    true = np.array(["a", "a", "b", "b", None, np.nan], dtype=object)
    pred = np.array([0, 0, 0, 0, 1, 1])
    s = clustering_scores(true, pred)
    assert s["n_cells"] == 4
    # one predicted type cannot be matched to both reference types
    assert s["accuracy"] == pytest.approx(0.5)
    assert hungarian_accuracy(["a", "b", "b"], [1, 0, 0]) == pytest.approx(1.0)


def test_arm_consensus():
    assert arm_consensus(np.array([[0, 1, 2, 3], [0, 1, 2, 0]])) == pytest.approx(0.75)
    three = np.array([[0, 0], [0, 1], [0, 1]])
    assert arm_consensus(three) == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    assert arm_consensus(np.array([[0, 1]])) == 1.0


def test_state_recovery_is_rotation_invariant_and_per_group():
    rng = np.random.default_rng(0)
    s = rng.uniform(-1, 1, 200)
    groups = np.repeat(["a", "b"], 100)
    angle = 0.7
    inferred = np.c_[np.cos(angle) * s, np.sin(angle) * s] + rng.normal(0, 0.01, (200, 2))
    inferred[100:] = rng.normal(size=(100, 2))  # group b: unrelated
    rho = state_recovery(s, inferred, groups)
    assert rho["a"] > 0.99
    assert rho["b"] < 0.4

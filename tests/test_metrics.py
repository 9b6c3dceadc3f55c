import numpy as np
import pytest

from cplmix_sc.metrics import arm_consensus, clustering_scores, hungarian_accuracy


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

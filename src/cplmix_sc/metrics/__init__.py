"""Scores of learned types against reference labels and between arms."""

from ._clustering import arm_consensus, clustering_scores, hungarian_accuracy, state_recovery

__all__ = ["arm_consensus", "clustering_scores", "hungarian_accuracy", "state_recovery"]

"""Scores of learned types against reference labels, a reference taxonomy, and between arms."""

from ._clustering import arm_consensus, clustering_scores, hungarian_accuracy, state_recovery
from ._taxonomy import level_mapping, reference_tree, silhouette_by_pcs, taxonomy_accuracy

__all__ = [
    "arm_consensus",
    "clustering_scores",
    "hungarian_accuracy",
    "level_mapping",
    "reference_tree",
    "silhouette_by_pcs",
    "state_recovery",
    "taxonomy_accuracy",
]

"""Scores of learned types against reference labels, a reference taxonomy, and between arms."""

from ._clustering import clustering_scores, hungarian_accuracy, state_recovery
from ._consensus import arm_consensus, category_consensus_from_labels
from ._matching import match_labels
from ._taxonomy import level_mapping, reference_tree, silhouette_by_pcs, taxonomy_accuracy

__all__ = [
    "arm_consensus",
    "category_consensus_from_labels",
    "clustering_scores",
    "hungarian_accuracy",
    "level_mapping",
    "match_labels",
    "reference_tree",
    "silhouette_by_pcs",
    "state_recovery",
    "taxonomy_accuracy",
]

"""The metrics that ``metrics.json`` reports for every test distribution."""

from nodulelearn.binary_metrics import binary_metrics, roc_auc

METRIC_NAMES = ("accuracy", "sensitivity", "specificity", "balanced_accuracy", "auc", "n")

__all__ = ["METRIC_NAMES", "binary_metrics", "roc_auc"]

"""Sample-quality and representation metrics: the Fréchet distance between feature
distributions, mode coverage, precision and recall, reconstruction error and linear probes."""

from pyrogen.metrics.frechet import (
    feature_statistics,
    frechet_distance,
    frechet_distance_features,
)
from pyrogen.metrics.quality import (
    class_histogram,
    conditional_accuracy,
    linear_probe_accuracy,
    mode_coverage,
    precision_recall,
    reconstruction_error,
    sample_quality,
)

__all__ = [
    "class_histogram",
    "conditional_accuracy",
    "feature_statistics",
    "frechet_distance",
    "frechet_distance_features",
    "linear_probe_accuracy",
    "mode_coverage",
    "precision_recall",
    "reconstruction_error",
    "sample_quality",
]

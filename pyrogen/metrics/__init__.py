"""Sample-quality metrics: the Fréchet distance between feature distributions."""

from pyrogen.metrics.frechet import (
    feature_statistics,
    frechet_distance,
    frechet_distance_features,
)

__all__ = ["feature_statistics", "frechet_distance", "frechet_distance_features"]

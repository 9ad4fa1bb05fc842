"""Evaluation metrics (registered in :data:`spixel.registry.METRICS`, ``spixel list metrics``)."""

from . import complexity, fidelity, localization  # noqa: F401  (register the metrics)
from .base import evaluate, metric
from .baselines import random_map
from .sanity import randomization
from .stability import mege, ssim, topk_intersection

__all__ = ["evaluate", "mege", "metric", "random_map", "randomization", "ssim", "topk_intersection"]

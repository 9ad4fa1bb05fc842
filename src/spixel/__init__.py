"""spixel: stable, region-aware saliency maps for image classifiers, and an honest evaluation suite."""

from . import (
    attribution,  # noqa: F401  (registers the methods)
    metrics,
    segmentation,  # registers the segmenters
)
from .api import explain, list_methods, list_metrics, list_segmenters
from .errors import SpixelError
from .io import load_image
from .metrics import evaluate
from .models import ModelAdapter, load_model
from .segmentation import segment
from .types import Explanation

__version__ = "0.1.0"

__all__ = [
    "Explanation",
    "ModelAdapter",
    "SpixelError",
    "__version__",
    "evaluate",
    "explain",
    "list_methods",
    "list_metrics",
    "list_segmenters",
    "load_image",
    "load_model",
    "metrics",
    "segment",
    "segmentation",
]

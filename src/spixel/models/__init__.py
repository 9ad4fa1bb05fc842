"""Model adapters and the model zoo."""

from .adapter import IMAGENET_MEAN, IMAGENET_STD, ModelAdapter, as_adapter
from .zoo import imagenet_labels, load_model

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "ModelAdapter", "as_adapter", "imagenet_labels", "load_model"]

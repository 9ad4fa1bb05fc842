"""Pixel attribution methods. Each returns an :class:`~spixel.types.Explanation`; all are registered in
:data:`spixel.registry.METHODS` (``spixel list methods``)."""

from . import cam, gradients, guided  # noqa: F401  (registration)
from .gradients import (
    input_x_gradient,
    integrated_gradients,
    saliency,
    smoothgrad,
    sparsified_smoothgrad,
)

__all__ = [
    "input_x_gradient",
    "integrated_gradients",
    "saliency",
    "smoothgrad",
    "sparsified_smoothgrad",
]

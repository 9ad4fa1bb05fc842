"""Pictures of a partition: :func:`draw_regions` (region boundaries on the photo, optionally each region filled
with a distinct colour or its mean colour), used by ``spixel segment``."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import BadInputError, BadParameterError
from .overlay import _as_numpy, _photo01, boundary_mask

__all__ = ["BOUNDARY_COLOR", "FILLS", "boundary_mask", "distinct_colors", "draw_regions"]

#: ``fill`` options of :func:`draw_regions`.
FILLS = ("none", "colors", "mean")
#: Boundary colour: yellow reads on most photos (skimage's ``mark_boundaries`` default as well).
BOUNDARY_COLOR = (255, 230, 0)


def distinct_colors(k: int, seed: int = 0) -> np.ndarray:
    """``(k, 3)`` float colours in [0, 1], well spread: golden-ratio steps around the hue circle with
    alternating saturation and value (neighbouring ids differ clearly), in a seeded order."""
    from matplotlib.colors import hsv_to_rgb

    i = np.arange(k)
    hsv = np.stack([(i * 0.618033988749895) % 1.0, 0.55 + 0.35 * (i % 2), 0.75 + 0.2 * ((i // 2) % 2)], -1)
    order = np.random.default_rng(seed).permutation(k)
    return hsv_to_rgb(hsv[order]).astype(np.float32)


def draw_regions(
    image: Any,
    labels: Any,
    *,
    fill: str = "none",
    color: tuple[int, int, int] = BOUNDARY_COLOR,
    scale: float = 1.0,
    thickness: int | None = None,
    opacity: float = 0.4,
    line_opacity: float = 0.85,
) -> np.ndarray:
    """The partition ``labels`` (integer ``(H, W)``) drawn on ``image`` (uint8 or float [0, 1] ``(H, W, 3)``):
    uint8 RGB of ``scale`` times the image's size.

    ``fill``: ``"none"`` (the photo), ``"colors"`` (each region tinted by a distinct colour with ``opacity``) or
    ``"mean"`` (each region painted with its mean colour: how a region-based method "sees" the image). The
    picture is enlarged first (bilinear; labels by nearest neighbour) and the boundaries are then drawn in
    ``color`` with ``line_opacity``, ``thickness`` *output* pixels wide (default: 1 per 600 output pixels of the
    longer side), so that they stay thin when the picture is enlarged.
    """
    from PIL import Image

    if fill not in FILLS:
        raise BadParameterError(f"fill must be one of {', '.join(FILLS)}, got {fill!r}")
    if not (scale > 0 and np.isfinite(scale)):
        raise BadParameterError(f"scale must be positive, got {scale}")
    photo = _photo01(image)
    lab = _as_numpy(labels)
    if lab.shape != photo.shape[:2] or lab.dtype.kind not in "iu":
        raise BadInputError(f"labels must be integer {photo.shape[:2]}, got {lab.dtype} {lab.shape}")
    _, inv = np.unique(lab, return_inverse=True)
    ids = inv.reshape(lab.shape)
    k = int(ids.max()) + 1
    if fill == "colors":
        out = (1.0 - opacity) * photo + opacity * distinct_colors(k)[ids]
    elif fill == "mean":
        cnt = np.bincount(ids.ravel(), minlength=k).astype(np.float64)
        means = np.stack([np.bincount(ids.ravel(), photo[..., c].ravel(), minlength=k) / cnt for c in range(3)], -1)
        out = means[ids].astype(np.float32)
    else:
        out = photo
    h, w = ids.shape
    oh, ow = max(1, round(h * scale)), max(1, round(w * scale))
    pic = np.round(np.clip(out, 0.0, 1.0) * 255.0).astype(np.uint8)
    if (oh, ow) != (h, w):
        resample = Image.Resampling.NEAREST if fill == "mean" else Image.Resampling.BILINEAR
        pic = np.asarray(Image.fromarray(pic).resize((ow, oh), resample))
        ids = ids[(np.arange(oh) * h // oh)[:, None], (np.arange(ow) * w // ow)[None, :]]
    t = thickness if thickness is not None else max(1, round(max(oh, ow) / 600))
    edge = boundary_mask(ids, t)
    res = pic.astype(np.float32)
    res[edge] = (1.0 - line_opacity) * res[edge] + line_opacity * np.asarray(color, np.float32)
    return np.round(res).astype(np.uint8)

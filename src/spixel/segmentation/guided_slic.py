"""SWAG's gradient-aware SLIC (Hartley et al., WACV 2021; spec §2.2–2.3, §2.6).

Two variants of SLIC whose features include a (saliency) gradient map ``g`` scaled to ``g' = 100·(g−min)/(max−min)``:

* ``"image+gradient"``: ``D' = sqrt((d_c/w_c)² + (d_s/S)² + (d_g/w_g)²)`` with ``d_c`` the Lab distance;
* ``"gradient"``: ``D_G = sqrt((d_g/w_g)² + (d_s/S)²)``.

``S`` is SLIC's grid interval; we use skimage's, the step of its regular seed grid (``round(sqrt(HW/K))``).

Mapping onto ``skimage.segmentation.slic`` (spec §2.3). skimage minimises ``(d_s/step)² + Σ_c (ΔF'_c)²`` with
``F' = F̃ / compactness``; from skimage 0.19 on, ``F̃ = (F − min F)/(max F − min F)`` is a min-max rescale with one
global min/max over all channels (≤ 0.18: ``F̃ = F``). We hand it ``F = [Lab, g'·w_c/w_g]`` (Lab of the *un-stretched*
image) with ``compactness = w_c/R``, ``R = max F − min F``, so ``ΔF' = ΔF/w_c``: the colour term
is ``(d_c/w_c)²`` and the gradient term ``(Δg'/w_g)²`` exactly. The gradient-only variant passes ``F = g'`` (grey,
no Lab) with ``compactness = w_g/R`` (``R = 100`` unless ``g`` is constant). A constant gradient (``max g = min g``)
gives ``g' = 0`` everywhere: the image+gradient variant is then plain Lab SLIC with ``w_c``, the gradient-only one a
purely spatial (grid-like) SLIC — finite, never NaN. spixel requires scikit-image ≥ 0.22 (its ``slic`` keywords
``channel_axis``/``max_num_iter`` date from 0.19), so only the ≥ 0.19 mapping is implemented; on ≤ 0.18 it would be
``compactness = w_c`` (``w_g`` for the gradient-only variant) with the same ``F``.

Note for testing: skimage starts every cluster with colour 0, so its first assignment step is purely spatial
(colour-blind); the colour/gradient distance only acts from the second step on (see the tests).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..attribution._core import check_float, check_int
from ..errors import BadInputError, BadParameterError
from ..types import Segmentation
from .base import map_images, segmenter

VARIANTS = ("image+gradient", "gradient")


def scale_gradient(g: np.ndarray, clip_percentile: float | None = None) -> np.ndarray:
    """``g' = 100·(g − min g)/(max g − min g)`` in [0, 100] (0 everywhere for a constant map); with
    ``clip_percentile`` (e.g. 99), ``g`` is first clipped at that percentile (spec §2.6, heavy-tailed GB maps)."""
    g = np.asarray(g, dtype=np.float64)
    if clip_percentile is not None:
        g = np.minimum(g, np.percentile(g, clip_percentile))
    lo, hi = float(g.min()), float(g.max())
    if not hi > lo:
        return np.zeros_like(g)
    return 100.0 * (g - lo) / (hi - lo)


def slic_features(
    rgb: np.ndarray,
    gradient: np.ndarray,
    variant: str = "image+gradient",
    wc: float = 20.0,
    wg: float = 8.0,
    clip_percentile: float | None = None,
) -> tuple[np.ndarray, float, int | None]:
    """The feature array, ``compactness`` and ``channel_axis`` that make skimage's ``slic`` minimise SWAG's
    ``D'`` (``variant="image+gradient"``) or ``D_G`` (``"gradient"``) — spec §2.3.

    ``rgb``: float ``(H, W, 3)`` in [0, 1]; ``gradient``: ``(H, W)``. Call
    ``slic(F, compactness=m, channel_axis=axis, convert2lab=False, sigma=0, ...)`` with the result.
    """
    from skimage.color import rgb2lab

    g100 = scale_gradient(gradient, clip_percentile)
    if variant == "image+gradient":
        feats = np.concatenate([rgb2lab(rgb), (g100 * (wc / wg))[..., None]], axis=-1)
        weight, axis = wc, -1
    elif variant == "gradient":
        feats, weight, axis = g100, wg, None
    else:
        raise BadParameterError(f"guided_slic variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    feats = np.ascontiguousarray(feats, dtype=np.float64)
    span = float(feats.max() - feats.min())
    # skimage ≥ 0.19 divides by `span` first (and skips that when span == 0: every feature is then equal)
    compactness = weight / span if span > 0 else weight
    return feats, compactness, axis


def _gradient_batch(gradient: Any, n: int, hw: tuple[int, int]) -> np.ndarray:
    if gradient is None:
        raise BadParameterError(
            "guided_slic needs gradient=: a non-negative (N, H, W) map per image (SWAG passes the max-abs guided "
            "backprop map), e.g. segment(x, 'guided_slic', gradient=g)"
        )
    g = gradient.detach().cpu() if isinstance(gradient, Tensor) else torch.as_tensor(np.asarray(gradient))
    if g.ndim == 4 and g.shape[1] == 1:
        g = g[:, 0]
    if g.ndim == 2:
        g = g.unsqueeze(0)
    if g.ndim != 3 or g.shape[0] != n or tuple(g.shape[1:]) != hw:
        raise BadInputError(f"gradient must have shape ({n}, {hw[0]}, {hw[1]}) like the images, got {tuple(g.shape)}")
    g = g.double()
    if not torch.isfinite(g).all():
        raise BadInputError("gradient contains NaN or infinite values")
    return g.numpy()


@segmenter(
    "guided_slic",
    backend="skimage",
    needs=("gradient",),
    description="SWAG's gradient-aware SLIC: Lab + gradient ('image+gradient') or gradient only ('gradient')",
)
def guided_slic(
    rgb01: Tensor,
    *,
    gradient: Tensor | None = None,
    variant: str = "image+gradient",
    n_segments: int = 300,
    wc: float = 20.0,
    wg: float = 8.0,
    clip_percentile: float | None = None,
    max_num_iter: int = 10,
    enforce_connectivity: bool = True,
    workers: int | None = None,
) -> Segmentation:
    """SLIC with SWAG's distances ``D'`` / ``D_G`` (paper 001 §3, spec §2.2–2.3) on ``rgb01`` and ``gradient``.

    ``gradient`` (required): ``(N, H, W)`` map (any finite values; min-max scaled to [0, 100] per image).
    Defaults are the paper's: 300 segments, ``w_c = 20``, ``w_g = 8``, ``sigma = 0``, 10 iterations.
    ``clip_percentile``: clip the map at this percentile before scaling (off by default; spec §2.6).
    """
    n, _, h, w = rgb01.shape
    g = _gradient_batch(gradient, n, (h, w))
    if variant not in VARIANTS:
        raise BadParameterError(f"guided_slic variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    check_int("n_segments", n_segments)
    check_float("wc", wc, lo=0.0, lo_open=True)
    check_float("wg", wg, lo=0.0, lo_open=True)
    if clip_percentile is not None:
        check_float("clip_percentile", clip_percentile, lo=0.0, hi=100.0, lo_open=True)
    check_int("max_num_iter", max_num_iter)
    if workers is not None:
        check_int("workers", workers)
    from skimage.segmentation import slic

    def run(img: np.ndarray, i: int) -> np.ndarray:
        feats, compactness, axis = slic_features(img, g[i], variant, wc, wg, clip_percentile)
        return slic(
            feats,
            n_segments=n_segments,
            compactness=compactness,
            max_num_iter=max_num_iter,
            sigma=0,
            convert2lab=False,
            enforce_connectivity=bool(enforce_connectivity),
            start_label=0,
            channel_axis=axis,
        )

    return Segmentation(map_images(run, rgb01, workers), {"variant": variant})

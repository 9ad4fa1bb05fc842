"""SWAG — Superpixels Weighted by Average Gradients (Hartley, Sidorov, Willis & Marshall, WACV 2021; spec §2).

1. Pixel scores ``g(p) = max_c |GB[c, p]|``: guided backpropagation of the target logit (spec §2.1; every
   ``nn.ReLU``/``nn.ReLU6`` module rectified, see :mod:`spixel.attribution.guided`), max of |·| over channels.
2. Superpixels of the de-normalised image ``model.to_rgb01(x)`` (spec §2.2–2.3), 300 per image by default:

   * ``swag``: plain SLIC on the image (the registered ``slic`` segmenter, skimage backend, ``compactness=20``
     = ``w_c``, spec §2.3/§2.6);
   * ``swag_ig``: ``guided_slic`` variant ``"image+gradient"``, ``D' = sqrt((d_c/w_c)² + (d_s/S)² + (d_g/w_g)²)``
     with ``w_c = 20``, ``w_g = 8`` and the gradient channel ``g`` of step 1;
   * ``swag_g``: ``guided_slic`` variant ``"gradient"``, ``D_G = sqrt((d_g/w_g)² + (d_s/S)²)``.

3. The SWAG map is the mean of ``g`` over each superpixel (spec §2.4; ``regions.group`` of the 2-D map, i.e. paper
   000's ``P_G``), min-max normalised to [0, 1] per image (spec §2.6). A constant map (one region, or ``g``
   constant) has no range: it becomes all zeros, never NaN.

The Explanation carries the superpixels (``segmentation``); ``meta["num_segments"]`` lists their number per image.
``raw`` is ``None``: SWAG has no signed input-space signal, and keeping the guided-backprop gradient there would
make metrics that read ``raw`` (its channel sum) score guided backprop instead of SWAG; ``guided_backprop`` gives
that gradient. SWAG makes its own superpixels, so it refuses ``regions=`` (``groupable=False``).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from ..errors import BadParameterError
from ..models.adapter import ModelAdapter
from ..regions import group
from ..types import Explanation, Segmentation, TargetLike
from ._core import check_float, check_int, explainer, finish, logits_and_targets, target_logit_grad
from .gradients import maxabs
from .guided import rectifier_rule


def minmax01(m: Tensor) -> Tensor:
    """Per-image min-max to [0, 1] of ``(N, H, W)`` maps; a constant map (no range) becomes zeros (spec §2.6)."""
    flat = m.flatten(1)
    lo = flat.amin(1).view(-1, 1, 1)
    rng = (flat.amax(1) - flat.amin(1)).view(-1, 1, 1)
    return torch.where(rng > 0, (m - lo) / rng.clamp_min(torch.finfo(m.dtype).tiny), torch.zeros_like(m))


def swag_map(g: Tensor, seg: Segmentation) -> Tensor:
    """SWAG weighting (spec §2.4, §2.6): mean of the pixel scores ``g`` ``(N, H, W)`` over each region, min-max
    normalised per image."""
    return minmax01(group(g, seg.to(g.device), "mean"))


def pixel_scores(model: ModelAdapter, x: Tensor, t: Tensor, batch_size: int) -> Tensor:
    """``g = max_c |guided backprop of the target logit|`` ``(N, H, W)`` (spec §2.1)."""
    with rectifier_rule(model.module, "guided"):
        return maxabs(target_logit_grad(model.module, x, t, batch_size))


def _guided_slic_entry() -> Any:
    from ..registry import SEGMENTERS

    if "guided_slic" not in SEGMENTERS:  # registered by spixel.segmentation.guided_slic
        raise BadParameterError("the guided_slic segmenter is not available in this installation of spixel")
    return SEGMENTERS.get("guided_slic")


def _swag(
    model: ModelAdapter,
    x: Tensor,
    target: TargetLike,
    method: str,
    batch_size: int,
    segment_params: dict[str, Any],
    params: dict[str, Any],
) -> Explanation:
    from ..segmentation.base import segment

    t0 = time.perf_counter()
    check_int("batch_size", batch_size)
    check_int("n_segments", segment_params["n_segments"])
    logits, t = logits_and_targets(model, x, target)
    g = pixel_scores(model, x, t, batch_size)
    rgb01 = model.to_rgb01(x.detach())
    if method == "swag":
        seg = segment(rgb01, "slic", **segment_params)
    else:
        _guided_slic_entry()
        seg = segment(rgb01, "guided_slic", gradient=g.detach(), **segment_params)
        # the gradient is summarised in meta (a tensor there would not serialise)
        meta = dict(seg.meta)
        meta["params"] = {**meta.get("params", {}), "gradient": "max_c |guided backprop|"}
        seg = Segmentation(seg.labels, meta)
    seg = seg.to(x.device)
    e = finish(model, method, swag_map(g, seg), None, logits, t, params, None, t0)
    e.meta["num_segments"] = seg.num_segments.tolist()
    return replace(e, segmentation=seg)


def _check_clip(clip_percentile: float | None) -> None:
    if clip_percentile is not None:
        check_float("clip_percentile", clip_percentile, lo=0.0, hi=100.0, lo_open=True)


_REDUCTION = "mean of max |guided backprop| over each superpixel, min-max to [0, 1]"


@explainer("swag", family="region", reduction=_REDUCTION, groupable=False)
def swag(
    model: ModelAdapter,
    x: Tensor,
    target: TargetLike = None,
    *,
    n_segments: int = 300,
    compactness: float = 20.0,
    batch_size: int = 32,
) -> Explanation:
    """SWAG on image superpixels (Hartley et al. 2021; spec §2): SLIC of the image (skimage, ``n_segments``,
    ``compactness``, ``sigma=0``, 10 iterations), each superpixel weighted by the mean of ``max_c |guided
    backprop|`` inside it, min-max to [0, 1] per image. ``batch_size`` bounds the images per backward pass."""
    check_float("compactness", compactness, lo=0.0, lo_open=True)
    seg_params = {"n_segments": n_segments, "compactness": compactness, "backend": "skimage"}
    params = {"n_segments": n_segments, "compactness": compactness, "batch_size": batch_size}
    return _swag(model, x, target, "swag", batch_size, seg_params, params)


@explainer("swag_ig", family="region", reduction=_REDUCTION, groupable=False)
def swag_ig(
    model: ModelAdapter,
    x: Tensor,
    target: TargetLike = None,
    *,
    n_segments: int = 300,
    wc: float = 20.0,
    wg: float = 8.0,
    clip_percentile: float | None = None,
    batch_size: int = 32,
) -> Explanation:
    """SWAG on image+gradient superpixels (spec §2.2–2.3): SLIC with ``D' = sqrt((d_c/wc)² + (d_s/S)² +
    (d_g/wg)²)`` on Lab colour and ``g = max_c |guided backprop|`` scaled to [0, 100] (clipped at
    ``clip_percentile`` first when given), each superpixel weighted by the mean of ``g``, min-max to [0, 1]."""
    _check_clip(clip_percentile)
    check_float("wc", wc, lo=0.0, lo_open=True)
    check_float("wg", wg, lo=0.0, lo_open=True)
    p = {"n_segments": n_segments, "wc": wc, "wg": wg, "clip_percentile": clip_percentile}
    seg_params = {"variant": "image+gradient", **p}
    return _swag(model, x, target, "swag_ig", batch_size, seg_params, {**p, "batch_size": batch_size})


@explainer("swag_g", family="region", reduction=_REDUCTION, groupable=False)
def swag_g(
    model: ModelAdapter,
    x: Tensor,
    target: TargetLike = None,
    *,
    n_segments: int = 300,
    wg: float = 8.0,
    clip_percentile: float | None = None,
    batch_size: int = 32,
) -> Explanation:
    """SWAG_G on gradient-only superpixels (spec §2.2–2.3): SLIC with ``D_G = sqrt((d_g/wg)² + (d_s/S)²)`` on
    ``g = max_c |guided backprop|`` scaled to [0, 100] (clipped at ``clip_percentile`` first when given), each
    superpixel weighted by the mean of ``g``, min-max to [0, 1]."""
    _check_clip(clip_percentile)
    check_float("wg", wg, lo=0.0, lo_open=True)
    p = {"n_segments": n_segments, "wg": wg, "clip_percentile": clip_percentile}
    seg_params = {"variant": "gradient", **p}
    return _swag(model, x, target, "swag_g", batch_size, seg_params, {**p, "batch_size": batch_size})

"""Complexity metrics: sparseness (Gini), GAD's convex-hull ratio RC and occlusion sensitivity RS (spec §4.3)."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch
from skimage.morphology import convex_hull_image
from torch import Tensor

from ..errors import BadInputError, BadParameterError
from ..models.adapter import ModelAdapter
from ..types import Explanation, MetricResult
from .base import metric


def gini(v: Tensor) -> Tensor:
    """Gini index of each row of non-negative ``v`` ``(N, D)`` (Hurley & Rickard 2009; Quantus ``Sparseness``):
    ``Σ_i (2i − D − 1) v_(i) / (D Σ v)`` with ``v`` sorted ascending, i = 1..D. An all-zero row gives 0."""
    d = v.shape[1]
    srt = v.double().sort(1).values
    i = torch.arange(1, d + 1, dtype=torch.float64, device=v.device)
    total = srt.sum(1)
    g = ((2 * i - d - 1) * srt).sum(1) / (d * total.clamp_min(torch.finfo(torch.float64).tiny))
    return torch.where(total > 0, g, torch.zeros_like(g)).float()


@metric(
    "sparseness",
    higher_is_better=True,
    category="complexity",
    reference="Chalasani et al. 2020; Quantus Sparseness (Gini index)",
)
def sparseness(model: ModelAdapter, x: Tensor, explanation: Explanation, target: Tensor) -> MetricResult:
    """Gini index of the absolute map values (1 = all mass on one pixel, 0 = uniform); an all-zero map scores 0
    with a warning. Quantus adds 1e-7 to every value first; we do not, the difference is below 1e-4 on real maps."""
    a = explanation.attribution.detach().float().abs().flatten(1)
    meta: dict[str, Any] = {}
    zero = a.amax(1) == 0
    if bool(zero.any()):
        meta["zero_maps"] = zero.nonzero().flatten().tolist()
        warnings.warn(f"sparseness: the maps of images {meta['zero_maps']} are all zero; they score 0", stacklevel=2)
    return MetricResult(scores=gini(a).cpu(), meta=meta)


@metric(
    "positive_ratio",
    higher_is_better=False,
    category="complexity",
    reference="paper 004 (AE) Table I, PR: the fraction of pixels with positive relevance",
)
def positive_ratio(model: ModelAdapter, x: Tensor, explanation: Explanation, target: Tensor) -> MetricResult:
    """PR (paper 004, Table I): the fraction of the image's pixels whose relevance is > 0 (lower: the positive
    evidence is more concentrated). Meaningful for signed maps; a non-negative map scores its support."""
    a = explanation.attribution.detach().float().flatten(1)
    return MetricResult(scores=(a > 0).float().mean(1).cpu())


def top_fraction(a: Tensor, fraction: float = 0.5) -> Tensor:
    """Boolean ``(N, H, W)``: P(m), the ⌈fraction·HW⌉ most important pixels of each map (pixels tied with the
    last one included), spec §4.3 — among the pixels with positive relevance only [RECON]: a pixel with zero or
    negative relevance is not important, and a sparse map (GAD keeps a few % of the pixels) would otherwise have
    its zeros tie at the cut and its hull cover the whole image. A map without a positive pixel gives nothing."""
    if not 0 < fraction <= 1:
        raise BadParameterError(f"fraction must lie in (0, 1], got {fraction}")
    flat = a.flatten(1)
    k = max(1, math.ceil(fraction * flat.shape[1]))
    thr = flat.topk(k, dim=1).values[:, -1:]
    return ((flat >= thr) & (flat > 0)).view_as(a)


def hull_masks(keep: Tensor) -> Tensor:
    """Convex hull (``skimage.morphology.convex_hull_image``) of each boolean map; the hull of nothing is empty."""
    out = np.zeros(tuple(keep.shape), dtype=bool)
    k = keep.cpu().numpy()
    for i in range(k.shape[0]):
        if k[i].any():
            out[i] = convex_hull_image(k[i])
    return torch.from_numpy(out).to(keep.device)


def _as_maps(ref: Any, like: Tensor, name: str) -> Tensor:
    if ref is None:
        raise BadParameterError(f"{name} needs reference=: the original method's Explanation (or map) of the batch")
    r = ref if isinstance(ref, Explanation) else Explanation(attribution=ref)
    a = r.attribution.detach().float().to(like.device)
    if a.shape != like.shape:
        raise BadInputError(f"reference maps have shape {tuple(a.shape)}, the explanation {tuple(like.shape)}")
    return a


def _warn_constant(a: Tensor, name: str, meta: dict[str, Any]) -> None:
    flat = a.flatten(1)
    const = flat.amax(1) == flat.amin(1)
    if bool(const.any()):
        meta["constant_maps"] = const.nonzero().flatten().tolist()
        warnings.warn(
            f"{name}: the maps of images {meta['constant_maps']} are constant; their top pixels are all pixels",
            stacklevel=3,
        )


@metric(
    "convex_hull_ratio",
    higher_is_better=False,
    category="complexity",
    reference="Mazini Rodrigues et al. 2024 (GAD), eq 1; spec §4.3",
)
def convex_hull_ratio(
    model: ModelAdapter,
    x: Tensor,
    explanation: Explanation,
    target: Tensor,
    reference: Any = None,
    fraction: float = 0.5,
) -> MetricResult:
    """RC = A(CH(m)) / A(CH(m_ref)): hull area of the top ``fraction`` of the map over that of ``reference`` (the
    original method's map of the same images and classes). RC < 1: the explanation's important region is smaller.
    ``meta`` has both areas."""
    a = explanation.attribution.detach().float()
    ref = _as_maps(reference, a, "convex_hull_ratio")
    meta: dict[str, Any] = {}
    _warn_constant(a, "convex_hull_ratio", meta)
    _warn_constant(ref, "convex_hull_ratio (reference)", meta)
    area = hull_masks(top_fraction(a, fraction)).flatten(1).sum(1).float()
    area_ref = hull_masks(top_fraction(ref, fraction)).flatten(1).sum(1).float()
    meta.update(area=area.cpu(), reference_area=area_ref.cpu())
    empty = area_ref == 0
    if bool(empty.any()):
        meta["empty_reference"] = empty.nonzero().view(-1).tolist()
        warnings.warn(
            f"convex_hull_ratio: the reference maps of images {meta['empty_reference']} have no positive pixel; "
            "their RC is 1 where the map has none either, else inf",
            stacklevel=2,
        )
    rc = torch.where(empty, torch.where(area == 0, 1.0, math.inf), area / area_ref.clamp_min(1))
    return MetricResult(scores=rc.cpu(), meta=meta)


@metric(
    "occlusion_sensitivity",
    higher_is_better=True,
    category="complexity",
    reference="Mazini Rodrigues et al. 2024 (GAD), eq 2; spec §4.3",
)
def occlusion_sensitivity(
    model: ModelAdapter,
    x: Tensor,
    explanation: Explanation,
    target: Tensor,
    mask: Any = None,
    reference: Any = None,
    fraction: float = 0.5,
) -> MetricResult:
    """RS(I, M, a) = |N_a(I) − N_a(I ⊙ (1 − M))| / ΣM: change of the target logit per occluded pixel when the
    pixels of M are set to 0 (in the normalised space, i.e. the dataset-mean colour).

    M: ``mask`` (boolean ``(N, H, W)``) if given; else the convex hull of the top ``fraction`` of the map; with
    ``reference=`` (the original method's maps) the paper's "supplementary" mask CH(m_ref) − CH(m). An empty mask
    scores 0 with a warning. ``meta`` has the mask areas and the logit changes.
    """
    a = explanation.attribution.detach().float()
    n, h, w = a.shape
    meta: dict[str, Any] = {}
    if mask is not None:
        if reference is not None:
            raise BadParameterError("occlusion_sensitivity takes mask= or reference=, not both")
        m = torch.as_tensor(np.asarray(mask) if not isinstance(mask, Tensor) else mask).to(a.device)
        if m.ndim == 2:
            m = m.unsqueeze(0)
        if tuple(m.shape) != (n, h, w):
            raise BadInputError(f"mask must have shape (N, H, W) = {(n, h, w)}, got {tuple(m.shape)}")
        m = m != 0
    else:
        _warn_constant(a, "occlusion_sensitivity", meta)
        m = hull_masks(top_fraction(a, fraction))
        if reference is not None:
            m = hull_masks(top_fraction(_as_maps(reference, a, "occlusion_sensitivity"), fraction)) & ~m
    area = m.flatten(1).sum(1).float()
    xo = x * (~m).unsqueeze(1).to(x.dtype)
    with torch.no_grad():
        idx = target.view(-1, 1)
        z = model.module(x).gather(1, idx)[:, 0]
        zo = model.module(xo).gather(1, idx)[:, 0]
    change = (z - zo).abs()
    rs = torch.where(area > 0, change / area.clamp_min(1), torch.zeros_like(change))
    if bool((area == 0).any()):
        meta["empty_masks"] = (area == 0).nonzero().flatten().tolist()
        warnings.warn(
            f"occlusion_sensitivity: the masks of images {meta['empty_masks']} are empty; RS = 0", stacklevel=2
        )
    meta.update(area=area.cpu(), logit_change=(z - zo).cpu())
    return MetricResult(scores=rs.float().cpu(), meta=meta)

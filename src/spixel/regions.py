"""Pooling pixel maps over a :class:`~spixel.types.Segmentation` and painting region scores back.

Vectorised over the batch and the regions (``scatter_reduce`` / ``gather`` on global region ids), on the
labels' device; no Python loop over segments. With ``reduce="mean"``, :func:`group` is the orthogonal
projection ``P_G`` of paper 000 (spec §1.2): idempotent, constant on each region, sum-preserving, and it never
increases the L2 distance between two maps. :class:`Grouped` (and ``spixel.explain(..., regions=...)``) applies it
to any registered explainer: grouping is an axis, not a method.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .errors import BadInputError, BadParameterError
from .types import Explanation, Segmentation

REDUCTIONS = ("mean", "sum", "max", "min")


def _check(values: Tensor, seg: Segmentation) -> tuple[Tensor, bool]:
    if values.ndim not in (3, 4):
        raise BadInputError(f"values must be (N, H, W) or (N, C, H, W), got {tuple(values.shape)}")
    if values.shape[0] != len(seg) or tuple(values.shape[-2:]) != seg.shape:
        raise BadInputError(
            f"values {tuple(values.shape)} do not match the segmentation: {len(seg)} images of {seg.shape}"
        )
    return (values if values.ndim == 4 else values.unsqueeze(1)), values.ndim == 3


def pool(values: Tensor, seg: Segmentation, reduce: str = "mean") -> Tensor:
    """Reduce ``values`` ``(N, H, W)`` / ``(N, C, H, W)`` over each region → ``(N, K_max)`` / ``(N, C, K_max)``.

    ``reduce``: ``"mean" | "sum" | "max" | "min"``. Entries past an image's ``num_segments`` are 0.
    """
    if reduce not in REDUCTIONS:
        raise BadParameterError(f"reduce must be one of {', '.join(REDUCTIONS)}, got {reduce!r}")
    v, squeeze = _check(values, seg)
    n, c = v.shape[:2]
    k = seg.max_segments
    lab = seg.labels.to(v.device).flatten(1).unsqueeze(1).expand(n, c, -1)
    flat = v.flatten(2)
    out = torch.zeros(n, c, k, dtype=v.dtype, device=v.device)
    if reduce in ("sum", "mean"):
        out.scatter_add_(2, lab, flat)
        if reduce == "mean":
            out = out / seg.areas.to(v.device).clamp_min(1).unsqueeze(1).to(v.dtype)
    else:
        out.scatter_reduce_(2, lab, flat, reduce="amax" if reduce == "max" else "amin", include_self=False)
    return out[:, 0] if squeeze else out


def paint(scores: Tensor, seg: Segmentation) -> Tensor:
    """Paint region scores ``(N, K_max)`` / ``(N, C, K_max)`` back to pixels ``(N, H, W)`` / ``(N, C, H, W)``."""
    if scores.ndim not in (2, 3) or scores.shape[0] != len(seg) or scores.shape[-1] < seg.max_segments:
        raise BadInputError(
            f"scores must be (N, K) or (N, C, K) with N={len(seg)}, K>={seg.max_segments}, got {tuple(scores.shape)}"
        )
    s = scores if scores.ndim == 3 else scores.unsqueeze(1)
    n, c = s.shape[:2]
    h, w = seg.shape
    lab = seg.labels.to(s.device).flatten(1).unsqueeze(1).expand(n, c, -1)
    out = s.gather(2, lab).view(n, c, h, w)
    return out if scores.ndim == 3 else out[:, 0]


def group(values: Tensor, seg: Segmentation, reduce: str = "mean", channels: str = "joint") -> Tensor:
    """Replace every pixel by its region's ``reduce`` (paper 000's grouping operator ``P_G``, spec §1.2).

    For ``(N, C, H, W)`` values, ``channels="joint"`` pools a region over all channels together (the map is
    then the same in every channel) and ``"per_channel"`` pools each channel separately.
    """
    if channels not in ("joint", "per_channel"):
        raise BadParameterError(f"channels must be 'joint' or 'per_channel', got {channels!r}")
    if values.ndim == 4 and channels == "joint":
        c = values.shape[1]
        if reduce in ("mean", "sum"):
            pooled = pool(values.sum(1), seg, "sum")
            if reduce == "mean":
                pooled = pooled / (seg.areas.to(values.device).clamp_min(1) * c).to(values.dtype)
        else:
            pooled = pool(values.amax(1) if reduce == "max" else values.amin(1), seg, reduce)
        return paint(pooled, seg).unsqueeze(1).expand(-1, c, -1, -1).contiguous()
    return paint(pool(values, seg, reduce), seg)


# ---------------------------------------------------------------------------------------------- grouping as an axis
def _sum_channels(raw: Tensor) -> Tensor:
    return raw.sum(1)


def _maxabs(raw: Tensor) -> Tensor:
    return raw.abs().amax(1)


#: The 2-D reductions ``(N, C, H, W) → (N, H, W)`` that methods declare as ``info["reduce2d"]`` in the registry;
#: :class:`Grouped` recomputes a method's map from its grouped ``raw`` with it.
REDUCE2D: dict[str, Callable[[Tensor], Tensor]] = {"maxabs": _maxabs, "sum": _sum_channels}

CHANNEL_MODES = ("joint", "per_channel")


def check_channels(channels: Any) -> str:
    """``"joint"`` or ``"per_channel"`` (spec §1.2), else :class:`BadParameterError`."""
    if channels not in CHANNEL_MODES:
        raise BadParameterError(f"channels must be 'joint' or 'per_channel', got {channels!r}")
    return str(channels)


def group_explanation(
    expl: Explanation,
    seg: Segmentation,
    channels: str = "joint",
    reduce2d: str | Callable[[Tensor], Tensor] | None = None,
) -> Explanation:
    """Apply ``P_G`` (spec §1.2) to an explanation: to its *signed* ``raw`` ``(N, C, H, W)`` in ``channels`` mode,
    then recompute the 2-D map with ``reduce2d`` (a :data:`REDUCE2D` name or a callable). Without ``raw`` or
    without ``reduce2d``, the 2-D ``attribution`` itself is grouped (and ``raw``, if any, grouped alongside).
    The result carries ``seg`` as its ``segmentation``; ``meta`` is copied unchanged.
    """
    check_channels(channels)
    seg = seg.to(expl.attribution.device)
    raw = group(expl.raw, seg, "mean", channels) if expl.raw is not None else None
    if raw is not None and reduce2d is not None:
        fn = REDUCE2D[reduce2d] if isinstance(reduce2d, str) else reduce2d
        attr = fn(raw)
    else:
        attr = group(expl.attribution, seg, "mean")
    return replace(expl, attribution=attr, raw=raw, segmentation=seg, meta=dict(expl.meta))


def _plain(v: Any) -> Any:
    """A JSON-friendly copy of a parameter value for ``meta`` (tensors and arrays summarised by their shape)."""
    if isinstance(v, (Tensor, np.ndarray)):
        return f"tensor{tuple(v.shape)}"
    if isinstance(v, dict):
        return {str(k): _plain(u) for k, u in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(u) for u in v]
    return v


class Grouped:
    """Any registered method, superpixelified (paper 000, spec §1.2–1.5): ``Grouped("integrated_gradients",
    "quickshift", {"max_dist": 3})(model, x, target, **params) -> Explanation``.

    The base method runs unchanged; its signed ``raw`` ``(N, C, H, W)`` is replaced by ``P_G raw`` (the mean over
    each region — jointly over the channels, or per channel with ``channels="per_channel"``), and the 2-D map is
    recomputed from it with the method's own reduction (``info["reduce2d"]`` of the registry: max |·| over
    channels for saliency, SmoothGrad, guided backprop, deconvolution; the signed channel sum for input×gradient,
    IG and Sparsified SmoothGrad). Methods without ``raw`` (the CAMs) have their 2-D map grouped. A method that
    takes a ``segmentation=`` parameter (Sparsified SmoothGrad) receives the partition and groups inside itself —
    every noisy gradient before its sparsification (``group_first=True``, its default; ``False`` groups the
    final map instead).

    ``regions``: a segmenter name (with ``region_params``), a :class:`~spixel.segmentation.Segmenter` or a
    ready :class:`~spixel.types.Segmentation`; segmenters see ``model.to_rgb01(x)``. The result carries the
    ``Segmentation``; ``meta`` adds ``regions`` (the segmenter name, or ``"segmentation"``), ``region_params``,
    ``channels`` and ``num_segments`` (per image); ``meta["seconds"]`` includes the segmentation.
    Methods that use regions themselves (a ``regions`` parameter: LIME, occlusion, XRAI) or make their own
    (SWAG: ``groupable=False``) are refused — pass them ``regions=`` directly (``spixel.explain`` does).
    """

    def __init__(
        self, method: str, regions: Any, region_params: dict[str, Any] | None = None, channels: str = "joint"
    ) -> None:
        from .registry import METHODS

        entry = METHODS.get(method)
        if regions is None:
            raise BadParameterError(
                f"Grouped({method!r}) needs regions: a segmenter name, a Segmenter or a Segmentation"
            )
        if region_params is not None and not isinstance(region_params, dict):
            raise BadParameterError(f"region_params must be a dict of segmenter parameters, got {region_params!r}")
        if region_params and not isinstance(regions, str):
            raise BadParameterError(
                "region_params only apply when regions is a segmenter name; a Segmenter carries its own "
                "parameters (Segmenter(name, **params)) and a Segmentation is used as given"
            )
        if uses_regions(method):
            raise BadParameterError(
                f"{method} uses regions itself: call spixel.explain(..., {method!r}, regions=...) or pass "
                f"regions= to it directly instead of grouping it"
            )
        if entry.info.get("groupable", True) is False:
            raise BadParameterError(
                f"{method} builds its own superpixels and cannot be grouped by other regions; "
                f"group the pixel method it starts from instead (e.g. guided_backprop)"
            )
        self.method = method
        self.regions = regions
        self.region_params = dict(region_params) if region_params else None
        self.channels = check_channels(channels)
        self._entry = entry

    def __repr__(self) -> str:
        rp = f", region_params={self.region_params!r}" if self.region_params else ""
        return f"Grouped({self.method!r}, {self._regions_name()!r}{rp}, channels={self.channels!r})"

    def _regions_name(self) -> str:
        r = self.regions
        if isinstance(r, str):
            return r
        if isinstance(r, Segmentation):
            return str(r.meta.get("segmenter", "segmentation"))
        return str(getattr(r, "name", type(r).__name__))

    def __call__(self, model: Any, x: Any, target: Any = None, **params: Any) -> Explanation:
        from .attribution._core import prepare_input
        from .models.adapter import as_adapter
        from .segmentation.base import resolve_regions

        t0 = time.perf_counter()
        if "segmentation" in params:
            raise BadParameterError("give the partition as regions=, not segmentation=")
        adapter = as_adapter(model)
        xb = prepare_input(adapter, x)
        seg = resolve_regions(self.regions, adapter.to_rgb01(xb), self.region_params, xb.shape[0], model=adapter)
        assert seg is not None
        seg = seg.to(xb.device)
        if "segmentation" in self._entry.info.get("params", {}):  # groups inside (Sparsified SmoothGrad)
            e = self._entry.fn(adapter, xb, target, segmentation=seg, group_channels=self.channels, **params)
            e = replace(e, segmentation=seg, meta=dict(e.meta))
        else:
            e = group_explanation(
                self._entry.fn(adapter, xb, target, **params), seg, self.channels, self._entry.info.get("reduce2d")
            )
        # what the segmenter ran with, defaults included (segment() records them)
        rparams = seg.meta.get("params", self.region_params or getattr(self.regions, "params", {}))
        e.meta.update(
            regions=self._regions_name(),
            region_params=_plain(dict(rparams)),
            channels=self.channels,
            num_segments=seg.num_segments.tolist(),
            seconds=time.perf_counter() - t0,
        )
        return e


def uses_regions(method: str) -> bool:
    """Whether a registered method takes ``regions=`` itself (LIME, occlusion, XRAI …) rather than being grouped."""
    import inspect

    from .registry import METHODS

    return "regions" in inspect.signature(METHODS.get(method).fn).parameters

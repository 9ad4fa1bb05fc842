"""The segmenter contract, the :func:`segment` entry point and resolution of a ``regions=`` argument.

A segmenter is a registered function ``fn(rgb01: Tensor (N, 3, H, W) in [0, 1], **params) -> Segmentation``.
It sees the *de-normalised* image (``ModelAdapter.to_rgb01(x)``), never the normalised tensor.
CPU-only backends (skimage) receive numpy images one by one through :func:`map_images`, which runs them in
parallel threads across the batch.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import BadInputError, BadParameterError
from ..registry import SEGMENTERS
from ..types import Segmentation, relabel_contiguous

SegmentFn = Callable[..., Segmentation]


@dataclass(frozen=True)
class Segmenter:
    """A segmenter name with bound parameters: ``Segmenter("slic", n_segments=300)(rgb01)``."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)

    def __init__(self, name: str, **params: Any) -> None:
        SEGMENTERS.get(name)  # fail early on unknown names
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "params", dict(params))

    def __call__(self, rgb01: Tensor, model: Any = None) -> Segmentation:
        """Segment ``rgb01``; ``model`` goes to a segmenter that takes one (``nas``) unless the bound parameters
        already give it."""
        return segment(rgb01, self.name, **_with_model(self.name, self.params, model))


def segmenter(name: str, *, backend: str, **info: Any) -> Callable[[SegmentFn], SegmentFn]:
    """Register a segmenter (``backend``: ``"torch"`` or ``"skimage"`` …, documentation for ``spixel list``)."""
    import inspect

    def deco(fn: SegmentFn) -> SegmentFn:
        sig = inspect.signature(fn)
        params = list(sig.parameters.items())[1:]
        defaults = {k: p.default for k, p in params if p.default is not inspect.Parameter.empty}
        SEGMENTERS.register(name, backend=backend, params=defaults, **info)(fn)
        return fn

    return deco


def as_rgb01(images: Any) -> Tensor:
    """Validate images for a segmenter: float ``(N, 3, H, W)`` in [0, 1] (a ``(3, H, W)`` tensor, a uint8 HWC
    array or a list of them is converted)."""
    if isinstance(images, np.ndarray) or (
        isinstance(images, (list, tuple)) and images and isinstance(images[0], np.ndarray)
    ):
        from ..io import check_image_array

        arrs = [images] if isinstance(images, np.ndarray) and images.ndim in (2, 3) else list(images)
        rgb = np.stack([check_image_array(a) for a in arrs])
        return torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 255.0
    if not isinstance(images, Tensor):
        raise BadInputError(f"segmenters take RGB images in [0, 1] as a tensor or uint8 arrays, got {type(images)}")
    x = images.unsqueeze(0) if images.ndim == 3 else images
    if x.ndim != 4 or x.shape[1] != 3 or not x.is_floating_point():
        raise BadInputError(f"segmenters take float RGB (N, 3, H, W) in [0, 1], got {x.dtype} {tuple(x.shape)}")
    lo, hi = (float(v) for v in torch.aminmax(x.detach()))  # one pass; NaN propagates into lo/hi
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise BadInputError("the image contains NaN or infinite values")
    if lo < -1e-4 or hi > 1 + 1e-4:
        raise BadInputError(
            "segmenters take RGB in [0, 1] (de-normalised): pass model.to_rgb01(x), not the normalised tensor"
        )
    return x.clamp(0, 1) if lo < 0 or hi > 1 else x


def map_images(fn: Callable[[np.ndarray, int], np.ndarray], rgb01: Tensor, workers: int | None = None) -> Tensor:
    """Run a numpy segmenter ``fn(hwc_float64_image, index) -> (H, W) int labels`` on every image, in parallel
    threads (skimage's Cython loops and fast-slic release the GIL), and stack the relabelled results (contiguous
    ids in the canonical order, first appearance in raster order) on ``rgb01``'s device. ``workers``: threads
    (default: one per core, at most one per image; 1 = serial). The HWC conversion and the relabelling run inside
    the threads, in numpy (``torch.unique`` is 10× slower here on the CPU, and far slower when the cores are
    oversubscribed)."""
    imgs = rgb01.detach().cpu().numpy()

    def one(i: int) -> np.ndarray:
        img = np.ascontiguousarray(imgs[i].transpose(1, 2, 0), dtype=np.float64)
        return relabel(fn(img, i))

    workers = workers or min(len(imgs), os.cpu_count() or 1)
    if workers > 1 and len(imgs) > 1:
        with ThreadPoolExecutor(workers) as ex:
            labs = list(ex.map(one, range(len(imgs))))
    else:
        labs = [one(i) for i in range(len(imgs))]
    return torch.from_numpy(np.stack(labs)).to(rgb01.device)


def relabel_batch(labels: Tensor) -> Tensor:
    """Integer labels ``(N, H, W)`` → contiguous ids per image in the canonical order (first appearance in raster
    order, like :meth:`Segmentation.from_labels`), vectorised over the batch."""
    return relabel_contiguous(labels)


def relabel(labels: np.ndarray) -> np.ndarray:
    """Integer labels ``(H, W)`` → int64 contiguous ids ``0..K-1`` in the canonical order: by first appearance in
    raster order (the ARCHITECTURE convention, so a partition is identical whatever batch or worker computed it).
    O(HW): a bincount compacts the ids, one ``np.minimum.at`` finds each id's first pixel."""
    lab = np.asarray(labels)
    if lab.dtype.kind not in "iu":
        raise TypeError(f"a segmenter returned non-integer labels ({lab.dtype})")
    lab = lab.astype(np.int64, copy=False)
    lo = int(lab.min())
    if lo != 0:
        lab = lab - lo
    present = np.bincount(lab.ravel()) > 0
    if not present.all():
        lab = (np.cumsum(present) - 1)[lab]
    flat = lab.ravel()
    k = int(present.sum())
    first = np.full(k, flat.size, dtype=np.int64)
    np.minimum.at(first, flat, np.arange(flat.size, dtype=np.int64))
    order = np.argsort(first, kind="stable")
    if np.array_equal(order, np.arange(k)):
        return lab
    rank = np.empty(k, dtype=np.int64)
    rank[order] = np.arange(k, dtype=np.int64)
    return rank[lab]


def segment(images: Any, segmenter: str = "slic", **params: Any) -> Segmentation:
    """Segment a batch of images with a registered segmenter (``spixel list segmenters``).

    ``images``: float RGB ``(N, 3, H, W)`` in [0, 1] (e.g. ``model.to_rgb01(x)``), or uint8 HWC arrays.
    """
    entry = SEGMENTERS.get(segmenter)
    accepted = entry.info.get("params", {})
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise BadParameterError(
            f"segmenter {segmenter} has no parameter {', '.join(map(repr, unknown))}; "
            f"it accepts: {', '.join(accepted) or 'none'}"
        )
    seg = entry.fn(as_rgb01(images), **params)
    recorded = {k: _describe(v) for k, v in {**accepted, **params}.items()}
    # the segmenter's fresh result gets the call's meta (no second validation pass over the labels)
    object.__setattr__(seg, "meta", {"segmenter": segmenter, "params": recorded, **seg.meta})
    return seg


def _describe(value: Any) -> Any:
    """Array-valued parameters (``guided_slic``'s gradient) are recorded in ``meta`` by dtype and shape only; a
    model (``nas``) by its name."""
    if isinstance(value, (Tensor, np.ndarray)):
        return f"<{type(value).__name__} {str(value.dtype).removeprefix('torch.')} {tuple(value.shape)}>"
    from ..models.adapter import ModelAdapter

    if isinstance(value, ModelAdapter):
        return value.name
    if isinstance(value, torch.nn.Module):
        return type(value).__name__
    return value


def _with_model(name: str, params: dict[str, Any], model: Any) -> dict[str, Any]:
    """``params`` plus ``model=model`` when the segmenter ``name`` declares a ``model`` parameter and ``params``
    does not already give one."""
    if model is None or params.get("model") is not None:
        return dict(params)
    if "model" not in SEGMENTERS.get(name).info.get("params", {}):
        return dict(params)
    return {**params, "model": model}


RegionsLike = str | Segmenter | Segmentation | None


def resolve_regions(
    regions: RegionsLike,
    rgb01: Tensor,
    region_params: dict[str, Any] | None = None,
    n: int | None = None,
    *,
    model: Any = None,
) -> Segmentation | None:
    """Turn a ``regions=`` argument into a :class:`Segmentation` of the batch ``rgb01`` (``None`` stays ``None``).

    ``regions``: a segmenter name (with ``region_params``), a :class:`Segmenter`, or a ready
    :class:`Segmentation` (checked against the batch size and image size). ``model``: the explained model, handed
    to a segmenter that declares a ``model`` parameter (``nas``) when the user did not give one.
    """
    if regions is None:
        return None
    if isinstance(regions, Segmentation):
        if region_params:
            raise BadParameterError("region_params only apply when regions is a segmenter name")
        nn_ = rgb01.shape[0] if n is None else n
        if len(regions) != nn_ or regions.shape != tuple(rgb01.shape[-2:]):
            raise BadInputError(
                f"the segmentation has {len(regions)} images of {regions.shape}; "
                f"the input has {nn_} of {tuple(rgb01.shape[-2:])}"
            )
        return regions.to(rgb01.device)
    if isinstance(regions, Segmenter):
        return regions(rgb01, model=model)
    if isinstance(regions, str):
        return segment(rgb01, regions, **_with_model(regions, region_params or {}, model))
    raise BadParameterError(
        f"regions must be a segmenter name, a Segmenter or a Segmentation, got {type(regions).__name__}"
    )


def masks_to_segmentation(masks: Sequence[np.ndarray] | Tensor) -> Segmentation:
    """A partition from boolean masks ``(K, H, W)`` of one image (each pixel in exactly one mask)."""
    m = torch.as_tensor(np.asarray(masks)) if not isinstance(masks, Tensor) else masks
    if m.ndim != 3 or m.dtype != torch.bool:
        raise BadInputError(f"masks must be boolean (K, H, W), got {m.dtype} {tuple(m.shape)}")
    if not bool((m.sum(0) == 1).all()):
        raise BadInputError("the masks must cover every pixel exactly once to form a partition")
    return Segmentation.from_labels(m.long().argmax(0))

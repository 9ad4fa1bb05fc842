"""The one-call entry points: :func:`explain`, and the names of what is registered (:func:`list_methods`,
:func:`list_segmenters`, :func:`list_metrics`)."""

from __future__ import annotations

from typing import Any

from torch import nn

from .errors import BadParameterError
from .models.adapter import ModelAdapter
from .registry import METHODS, METRICS, SEGMENTERS
from .types import Explanation, TargetLike


def explain(
    model: ModelAdapter | nn.Module,
    x: Any,
    method: str,
    target: TargetLike = None,
    *,
    seed: int | None = None,
    regions: Any = None,
    region_params: dict[str, Any] | None = None,
    channels: str = "joint",
    **params: Any,
) -> Explanation:
    """Explain ``model``'s decision on ``x`` with the registered ``method``.

    ``model``: a :class:`ModelAdapter` or a plain ``nn.Module`` (then ImageNet mean/std are assumed for
    ``to_rgb01``). ``x``: a normalised tensor ``(N, 3, H, W)`` / ``(3, H, W)``, or paths / PIL images / uint8
    arrays, which the adapter preprocesses. ``target``: ``None`` (predicted class), an int, or one per image.
    ``seed`` makes stochastic methods reproducible (and is ignored by deterministic ones); ``params`` are the
    method's own (``spixel list methods``). Returns an :class:`Explanation` with ``attribution`` ``(N, H, W)``.

    ``regions`` (grouping as an axis, paper 000, spec §1.2–1.5): a segmenter name (``spixel list segmenters``,
    with ``region_params={...}``), a :class:`~spixel.segmentation.Segmenter` or a ready
    :class:`~spixel.types.Segmentation` of the batch. Methods that use regions themselves (a ``regions``
    parameter: LIME, occlusion, XRAI …) receive them as given; any other method is grouped by
    :class:`~spixel.regions.Grouped`: its signed ``raw`` is averaged over each region (``channels="joint"``: over
    the region's pixels and all channels; ``"per_channel"``: each channel separately) and its 2-D map recomputed
    from that, and Sparsified SmoothGrad groups every noisy gradient before sparsifying it (``group_first=False``
    groups its final map instead). The explanation then carries the ``Segmentation`` and ``meta`` records
    ``regions``, ``region_params``, ``channels`` and ``num_segments``. SWAG builds its own superpixels and refuses
    ``regions``.
    """
    entry = METHODS.get(method)
    if entry.info.get("stochastic"):
        params["seed"] = seed
    if regions is None:
        if region_params is not None:
            raise BadParameterError("region_params need regions=: a segmenter name, e.g. regions='slic'")
        if channels != "joint":
            raise BadParameterError(f"channels={channels!r} only applies when grouping: pass regions= as well")
        return entry.fn(model, x, target, **params)

    from .regions import Grouped, check_channels, uses_regions

    check_channels(channels)
    if uses_regions(method):
        if channels != "joint":
            raise BadParameterError(f"{method} uses its regions itself: channels= only applies to grouped methods")
        if region_params is not None:
            import inspect

            if "region_params" in inspect.signature(entry.fn).parameters:
                params["region_params"] = region_params
            elif isinstance(regions, str):
                from .segmentation.base import Segmenter

                regions = Segmenter(regions, **region_params)
            else:
                raise BadParameterError("region_params only apply when regions is a segmenter name")
        return entry.fn(model, x, target, regions=regions, **params)
    return Grouped(method, regions, region_params, channels)(model, x, target, **params)


def list_methods() -> list[str]:
    """Names of the registered attribution methods, sorted."""
    return METHODS.names()


def list_segmenters() -> list[str]:
    """Names of the registered segmenters (``regions=`` / :func:`spixel.segment`), sorted."""
    return SEGMENTERS.names()


def list_metrics() -> list[str]:
    """Names of the registered metrics (:func:`spixel.evaluate`), sorted."""
    return METRICS.names()

"""The one-call entry points: :func:`explain` and :func:`list_methods`."""

from __future__ import annotations

from typing import Any

from torch import nn

from .models.adapter import ModelAdapter
from .registry import METHODS
from .types import Explanation, TargetLike


def explain(
    model: ModelAdapter | nn.Module,
    x: Any,
    method: str,
    target: TargetLike = None,
    *,
    seed: int | None = None,
    **params: Any,
) -> Explanation:
    """Explain ``model``'s decision on ``x`` with the registered ``method``.

    ``model``: a :class:`ModelAdapter` or a plain ``nn.Module`` (then ImageNet mean/std are assumed for
    ``to_rgb01``). ``x``: a normalised tensor ``(N, 3, H, W)`` / ``(3, H, W)``, or paths / PIL images / uint8
    arrays, which the adapter preprocesses. ``target``: ``None`` (predicted class), an int, or one per image.
    ``seed`` makes stochastic methods reproducible (and is ignored by deterministic ones); ``params`` are the
    method's own (``spixel list methods``). Returns an :class:`Explanation` with ``attribution`` ``(N, H, W)``.
    """
    entry = METHODS.get(method)
    if entry.info.get("stochastic"):
        params["seed"] = seed
    return entry.fn(model, x, target, **params)


def list_methods() -> list[str]:
    """Names of the registered attribution methods."""
    return METHODS.names()

"""The metric contract: registration with metadata, and :func:`evaluate`.

A metric that scores one explanation is a function
``fn(model: ModelAdapter, x: Tensor (N,3,H,W), explanation: Explanation, target: Tensor (N,) long, **params)
-> MetricResult`` registered with :func:`metric`; :func:`evaluate` validates the inputs, resolves targets
(``None`` = the class the explanation explained, else the predicted class), leaves the model untouched and
fills ``meta`` (name, params, ``higher_is_better``, category, reference, seconds).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..attribution._core import prepare_input
from ..errors import BadInputError, BadParameterError
from ..models.adapter import ModelAdapter, as_adapter
from ..models.state import frozen
from ..registry import METRICS
from ..types import Explanation, MetricResult, TargetLike, resolve_targets

MetricFn = Callable[..., MetricResult]

CATEGORIES = ("fidelity", "stability", "localisation", "complexity", "sanity")


def metric(
    name: str, *, higher_is_better: bool, category: str, reference: str, **info: Any
) -> Callable[[MetricFn], MetricFn]:
    """Register a metric that scores one explanation (see the module docstring for the call contract)."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown metric category {category!r}")

    def deco(fn: MetricFn) -> MetricFn:
        sig = inspect.signature(fn)
        defaults = {
            k: p.default for k, p in list(sig.parameters.items())[4:] if p.default is not inspect.Parameter.empty
        }
        METRICS.register(
            name,
            higher_is_better=higher_is_better,
            category=category,
            reference=reference,
            params=defaults,
            scores_explanation=True,
            **info,
        )(fn)
        return fn

    return deco


def evaluate(
    model: ModelAdapter | nn.Module,
    x: Any,
    explanation: Explanation,
    metric: str,
    target: TargetLike = None,
    **params: Any,
) -> MetricResult:
    """Score ``explanation`` of ``model`` on ``x`` with the registered ``metric`` (``spixel list metrics``).

    ``target``: ``None`` uses the class recorded in the explanation's ``meta["target"]`` (or, for a map made
    elsewhere, the model's predicted class); an int or one per image otherwise.
    """
    entry = METRICS.get(metric)
    if not entry.info.get("scores_explanation"):
        raise BadParameterError(f"metric {metric} does not score a single explanation; call spixel.metrics.{metric}")
    accepted = entry.info.get("params", {})
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise BadParameterError(
            f"metric {metric} has no parameter {', '.join(map(repr, unknown))}; it accepts: {', '.join(accepted)}"
        )
    adapter = as_adapter(model)
    xb = prepare_input(adapter, x)
    if not isinstance(explanation, Explanation):
        explanation = Explanation(attribution=explanation)
    if len(explanation) != xb.shape[0] or tuple(explanation.attribution.shape[-2:]) != tuple(xb.shape[-2:]):
        raise BadInputError(
            f"the explanation has {len(explanation)} maps of {tuple(explanation.attribution.shape[-2:])}; "
            f"the input has {xb.shape[0]} images of {tuple(xb.shape[-2:])}"
        )
    if not bool(explanation.attribution.isfinite().all()):
        raise BadInputError("the explanation contains NaN or infinite values")
    explanation = explanation.to(xb.device)
    t0 = time.perf_counter()
    with frozen(adapter.module):
        if target is None and explanation.meta.get("target") is not None:
            target = explanation.meta["target"]
        if target is None or adapter.num_classes is None:
            with torch.no_grad():
                logits = adapter.module(xb)
            t = resolve_targets(target, xb.shape[0], logits.shape[1], predicted=logits.argmax(1))
        else:  # the targets are given: no forward pass needed to resolve them
            t = resolve_targets(target, xb.shape[0], adapter.num_classes)
        res = entry.fn(adapter, xb, explanation, t.to(xb.device), **params)
    meta = {
        "metric": metric,
        "params": {**accepted, **params},
        "higher_is_better": entry.info["higher_is_better"],
        "category": entry.info["category"],
        "reference": entry.info["reference"],
        "seconds": time.perf_counter() - t0,
        "method": explanation.meta.get("method"),
        **res.meta,
    }
    return MetricResult(scores=res.scores, curves=res.curves, meta=meta)

"""Machinery shared by every explainer: leaving the model untouched, targets, chunked input gradients."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import BadInputError, BadParameterError
from ..models.adapter import ModelAdapter
from ..models.state import frozen  # used here, and re-exported: `from ._core import frozen` keeps working
from ..types import Explanation, TargetLike, resolve_targets


def check_int(name: str, v: Any, lo: int = 1) -> int:
    """An integer parameter ``>= lo``, or :class:`BadParameterError`."""
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise BadParameterError(f"{name} must be an integer >= {lo}, got {v!r}")
    return v


def check_float(name: str, v: Any, lo: float = 0.0, hi: float = float("inf"), lo_open: bool = False) -> float:
    """A finite float in ``[lo, hi]`` (``(lo, hi]`` when ``lo_open``), or :class:`BadParameterError`."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise BadParameterError(f"{name} must be a number, got {v!r}") from None
    if f != f or f < lo or f > hi or (lo_open and f == lo):  # f != f: NaN
        lo_s = "(" if lo_open else "["
        raise BadParameterError(f"{name} must lie in {lo_s}{lo}, {hi}], got {v!r}")
    return f


def make_generator(seed: int | None) -> tuple[torch.Generator, int]:
    """A CPU generator seeded with ``seed`` (a fresh random seed when ``None``); returns it and the seed used.

    Noise is drawn on the CPU and moved to the model's device, so a seed gives the same noise everywhere.
    """
    if seed is None:
        seed = int(torch.randint(0, 2**31 - 1, (1,)).item())
    seed = check_int("seed", seed, lo=0)
    return torch.Generator().manual_seed(seed), seed


def logits_and_targets(model: ModelAdapter, x: Tensor, target: TargetLike) -> tuple[Tensor, Tensor]:
    """One no-grad forward: logits ``(N, K)`` and the resolved targets ``(N,)`` on the model's device."""
    with torch.no_grad():
        logits = model.module(x)
    if logits.ndim != 2:
        raise BadParameterError(f"the model must return logits of shape (N, K), got {tuple(logits.shape)}")
    t = resolve_targets(target, x.shape[0], logits.shape[1], predicted=logits.argmax(1))
    return logits, t.to(x.device)


def target_logit_grad(module: nn.Module, x: Tensor, targets: Tensor, batch_size: int | None = None) -> Tensor:
    """``∂ f_{t_i}(x_i) / ∂ x_i`` for every row, in chunks of ``batch_size`` rows (memory bound)."""
    out = torch.empty_like(x)
    bs = x.shape[0] if batch_size is None else batch_size
    for s in range(0, x.shape[0], bs):
        xi = x[s : s + bs].detach().requires_grad_(True)
        logits = module(xi)
        score = logits.gather(1, targets[s : s + bs].view(-1, 1)).sum()
        (g,) = torch.autograd.grad(score, xi)
        out[s : s + bs] = g
    return out


def logits_targets_and_grad(
    module: nn.Module, x: Tensor, target: TargetLike, batch_size: int | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Logits ``(N, K)``, resolved targets ``(N,)`` and ``∂ f_{t_i}(x_i) / ∂ x_i`` from one forward+backward
    per chunk of ``batch_size`` rows: the forward that the gradient needs also gives the logits (and the
    predicted class for ``target=None``), so no separate no-grad pass is spent on them."""
    n = x.shape[0]
    bs = n if batch_size is None else batch_size
    out = torch.empty_like(x)
    chunks: list[Tensor] = []
    t: Tensor | None = None
    for s in range(0, n, bs):
        xi = x[s : s + bs].detach().requires_grad_(True)
        logits = module(xi)
        if logits.ndim != 2:
            raise BadParameterError(f"the model must return logits of shape (N, K), got {tuple(logits.shape)}")
        if t is None and target is not None:
            t = resolve_targets(target, n, logits.shape[1]).to(x.device)
        ti = t[s : s + bs] if t is not None else logits.detach().argmax(1)
        (g,) = torch.autograd.grad(logits.gather(1, ti.view(-1, 1)).sum(), xi)
        out[s : s + bs] = g
        chunks.append(logits.detach())
    all_logits = torch.cat(chunks)
    if t is None:
        t = resolve_targets(None, n, all_logits.shape[1], predicted=all_logits.argmax(1)).to(x.device)
    return all_logits, t, out


def finish(
    model: ModelAdapter,
    method: str,
    attribution: Tensor,
    raw: Tensor | None,
    logits: Tensor,
    targets: Tensor,
    params: dict[str, Any],
    seed: int | None,
    t0: float,
) -> Explanation:
    """Package a result with the metadata every explanation carries."""
    probs = logits.float().softmax(-1)
    pred = probs.argmax(1)
    tl = targets.tolist()
    meta = {
        "method": method,
        "model": model.name,
        "params": params,
        "seed": seed,
        "target": tl,
        "label": [model.label(t) for t in tl],
        "probability": probs.gather(1, targets.view(-1, 1)).view(-1).tolist(),
        "predicted": pred.tolist(),
        "predicted_label": [model.label(int(p)) for p in pred],
        "predicted_probability": probs.max(1).values.tolist(),
        "seconds": time.perf_counter() - t0,
    }
    return Explanation(
        attribution=attribution.detach().float(),
        raw=raw.detach().float() if raw is not None else None,
        meta=meta,
    )


Fn = Callable[..., Explanation]


def prepare_input(model: ModelAdapter, x: Any) -> Tensor:
    """Tensors are validated and moved to the model's device; anything else (paths, PIL, arrays) is preprocessed."""
    from ..types import as_batch

    if not isinstance(x, Tensor):
        x = model.preprocess(x)
    x = as_batch(x).to(model.device)
    if x.shape[1] != 3:
        raise BadInputError(f"expected 3-channel images (N, 3, H, W), got {x.shape[1]} channels")
    return x


def explainer(name: str, *, family: str, reduction: str, stochastic: bool = False, **info: Any) -> Callable[[Fn], Fn]:
    """Register an attribution method.

    The wrapped function is called as ``fn(model: ModelAdapter, x: Tensor (N,3,H,W), target, **params)``
    inside :func:`frozen`; the wrapper accepts a plain ``nn.Module`` or ``ModelAdapter``, tensors or images,
    and refuses unknown parameter names with a :class:`BadParameterError` that lists the valid ones.
    """
    import functools
    import inspect

    from ..models.adapter import as_adapter
    from ..registry import METHODS

    def deco(fn: Fn) -> Fn:
        sig = inspect.signature(fn)
        accepted = [p for p in list(sig.parameters)[3:]]
        empty = inspect.Parameter.empty
        defaults = {k: p.default for k, p in sig.parameters.items() if k in accepted and p.default is not empty}

        @functools.wraps(fn)
        def wrapper(model: Any, x: Any, target: TargetLike = None, **params: Any) -> Explanation:
            unknown = sorted(set(params) - set(accepted))
            if unknown:
                raise BadParameterError(
                    f"{name} has no parameter {', '.join(map(repr, unknown))}; "
                    f"it accepts: {', '.join(accepted) or 'none'}"
                )
            adapter = as_adapter(model)
            xb = prepare_input(adapter, x)
            with frozen(adapter.module):
                return fn(adapter, xb, target, **params)

        METHODS.register(name, family=family, reduction=reduction, stochastic=stochastic, params=defaults, **info)(
            wrapper
        )
        return wrapper

    return deco


def collect_params(local: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """The parameters recorded in ``meta['params']`` (tensors summarised by their shape)."""
    out = {}
    for k in names:
        v = local[k]
        out[k] = f"tensor{tuple(v.shape)}" if isinstance(v, Tensor) else v
    return out

"""The LRP family on the propagation core (:mod:`spixel.attribution.propagation`): ``lrp`` (any composite),
``lrp_comp`` (Kohlbrenner et al.'s LRP-CMP), ``clrp`` (contrastive LRP, Gu et al. 2018) and ``sglrp``
(softmax-gradient LRP, Iwana et al. 2019).

Common to all: the model runs once per chunk of ``batch_size`` images with the composite's rules bound to its
layers (batch-norm merged into the preceding layer for the rules, residual additions of known blocks split by the
``Norm`` rule, see :mod:`~spixel.attribution.propagation.canonizers`); relevance starts on the logits and is carried
back to the pixels by autograd. ``raw`` is the input relevance ``(N, 3, H, W)``, the map its signed channel sum.
Per image, independent of the batch. A layer without a rule, or an operation done outside modules (a residual
addition of an unknown block), raises :class:`~spixel.errors.BadParameterError` naming the layer.

**Choices** (beyond the papers):

* ``lrp`` starts from the target's *logit* ``f_t(x)`` (so Σ R ≈ f_t(x) where the rules conserve), not from 1 as
  Zennit's ``Gradient`` attributor does with a one-hot ``attr_output``; ``start="one"`` gives Zennit's seed.
* The z^B bounds default to the pixel range of the adapter: ``low = (0 − mean)/std``, ``high = (1 − mean)/std`` per
  channel (a plain module: ImageNet mean/std).
* Batch-norm is merged for the rules only; the forward pass is the model's own (Zennit rewrites the parameters and
  keeps an emptied batch-norm dividing by ``√(1+ε)``, which shifts its ResNet maps by ~1e-4 relative).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import BadParameterError
from ..models.adapter import ModelAdapter
from ..types import Explanation, TargetLike, resolve_targets
from ._core import check_float, check_int, explainer, finish
from .propagation import COMPOSITES, Composite, Flat, Propagator, Rule, make_composite

#: a function of (logits (n, K), targets (n,)) giving the start relevances of one or more propagations
Starts = Callable[[Tensor, Tensor], list[Tensor]]


def _bounds(model: ModelAdapter, v: Any, which: str, x: Tensor) -> Tensor:
    """A z^B bound: the adapter's normalised pixel range by default, or a float / 3 values per channel."""
    if v is None:
        mean = torch.tensor(model.mean, dtype=x.dtype, device=x.device)
        std = torch.tensor(model.std, dtype=x.dtype, device=x.device)
        v = ((0.0 if which == "low" else 1.0) - mean) / std
    try:
        t = torch.as_tensor(v, dtype=x.dtype).to(x.device)
    except (TypeError, ValueError, RuntimeError):
        raise BadParameterError(f"{which} must be a number or 3 numbers (one per channel), got {v!r}") from None
    if t.numel() not in (1, 3) or not torch.isfinite(t).all():
        raise BadParameterError(f"{which} must be a finite number or 3 numbers (one per channel), got {v!r}")
    return t.view(1, -1, 1, 1) if t.numel() == 3 else t.view(())


def build_composite(
    model: ModelAdapter,
    x: Tensor,
    composite: str,
    *,
    epsilon: float = 1e-6,
    gamma: float = 0.25,
    alpha: float = 2.0,
    beta: float = 1.0,
    stabilizer: float = 1e-6,
    low: Any = None,
    high: Any = None,
) -> Composite:
    """Validate the LRP parameters and build the composite (z^B bounds from the adapter unless given)."""
    if not isinstance(composite, str) or composite not in COMPOSITES:
        raise BadParameterError(f"unknown composite {composite!r}; choose one of: {', '.join(COMPOSITES)}")
    epsilon = check_float("epsilon", epsilon)
    gamma = check_float("gamma", gamma)
    alpha = check_float("alpha", alpha, lo=1.0)
    beta = check_float("beta", beta)
    if abs(alpha - beta - 1.0) > 1e-12:
        raise BadParameterError(f"alpha − beta must be 1 (conservation), got alpha={alpha}, beta={beta}")
    stabilizer = check_float("stabilizer", stabilizer, lo=0.0, lo_open=True)
    lo, hi = _bounds(model, low, "low", x), _bounds(model, high, "high", x)
    if (lo >= hi).any():
        raise BadParameterError("low must be below high")
    return make_composite(
        composite, epsilon=epsilon, gamma=gamma, alpha=alpha, beta=beta, stabilizer=stabilizer, low=lo, high=hi
    )


def propagate(
    model: ModelAdapter,
    x: Tensor,
    target: TargetLike,
    composite: Composite,
    starts: Starts,
    batch_size: int,
    canonize: bool = True,
    overrides: dict[nn.Module, Rule] | None = None,
) -> tuple[Tensor, Tensor, list[Tensor]]:
    """``(logits, targets, [R_k])``: per chunk one forward pass, then one backward pass per start relevance.
    ``overrides``: rules for particular modules instead of the composite's."""
    check_int("batch_size", batch_size)
    n = x.shape[0]
    outs: list[list[Tensor]] = []
    all_logits: list[Tensor] = []
    t: Tensor | None = None
    with Propagator(model.module, composite, canonize=bool(canonize)) as p, contextlib.ExitStack() as stack:
        for m, rule in (overrides or {}).items():
            stack.enter_context(p.override(m, rule))
        for s in range(0, n, batch_size):
            logits, xl, _ = p.forward(x[s : s + batch_size])
            if logits.ndim != 2:
                raise BadParameterError(f"the model must return logits of shape (N, K), got {tuple(logits.shape)}")
            if t is None and target is not None:
                t = resolve_targets(target, n, logits.shape[1]).to(x.device)
            ti = t[s : s + batch_size] if t is not None else logits.detach().argmax(1)
            seeds = starts(logits.detach(), ti)
            rs = [p.backward(logits, [xl], sd, retain=k < len(seeds) - 1)[0] for k, sd in enumerate(seeds)]
            outs.append(rs)
            all_logits.append(logits.detach())
            del logits, xl
    logits = torch.cat(all_logits)
    if t is None:
        t = resolve_targets(None, n, logits.shape[1], predicted=logits.argmax(1)).to(x.device)
    return logits, t, [torch.cat([o[k] for o in outs]) for k in range(len(outs[0]))]


def one_hot(logits: Tensor, t: Tensor, values: Tensor | None = None) -> Tensor:
    """``(n, K)`` zeros with ``values`` (default 1) at each row's target."""
    v = torch.ones_like(t, dtype=logits.dtype) if values is None else values
    return torch.zeros_like(logits).scatter(1, t.view(-1, 1), v.view(-1, 1).to(logits.dtype))


def _target_logit(logits: Tensor, t: Tensor) -> Tensor:
    return logits.gather(1, t.view(-1, 1)).view(-1)


def _per_sample_sum(r: Tensor) -> Tensor:
    return r.flatten(1).sum(1).view(-1, *([1] * (r.ndim - 1)))


def _safe_div(a: Tensor, b: Tensor) -> Tensor:
    return a / torch.where(b == 0, torch.ones_like(b), b)


_START = ("logit", "one")


def _params(names: Sequence[str], local: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k in names:
        v = local[k]
        out[k] = v.flatten().tolist() if isinstance(v, Tensor) else v
    return out


# ---------------------------------------------------------------------------------------------- methods
@explainer("lrp", family="propagation", reduction="signed channel sum", reduce2d="sum")
def lrp(
    model: ModelAdapter,
    x: Tensor,
    target: TargetLike = None,
    *,
    composite: str = "epsilon_plus_flat",
    epsilon: float = 1e-6,
    gamma: float = 0.25,
    alpha: float = 2.0,
    beta: float = 1.0,
    stabilizer: float = 1e-6,
    low: Any = None,
    high: Any = None,
    start: str = "logit",
    canonize: bool = True,
    batch_size: int = 16,
) -> Explanation:
    """Layer-wise Relevance Propagation (Bach et al. 2015; Montavon et al. 2019) with a named composite.

    ``composite``: ``epsilon_plus_flat`` (default; Zennit's recommendation: flat first layer, z⁺ convolutions,
    ε dense layers), ``epsilon_plus``, ``epsilon_gamma_box``, ``epsilon_alpha2_beta1``, ``epsilon_alpha2_beta1_flat``,
    the single rules ``epsilon``, ``zplus``, ``gamma``, ``alpha_beta``, ``flat`` (that rule on every convolution and
    dense layer), ``zbox`` (z^B first convolution, ε elsewhere), ``lrp_cmp`` and ``zplus_box`` — see
    :mod:`spixel.attribution.propagation.composites`. Rule parameters: ``epsilon`` (ε rule), ``gamma``, ``alpha``
    and ``beta`` (``alpha_beta``, ``lrp_cmp``; α − β = 1), ``stabilizer`` (denominators of the other rules),
    ``low``/``high`` (z^B bounds; default the adapter's normalised pixel range). ``start``: ``"logit"`` (relevance
    ``f_t(x)`` on the target, default) or ``"one"``. ``canonize=False`` skips merging batch-norm and splitting
    residual additions (then ResNets are refused). The results equal Zennit's for every shared composite.
    """
    t0 = time.perf_counter()
    if start not in _START:
        raise BadParameterError(f"start must be one of {_START}, got {start!r}")
    comp = build_composite(
        model, x, composite, epsilon=epsilon, gamma=gamma, alpha=alpha, beta=beta, stabilizer=stabilizer,
        low=low, high=high,
    )  # fmt: skip

    def starts(logits: Tensor, t: Tensor) -> list[Tensor]:
        return [one_hot(logits, t, _target_logit(logits, t) if start == "logit" else None)]

    logits, t, (raw,) = propagate(model, x, target, comp, starts, batch_size, canonize)
    names = ["composite", "epsilon", "gamma", "alpha", "beta", "stabilizer", "start", "canonize", "batch_size"]
    params = _params(names, locals())
    params["low"], params["high"] = _params(["low", "high"], {"low": low, "high": high}).values()
    params["rules"] = comp.describe()
    return finish(model, "lrp", raw.sum(1), raw, logits, t, params, None, t0)


@explainer("lrp_comp", family="propagation", reduction="signed channel sum", reduce2d="sum")
def lrp_comp(
    model: ModelAdapter,
    x: Tensor,
    target: TargetLike = None,
    *,
    variant: str = "alpha1_beta0",
    epsilon: float = 0.1,
    flat_first: bool = False,
    stabilizer: float = 1e-6,
    batch_size: int = 16,
) -> Explanation:
    """LRP-COMP — the composite LRP of Kohlbrenner et al. 2020 ("Towards best practice in explaining neural network
    decisions with LRP", IJCNN; LRP-CMP), the baseline paper 004 calls LRP-COMP (citing Montavon et al. 2019).

    ε rule on dense layers, αβ rule on convolutions: ``variant="alpha1_beta0"`` (LRP-CMP:α1β0, default) or
    ``"alpha2_beta1"`` (LRP-CMP:α2β1); ``flat_first=True`` puts the flat rule on the first layer (their "flat"
    variants). **Choices**: ε = 0.1 and α1β0 by default follow iNNvestigate's ``LRPSequentialCompositeA``
    (``LRPSequentialPresetA``, maintained by the paper's group: ``epsilon=1e-1``); batch-norm is merged into the
    preceding convolution (iNNvestigate instead gives BN an αβ rule). Everything else as :func:`lrp`.
    """
    t0 = time.perf_counter()
    variants = {"alpha1_beta0": (1.0, 0.0), "alpha2_beta1": (2.0, 1.0)}
    if variant not in variants:
        raise BadParameterError(f"variant must be one of {tuple(variants)}, got {variant!r}")
    if not isinstance(flat_first, bool):
        raise BadParameterError(f"flat_first must be True or False, got {flat_first!r}")
    a, b = variants[variant]
    comp = build_composite(model, x, "lrp_cmp", epsilon=epsilon, alpha=a, beta=b, stabilizer=stabilizer)
    if flat_first:
        comp = replace(comp, name="lrp_cmp_flat", first=Flat(stabilizer))

    def starts(logits: Tensor, t: Tensor) -> list[Tensor]:
        return [one_hot(logits, t, _target_logit(logits, t))]

    logits, t, (raw,) = propagate(model, x, target, comp, starts, batch_size)
    params = _params(["variant", "epsilon", "flat_first", "stabilizer", "batch_size"], locals())
    params["rules"] = comp.describe()
    return finish(model, "lrp_comp", raw.sum(1), raw, logits, t, params, None, t0)


@explainer("clrp", family="propagation", reduction="signed channel sum", reduce2d="sum")
def clrp(
    model: ModelAdapter,
    x: Tensor,
    target: TargetLike = None,
    *,
    composite: str = "zplus_box",
    stabilizer: float = 1e-9,
    low: Any = None,
    high: Any = None,
    batch_size: int = 16,
) -> Explanation:
    """Contrastive LRP (Gu, Yang & Tresp, ACCV 2018; "c*LRP" in paper 004): the target's relevance minus that of a
    *dual* virtual class, each normalised to sum 1 — ``raw = R_t/ΣR_t − R_dual/ΣR_dual``; the paper's map is its
    positive part (``attribution.clamp(min=0)``), the signed channel sum is returned.

    The dual class is CLRP1's, "all other classes": its relevance starts on every class ``j ≠ t`` with
    ``|f_j(x)|``. CLRP2 (the target through the negated weights of the last layer) is not implemented.

    **Choices, from the authors' code** (``JindongGu/Contrastive-LRP``, ``CLRP/run.py``, ``clrp_lib.py``): z⁺ on
    every convolution and dense layer, z^B on the first convolution (``composite="zplus_box"``; their bounds are
    ImageNet's ±2.1179/2.64, ours the adapter's pixel range), winner-take-all max pooling, the stabiliser ``1e-9``;
    the target starts with its logit ``f_t(x)``, both maps are divided by their sums before the subtraction
    (``visualize``); the dual starts with ``|f_j|`` (``torch.abs(R)`` in ``clrp``), the target logit as is.
    """
    t0 = time.perf_counter()
    comp = build_composite(model, x, composite, stabilizer=stabilizer, low=low, high=high)

    def starts(logits: Tensor, t: Tensor) -> list[Tensor]:
        return [one_hot(logits, t, _target_logit(logits, t)), logits.abs().scatter(1, t.view(-1, 1), 0.0)]

    logits, t, (r_t, r_d) = propagate(model, x, target, comp, starts, batch_size)
    raw = _safe_div(r_t, _per_sample_sum(r_t)) - _safe_div(r_d, _per_sample_sum(r_d))
    params = _params(["composite", "stabilizer", "batch_size"], locals())
    params["rules"] = comp.describe()
    return finish(model, "clrp", raw.sum(1), raw, logits, t, params, None, t0)


@explainer("sglrp", family="propagation", reduction="signed channel sum", reduce2d="sum")
def sglrp(
    model: ModelAdapter,
    x: Tensor,
    target: TargetLike = None,
    *,
    composite: str = "zplus_box",
    stabilizer: float = 1e-6,
    low: Any = None,
    high: Any = None,
    batch_size: int = 16,
) -> Explanation:
    """Softmax-Gradient LRP (Iwana, Kuroki & Uchida, ICCVW 2019): relevance starts from the gradient of the target's
    softmax probability ``p_t`` w.r.t. the logits — ``p_t(1 − p_t)`` on the target, ``p_t p_j`` on every other
    class ``j`` — and the others' relevance, rescaled to the target's total, is subtracted:
    ``raw = R_t − R_others · ΣR_t / ΣR_others``.

    **Choices, from the authors' code** (``uchidalab/softmaxgradient-lrp``, ``utils/visualizations.py``: ``SGLRP``,
    ``_LRPSubtraction`` with ``scaling=True``): the rules of iNNvestigate's ``BoundedDeepTaylor`` — z⁺ everywhere,
    z^B on the first convolution (``composite="zplus_box"``); ``1e-8`` added to ``p_t(1 − p_t)``; the signed map
    (their ``relu=False`` default).
    """
    t0 = time.perf_counter()
    comp = build_composite(model, x, composite, stabilizer=stabilizer, low=low, high=high)

    def starts(logits: Tensor, t: Tensor) -> list[Tensor]:
        p = logits.double().softmax(1)
        pt = p.gather(1, t.view(-1, 1))
        target_start = one_hot(logits, t, (pt * (1 - pt) + 1e-8).view(-1).to(logits.dtype))
        others = (p * pt).scatter(1, t.view(-1, 1), 0.0).to(logits.dtype)
        return [target_start, others]

    logits, t, (r_t, r_o) = propagate(model, x, target, comp, starts, batch_size)
    raw = r_t - r_o * _safe_div(_per_sample_sum(r_t), _per_sample_sum(r_o))
    params = _params(["composite", "stabilizer", "batch_size"], locals())
    params["rules"] = comp.describe()
    return finish(model, "sglrp", raw.sum(1), raw, logits, t, params, None, t0)

"""Gradient methods: saliency, input×gradient, integrated gradients, SmoothGrad, Sparsified SmoothGrad.

Every gradient is of the target class *logit* w.r.t. the normalised input (spec §1.4). ``raw`` is the signed
input-space attribution ``(N, C, H, W)``; the 2-D reduction is stated per method.

``batch_size`` (rows per forward+backward) defaults to 16: on a 2-core CPU, EfficientNet-Lite0 at 224 px
costs less per image at 8–16 rows than at 32–64 (``benchmarks/attribution.py --sweep``); raise it on a GPU.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import Tensor

from ..errors import BadInputError, BadParameterError
from ..models.adapter import ModelAdapter
from ..regions import check_channels, group
from ..types import Explanation, Segmentation, TargetLike
from ._core import (
    check_float,
    check_int,
    collect_params,
    explainer,
    finish,
    logits_and_targets,
    logits_targets_and_grad,
    make_generator,
    target_logit_grad,
)

#: Integration rules of :func:`integrated_gradients`: spec §1.4's plain mean and Captum's four Riemann rules
#: and Gauss–Legendre, reproduced exactly (including Captum's trapezoid weights of 1/n with halved ends).
IG_RULES = ("mean", "gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")


def maxabs(raw: Tensor) -> Tensor:
    """Max of |·| over channels (Simonyan et al.; SWAG spec §2.1)."""
    return raw.abs().amax(dim=1)


def ig_alphas_weights(rule: str, n_steps: int) -> tuple[Tensor, Tensor]:
    """Points α ∈ [0, 1] and weights of the path integral for an integration rule (float64, CPU)."""
    if rule not in IG_RULES:
        raise BadParameterError(f"rule must be one of {', '.join(IG_RULES)}, got {rule!r}")
    n = n_steps
    if rule == "gausslegendre":
        pts, w = np.polynomial.legendre.leggauss(n)
        return torch.from_numpy(0.5 * (pts + 1.0)), torch.from_numpy(0.5 * w)
    if rule == "mean":  # spec §1.4: m equally spaced α including 0 and 1, plain average
        return torch.linspace(0, 1, n, dtype=torch.float64), torch.full((n,), 1.0 / n, dtype=torch.float64)
    w = torch.full((n,), 1.0 / n, dtype=torch.float64)
    if rule == "riemann_trapezoid":
        a = torch.linspace(0, 1, n, dtype=torch.float64)
        w[0] /= 2
        w[-1] /= 2
    elif rule == "riemann_left":
        a = torch.linspace(0, 1 - 1 / n, n, dtype=torch.float64)
    elif rule == "riemann_middle":
        a = torch.linspace(1 / (2 * n), 1 - 1 / (2 * n), n, dtype=torch.float64)
    else:
        a = torch.linspace(1 / n, 1, n, dtype=torch.float64)
    # Captum builds its α with float32 linspace before .tolist(): match it to the last bit
    return a.float().double(), w


def _baseline(x: Tensor, baseline: float | Tensor) -> Tensor:
    if isinstance(baseline, Tensor):
        b = baseline.to(device=x.device, dtype=x.dtype)
        try:  # materialised in x's memory layout: interpolated rows stay channels-last when x is
            return torch.empty_like(x).copy_(torch.broadcast_to(b, x.shape))
        except RuntimeError:
            raise BadParameterError(
                f"baseline of shape {tuple(b.shape)} does not broadcast to the input {tuple(x.shape)}"
            ) from None
    return torch.full_like(x, check_float("baseline", baseline, lo=-1e6, hi=1e6))


@explainer("saliency", family="gradient", reduction="max |·| over channels", reduce2d="maxabs")
def saliency(model: ModelAdapter, x: Tensor, target: TargetLike = None, *, batch_size: int = 16) -> Explanation:
    """Simple Gradient (Simonyan et al. 2014): ``raw = ∂f_t/∂x``, map = max over channels of |raw|."""
    t0 = time.perf_counter()
    check_int("batch_size", batch_size)
    logits, t, g = logits_targets_and_grad(model.module, x, target, batch_size)
    return finish(model, "saliency", maxabs(g), g, logits, t, {"batch_size": batch_size}, None, t0)


@explainer("input_x_gradient", family="gradient", reduction="signed sum over channels", reduce2d="sum")
def input_x_gradient(model: ModelAdapter, x: Tensor, target: TargetLike = None, *, batch_size: int = 16) -> Explanation:
    """Input × Gradient (Shrikumar et al. 2016): ``raw = x ⊙ ∂f_t/∂x``, map = signed channel sum."""
    t0 = time.perf_counter()
    check_int("batch_size", batch_size)
    logits, t, g = logits_targets_and_grad(model.module, x, target, batch_size)
    raw = x * g
    return finish(model, "input_x_gradient", raw.sum(1), raw, logits, t, {"batch_size": batch_size}, None, t0)


@explainer("integrated_gradients", family="gradient", reduction="signed sum over channels", reduce2d="sum")
def integrated_gradients(
    model: ModelAdapter,
    x: Tensor,
    target: TargetLike = None,
    *,
    baseline: float | Tensor = 0.0,
    n_steps: int = 50,
    rule: str = "gausslegendre",
    batch_size: int = 16,
) -> Explanation:
    """Integrated Gradients (Sundararajan et al. 2017): ``(x − x') ⊙ Σ_k w_k ∇f_t(x' + α_k (x − x'))``.

    ``baseline``: a number (in normalised space; 0 = the mean colour) or a tensor broadcastable to ``x``.
    ``rule``: ``"gausslegendre"`` (Captum's default), ``"riemann_{left,right,middle,trapezoid}"`` (Captum's
    ``method=`` values, reproduced exactly; named ``rule`` here because ``explain``'s ``method`` is the
    explanation method) or ``"mean"`` (spec §1.4, paper 000's group: plain mean over ``n_steps``
    equally spaced α including 0 and 1 — use ``n_steps=20`` for their setting). ``batch_size`` bounds the
    number of interpolated images per forward/backward. Map = signed sum over channels.
    """
    t0 = time.perf_counter()
    check_int("n_steps", n_steps, lo=2)
    check_int("batch_size", batch_size)
    alphas, weights = ig_alphas_weights(rule, n_steps)
    base = _baseline(x, baseline)
    logits, t = logits_and_targets(model, x, target)
    n = x.shape[0]
    delta = x - base
    acc = torch.zeros_like(x, dtype=torch.float64 if x.dtype == torch.float64 else torch.float32)
    # rows are (step, image) pairs, step-major; chunk them by batch_size
    total = n_steps * n
    for s in range(0, total, batch_size):
        idx = torch.arange(s, min(s + batch_size, total))
        k, i = idx // n, idx % n
        a = alphas[k].to(device=x.device, dtype=x.dtype).view(-1, 1, 1, 1)
        xs = base[i] + a * delta[i]
        g = target_logit_grad(model.module, xs, t[i])
        w = weights[k].to(device=x.device, dtype=acc.dtype).view(-1, 1, 1, 1)
        acc.index_add_(0, i.to(x.device), g.to(acc.dtype) * w)
    raw = delta * acc.to(x.dtype)
    params = collect_params(locals(), ["baseline", "n_steps", "rule", "batch_size"])
    return finish(model, "integrated_gradients", raw.sum(1), raw, logits, t, params, None, t0)


def noise_sigma(x: Tensor, stdev_spread: float) -> Tensor:
    """Per-image noise level ``stdev_spread · (max x − min x)`` (SmoothGrad paper / PAIR saliency), ``(N,1,1,1)``."""
    flat = x.flatten(1)
    return (stdev_spread * (flat.amax(1) - flat.amin(1))).view(-1, 1, 1, 1)


def draw_noise(x: Tensor, n_samples: int, gen: torch.Generator) -> Tensor:
    """The standard-normal draws ``ε_k`` ``(n_samples, C, H, W)`` behind the noisy copies of ``x``.

    ``ε_k = torch.randn((C, H, W), generator=gen)`` for ``k = 0, 1, …`` in turn, on the CPU (device-independent),
    then moved to ``x``'s device and dtype. Image ``i``'s ``k``-th copy is ``x_i + σ_i ε_k``: the draws are
    shared by the images of a batch, so an image's map depends only on the image, the seed and the
    parameters, never on the rest of the batch. The methods draw the same sequence lazily, chunk by chunk.
    """
    return torch.stack([_eps(x, gen) for _ in range(n_samples)])


def _eps(x: Tensor, gen: torch.Generator) -> Tensor:
    return torch.randn(x.shape[1:], generator=gen, dtype=torch.float32).to(device=x.device, dtype=x.dtype)


def _noisy_grads(
    model: ModelAdapter, x: Tensor, t: Tensor, n_samples: int, sigma: Tensor, gen: torch.Generator, batch_size: int
):
    """Yield ``(sample indices, image indices, gradients)`` for chunks of the noisy copies ``x_i + σ_i ε_k``.

    Rows are (sample, image) pairs, sample-major; the ``ε_k`` of :func:`draw_noise` are drawn as the chunks
    need them, so memory stays bounded by ``batch_size`` whatever ``n_samples``.
    """
    n = x.shape[0]
    total = n_samples * n
    eps: dict[int, Tensor] = {}  # the draws the current chunk needs
    drawn = 0
    for s in range(0, total, batch_size):
        idx = torch.arange(s, min(s + batch_size, total))
        k, i = idx // n, idx % n
        for j in [j for j in eps if j < int(k[0])]:
            del eps[j]
        while drawn <= int(k[-1]):
            eps[drawn] = _eps(x, gen)
            drawn += 1
        e = torch.stack([eps[int(j)] for j in k])
        xs = x[i] + sigma[i] * e
        yield k, i, target_logit_grad(model.module, xs, t[i])


@explainer("smoothgrad", family="gradient", reduction="max |·| over channels", stochastic=True, reduce2d="maxabs")
def smoothgrad(
    model: ModelAdapter,
    x: Tensor,
    target: TargetLike = None,
    *,
    n_samples: int = 50,
    stdev_spread: float = 0.15,
    squared: bool = False,
    batch_size: int = 16,
    seed: int | None = None,
) -> Explanation:
    """SmoothGrad (Smilkov et al. 2017): mean gradient over ``n_samples`` copies ``x + σ ε_k``, ``ε_k ~ N(0, 1)``,
    ``σ = stdev_spread · (max x − min x)`` per image. ``squared=True`` averages squared gradients
    (Captum's ``smoothgrad_sq``, PAIR's ``magnitude=True``). Map = max over channels of |raw|.
    Noise comes from a CPU generator seeded with ``seed`` (recorded in ``meta``), in the order of
    :func:`draw_noise`.
    """
    t0 = time.perf_counter()
    check_int("n_samples", n_samples)
    check_int("batch_size", batch_size)
    check_float("stdev_spread", stdev_spread)
    if not isinstance(squared, bool):
        raise BadParameterError(f"squared must be True or False, got {squared!r}")
    gen, seed = make_generator(seed)
    logits, t = logits_and_targets(model, x, target)
    acc = torch.zeros_like(x)
    for _k, i, g in _noisy_grads(model, x, t, n_samples, noise_sigma(x, stdev_spread), gen, batch_size):
        acc.index_add_(0, i.to(x.device), g * g if squared else g)
    raw = acc / n_samples
    params = collect_params(locals(), ["n_samples", "stdev_spread", "squared", "batch_size"])
    return finish(model, "smoothgrad", maxabs(raw), raw, logits, t, params, seed, t0)


def sparsify(h: Tensor, tau: float, flatten: float, keep_ties: bool = False) -> Tensor:
    """Levine et al.'s L0 sparsification of non-negative maps ``h`` ``(B, C, H, W)`` (spec §1.4).

    With ``D = C·H·W``: ``T = `` the ``int(flatten·D)``-th largest value; ``h' = min(h, T) / T``; only the
    ``int(tau·D)`` largest entries of ``h`` are kept, the rest set to 0 (``T = 0`` gives zeros).
    ``keep_ties=True`` keeps every entry equal to the ``int(tau·D)``-th largest as well (for grouped maps,
    whose entries tie region by region: a region is then kept or dropped as a whole, deterministically).
    """
    b = h.shape[0]
    flat = h.reshape(b, -1)
    d = flat.shape[1]
    k_clip, k_keep = max(1, int(flatten * d)), max(1, int(tau * d))
    top_vals, top_idx = flat.topk(max(k_clip, k_keep), dim=1)
    thr = top_vals[:, k_clip - 1 : k_clip]
    scaled = torch.where(thr > 0, torch.minimum(flat, thr) / thr.clamp_min(torch.finfo(h.dtype).tiny), 0.0)
    if keep_ties:
        return torch.where(flat >= top_vals[:, k_keep - 1 : k_keep], scaled, 0.0).view_as(h)
    out = torch.zeros_like(flat)
    keep = top_idx[:, :k_keep]
    out.scatter_(1, keep, scaled.gather(1, keep))
    return out.view_as(h)


@explainer(
    "sparsified_smoothgrad",
    family="gradient",
    reduction="sum over channels of the non-negative map",
    stochastic=True,
    reduce2d="sum",
)
def sparsified_smoothgrad(
    model: ModelAdapter,
    x: Tensor,
    target: TargetLike = None,
    *,
    n_samples: int = 256,
    stdev_spread: float = 0.1,
    tau: float = 0.1,
    flatten: float = 0.01,
    batch_size: int = 16,
    seed: int | None = None,
    segmentation: Segmentation | None = None,
    group_channels: str = "joint",
    group_first: bool = True,
) -> Explanation:
    """Sparsified SmoothGrad (Levine, Singla & Feizi 2019; MoreauGrad code, spec §1.4).

    For each noisy copy ``x + ε`` (``σ = stdev_spread · (max x − min x)``): ``h = |∇f_t|``, clipped at its
    top-``flatten`` quantile and divided by it, keeping only its top ``tau`` fraction over all C·H·W entries;
    the output is the mean of these non-negative maps. Map = sum over channels.

    Grouped (paper 000, spec §1.2/§1.5; ``spixel.explain(..., regions=...)`` passes these): with a
    ``segmentation``, each noisy gradient is replaced by ``P_G ∇f_t`` (``group_channels``: ``"joint"`` or
    ``"per_channel"``) *before* its sparsification, ``h = |P_G ∇f_t|`` (``group_first=True``); the top-``tau``
    selection then keeps ties (:func:`sparsify` ``keep_ties``), so regions are kept whole and the map is
    constant on every region. ``group_first=False`` groups the final (ungrouped) map instead.
    """
    t0 = time.perf_counter()
    check_int("n_samples", n_samples)
    check_int("batch_size", batch_size)
    check_float("stdev_spread", stdev_spread)
    check_float("tau", tau, lo=0.0, hi=1.0, lo_open=True)
    check_float("flatten", flatten, lo=0.0, hi=1.0, lo_open=True)
    if segmentation is not None:
        if not isinstance(segmentation, Segmentation):
            raise BadParameterError(
                f"segmentation must be a spixel Segmentation, got {type(segmentation).__name__}; "
                "to group by a segmenter use spixel.explain(..., regions=NAME)"
            )
        check_channels(group_channels)
        if not isinstance(group_first, bool):
            raise BadParameterError(f"group_first must be True or False, got {group_first!r}")
        if len(segmentation) != x.shape[0] or segmentation.shape != tuple(x.shape[-2:]):
            raise BadInputError(
                f"the segmentation has {len(segmentation)} images of {segmentation.shape}; the input "
                f"has {x.shape[0]} of {tuple(x.shape[-2:])}"
            )
        segmentation = segmentation.to(x.device)
    per_sample = segmentation is not None and group_first
    gen, seed = make_generator(seed)
    logits, t = logits_and_targets(model, x, target)
    acc = torch.zeros_like(x)
    for _k, i, g in _noisy_grads(model, x, t, n_samples, noise_sigma(x, stdev_spread), gen, batch_size):
        if per_sample:  # rows are (sample, image) pairs: group each by its image's partition
            rows = Segmentation(segmentation.labels[i.to(x.device)])  # type: ignore[union-attr]
            h = sparsify(group(g, rows, "mean", group_channels).abs(), tau, flatten, keep_ties=True)
        else:
            h = sparsify(g.abs(), tau, flatten)
        acc.index_add_(0, i.to(x.device), h)
    raw = acc / n_samples
    if segmentation is not None and not group_first:
        raw = group(raw, segmentation, "mean", group_channels)
    names = ["n_samples", "stdev_spread", "tau", "flatten", "batch_size"]
    params = collect_params(locals(), names + (["group_channels", "group_first"] if segmentation is not None else []))
    return finish(model, "sparsified_smoothgrad", raw.sum(1), raw, logits, t, params, seed, t0)

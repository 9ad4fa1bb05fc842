"""Fidelity metrics: perturb the input in the order a map ranks it and watch the model's score.

One batched engine (:func:`perturbation_curves`) builds the perturbed images of chunks of ``(image, step)`` pairs
on the model's device (``batch_size`` images per forward) — no sequential loop over steps or images. Each pixel's
step of departure is computed once (int16 when it fits); a chunk is one in-place ``lerp`` per image it touches, in
the input's memory format (channels-last from ``ModelAdapter.preprocess``), with no gathered copies of the image or
substrate.

``batch_size=None`` (the default of every metric here) sizes the chunks by the image area
(:func:`resolve_batch_size`): on the CPU :data:`BATCH_PIXELS_CPU` pixels per thread, elsewhere
:data:`BATCH_PIXELS_ACCELERATOR`. The CPU value comes from interleaved forward-only sweeps (one thread, process
CPU time, channels-last, 2-core development CPU under load): EfficientNet-Lite0 at 224 px was fastest per image at
3–6 rows (18.0–18.6 ms; 21.5 at 8, 23.6 at 16, and 32 ms at the former fixed 64), a small CNN at 64 px at 16–64
rows (0.21–0.24 ms; 0.33 at 128, 0.51 at 256) — both near 4·224² pixels per thread, i.e. 4 rows at 224 px and 49
at 64 px. The accelerator value is not measured (no GPU was lent): it only needs to keep the device busy.

Orders (:func:`ranking`): ``"pixel"`` sorts pixels by descending attribution with ``torch.argsort(stable=True)``
(ties by raster index). ``"region"`` (the default when the explanation carries a
:class:`~spixel.types.Segmentation`) ranks the *regions* by their mean attribution (ties by region id) and lists
the pixels of each region contiguously (in raster order) — so ties inside a region never decide anything. The
curve still moves ``⌈HW / n_steps⌉`` pixels per step in that order: a region may straddle two steps, but its
pixels are never interleaved with another region's.

Steps follow RISE: ``step = ⌈HW / n_steps⌉`` pixels, ``⌈HW / step⌉`` steps, so a curve has ``⌈HW / step⌉ + 1``
points (``n_steps + 1`` whenever ``n_steps`` divides ``HW``, e.g. 224 at 224×224); ``meta["x"]`` holds the
fraction of pixels moved at each point.

Metrics: ``deletion`` / ``insertion`` (RISE, spec §6.2), ``morf_auc`` / ``lerf_auc`` (NAS, spec §3.5),
``faithfulness_correlation`` (Bhatt et al. 2020; xplique and Quantus variants, spec §1.6), ``road`` (Rong et al.
2022, spec §1.6), ``insertion_blur`` (paper 004 §5.4, spec §5.5); :func:`greedy_lerf` (spec §3.5).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..attribution._core import check_float, check_int, make_generator
from ..errors import BadParameterError
from ..filters import gaussian_blur as blur
from ..filters import gaussian_window, separable_conv
from ..models.adapter import ModelAdapter
from ..regions import pool
from ..types import Explanation, MetricResult, Segmentation
from .base import metric

ORDERS = ("auto", "pixel", "region")
#: input pixels per forward and CPU thread when ``batch_size=None`` (4 rows at 224×224; see the module docstring)
BATCH_PIXELS_CPU = 4 * 224 * 224
#: input pixels per forward on an accelerator when ``batch_size=None`` (64 rows at 224×224; not measured)
BATCH_PIXELS_ACCELERATOR = 64 * 224 * 224
#: the most rows ``batch_size=None`` gives on the CPU / on an accelerator (tiny images)
MAX_BATCH_CPU, MAX_BATCH_ACCELERATOR = 256, 4096


# ---------------------------------------------------------------------------------------------------- helpers
def _warn(meta: dict[str, Any], msg: str) -> None:
    """Emit a ``UserWarning`` and record it in ``meta["warnings"]``."""
    warnings.warn(msg, UserWarning, stacklevel=3)
    meta.setdefault("warnings", []).append(msg)


def _check_constant(attr: Tensor, meta: dict[str, Any]) -> None:
    flat = attr.flatten(1)
    const = (flat.amax(1) == flat.amin(1)).nonzero().flatten().tolist()
    if const:
        _warn(meta, f"the maps of images {const} are constant: their order falls back to raster order")


def ranking(attr: Tensor, segmentation: Segmentation | None = None, descending: bool = True) -> Tensor:
    """The perturbation order ``(N, HW)`` of flat pixel indices, most relevant first (``descending=True``).

    Without a segmentation: ``argsort`` of the map, stable (ties by raster index). With one: regions ranked by
    their mean attribution (stable, ties by region id), each region's pixels contiguous in raster order.
    """
    flat = attr.flatten(1)
    if segmentation is None:
        return torch.argsort(-flat if descending else flat, dim=1, stable=True)
    seg = segmentation.to(attr.device)
    means = pool(attr, seg, "mean")  # (N, K_max); padding entries are never used by a pixel
    reg_order = torch.argsort(-means if descending else means, dim=1, stable=True)
    reg_rank = torch.empty_like(reg_order)
    reg_rank.scatter_(1, reg_order, torch.arange(reg_order.shape[1], device=attr.device).expand_as(reg_order))
    key = reg_rank.gather(1, seg.labels.flatten(1))
    return torch.argsort(key, dim=1, stable=True)


def _resolve_order(order: str, explanation: Explanation) -> Segmentation | None:
    if order not in ORDERS:
        raise BadParameterError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
    seg = explanation.segmentation
    if order == "region" and seg is None:
        raise BadParameterError("order='region' needs an explanation with a segmentation (explain(..., regions=...))")
    return None if order == "pixel" else seg


def _substrate(x: Tensor, substrate: str | float) -> Tensor:
    if substrate == "zero":
        return torch.zeros_like(x)
    if substrate == "blur":
        return blur(x)
    if isinstance(substrate, (int, float)) and not isinstance(substrate, bool):
        return torch.full_like(x, float(substrate))
    raise BadParameterError(f"substrate must be 'zero', 'blur' or a number, got {substrate!r}")


def resolve_batch_size(batch_size: int | None, x: Tensor) -> int:
    """``batch_size``, or when ``None`` the rows per forward for images like ``x`` on its device: on the CPU
    ``BATCH_PIXELS_CPU · threads / (H·W)`` (at most ``MAX_BATCH_CPU``), elsewhere ``BATCH_PIXELS_ACCELERATOR /
    (H·W)`` (at most ``MAX_BATCH_ACCELERATOR``); at least 1."""
    if batch_size is not None:
        return check_int("batch_size", batch_size)
    hw = x.shape[-2] * x.shape[-1]
    if x.device.type == "cpu":
        return max(1, min(MAX_BATCH_CPU, BATCH_PIXELS_CPU * max(1, torch.get_num_threads()) // hw))
    return max(1, min(MAX_BATCH_ACCELERATOR, BATCH_PIXELS_ACCELERATOR // hw))


def _memory_format(x: Tensor) -> torch.memory_format:
    """``channels_last`` when ``x`` is stored so (and not also plain contiguous), else ``contiguous_format``."""
    cl = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    return torch.channels_last if cl else torch.contiguous_format


def _scores(model: ModelAdapter, imgs: Tensor, target: Tensor, score: str) -> tuple[Tensor, Tensor]:
    """Target score (``"prob"``: softmax, ``"logit"``) and arg-max class of a batch."""
    with torch.no_grad():
        logits = model.module(imgs).float()
    s = logits.softmax(1) if score == "prob" else logits
    return s.gather(1, target.view(-1, 1))[:, 0], logits.argmax(1)


def _batched(
    model: ModelAdapter, n_pairs: int, build: Callable[[Tensor], tuple[Tensor, Tensor]], score: str, batch_size: int
) -> tuple[Tensor, Tensor]:
    """Score ``n_pairs`` perturbed images; ``build(q)`` returns the images and targets of flat pair indices ``q``."""
    dev = model.device
    out = torch.empty(n_pairs, device=dev)
    arg = torch.empty(n_pairs, dtype=torch.long, device=dev)
    for start in range(0, n_pairs, batch_size):
        q = torch.arange(start, min(start + batch_size, n_pairs), device=dev)
        imgs, tgt = build(q)
        out[q], arg[q] = _scores(model, imgs, tgt, score)
    return out, arg


def perturbation_curves(
    model: ModelAdapter,
    src: Tensor,
    dst: Tensor,
    order: Tensor,
    target: Tensor,
    counts: Tensor,
    score: str = "prob",
    batch_size: int | None = None,
) -> tuple[Tensor, Tensor]:
    """The batched engine: image ``n`` at step ``t`` takes its first ``counts[t]`` pixels of ``order[n]`` from
    ``dst`` and the rest from ``src``; returns the target scores and arg-max classes, both ``(N, T)``.

    Deletion: ``src`` = image, ``dst`` = substrate; insertion the other way round. ``counts`` must be
    non-decreasing. Pairs are taken image-major, so a chunk spans one or two images: each image's rows are one
    ``torch.lerp(src[n], dst[n], mask, out=rows)`` (exact for a 0/1 mask) broadcast over the chunk's steps.
    """
    n, c, h, w = src.shape
    t_len = counts.numel()
    batch_size = resolve_batch_size(batch_size, src)
    dev = src.device
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(h * w, device=order.device).expand_as(order))
    counts = counts.to(dev)
    # pixel p of image n is in dst from step leave[n, p] on: rank < counts[t]  <=>  t >= leave
    small = t_len < torch.iinfo(torch.int16).max
    itype = torch.int16 if small else torch.int32
    leave = torch.searchsorted(counts.contiguous(), rank.to(dev).contiguous(), right=True).to(itype)
    steps = torch.arange(t_len, device=dev, dtype=itype)
    fmt = _memory_format(src)

    def build(q: Tensor) -> tuple[Tensor, Tensor]:
        rows = torch.empty((q.numel(), c, h, w), dtype=src.dtype, device=dev, memory_format=fmt)
        first, last = int(q[0]), int(q[-1])  # q is a contiguous range of pair indices
        for i in range(first // t_len, last // t_len + 1):
            a, b = max(first, i * t_len), min(last + 1, (i + 1) * t_len)
            mask = (leave[i] <= steps[a - i * t_len : b - i * t_len, None]).to(src.dtype)
            out = rows[a - first : b - first]
            torch.lerp(src[i : i + 1], dst[i : i + 1], mask.view(-1, 1, h, w), out=out)
        return rows, target[q // t_len]

    s, a = _batched(model, n * t_len, build, score, batch_size)
    return s.view(n, t_len), a.view(n, t_len)


def step_counts(hw: int, n_steps: int) -> Tensor:
    """RISE steps: ``step = ⌈HW / n_steps⌉`` pixels; counts ``min(t·step, HW)`` for ``t = 0 … ⌈HW / step⌉``."""
    step = math.ceil(hw / n_steps)
    t = math.ceil(hw / step)
    return (torch.arange(t + 1) * step).clamp(max=hw)


def rise_auc(curves: Tensor) -> Tensor:
    """RISE's normalised trapezoid: ``(Σ s − s_0/2 − s_last/2) / (T − 1)`` per row."""
    return (curves.sum(1) - curves[:, 0] / 2 - curves[:, -1] / 2) / (curves.shape[1] - 1)


def _common(
    explanation: Explanation, order: str, n_steps: int, batch_size: int | None, meta: dict[str, Any]
) -> Segmentation | None:
    check_int("n_steps", n_steps)
    if batch_size is not None:
        check_int("batch_size", batch_size)
    seg = _resolve_order(order, explanation)
    if seg is None:
        _check_constant(explanation.attribution, meta)
    meta["order"] = "region" if seg is not None else "pixel"
    return seg


def _rise(
    model: ModelAdapter,
    x: Tensor,
    explanation: Explanation,
    target: Tensor,
    insertion: bool,
    n_steps: int,
    substrate: str | float,
    order: str,
    batch_size: int | None,
) -> MetricResult:
    meta: dict[str, Any] = {}
    seg = _common(explanation, order, n_steps, batch_size, meta)
    sub = _substrate(x, substrate)
    perm = ranking(explanation.attribution, seg)
    counts = step_counts(x.shape[2] * x.shape[3], n_steps)
    src, dst = (sub, x) if insertion else (x, sub)
    curves, _ = perturbation_curves(model, src, dst, perm, target, counts, "prob", batch_size)
    meta["x"] = (counts.float() / (x.shape[2] * x.shape[3])).tolist()
    return MetricResult(scores=rise_auc(curves), curves=curves, meta=meta)


@metric("deletion", higher_is_better=False, category="fidelity", reference="Petsiuk et al. 2018 (RISE); spec §6.2")
def deletion(
    model: ModelAdapter,
    x: Tensor,
    explanation: Explanation,
    target: Tensor,
    n_steps: int = 224,
    substrate: str | float = "zero",
    order: str = "auto",
    batch_size: int | None = None,
) -> MetricResult:
    """Deletion AUC: replace the most relevant pixels first by ``substrate`` (``"zero"`` of the normalised tensor,
    ``"blur"`` or a number), ``⌈HW / n_steps⌉`` per step; softmax probability of the target; RISE's AUC."""
    return _rise(model, x, explanation, target, False, n_steps, substrate, order, batch_size)


@metric("insertion", higher_is_better=True, category="fidelity", reference="Petsiuk et al. 2018 (RISE); spec §6.2")
def insertion(
    model: ModelAdapter,
    x: Tensor,
    explanation: Explanation,
    target: Tensor,
    n_steps: int = 224,
    substrate: str | float = "blur",
    order: str = "auto",
    batch_size: int | None = None,
) -> MetricResult:
    """Insertion AUC: start from ``substrate`` (default RISE's blur, 11×11, σ = 5, zero padding) and insert the
    most relevant pixels first, ``⌈HW / n_steps⌉`` per step; softmax probability of the target; RISE's AUC."""
    return _rise(model, x, explanation, target, True, n_steps, substrate, order, batch_size)


# ---------------------------------------------------------------------------------------------------- NAS AUCs
def scale_curves(curves: Tensor, meta: dict[str, Any]) -> Tensor:
    """NAS scaling (spec §3.5): ``(s − s_last) / (s_0 − s_last)`` — starts at 1, ends at 0. Rows with
    ``s_0 == s_last`` are undefined: they become the straight line ``1 − x`` (AUC 0.5) with a warning."""
    s0, s1 = curves[:, :1], curves[:, -1:]
    den = s0 - s1
    bad = (den.abs() <= 1e-12 * curves.abs().amax(1, keepdim=True).clamp_min(1.0))[:, 0]
    out = (curves - s1) / torch.where(den == 0, torch.ones_like(den), den)
    if bad.any():
        lin = torch.linspace(1.0, 0.0, curves.shape[1], device=curves.device, dtype=curves.dtype)
        out[bad] = lin
        _warn(
            meta,
            f"images {bad.nonzero().flatten().tolist()}: unmasked and fully masked scores are equal; "
            "their scaled curve is set to 1 − x (AUC 0.5)",
        )
    return out


def _nas(
    model: ModelAdapter,
    x: Tensor,
    explanation: Explanation,
    target: Tensor,
    lerf: bool,
    n_steps: int,
    order: str,
    batch_size: int | None,
) -> MetricResult:
    meta: dict[str, Any] = {}
    seg = _common(explanation, order, n_steps, batch_size, meta)
    hw = x.shape[2] * x.shape[3]
    perm = ranking(explanation.attribution, seg, descending=not lerf)
    counts = step_counts(hw, n_steps)
    raw, _ = perturbation_curves(model, x, torch.zeros_like(x), perm, target, counts, "logit", batch_size)
    curves = scale_curves(raw, meta)
    xs = counts.to(curves.device, curves.dtype) / hw
    meta["x"] = xs.tolist()
    meta["raw_curves"] = raw
    return MetricResult(scores=torch.trapezoid(curves, xs, dim=1), curves=curves, meta=meta)


_NAS_REF = "Boubekki et al. 2024 (NAS, arXiv 2406.04933) §4.3.2; spec §3.5"


@metric("morf_auc", higher_is_better=False, category="fidelity", reference=_NAS_REF)
def morf_auc(
    model: ModelAdapter,
    x: Tensor,
    explanation: Explanation,
    target: Tensor,
    n_steps: int = 100,
    order: str = "auto",
    batch_size: int | None = None,
) -> MetricResult:
    """AUC-MoRF (NAS): zero the most relevant pixels first (1 % per step), target logit, curve scaled to run
    from 1 to 0, trapezoid over the removed fraction; lower is better."""
    return _nas(model, x, explanation, target, False, n_steps, order, batch_size)


@metric("lerf_auc", higher_is_better=True, category="fidelity", reference=_NAS_REF)
def lerf_auc(
    model: ModelAdapter,
    x: Tensor,
    explanation: Explanation,
    target: Tensor,
    n_steps: int = 100,
    order: str = "auto",
    batch_size: int | None = None,
) -> MetricResult:
    """AUC-LeRF (NAS): zero the least relevant pixels first (1 % per step), target logit, curve scaled to run
    from 1 to 0, trapezoid over the removed fraction; higher is better."""
    return _nas(model, x, explanation, target, True, n_steps, order, batch_size)


def greedy_lerf(
    model: ModelAdapter,
    x: Tensor,
    segmentation: Segmentation,
    target: Tensor | Sequence[int],
    batch_size: int | None = None,
) -> tuple[list[Tensor], Tensor]:
    """Greedy AUC-LeRF maximisation over a segmentation (spec §3.5).

    Per image, repeatedly zero (in the normalised space) the region whose removal keeps the *scaled* target
    logit (:func:`scale_curves`) highest — the raw logit highest when the unmasked logit exceeds the fully masked
    one, the lowest otherwise; the scaled curve over the removed area fraction gives the AUC. Returns the
    region order of each image and the AUCs ``(N,)``. ``O(K²)`` forwards per image — meant for small K.
    """
    dev = model.device
    x = x.to(dev)
    batch_size = resolve_batch_size(batch_size, x)
    tgt = torch.as_tensor(target, device=dev).long().reshape(-1).expand(x.shape[0])
    seg = segmentation.to(dev)
    hw = x.shape[2] * x.shape[3]
    orders, aucs = [], []
    meta: dict[str, Any] = {}
    for i in range(x.shape[0]):
        masks = seg.masks(i)  # (K, H, W)
        k = masks.shape[0]
        removed = torch.zeros_like(masks[0])
        xi, ti = x[i : i + 1], tgt[i : i + 1]
        ys = [_scores(model, xi, ti, "logit")[0]]
        sign = 1.0 if float(ys[0][0] - _scores(model, torch.zeros_like(xi), ti, "logit")[0][0]) >= 0 else -1.0
        xs = [0.0]
        remaining = list(range(k))
        chosen = []
        while remaining:
            cand = torch.stack([removed | masks[r] for r in remaining])  # (R, H, W)

            def build(q: Tensor, cand: Tensor = cand, xi: Tensor = xi, ti: Tensor = ti) -> tuple[Tensor, Tensor]:
                return xi * (~cand[q]).unsqueeze(1), ti.expand(q.numel())

            s, _ = _batched(model, len(remaining), build, "logit", batch_size)
            best = int((sign * s).argmax())
            r = remaining.pop(best)
            chosen.append(r)
            removed = cand[best]
            ys.append(s[best : best + 1])
            xs.append(float(removed.sum()) / hw)
        curve = scale_curves(torch.cat(ys).view(1, -1), meta)
        aucs.append(torch.trapezoid(curve[0], torch.tensor(xs, device=dev, dtype=curve.dtype)))
        orders.append(torch.tensor(chosen, dtype=torch.long))
    return orders, torch.stack(aucs)


# ---------------------------------------------------------------------------------------------------- Bhatt et al.
def _pearson(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise Pearson correlation (float64); NaN where a row is constant."""
    a = a.double() - a.double().mean(1, keepdim=True)
    b = b.double() - b.double().mean(1, keepdim=True)
    den = (a.square().sum(1) * b.square().sum(1)).sqrt()
    return torch.where(den > 0, (a * b).sum(1) / torch.where(den > 0, den, torch.ones_like(den)), torch.nan)


def _spearman(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise Spearman correlation (average ranks for ties)."""
    from scipy.stats import rankdata

    ra = torch.from_numpy(rankdata(a.double().cpu().numpy(), axis=1))
    rb = torch.from_numpy(rankdata(b.double().cpu().numpy(), axis=1))
    return _pearson(ra, rb)


def _finish_corr(r: Tensor, meta: dict[str, Any]) -> Tensor:
    bad = torch.isnan(r)
    if bad.any():
        _warn(
            meta,
            f"images {bad.nonzero().flatten().tolist()}: the correlation is undefined (a constant map "
            "or constant model output); scored 0",
        )
    return torch.nan_to_num(r, nan=0.0).float()


def faithfulness_from_subsets(
    model: ModelAdapter, x: Tensor, attr: Tensor, target: Tensor, subsets: Tensor, batch_size: int | None = None
) -> tuple[Tensor, Tensor]:
    """Quantus variant on given subsets ``(N, R, k)`` of flat ``C·H·W`` indices: ``attr`` ``(N, H, W)``
    broadcast over channels and divided by its max |·|, removed features set to the image's minimum; returns
    ``(Σ attribution over the subset, logit drop)``, both ``(N, R)``."""
    n, c, h, w = x.shape
    r = subsets.shape[1]
    batch_size = resolve_batch_size(batch_size, x)
    a = attr.unsqueeze(1).expand(n, c, h, w).reshape(n, -1).double()
    amax = a.abs().amax(1, keepdim=True)
    a = a / torch.where(amax > 0, amax, torch.ones_like(amax))
    flat = x.reshape(n, -1)
    base = flat.amin(1)
    subsets = subsets.to(x.device)

    def build(q: Tensor) -> tuple[Tensor, Tensor]:
        i, j = q // r, q % r
        imgs = flat[i].clone()
        imgs.scatter_(1, subsets[i, j], base[i].view(-1, 1).expand(-1, subsets.shape[2]).to(imgs.dtype))
        return imgs.view(-1, c, h, w), target[i]

    f0, _ = _scores(model, x, target, "logit")
    s, _ = _batched(model, n * r, build, "logit", batch_size)
    sums = a.gather(1, subsets.reshape(n, -1)).view(n, r, -1).sum(2)
    return sums, (f0.view(n, 1) - s.view(n, r)).double()


@metric(
    "faithfulness_correlation",
    higher_is_better=True,
    category="fidelity",
    reference="Bhatt et al. 2020 (IJCAI); xplique MuFidelity / Quantus FaithfulnessCorrelation; spec §1.6",
)
def faithfulness_correlation(
    model: ModelAdapter,
    x: Tensor,
    explanation: Explanation,
    target: Tensor,
    variant: str = "xplique",
    grid_size: int = 9,
    subset_percent: float = 0.2,
    nb_samples: int = 200,
    nr_runs: int = 100,
    subset_size: int = 224,
    seed: int | None = 0,
    batch_size: int | None = None,
) -> MetricResult:
    """Correlation between the attribution mass of a random subset and the target-logit drop when it is removed.

    ``variant="xplique"`` (MuFidelity defaults): ``grid_size × grid_size`` cells, each set to 0 (normalised
    space) with probability ``subset_percent``, ``nb_samples`` masks shared by all images, Spearman.
    ``variant="quantus"``: ``nr_runs`` subsets of ``subset_size`` features of the flattened ``C·H·W`` map
    (broadcast over channels), baseline = the image's minimum ("black"), attributions divided by max |·|,
    Pearson. Undefined correlations (constant maps) score 0 with a warning.
    """
    batch_size = resolve_batch_size(batch_size, x)
    gen, seed = make_generator(seed)
    meta: dict[str, Any] = {"variant": variant, "seed": seed}
    n, c, h, w = x.shape
    attr = explanation.attribution.to(x.device)
    _check_constant(attr, meta)
    if variant == "xplique":
        check_int("grid_size", grid_size)
        check_int("nb_samples", nb_samples, lo=2)
        p = check_float("subset_percent", subset_percent, 0.0, 1.0)
        cells = (torch.rand(nb_samples, 1, grid_size, grid_size, generator=gen) < p).float()
        removed = F.interpolate(cells, size=(h, w), mode="nearest")[:, 0].bool().to(x.device)  # (S, H, W)

        def build(q: Tensor) -> tuple[Tensor, Tensor]:
            i, j = q // nb_samples, q % nb_samples
            return x[i] * (~removed[j]).unsqueeze(1), target[i]

        f0, _ = _scores(model, x, target, "logit")
        s, _ = _batched(model, n * nb_samples, build, "logit", batch_size)
        drops = f0.view(n, 1) - s.view(n, nb_samples)
        sums = (attr.unsqueeze(1) * removed.unsqueeze(0)).flatten(2).sum(2)
        r = _spearman(sums, drops)
    elif variant == "quantus":
        check_int("nr_runs", nr_runs, lo=2)
        check_int("subset_size", subset_size)
        if subset_size > c * h * w:
            raise BadParameterError(f"subset_size ({subset_size}) exceeds the number of features C·H·W ({c * h * w})")
        subsets = torch.stack(
            [torch.randperm(c * h * w, generator=gen)[:subset_size] for _ in range(n * nr_runs)]
        ).view(n, nr_runs, subset_size)
        sums, drops = faithfulness_from_subsets(model, x, attr, target, subsets, batch_size)
        r = _pearson(sums, drops)
    else:
        raise BadParameterError(f"variant must be 'xplique' or 'quantus', got {variant!r}")
    return MetricResult(scores=_finish_corr(r, meta).to(x.device), meta=meta)


# ---------------------------------------------------------------------------------------------------- ROAD
#: 8-neighbourhood of the noisy linear imputer: 1/6 for the 4-neighbours, 1/12 for the diagonals (spec §1.6).
_NEIGHBOURS = (
    ((0, 1), 1 / 6),
    ((0, -1), 1 / 6),
    ((1, 0), 1 / 6),
    ((-1, 0), 1 / 6),
    ((1, 1), 1 / 12),
    ((1, -1), 1 / 12),
    ((-1, 1), 1 / 12),
    ((-1, -1), 1 / 12),
)


def noisy_linear_impute(
    img: np.ndarray, missing: np.ndarray, noise: float = 0.01, rng: np.random.Generator | None = None
) -> np.ndarray:
    """ROAD's NoisyLinearImputer (Rong et al. 2022, spec §1.6) for one image ``(C, H, W)``.

    Every missing pixel equals the weighted mean of its in-image 8-neighbours (weights 1/6 and 1/12,
    renormalised at the border), known or missing — one sparse linear system per image, solved with
    ``scipy.sparse.linalg.spsolve`` on the CPU (all channels at once) — plus ``noise · N(0, 1)``.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import spsolve

    c, h, w = img.shape
    miss = np.flatnonzero(np.asarray(missing).reshape(-1))
    out = np.array(img, dtype=np.float64).reshape(c, -1)
    m = miss.size
    if m == 0:
        return out.reshape(c, h, w)
    if m == h * w:
        raise BadParameterError("cannot impute an image with every pixel removed; use percentages below 1")
    var = np.full(h * w, -1)
    var[miss] = np.arange(m)
    ys, xs = miss // w, miss % w
    diag = np.zeros(m)
    rhs = np.zeros((m, c))
    rows, cols, vals = [np.arange(m)], [np.arange(m)], []
    for (dy, dx), wt in _NEIGHBOURS:
        yy, xx = ys + dy, xs + dx
        valid = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        vi = np.flatnonzero(valid)
        nb = (yy * w + xx)[valid]
        diag[vi] += wt
        unknown = var[nb] >= 0
        rows.append(vi[unknown])
        cols.append(var[nb[unknown]])
        vals.append(np.full(int(unknown.sum()), -wt))
        rhs[vi[~unknown]] += wt * out[:, nb[~unknown]].T
    a = coo_matrix((np.concatenate([diag, *vals]), (np.concatenate(rows), np.concatenate(cols))), shape=(m, m))
    sol = np.asarray(spsolve(a.tocsc(), rhs)).reshape(m, c)
    if noise:
        sol = sol + noise * (rng if rng is not None else np.random.default_rng()).standard_normal(sol.shape)
    out[:, miss] = sol.T
    return out.reshape(c, h, w)


@metric("road", higher_is_better=False, category="fidelity", reference="Rong et al. 2022 (ROAD, ICML); spec §1.6")
def road(
    model: ModelAdapter,
    x: Tensor,
    explanation: Explanation,
    target: Tensor,
    order: str = "morf",
    percentages: Sequence[float] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 0.9),
    noise: float = 0.01,
    seed: int | None = 0,
    batch_size: int | None = None,
) -> MetricResult:
    """ROAD without retraining: remove a fraction ``p`` of the pixels and impute them (noisy linear imputation,
    in the normalised space), then score the unchanged model.

    Ranking as ``tleemann/road_evaluation``: the map min-max normalised plus a ``1e-4 · N(0, 1)`` tie-breaker,
    descending. ``order="morf"`` removes the top ``p·HW`` pixels (lower is better); ``"lerf"`` removes the
    ``p·HW`` *least* relevant ones (the paper's convention; the repository's code instead keeps the top ``p``,
    i.e. our LeRF at ``1 − p``) — higher is better. ``curves``: target softmax probability ``(N, P)``; score:
    its mean over the percentages; ``meta["correct"]`` ``(N, P)`` and ``meta["accuracy"]`` per percentage.
    Imputation runs on the CPU (scipy sparse solve, one system per image and percentage).
    """
    if order not in ("morf", "lerf"):
        raise BadParameterError(f"order must be 'morf' or 'lerf', got {order!r}")
    ps = [check_float("percentages", p, 0.0, 1.0, lo_open=True) for p in percentages]
    if not ps or max(ps) >= 1.0:
        raise BadParameterError("percentages must be a non-empty list of fractions in (0, 1)")
    noise = check_float("noise", noise)
    batch_size = resolve_batch_size(batch_size, x)
    gen, seed = make_generator(seed)
    rng = np.random.default_rng(seed)
    meta: dict[str, Any] = {"order": order, "seed": seed, "x": ps, "higher_is_better": order == "lerf"}
    n, _, h, w = x.shape
    attr = explanation.attribution.flatten(1).double().cpu()
    _check_constant(attr, meta)
    lo, hi = attr.amin(1, keepdim=True), attr.amax(1, keepdim=True)
    norm = (attr - lo) / torch.where(hi > lo, hi - lo, torch.ones_like(hi))
    norm = norm + 1e-4 * torch.randn(norm.shape, generator=gen, dtype=norm.dtype)
    perm = torch.argsort(-norm, dim=1, stable=True).numpy()
    xc = x.detach().double().cpu().numpy()
    imgs = []
    for i in range(n):
        for p in ps:
            k = int(h * w * p)
            idx = perm[i, :k] if order == "morf" else perm[i, h * w - k :]
            missing = np.zeros(h * w, dtype=bool)
            missing[idx] = True
            imgs.append(noisy_linear_impute(xc[i], missing, noise, rng))
    stack = torch.from_numpy(np.stack(imgs)).to(x.device, x.dtype)
    tt = target.repeat_interleave(len(ps))
    s, a = _batched(model, stack.shape[0], lambda q: (stack[q], tt[q]), "prob", batch_size)
    curves = s.view(n, len(ps))
    correct = (a == tt).view(n, len(ps))
    meta["correct"] = correct
    meta["accuracy"] = correct.float().mean(0).tolist()
    return MetricResult(scores=curves.mean(1), curves=curves, meta=meta)


# ---------------------------------------------------------------------------------------------------- paper 004
@metric(
    "insertion_blur",
    higher_is_better=True,
    category="fidelity",
    reference="Nam & Lee 2024 (AE, TPAMI) §5.4; spec §5.5",
)
def insertion_blur(
    model: ModelAdapter,
    x: Tensor,
    explanation: Explanation,
    target: Tensor,
    percentages: Sequence[float] = tuple(k / 100 for k in range(1, 21)),
    sigma: float = 2.0,
    order: str = "auto",
    batch_size: int | None = None,
) -> MetricResult:
    """Insertion with smoothed seams (paper 004 §5.4, spec §5.5 [RECON]): keep the top ``p·HW`` pixels
    (``round``), blur the binary keep-mask with a Gaussian (``sigma`` px, radius ``⌈4σ⌉``, replicate padding) and
    blend ``x·m̃`` into a blank image (0 of the normalised tensor). ``curves`` ``(N, P)``: top-1 correctness
    (arg-max == ``target``, pass the labels); score: its mean over ``percentages``; ``meta["accuracy"]`` per
    percentage, and ``meta["relative_accuracy"]`` divided by the accuracy on the unperturbed images.
    """
    ps = [check_float("percentages", p, 0.0, 1.0, lo_open=True) for p in percentages]
    if not ps:
        raise BadParameterError("percentages must be a non-empty list of fractions in (0, 1]")
    sigma = check_float("sigma", sigma)
    batch_size = resolve_batch_size(batch_size, x)
    meta: dict[str, Any] = {"x": ps, "sigma": sigma}
    seg = _resolve_order(order, explanation)
    if seg is None:
        _check_constant(explanation.attribution, meta)
    meta["order"] = "region" if seg is not None else "pixel"
    n, _, h, w = x.shape
    perm = ranking(explanation.attribution, seg)
    rank = torch.empty_like(perm)
    rank.scatter_(1, perm, torch.arange(h * w, device=perm.device).expand_as(perm))
    counts = torch.tensor([round(p * h * w) for p in ps], device=x.device)
    if sigma > 0:
        g = gaussian_window(sigma, math.ceil(4 * sigma), dtype=x.dtype, device=x.device)
    t_len = len(ps)

    def build(q: Tensor) -> tuple[Tensor, Tensor]:
        i, t = q // t_len, q % t_len
        m = (rank[i] < counts[t].unsqueeze(1)).view(-1, 1, h, w).to(x.dtype)
        if sigma > 0:
            m = separable_conv(m, g, "replicate")
        return x[i] * m, target[i]

    _, a = _batched(model, n * t_len, build, "logit", batch_size)
    correct = (a.view(n, t_len) == target.view(-1, 1)).float()
    with torch.no_grad():
        base = float((model.module(x).argmax(1) == target).float().mean())
    acc = correct.mean(0)
    meta["accuracy"] = acc.tolist()
    meta["base_accuracy"] = base
    meta["relative_accuracy"] = (acc / base).tolist() if base > 0 else None
    return MetricResult(scores=correct.mean(1), curves=correct, meta=meta)

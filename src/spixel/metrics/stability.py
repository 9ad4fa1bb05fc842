"""Stability metrics: SSIM between two explanations (protocols A and B), top-k intersection, MeGe / ReCo (spec §1.6).

They compare explanations rather than score one, so they are plain functions (also listed in
:data:`spixel.registry.METRICS` with ``scores_explanation=False``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import BadInputError, BadParameterError
from ..filters import gaussian_window, separable_conv
from ..models.adapter import ModelAdapter
from ..models.state import frozen
from ..registry import METRICS
from ..types import Explanation, MetricResult, TargetLike

# ---------------------------------------------------------------------------------------------------- helpers


def _as_expl(e: Any, name: str) -> Explanation:
    if isinstance(e, Explanation):
        return e
    try:
        return Explanation(attribution=e)
    except BadInputError as err:
        raise BadInputError(f"{name}: {err}") from None


def _pick(a: Explanation, b: Explanation, use_raw: bool | None) -> tuple[Tensor, Tensor, bool]:
    """The maps to compare: ``raw`` ``(N, C, H, W)`` when ``use_raw`` (``None``: when both have one), else the
    attribution as ``(N, 1, H, W)``."""
    both = a.raw is not None and b.raw is not None
    if use_raw is None:
        use_raw = both
    if use_raw and not both:
        raise BadInputError("use_raw=True needs both explanations to carry a raw (N, C, H, W) attribution")
    ta = (a.raw if use_raw else a.attribution.unsqueeze(1)).detach().double().cpu()
    tb = (b.raw if use_raw else b.attribution.unsqueeze(1)).detach().double().cpu()
    if ta.shape != tb.shape:
        raise BadInputError(f"the explanations differ in shape: {tuple(ta.shape)} vs {tuple(tb.shape)}")
    if not (bool(ta.isfinite().all()) and bool(tb.isfinite().all())):
        raise BadInputError("the explanations contain NaN or infinite values")
    return ta, tb, bool(use_raw)


def ssim_maps(a: Tensor, b: Tensor, data_range: Tensor, sigma: float = 1.5) -> Tensor:
    """Mean SSIM ``(N,)`` of ``(N, C, H, W)`` maps, averaged over channels (Wang et al. 2004): Gaussian window σ,
    truncated at 3.5σ, population covariances, K1 = 0.01, K2 = 0.03, border of the window's radius excluded —
    ``skimage.metrics.structural_similarity(gaussian_weights=True, use_sample_covariance=False)``.
    ``data_range``: ``(N,)``."""
    r = int(3.5 * sigma + 0.5)  # skimage: truncate = 3.5
    k = gaussian_window(sigma, r, dtype=torch.float64)
    n, _, h, w = a.shape
    if h < 2 * r + 1 or w < 2 * r + 1:
        raise BadInputError(f"SSIM with σ={sigma} needs maps of at least {2 * r + 1}x{2 * r + 1} pixels, got {h}x{w}")

    def filt(t: Tensor) -> Tensor:
        return separable_conv(t, k, "valid")

    ux, uy = filt(a), filt(b)
    vx = filt(a * a) - ux * ux
    vy = filt(b * b) - uy * uy
    vxy = filt(a * b) - ux * uy
    dr = data_range.view(n, 1, 1, 1)
    c1, c2 = (0.01 * dr) ** 2, (0.03 * dr) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.flatten(2).mean(2).mean(1)


def visualize_grayscale(m: Tensor, percentile: float = 99.0) -> tuple[Tensor, Tensor]:
    """PAIR-saliency ``VisualizeImageGrayscale`` of ``(N, C, H, W)`` maps → ``(N, 1, H, W)`` in [0, 1]: Σ|·| over
    channels, (v − min) / (p99 − min) clipped to [0, 1]. Where p99 = min the max is used instead, and a constant
    map becomes zeros; returns the maps and a boolean ``(N,)`` of the images where that happened."""
    g = m.abs().sum(1, keepdim=True)
    flat = g.flatten(1)
    vmin = flat.amin(1)
    srt = flat.sort(1).values  # numpy's default (linear) percentile, without torch.quantile's size limit
    pos = percentile / 100.0 * (flat.shape[1] - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    vmax = srt[:, lo] + (srt[:, hi] - srt[:, lo]) * (pos - lo)
    fallback = vmax <= vmin
    vmax = torch.where(fallback, flat.amax(1), vmax)
    span = (vmax - vmin).view(-1, 1, 1, 1)
    out = ((g - vmin.view(-1, 1, 1, 1)) / span.clamp_min(torch.finfo(g.dtype).tiny)).clamp(0, 1)
    out = torch.where(span > 0, out, torch.zeros_like(out))
    return out, fallback


# ---------------------------------------------------------------------------------------------------- SSIM
def ssim(
    expl_a: Explanation | Any,
    expl_b: Explanation | Any,
    protocol: str = "B",
    *,
    use_raw: bool | None = None,
    sigma: float = 1.5,
) -> MetricResult:
    """SSIM between two explanations of the same images (e.g. by two models), one score per image (spec §1.6).

    * ``"B"`` (default): each map through PAIR's ``VisualizeImageGrayscale`` (Σ|·| over channels, clip at the 99th
      percentile, min-max to [0, 1]), then SSIM with ``data_range=1``, Gaussian σ=1.5, population covariance.
      Uses ``raw`` when both explanations carry one (``use_raw=None``), else the 2-D attribution.
    * ``"A"``: the 3-channel ``raw`` maps, each divided by its L2 norm, SSIM per channel averaged, with
      ``data_range = max − min`` of the second normalised map (needs ``raw``).

    Constant maps get a defined value (a zero map for B, data range 1 for A) and a warning.
    """
    a, b = _as_expl(expl_a, "expl_a"), _as_expl(expl_b, "expl_b")
    meta: dict[str, Any] = {"metric": "ssim", "protocol": protocol, "higher_is_better": True, "category": "stability"}
    if protocol == "A":
        ta, tb, _ = _pick(a, b, True if use_raw is None else use_raw)
        na = ta.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        nb = tb.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        zero = (na.flatten() == 0) | (nb.flatten() == 0)
        ta, tb = ta / na.clamp_min(1e-300), tb / nb.clamp_min(1e-300)
        dr = tb.flatten(1).amax(1) - tb.flatten(1).amin(1)
        flat_b = dr == 0
        dr = torch.where(flat_b, torch.ones_like(dr), dr)
        bad = zero | flat_b
        meta["use_raw"] = True
    elif protocol == "B":
        ta, tb, used = _pick(a, b, use_raw)
        (ta, fa), (tb, fb) = visualize_grayscale(ta), visualize_grayscale(tb)
        dr = torch.ones(ta.shape[0], dtype=ta.dtype)
        bad = fa | fb
        meta["use_raw"] = used
    else:
        raise BadParameterError(f"protocol must be 'A' or 'B', got {protocol!r}")
    if bool(bad.any()):
        meta["degenerate_maps"] = bad.nonzero().flatten().tolist()
        warnings.warn(
            f"ssim: the maps of images {meta['degenerate_maps']} are constant or nearly so (protocol {protocol}); "
            "their normalisation fell back to a defined value",
            stacklevel=2,
        )
    return MetricResult(scores=ssim_maps(ta, tb, dr, sigma).float(), meta=meta)


# ---------------------------------------------------------------------------------------------------- top-k
def topk_intersection(
    expl_a: Explanation | Any, expl_b: Explanation | Any, k: float = 0.1, *, use_raw: bool | None = None
) -> MetricResult:
    """|top-k(a) ∩ top-k(b)| / k on the *signed* flattened maps (spec §1.6); ``k`` a fraction of the map's size
    (C·H·W with ``raw``, used when both explanations carry one; else H·W) or an int count. Ties at the k-th value
    are broken by ``torch.topk``."""
    a, b = _as_expl(expl_a, "expl_a"), _as_expl(expl_b, "expl_b")
    ta, tb, used = _pick(a, b, use_raw)
    fa, fb = ta.flatten(1), tb.flatten(1)
    d = fa.shape[1]
    if isinstance(k, bool) or not isinstance(k, (int, float)):
        raise BadParameterError(f"k must be a fraction in (0, 1] or a positive int, got {k!r}")
    if isinstance(k, float):
        if not 0 < k <= 1:
            raise BadParameterError(f"k as a fraction must lie in (0, 1], got {k}")
        kk = max(1, int(k * d))
    else:
        if not 1 <= k <= d:
            raise BadParameterError(f"k as a count must lie in 1..{d}, got {k}")
        kk = int(k)
    meta: dict[str, Any] = {"metric": "topk_intersection", "k": kk, "use_raw": used, "higher_is_better": True}
    for name, f in (("expl_a", fa), ("expl_b", fb)):
        const = f.amax(1) == f.amin(1)
        if bool(const.any()):
            meta.setdefault("constant_maps", {})[name] = const.nonzero().flatten().tolist()
            warnings.warn(f"topk_intersection: constant maps in {name}; their top-k is arbitrary", stacklevel=2)
    ma = torch.zeros_like(fa, dtype=torch.bool).scatter_(1, fa.topk(kk, 1).indices, True)
    mb = torch.zeros_like(fb, dtype=torch.bool).scatter_(1, fb.topk(kk, 1).indices, True)
    return MetricResult(scores=((ma & mb).sum(1).float() / kk), meta=meta)


# ---------------------------------------------------------------------------------------------------- MeGe / ReCo
def spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman ρ of each row pair (average ranks for ties); NaN where a row is constant."""
    from scipy.stats import rankdata

    ra, rb = rankdata(a, axis=1), rankdata(b, axis=1)
    ra = ra - ra.mean(1, keepdims=True)
    rb = rb - rb.mean(1, keepdims=True)
    den = np.sqrt((ra * ra).sum(1) * (rb * rb).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (ra * rb).sum(1) / np.where(den > 0, den, 1.0), np.nan)


def reco_score(s_eq: np.ndarray, s_ne: np.ndarray) -> float:
    """ReCo = max_γ (TPR_γ + TNR_γ − 1) ≥ 0 over every (⌊len/20⌋+1)-th sorted pooled distance (xplique)."""
    pooled = np.sort(np.concatenate([s_eq, s_ne]))
    reco = 0.0
    for g in pooled[:: len(pooled) // 20 + 1]:
        tp, fn = np.sum(s_eq < g), np.sum(s_eq > g)
        tn, fp = np.sum(s_ne > g), np.sum(s_ne < g)
        reco = max(reco, tp / (tp + fn + 1e-10) + tn / (tn + fp + 1e-10) - 1.0)
    return float(reco)


def mege(
    models: Sequence[ModelAdapter | nn.Module],
    fold_of_sample: Any,
    x: Tensor,
    y: TargetLike,
    method: str,
    *,
    use_raw: bool = False,
    **params: Any,
) -> tuple[float, float]:
    """MeGe (representativity) and ReCo (consistency) of ``method`` (Fel, Vigouroux et al., WACV 2022; xplique
    ``MeGe``, spec §1.6).

    ``models[i]`` was trained on every fold except fold i; ``fold_of_sample[n]`` ∈ 0..k−1 is the fold of sample n;
    ``y`` the labels (explained class). For each pair i < j and each sample of fold i or j with at least one correct
    prediction, the distance √(1 − |ρ_Spearman(φ_i, φ_j)|) goes to S⁼ (same prediction) or S≠; φ = the method's 2-D
    map, or with ``use_raw=True`` the signed channel mean of its ``raw`` attribution (xplique's reduction).
    MeGe = 1 / (1 + mean S⁼) ∈ (0, 1]; ReCo as :func:`reco_score`. Distances of constant maps are dropped
    (warning); with no S⁼ MeGe is NaN, with no S≠ ReCo is 0 (xplique's value), each with a warning.
    ``params`` go to :func:`spixel.explain`.
    """
    from ..api import explain
    from ..attribution._core import prepare_input
    from ..models.adapter import as_adapter

    k = len(models)
    if k < 2:
        raise BadParameterError(f"mege needs at least 2 models (one per fold), got {k}")
    adapters = [as_adapter(m) for m in models]
    xb = prepare_input(adapters[0], x)
    n = xb.shape[0]
    folds = torch.as_tensor(np.asarray(fold_of_sample)).long().reshape(-1).numpy()
    if folds.shape[0] != n or folds.min() < 0 or folds.max() >= k:
        raise BadParameterError(f"fold_of_sample needs one fold id in 0..{k - 1} per sample ({n} samples)")
    if y is None:
        raise BadParameterError("mege needs the labels y (one per sample)")
    yt = torch.as_tensor(np.asarray(y.cpu() if isinstance(y, Tensor) else y)).long().reshape(-1)
    if yt.numel() == 1 and n > 1:
        yt = yt.expand(n).clone()
    if yt.numel() != n:
        raise BadParameterError(f"got {yt.numel()} labels for {n} samples")
    preds, phis = [], []
    for ad in adapters:
        with torch.no_grad(), frozen(ad.module):
            preds.append(ad.module(xb.to(ad.device)).argmax(1).cpu().numpy())
        e = explain(ad, xb.to(ad.device), method, target=yt, **params)
        if use_raw and e.raw is None:
            raise BadInputError(f"use_raw=True but {method} gives no raw attribution")
        phis.append(e.raw.mean(1) if use_raw else e.attribution)
    return mege_from_maps(preds, phis, folds, yt.numpy())


def mege_from_maps(preds: Sequence[Any], maps: Sequence[Any], fold_of_sample: Any, labels: Any) -> tuple[float, float]:
    """MeGe and ReCo (see :func:`mege`) from each fold model's predictions ``preds[i]`` ``(n,)`` and maps
    ``maps[i]`` ``(n, ...)`` (flattened per sample) of the same ``n`` samples with fold ids and ``labels``."""
    k = len(preds)
    folds = np.asarray(fold_of_sample).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    preds = [np.asarray(p.cpu() if isinstance(p, Tensor) else p).reshape(-1) for p in preds]
    n = labels.shape[0]
    phis = [
        np.nan_to_num(np.asarray(m.detach().double().cpu() if isinstance(m, Tensor) else m, float).reshape(n, -1))
        for m in maps
    ]
    s_eq, s_ne = [], []
    dropped = 0
    for i in range(k):
        for j in range(i + 1, k):
            sel = np.isin(folds, (i, j)) & ((preds[i] == labels) | (preds[j] == labels))
            if not sel.any():
                continue
            d = np.sqrt(1.0 - np.abs(spearman_rows(phis[i][sel], phis[j][sel])))
            same = preds[i][sel] == preds[j][sel]
            ok = ~np.isnan(d)
            dropped += int((~ok).sum())
            s_eq.append(d[ok & same])
            s_ne.append(d[ok & ~same])
    eq = np.concatenate(s_eq) if s_eq else np.zeros(0)
    ne = np.concatenate(s_ne) if s_ne else np.zeros(0)
    if dropped:
        warnings.warn(f"mege: dropped {dropped} distances of constant maps", stacklevel=2)
    if eq.size == 0:
        warnings.warn(
            "mege: no pair of models agreed on a sample they explain (S= is empty); MeGe is NaN", stacklevel=2
        )
        m = float("nan")
    else:
        m = float(1.0 / (1.0 + eq.mean()))
    if ne.size == 0:
        warnings.warn("mege: no pair of models disagreed (S!= is empty); ReCo is 0", stacklevel=2)
    return m, reco_score(eq, ne)


METRICS.register(
    "ssim",
    higher_is_better=True,
    category="stability",
    reference="Wang et al. 2004; paper 000 protocols A/B (PAIR VisualizeImageGrayscale); spec §1.6",
    scores_explanation=False,
    params={"protocol": "B", "use_raw": None, "sigma": 1.5},
)(ssim)
METRICS.register(
    "topk_intersection",
    higher_is_better=True,
    category="stability",
    reference="paper 000 sibling code saliency_diff.py; spec §1.6",
    scores_explanation=False,
    params={"k": 0.1, "use_raw": None},
)(topk_intersection)
METRICS.register(
    "mege",
    higher_is_better=True,
    category="stability",
    reference="Fel, Vigouroux et al. 2022 (WACV), xplique representativity.py; spec §1.6",
    scores_explanation=False,
    params={"use_raw": False},
)(mege)

"""Localisation metrics: pointing game, outside–inside ratio, MaxBoxAccV2, weak localisation (spec §5.5, §6.6, §6.10).

Ground truth is given as ``masks=`` — boolean ``(N, H, W)`` at input resolution — or ``boxes=`` — per image a list
of ``(x0, y0, x1, y1)`` in input pixels with exclusive ends. Metrics that need boxes derive them from masks as the
tight boxes of the mask's 8-connected components.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
import torch
from torch import Tensor

from ..errors import BadInputError, BadParameterError
from ..filters import gaussian_window, separable_conv
from ..models.adapter import ModelAdapter
from ..types import Explanation, MetricResult
from .base import metric

Box = tuple[int, int, int, int]


# ---------------------------------------------------------------------------------------------------- ground truth
def _check_boxes(boxes: Any, n: int, h: int, w: int) -> list[list[Box]]:
    if len(boxes) != n:
        raise BadInputError(f"boxes= needs one list of boxes per image: got {len(boxes)} lists for {n} images")
    out: list[list[Box]] = []
    for i, bl in enumerate(boxes):
        bl = np.asarray(bl, dtype=float).reshape(-1, 4) if len(bl) else np.zeros((0, 4))
        cur: list[Box] = []
        for b in bl:
            x0, y0, x1, y1 = (round(float(v)) for v in b)
            x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
            if x1 <= x0 or y1 <= y0:
                raise BadInputError(
                    f"image {i}: box {tuple(b)} is empty inside the {w}x{h} input; boxes are (x0, y0, x1, y1) "
                    "in input pixels with x1 > x0 and y1 > y0 (exclusive ends)"
                )
            cur.append((x0, y0, x1, y1))
        if not cur:
            raise BadInputError(f"image {i} has no ground-truth box; drop it from the batch")
        out.append(cur)
    return out


def _check_masks(masks: Any, n: int, h: int, w: int, device: torch.device) -> Tensor:
    m = torch.as_tensor(np.asarray(masks) if not isinstance(masks, Tensor) else masks)
    if m.ndim == 2:
        m = m.unsqueeze(0)
    if m.ndim == 4 and m.shape[1] == 1:
        m = m[:, 0]
    if tuple(m.shape) != (n, h, w):
        raise BadInputError(f"masks= must have shape (N, H, W) = {(n, h, w)}, got {tuple(m.shape)}")
    m = m.to(device) != 0
    empty = ~m.flatten(1).any(1)
    if bool(empty.any()):
        raise BadInputError(f"image {int(empty.nonzero()[0])} has an empty ground-truth mask; drop it from the batch")
    return m


def ground_truth_masks(masks: Any, boxes: Any, n: int, h: int, w: int, device: torch.device) -> Tensor:
    """Boolean ``(N, H, W)`` ground truth from ``masks=`` or the union of ``boxes=``."""
    if (masks is None) == (boxes is None):
        raise BadParameterError("give the ground truth as exactly one of masks= (N, H, W) or boxes= (per image a list)")
    if masks is not None:
        return _check_masks(masks, n, h, w, device)
    out = torch.zeros(n, h, w, dtype=torch.bool, device=device)
    for i, bl in enumerate(_check_boxes(boxes, n, h, w)):
        for x0, y0, x1, y1 in bl:
            out[i, y0:y1, x0:x1] = True
    return out


def ground_truth_boxes(masks: Any, boxes: Any, n: int, h: int, w: int) -> list[list[Box]]:
    """Per image the ground-truth boxes (exclusive ends); from masks: tight boxes of 8-connected components."""
    if (masks is None) == (boxes is None):
        raise BadParameterError("give the ground truth as exactly one of masks= (N, H, W) or boxes= (per image a list)")
    if boxes is not None:
        return _check_boxes(boxes, n, h, w)
    m = _check_masks(masks, n, h, w, torch.device("cpu")).numpy().astype(np.uint8)
    out = []
    for i in range(n):
        k, _, stats, _ = cv2.connectedComponentsWithStats(m[i], connectivity=8)
        out.append([(int(s[0]), int(s[1]), int(s[0] + s[2]), int(s[1] + s[3])) for s in stats[1:k]])
    return out


def _maps(explanation: Explanation) -> Tensor:
    return explanation.attribution.detach().float()


def _warn_constant(a: Tensor, name: str, meta: dict[str, Any], what: str) -> Tensor:
    flat = a.flatten(1)
    const = flat.amax(1) == flat.amin(1)
    if bool(const.any()):
        idx = const.nonzero().flatten().tolist()
        warnings.warn(f"{name}: the maps of images {idx} are constant; {what}", stacklevel=3)
        meta["constant_maps"] = idx
    return const


# ---------------------------------------------------------------------------------------------------- pointing game
def _gaussian_smooth(a: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur, kernel truncated at ⌈4σ⌉, zero padding (as TorchRay's ``imsmooth``)."""
    k = gaussian_window(sigma, int(np.ceil(4 * sigma)), dtype=a.dtype, device=a.device)
    return separable_conv(a.unsqueeze(1), k, "zeros")[:, 0]


@metric(
    "pointing_game",
    higher_is_better=True,
    category="localisation",
    reference="Zhang et al. 2018 (Excitation Backprop); TorchRay pointing_game.py; spec §5.5",
)
def pointing_game(
    model: ModelAdapter,
    x: Tensor,
    explanation: Explanation,
    target: Tensor,
    masks: Any = None,
    boxes: Any = None,
    tolerance: float = 15.0,
    smooth: float = 0.0,
) -> MetricResult:
    """1 when the map's arg-max point lies closer than ``tolerance`` pixels (Euclidean, strictly, as TorchRay's
    ``PointingGame.evaluate``) to a ground-truth pixel, or on one, else 0.

    TorchRay's protocol (spec §5.5): the point is the first arg-max in row-major order of the map, optionally
    after Gaussian smoothing with σ = ``smooth``·max(H, W) (TorchRay uses 0.02 for gradient methods);
    ``tolerance=0`` requires the point itself to be a ground-truth pixel (Quantus ``PointingGame``, which however
    counts a hit when *any* of several tied maxima is inside). The data set score is the mean (TorchRay averages
    per class first: group ``scores`` by class for that).
    """
    if tolerance < 0 or smooth < 0:
        raise BadParameterError("tolerance and smooth must be >= 0")
    a = _maps(explanation)
    n, h, w = a.shape
    gt = ground_truth_masks(masks, boxes, n, h, w, a.device)
    if smooth > 0:
        a = _gaussian_smooth(a, smooth * max(h, w))
    meta: dict[str, Any] = {}
    _warn_constant(a, "pointing_game", meta, "their arg-max point is the top-left pixel (TorchRay's convention)")
    idx = a.flatten(1).argmax(1)
    py, px = (idx // w).float(), (idx % w).float()
    ys = torch.arange(h, device=a.device, dtype=torch.float32).view(1, h, 1)
    xs = torch.arange(w, device=a.device, dtype=torch.float32).view(1, 1, w)
    d2 = (ys - py.view(-1, 1, 1)) ** 2 + (xs - px.view(-1, 1, 1)) ** 2
    # TorchRay accepts the disk d² < tolerance² (strict); the point itself always counts (Quantus at tolerance 0)
    hit = (((d2 < float(tolerance) ** 2) | (d2 == 0)) & gt).flatten(1).any(1)
    meta["points"] = torch.stack([py, px], 1).long().cpu()
    return MetricResult(scores=hit.float().cpu(), meta=meta)


# ---------------------------------------------------------------------------------------------------- outside / inside
@metric(
    "outside_inside_ratio",
    higher_is_better=False,
    category="localisation",
    reference="Lapuschkin et al. 2016; Nam et al. (RAP/RSP/AE) eq 16; spec §5.5",
)
def outside_inside_ratio(
    model: ModelAdapter,
    x: Tensor,
    explanation: Explanation,
    target: Tensor,
    masks: Any = None,
    boxes: Any = None,
) -> MetricResult:
    """μ = mean positive relevance outside the ground truth / mean positive relevance inside (lower is better).

    The positive part of each map is normalised to max 1 (the ratio does not depend on it). A map without positive
    relevance scores 1 (no preference) and a map with none inside scores ``inf``; a ground truth covering the
    whole image scores 0; each with a warning and its image indices in ``meta``.
    """
    a = _maps(explanation).clamp_min(0)
    n, h, w = a.shape
    gt = ground_truth_masks(masks, boxes, n, h, w, a.device).flatten(1)
    a = a.flatten(1)
    a = a / a.amax(1, keepdim=True).clamp_min(torch.finfo(a.dtype).tiny)
    n_in = gt.sum(1)
    n_out = (~gt).sum(1)
    mean_in = (a * gt).sum(1) / n_in
    mean_out = (a * ~gt).sum(1) / n_out.clamp_min(1)
    ratio = mean_out / mean_in
    meta: dict[str, Any] = {}
    zero = a.amax(1) == 0
    none_in = (mean_in == 0) & ~zero
    full = n_out == 0
    ratio[none_in] = float("inf")
    ratio[zero] = 1.0
    ratio[full] = 0.0
    for mask, key, msg in (
        (zero, "zero_maps", "have no positive relevance; they score 1"),
        (none_in, "no_relevance_inside", "have no positive relevance inside the ground truth; they score inf"),
        (full, "full_ground_truth", "have a ground truth covering the whole image; they score 0"),
    ):
        if bool(mask.any()):
            idx = mask.nonzero().flatten().tolist()
            warnings.warn(f"outside_inside_ratio: the maps of images {idx} {msg}", stacklevel=2)
            meta[key] = idx
    return MetricResult(scores=ratio.cpu(), meta=meta)


# ---------------------------------------------------------------------------------------------------- MaxBoxAccV2
def _iou_inclusive(est: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """IoU of every (est, gt) pair of boxes with inclusive corner coordinates (wsolevaluation's convention)."""
    e, g = est[:, None, :], gt[None, :, :]
    iw = np.minimum(e[..., 2], g[..., 2]) - np.maximum(e[..., 0], g[..., 0]) + 1
    ih = np.minimum(e[..., 3], g[..., 3]) - np.maximum(e[..., 1], g[..., 1]) + 1
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_e = (e[..., 2] - e[..., 0] + 1) * (e[..., 3] - e[..., 1] + 1)
    area_g = (g[..., 2] - g[..., 0] + 1) * (g[..., 3] - g[..., 1] + 1)
    return inter / (area_e + area_g - inter)


def _contour_boxes(binary: np.ndarray, multi_contour: bool) -> np.ndarray:
    """Boxes of the contours of a uint8 binary map, wsolevaluation's ``scoremap2bbox`` (inclusive, clipped ends)."""
    h, w = binary.shape
    contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[-2]
    if len(contours) == 0:
        return np.zeros((1, 4), dtype=np.int64)
    if not multi_contour:
        contours = [max(contours, key=cv2.contourArea)]
    boxes = []
    for c in contours:
        bx, by, bw, bh = cv2.boundingRect(c)
        boxes.append([bx, by, min(bx + bw, w - 1), min(by + bh, h - 1)])
    return np.asarray(boxes, dtype=np.int64)


def _normalise_scoremap(m: np.ndarray) -> np.ndarray:
    if m.min() == m.max():
        return np.zeros_like(m)
    m = m - m.min()
    return m / m.max()


def box_iou_curves(
    maps: np.ndarray, gt_boxes: list[list[Box]], thresholds: np.ndarray, multi_contour: bool = True
) -> np.ndarray:
    """``(N, T)``: per image and threshold τ, the best IoU between the boxes of the map's contours above τ and the
    ground-truth boxes (wsolevaluation ``compute_bboxes_from_scoremaps`` + ``calculate_multiple_iou``)."""
    out = np.zeros((len(maps), len(thresholds)))
    for i, m in enumerate(maps):
        img = (_normalise_scoremap(m.astype(np.float32)) * 255).astype(np.uint8)
        gt = np.asarray([(x0, y0, x1 - 1, y1 - 1) for x0, y0, x1, y1 in gt_boxes[i]], dtype=np.int64)
        vmax = int(img.max())
        cache: dict[int, float] = {}
        for j, tau in enumerate(thresholds):
            thr = int(tau * vmax)
            if thr not in cache:
                _, binary = cv2.threshold(img, thr, 255, cv2.THRESH_BINARY)
                cache[thr] = float(_iou_inclusive(_contour_boxes(binary, multi_contour), gt).max())
            out[i, j] = cache[thr]
    return out


@metric(
    "max_box_acc_v2",
    higher_is_better=True,
    category="localisation",
    reference="Choe et al. 2020 (wsolevaluation, CVPR); spec §6.6",
    batch_dependent=True,  # the best threshold is chosen over the batch: the engine scores items one by one
)
def max_box_acc_v2(
    model: ModelAdapter,
    x: Tensor,
    explanation: Explanation,
    target: Tensor,
    masks: Any = None,
    boxes: Any = None,
    iou_thresholds: Sequence[float] = (0.3, 0.5, 0.7),
    cam_curve_interval: float = 0.01,
    multi_contour: bool = True,
) -> MetricResult:
    """MaxBoxAccV2 of the batch (wsolevaluation): mean over δ ∈ ``iou_thresholds`` of max over τ of BoxAcc(δ, τ).

    Each map is min-max normalised (a constant map becomes zeros, with a warning), scaled to uint8 and binarised
    with ``cv2.threshold(thresh=int(τ·max))`` (strictly greater) for τ ∈ ``arange(0, 1, cam_curve_interval)``;
    the boxes of all contours (``cv2.RETR_TREE``; ``multi_contour=False``: the largest only = V1) are matched to the
    ground-truth boxes. The best τ is chosen on the whole batch, so evaluate a data set in one call (or combine
    ``curves`` — per-image best IoU at each τ, x-axis in ``meta["x"]``). ``scores[i]`` = the fraction of δ at which
    image i is correct at its δ's best τ, so ``scores.mean()`` = MaxBoxAccV2 (in [0, 1]); ``meta`` has
    ``max_box_acc_v2``, ``box_acc`` per δ and the best thresholds.
    """
    if not 0 < cam_curve_interval < 1:
        raise BadParameterError(f"cam_curve_interval must lie in (0, 1), got {cam_curve_interval}")
    deltas = [float(d) for d in iou_thresholds]
    if not deltas or any(not 0 < d <= 1 for d in deltas):
        raise BadParameterError(f"iou_thresholds must be fractions in (0, 1], got {iou_thresholds}")
    a = _maps(explanation)
    n, h, w = a.shape
    gt = ground_truth_boxes(masks, boxes, n, h, w)
    meta: dict[str, Any] = {}
    _warn_constant(a, "max_box_acc_v2", meta, "they become all-zero score maps (no box)")
    taus = np.arange(0, 1, cam_curve_interval)
    curves = box_iou_curves(a.cpu().numpy(), gt, taus, multi_contour)
    scores = np.zeros(n)
    box_acc, best_tau = {}, {}
    for d in deltas:
        correct = curves >= d  # (N, T)
        acc = correct.mean(0)
        j = int(acc.argmax())
        box_acc[d], best_tau[d] = float(acc[j]), float(taus[j])
        scores += correct[:, j]
    scores /= len(deltas)
    meta.update(
        x=torch.as_tensor(taus, dtype=torch.float32),
        box_acc=box_acc,
        best_threshold=best_tau,
        max_box_acc_v2=float(np.mean(list(box_acc.values()))),
    )
    return MetricResult(
        scores=torch.as_tensor(scores, dtype=torch.float32),
        curves=torch.as_tensor(curves, dtype=torch.float32),
        meta=meta,
    )


# ---------------------------------------------------------------------------------------------------- weak localisation
def binarise(a: Tensor, mode: str = "value", tau: float = 0.15) -> Tensor:
    """Boolean ``(N, H, W)`` masks by spec §6.10: ``value`` — pixels ≥ τ·max; ``mean`` — pixels ≥ the map's mean;
    ``energy`` — the top pixels holding ≥ 50 % of the non-negative mass (pixels tied with the last one included;
    an all-zero map gives an empty mask)."""
    flat = a.flatten(1)
    if mode == "value":
        keep = flat >= tau * flat.amax(1, keepdim=True)
    elif mode == "mean":
        keep = flat >= flat.mean(1, keepdim=True)
    elif mode == "energy":
        pos = flat.clamp_min(0)
        srt = pos.sort(1, descending=True).values
        csum = srt.cumsum(1)
        total = csum[:, -1:]
        k = (csum < 0.5 * total).sum(1, keepdim=True).clamp_max(flat.shape[1] - 1)
        thr = srt.gather(1, k)
        keep = (pos >= thr) & (pos > 0)
    else:
        raise BadParameterError(f"threshold must be 'value', 'mean' or 'energy', got {mode!r}")
    return keep.view_as(a)


def largest_component_box(mask: np.ndarray, connectivity: int = 8) -> Box | None:
    """Tight box (exclusive ends) of the largest connected component of a boolean mask; ``None`` if empty."""
    k, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=connectivity)
    if k <= 1:
        return None
    j = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x0, y0, bw, bh = (int(v) for v in stats[j, :4])
    return x0, y0, x0 + bw, y0 + bh


def box_iou(a: Box, b: Box) -> float:
    """IoU of two boxes with exclusive ends."""
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


@metric(
    "weak_localization",
    higher_is_better=True,
    category="localisation",
    reference="Selvaraju et al. 2017 (Grad-CAM); Fong & Vedaldi 2017 (energy); paper 001 Table 5; spec §6.10",
)
def weak_localization(
    model: ModelAdapter,
    x: Tensor,
    explanation: Explanation,
    target: Tensor,
    masks: Any = None,
    boxes: Any = None,
    threshold: str = "value",
    tau: float = 0.15,
    iou: float = 0.5,
    connectivity: int = 8,
) -> MetricResult:
    """1 when the tight box of the largest connected component of the binarised map has IoU > ``iou`` with a
    ground-truth box, else 0. ``threshold``: ``value`` (≥ ``tau``·max), ``mean`` (≥ mean) or ``energy`` (50 % of
    the mass) — see :func:`binarise`. ``meta["error"]`` = the localisation error 100·(1 − accuracy) in %."""
    if connectivity not in (4, 8):
        raise BadParameterError(f"connectivity must be 4 or 8, got {connectivity}")
    a = _maps(explanation)
    n, h, w = a.shape
    gt = ground_truth_boxes(masks, boxes, n, h, w)
    meta: dict[str, Any] = {}
    _warn_constant(a, "weak_localization", meta, "their binarisation is all or nothing")
    keep = binarise(a, threshold, tau).cpu().numpy()
    scores = torch.zeros(n)
    pred: list[Box | None] = []
    for i in range(n):
        b = largest_component_box(keep[i], connectivity)
        pred.append(b)
        if b is not None and max(box_iou(b, g) for g in gt[i]) > iou:
            scores[i] = 1.0
    meta.update(boxes=pred, error=100.0 * (1.0 - float(scores.mean())))
    return MetricResult(scores=scores, meta=meta)

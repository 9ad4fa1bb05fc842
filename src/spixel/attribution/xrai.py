"""XRAI (Kapishnikov et al., ICCV 2019): greedy region ranking of a base attribution (spec §6.3).

Semantics follow PAIR saliency's ``saliency/core/xrai.py`` (``XRAI.GetMask``, ``flatten_xrai_segments=True``):

* **base attribution**: integrated gradients from two constant baselines, the image's min and max (one scalar
  per image over all channels and pixels, in the space the model takes), ``n_steps`` equally spaced α in [0, 1]
  including both ends, plain mean (our ``rule="mean"``, PAIR's ``x_steps`` loop); the two maps are averaged, then
  reduced by the (signed) max over channels. ``base_attribution=`` skips this, like PAIR's argument.
* **segments**: Felzenszwalb at every scale of ``scales`` (σ = 0.8, ``min_size`` = 150) on the image rescaled to
  [−1, 1] and resized to 224×224 (bicubic, anti-aliased), labels resized back (nearest), one mask per label
  value, each dilated by ``disk(dilation_radius)``; masks overlap. (A constant image, NaN in PAIR, is segmented
  as constant.) ``segments=`` (PAIR's argument) and
  ``regions=`` (a partition) are used as given, not dilated.
* **selection** (``algorithm="full"``): repeatedly add the mask whose *not yet covered* part has the highest
  mean attribution (gain density); masks adding fewer than ``min_pixel_diff`` new pixels are dropped; stop once
  the covered fraction exceeds ``area_threshold`` or no mask is left. A pixel's value is the gain of the step
  that covered it; pixels never covered get their own mean attribution. ``"fast"``: masks are sorted once by
  the mean attribution over the whole mask (ties keep the input order) and added in that order, each
  pixel getting the mean over the new part of the mask that covered it (``area_threshold`` is ignored, as in
  PAIR).

Vectorised in torch: masks are stored as (mask, pixel) pairs in two CSR orders; a greedy step gathers the
chosen masks' pixels and subtracts the newly covered pixels from the counts and sums of every mask containing
them, so all the greedy steps together touch each (mask, pixel) pair at most twice. All images of a batch advance
together. Gains are accumulated in float64.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import BadInputError, BadParameterError
from ..models.adapter import ModelAdapter
from ..types import Explanation, Segmentation, TargetLike
from ._core import check_float, check_int, collect_params, explainer, finish, logits_and_targets
from .gradients import integrated_gradients

#: PAIR's Felzenszwalb settings (``_FELZENSZWALB_*`` in ``saliency/core/xrai.py``)
FELZENSZWALB_SCALES = (50, 100, 150, 250, 500, 1200)
SEGMENT_SIZE = (224, 224)
ALGORITHMS = ("full", "fast")
_IMAGE_CHUNK = 16  # images segmented and selected together (memory: their dense masks and (mask, pixel) pairs)


# ---------------------------------------------------------------------------------------------- segments
def disk_dilate(masks: Tensor, radius: int) -> Tensor:
    """Binary dilation of boolean masks ``(K, H, W)`` by skimage's ``disk(radius)`` (``dx² + dy² ≤ r²``);
    outside the image counts as empty. The disk is a union of centred rows: dilate along x by each row's
    half-width (incrementally), then OR the row results shifted along y."""
    if radius <= 0:
        return masks.clone()
    w = masks.shape[-1]
    h = masks.shape[-2]
    half = [math.isqrt(radius * radius - dy * dy) for dy in range(radius + 1)]
    rows: dict[int, Tensor] = {0: masks}
    cur = masks
    for k in range(1, max(half) + 1):
        cur = cur.clone()
        if k < w:
            cur[..., k:] |= masks[..., :-k]
            cur[..., :-k] |= masks[..., k:]
        rows[k] = cur
    out = rows[half[0]].clone()
    for dy in range(1, min(radius, h - 1) + 1):
        r = rows[half[dy]]
        out[..., dy:, :] |= r[..., :-dy, :]
        out[..., :-dy, :] |= r[..., dy:, :]
    return out


def _felzenszwalb_labels(im: np.ndarray, scales: Sequence[float], sigma: float, min_size: int) -> list[np.ndarray]:
    """PAIR's ``_get_segments_felzenszwalb`` up to the masks: rescale ``im`` (HWC) to [−1, 1] by its global
    min/max, resize to 224×224, segment at every scale, resize the labels back (nearest)."""
    from skimage.segmentation import felzenszwalb
    from skimage.transform import resize

    shape = im.shape[:2]
    lo, hi = np.min(im), np.max(im)
    # a constant image would divide by zero (NaN in PAIR); any constant gives the same segmentation
    im = (im - lo) / (hi - lo) if hi > lo else np.zeros_like(im)
    im = im * 2.0 - 1.0
    im = resize(im, SEGMENT_SIZE, order=3, mode="constant", preserve_range=True, anti_aliasing=True)
    out = []
    for scale in scales:
        seg = felzenszwalb(im, scale=scale, sigma=sigma, min_size=min_size)
        seg = resize(seg, shape, order=0, preserve_range=True, mode="constant", anti_aliasing=False).astype(int)
        out.append(seg)
    return out


def xrai_segments(
    rgb01: Tensor,
    *,
    scales: Sequence[float] = FELZENSZWALB_SCALES,
    sigma: float = 0.8,
    min_size: int = 150,
    dilation_radius: int = 5,
) -> list[Tensor]:
    """XRAI's default multi-scale segments of each image of ``rgb01`` ``(N, 3, H, W)``: a list of boolean
    ``(M_i, H, W)`` masks on ``rgb01``'s device, in PAIR's order (scale by scale, then label value; a label that
    vanished in the nearest resize gives an empty mask, as in PAIR), dilated by ``disk(dilation_radius)``.

    Felzenszwalb runs in skimage on the CPU (it holds the GIL, so images run one after the other); one-hot
    encoding and dilation run in torch on the device.
    """
    imgs = rgb01.detach().permute(0, 2, 3, 1).cpu().numpy()
    out = []
    for im in imgs:
        labs = _felzenszwalb_labels(im, scales, sigma, min_size)
        masks = []
        for lab in labs:
            t = torch.from_numpy(lab).to(rgb01.device)
            ids = torch.arange(int(lab.min()), int(lab.max()) + 1, device=rgb01.device)
            masks.append(t.unsqueeze(0) == ids.view(-1, 1, 1))
        out.append(disk_dilate(torch.cat(masks), dilation_radius))
    return out


def _as_mask_lists(segments: Any, n: int, hw: tuple[int, int], device: torch.device) -> list[Tensor]:
    """PAIR-style ``segments`` → one boolean ``(M_i, H, W)`` tensor per image.

    One image: a list of boolean ``(H, W)`` masks (arrays or tensors) or a ``(M, H, W)`` boolean array/tensor.
    A batch: a list of ``n`` such items, or an ``(N, M, H, W)`` boolean array/tensor.
    """

    def one(item: Any) -> Tensor:
        if isinstance(item, (list, tuple)):
            if len(item) == 0:
                return torch.zeros((0, *hw), dtype=torch.bool, device=device)
            try:
                item = torch.stack([torch.as_tensor(np.asarray(m) if not isinstance(m, Tensor) else m) for m in item])
            except (TypeError, ValueError, RuntimeError) as e:
                raise BadInputError(f"segments: the masks of an image must be boolean (H, W) arrays ({e})") from None
        t = torch.as_tensor(np.asarray(item)) if not isinstance(item, Tensor) else item
        if t.dtype != torch.bool or t.ndim != 3 or tuple(t.shape[1:]) != hw:
            raise BadInputError(
                f"segments must be boolean masks of the image size {hw} (a list of (H, W) masks or an (M, H, W) "
                f"array per image), got {t.dtype} {tuple(t.shape)}"
            )
        return t.to(device)

    def depth(item: Any) -> int:
        if isinstance(item, (Tensor, np.ndarray)):
            return item.ndim
        if isinstance(item, (list, tuple)):
            return 1 + (depth(item[0]) if item else 2)
        raise BadInputError(f"segments must be lists of boolean masks, got {type(item).__name__}")

    d = depth(segments)
    if d == 3:  # one image
        if n != 1:
            raise BadInputError(f"segments describe one image but the batch has {n}: give a list of {n} mask lists")
        return [one(segments)]
    if d == 4:
        if len(segments) != n:
            raise BadInputError(f"segments has {len(segments)} entries for a batch of {n} images")
        return [one(s) for s in segments]
    raise BadInputError("segments must be a list of (H, W) boolean masks per image (a list of such lists for N > 1)")


def _as_base(base: Any, x: Tensor) -> Tensor:
    """``base_attribution`` → float64 ``(N, H, W)`` on ``x``'s device.

    Accepted (numpy or torch, or an :class:`Explanation`, whose ``attribution`` is used): ``(N, H, W)``;
    ``(N, C, H, W)``; for one image (``N == 1``) also ``(H, W)`` and PAIR's own ``(H, W, C)``. Channels are reduced
    by the (signed) max, as PAIR's ``attr.max(axis=-1)``. A 3-D input is told apart by matching ``x``'s ``H, W``:
    ``(N, H, W)`` when its last two dims are ``(H, W)`` and its first is ``N``, ``(H, W, C)`` when ``N == 1`` and
    its first two dims are ``(H, W)`` (both at once only for ``H = W = C = 1``, where they agree).
    """
    n, _, h, w = x.shape
    if isinstance(base, Explanation):
        base = base.attribution
    try:
        t = torch.as_tensor(np.ascontiguousarray(base)) if not isinstance(base, Tensor) else base.detach()
    except (TypeError, ValueError, RuntimeError):
        raise BadInputError(
            f"base_attribution must be a tensor, an array or an Explanation, got {type(base).__name__}"
        ) from None
    if not t.is_floating_point():
        t = t.double()
    shape0 = tuple(t.shape)
    if t.ndim == 2 and n == 1 and shape0 == (h, w):
        t = t.unsqueeze(0)
    elif t.ndim == 3 and shape0 != (n, h, w) and n == 1 and shape0[:2] == (h, w) and shape0[2] > 0:
        t = t.amax(-1).unsqueeze(0)  # PAIR's (H, W, C)
    elif t.ndim == 4 and shape0[0] == n and shape0[2:] == (h, w) and shape0[1] > 0:
        t = t.amax(1)
    if tuple(t.shape) != (n, h, w):
        one = f", or for one image (H, W) = ({h}, {w}) or PAIR's (H, W, C) = ({h}, {w}, C)" if n == 1 else ""
        raise BadInputError(
            f"base_attribution must have shape (N, H, W) = ({n}, {h}, {w}) or (N, C, H, W) = ({n}, C, {h}, {w})"
            f"{one} (any C), got {shape0}"
        )
    if not torch.isfinite(t).all():
        raise BadInputError("base_attribution contains NaN or infinite values")
    return t.to(device=x.device, dtype=torch.float64)


def ig_min_max(model: ModelAdapter, x: Tensor, targets: Tensor, n_steps: int = 100, batch_size: int = 16) -> Tensor:
    """XRAI's base attribution ``(N, H, W)``: IG (``rule="mean"``) from the constant baselines ``min x_i`` and
    ``max x_i`` (per image, over all channels), averaged, then the max over channels (PAIR ``XRAI``).

    Both baselines run through one :func:`~spixel.attribution.gradients.integrated_gradients` call on the
    stacked batch ``[x; x]``, so the chunks of ``batch_size`` interpolated images stay full.
    """
    n = x.shape[0]
    flat = x.flatten(1)
    xx = torch.cat([x, x])
    # the baselines as a full tensor in x's memory format: the interpolated images then keep it (a broadcast
    # (2N, 1, 1, 1) baseline gives contiguous NCHW copies; channels-last, what ModelAdapter.preprocess returns,
    # runs a CNN's forward+backward faster on the CPU)
    base = torch.empty_like(xx).copy_(torch.cat([flat.amin(1), flat.amax(1)]).view(-1, 1, 1, 1))
    e = integrated_gradients(
        model,
        xx,
        torch.cat([targets, targets]),
        baseline=base,
        n_steps=n_steps,
        rule="mean",
        batch_size=batch_size,
    )
    raw = e.raw.view(2, n, *x.shape[1:])
    return ((raw[0] + raw[1]) / 2).amax(1)


# ---------------------------------------------------------------------------------------------- selection
def _ranges(ptr: Tensor, ids: Tensor) -> Tensor:
    """Concatenation of ``arange(ptr[k], ptr[k + 1])`` for every ``k`` in ``ids``."""
    starts = ptr[ids]
    lens = ptr[ids + 1] - starts
    total = int(lens.sum())
    if total == 0:
        return torch.zeros(0, dtype=torch.long, device=ptr.device)
    offs = torch.cumsum(lens, 0) - lens
    return torch.repeat_interleave(starts - offs, lens, output_size=total) + torch.arange(total, device=ptr.device)


def _ptr(counts: Tensor) -> Tensor:
    return torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])


def xrai_select(
    attr: Tensor,
    masks: Sequence[Tensor],
    algorithm: str = "full",
    area_threshold: float = 1.0,
    min_pixel_diff: int = 50,
) -> tuple[Tensor, Tensor, Tensor]:
    """XRAI's region selection (PAIR ``XRAI._xrai`` / ``_xrai_fast``) for a batch.

    ``attr``: ``(N, H, W)``; ``masks``: one boolean ``(M_i, H, W)`` tensor per image (may overlap, may be empty).
    Returns the XRAI map ``(N, H, W)`` float64, the rank of the region that covers each pixel ``(N, H, W)``
    (1 = highest gain; the never-covered rest ranks last, PAIR's ``flatten_xrai_segments``) and the number of
    masks added per image ``(N,)``.
    """
    n, h, w = attr.shape
    p = h * w
    dev = attr.device
    a = attr.reshape(-1).to(torch.float64)
    m = max([int(k.shape[0]) for k in masks] + [1])
    # (mask, pixel) pairs with global ids, mask-major (nonzero is row-major)
    gm_l, gp_l = [], []
    for i, mk in enumerate(masks):
        nz = mk.reshape(mk.shape[0], p).nonzero()
        gm_l.append(nz[:, 0] + i * m)
        gp_l.append(nz[:, 1] + i * p)
    gm, gp = torch.cat(gm_l), torch.cat(gp_l)
    cnt = torch.bincount(gm, minlength=n * m)
    sums = torch.zeros(n * m, dtype=torch.float64, device=dev).index_add_(0, gm, a[gp])
    mask_ptr = _ptr(cnt)

    covered = torch.zeros(n * p, dtype=torch.bool, device=dev)
    value = torch.zeros(n * p, dtype=torch.float64, device=dev)
    step_of = torch.zeros(n * p, dtype=torch.long, device=dev)
    gains: list[Tensor] = []  # per step: (N,) gain of the added region, -inf where an image added none
    rows = torch.arange(n, device=dev)
    neg_inf = torch.tensor(-math.inf, dtype=torch.float64, device=dev)

    if algorithm == "full":
        order = torch.argsort(gp, stable=True)
        pix_mask, pix_pix = gm[order], gp[order]  # pixel-major
        pix_ptr = _ptr(torch.bincount(gp, minlength=n * p))
        area = torch.zeros(n, dtype=torch.long, device=dev)
        while True:
            cand = (cnt >= min_pixel_diff).view(n, m)
            gain = torch.where(cand, sums.view(n, m) / cnt.view(n, m).clamp_min(1), neg_inf)
            best = gain.argmax(1)  # first maximum, like PAIR's strict ">" over masks in input order
            go = cand.any(1) & (area.double() / p <= area_threshold)
            if not bool(go.any()):
                break
            g = torch.where(go, gain[rows, best], neg_inf)
            pix = gp[_ranges(mask_ptr, (rows * m + best)[go])]
            new = pix[~covered[pix]]
            img = torch.div(new, p, rounding_mode="floor")
            covered[new] = True
            value[new] = g[img]
            step_of[new] = len(gains)
            gains.append(g)
            area += torch.bincount(img, minlength=n)
            # the new pixels leave the uncovered part of every mask that contains them
            idx = _ranges(pix_ptr, new)
            mm = pix_mask[idx]
            cnt -= torch.bincount(mm, minlength=n * m)
            sums.index_add_(0, mm, -a[pix_pix[idx]])
    elif algorithm == "fast":
        dens = torch.where(cnt > 0, sums / cnt.clamp_min(1), neg_inf).view(n, m)
        rank = torch.sort(dens, dim=1, descending=True, stable=True).indices
        n_added = torch.zeros(n, dtype=torch.long, device=dev)
        steps = torch.full((n, m), -math.inf, dtype=torch.float64, device=dev)
        last = int((cnt.view(n, m) > 0).sum(1).max())  # empty masks sort last and are always skipped
        for j in range(last):
            pix = gp[_ranges(mask_ptr, rows * m + rank[:, j])]
            new = pix[~covered[pix]]
            img = torch.div(new, p, rounding_mode="floor")
            c = torch.bincount(img, minlength=n)
            ok = c >= min_pixel_diff
            keep = ok[img]
            new, img = new[keep], img[keep]
            g = torch.zeros(n, dtype=torch.float64, device=dev).index_add_(0, img, a[new]) / c.clamp_min(1)
            covered[new] = True
            value[new] = g[img]
            step_of[new] = n_added[img]
            steps[rows[ok], n_added[ok]] = g[ok]
            n_added += ok.long()
        gains = list(steps.T)
    else:
        raise BadParameterError(f"algorithm must be one of {', '.join(ALGORITHMS)}, got {algorithm!r}")

    # ranks: regions sorted by gain (descending, ties in order of addition); the uncovered rest ranks last
    s = max(len(gains), 1)
    g_all = torch.stack(gains, 1) if gains else torch.full((n, 1), -math.inf, dtype=torch.float64, device=dev)
    n_regions = torch.isfinite(g_all).sum(1)
    order = torch.sort(g_all, dim=1, descending=True, stable=True).indices
    rank_of_step = torch.empty((n, s), dtype=torch.long, device=dev)
    rank_of_step.scatter_(1, order, torch.arange(1, s + 1, device=dev).expand(n, s))
    img_all = torch.arange(n, device=dev).repeat_interleave(p)
    ranks = torch.where(covered, rank_of_step[img_all, step_of], n_regions[img_all] + 1)
    # never covered: the mean attribution over those pixels (PAIR keeps the total of the base attribution there)
    free = ~covered
    c_free = torch.bincount(img_all[free], minlength=n)
    s_free = torch.zeros(n, dtype=torch.float64, device=dev).index_add_(0, img_all[free], a[free])
    value = torch.where(free, (s_free / c_free.clamp_min(1))[img_all], value)
    return value.view(n, h, w), ranks.view(n, h, w), n_regions


# ---------------------------------------------------------------------------------------------- explainer
@explainer("xrai", family="region", reduction="gain density of the greedily added region")
def xrai(
    model: ModelAdapter,
    x: Tensor,
    target: TargetLike = None,
    *,
    base_attribution: Tensor | np.ndarray | Explanation | None = None,
    segments: Any = None,
    regions: Any = None,
    region_params: dict[str, Any] | None = None,
    n_steps: int = 100,
    algorithm: str = "full",
    area_threshold: float = 1.0,
    min_pixel_diff: int = 50,
    dilation_radius: int = 5,
    scales: Sequence[float] = FELZENSZWALB_SCALES,
    felzenszwalb_sigma: float = 0.8,
    min_size: int = 150,
    batch_size: int = 16,
) -> Explanation:
    """XRAI (Kapishnikov et al. 2019; PAIR saliency ``XRAI``, spec §6.3): region-ranked integrated gradients.

    ``base_attribution``: a map ``(N, H, W)``, ``(N, C, H, W)`` (max over channels), for one image also ``(H, W)``
    or PAIR's ``(H, W, C)`` (numpy or torch), or an Explanation (its ``attribution``) to rank instead of the
    default IG (``n_steps``, ``batch_size``; see the module docstring); the target then only enters ``meta``.
    ``segments``: PAIR-style boolean masks (one image: a list of
    ``(H, W)`` masks; a batch: a list of such lists or an ``(N, M, H, W)`` array), used as given. ``regions``: a
    segmenter name (with ``region_params``), a ``Segmenter`` or a ``Segmentation`` whose regions are the masks.
    Without either,
    XRAI's multi-scale Felzenszwalb (``scales``, ``felzenszwalb_sigma``, ``min_size``) dilated by
    ``disk(dilation_radius)``. ``algorithm``: ``"full"`` (greedy on the uncovered parts, until
    ``area_threshold`` of the image is covered) or ``"fast"``; masks adding fewer than ``min_pixel_diff``
    (≥ 1) new pixels are skipped. The explanation's ``segmentation`` holds the added regions, ids in order of
    rank (0 = most important); ``meta`` has ``n_masks`` (candidates) and ``n_regions`` (added) per image.
    """
    t0 = time.perf_counter()
    check_int("n_steps", n_steps, lo=2)
    check_int("batch_size", batch_size)
    check_int("min_pixel_diff", min_pixel_diff, lo=1)
    check_int("dilation_radius", dilation_radius, lo=0)
    check_int("min_size", min_size, lo=0)
    check_float("area_threshold", area_threshold, lo=0.0, hi=1.0)
    check_float("felzenszwalb_sigma", felzenszwalb_sigma, lo=0.0, hi=100.0)
    if algorithm not in ALGORITHMS:
        raise BadParameterError(f"algorithm must be one of {', '.join(ALGORITHMS)}, got {algorithm!r}")
    if isinstance(scales, (str, bytes)) or not isinstance(scales, Sequence) or len(scales) == 0:
        raise BadParameterError(f"scales must be a non-empty sequence of positive numbers, got {scales!r}")
    for s in scales:
        check_float("scales", s, lo=0.0, hi=1e9, lo_open=True)
    if segments is not None and regions is not None:
        raise BadParameterError("give segments= or regions=, not both")
    if region_params is not None and not isinstance(regions, str):
        raise BadParameterError("region_params only apply when regions is a segmenter name")

    n, _, h, w = x.shape
    logits, t = logits_and_targets(model, x, target)
    given = _as_base(base_attribution, x) if base_attribution is not None else None
    rgb01 = model.to_rgb01(x)
    if segments is not None:
        user = _as_mask_lists(segments, n, (h, w), x.device)
        source = "segments"
    elif regions is not None:
        from ..segmentation.base import resolve_regions

        seg = resolve_regions(regions, rgb01, region_params, n, model=model)
        assert seg is not None
        source = f"regions:{seg.meta.get('segmenter', 'segmentation')}"
    else:
        source = "felzenszwalb"

    def masks_of(lo: int, hi: int) -> list[Tensor]:
        if segments is not None:
            return user[lo:hi]
        if regions is not None:
            return [seg.masks(i).to(x.device) for i in range(lo, hi)]
        return xrai_segments(
            rgb01[lo:hi], scales=scales, sigma=felzenszwalb_sigma, min_size=min_size, dilation_radius=dilation_radius
        )

    attr = given if given is not None else ig_min_max(model, x, t, n_steps, batch_size)
    # images are segmented and selected in chunks: the dense masks take M·H·W bytes per image
    value, ranks, n_regions, n_masks = [], [], [], []
    for lo in range(0, n, _IMAGE_CHUNK):
        hi = min(lo + _IMAGE_CHUNK, n)
        masks = masks_of(lo, hi)
        out = xrai_select(attr[lo:hi], masks, algorithm, float(area_threshold), min_pixel_diff)
        for acc, v in zip((value, ranks, n_regions), out, strict=True):
            acc.append(v)
        n_masks += [int(k.shape[0]) for k in masks]
        del masks
    params = collect_params(
        locals(),
        [
            "n_steps",
            "algorithm",
            "area_threshold",
            "min_pixel_diff",
            "dilation_radius",
            "scales",
            "felzenszwalb_sigma",
            "min_size",
            "batch_size",
        ],
    )
    params["scales"] = list(scales)
    params["segments"] = source
    if region_params:
        params["region_params"] = dict(region_params)
    params["base_attribution"] = "given" if base_attribution is not None else "integrated_gradients(min, max)"
    e = finish(model, "xrai", torch.cat(value), None, logits, t, params, None, t0)
    e.meta["n_masks"] = n_masks
    e.meta["n_regions"] = torch.cat(n_regions).tolist()
    return replace(e, segmentation=Segmentation(torch.cat(ranks) - 1, {"segmenter": "xrai", "source": source}))

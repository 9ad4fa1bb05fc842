"""Perturbation methods on one batched mask engine: LIME (spec §6.4), RISE (spec §6.1) and occlusion.

Every method reduces to the same loop (:func:`perturbed_scores`): a list of (image, sample) pairs, a function
that builds each pair's keep-mask on the model's device (binary region masks for LIME and region occlusion,
sliding windows for occlusion, continuous up-sampled grids for RISE), and a fill that replaces what the mask
removes. The pairs of *all* images are cut into chunks of ``batch_size`` rows (a forward pass mixes samples of
several images), each chunk is built by one in-place ``lerp_`` / ``addcmul`` (occlusion: its windows written into
a copy of the rows) and sent through the model once, and the target's probability or logit is kept. There is no
Python loop over samples or images in the hot path.

Fills (``fill=``), all in the model's *normalised* input space:

- ``"zero"``: 0, i.e. the dataset mean colour (RISE's ``x ⊙ M``, Captum's default baseline);
- ``"mean"``: every region filled with its own mean colour (lime's ``hide_color=None``; needs regions);
- ``"blur"``: the image blurred by RISE's 11×11 ``gkern`` of σ = 5 with zero padding (its insertion substrate,
  spec §6.2; :func:`spixel.filters.gaussian_blur`, the same blur as the metrics' ``"blur"`` substrate);
- a number (a constant in normalised space) or a tensor broadcastable to the input ``(N, 3, H, W)``.

Common parameters: ``batch_size`` = rows per forward pass (``None``: the device's default, below);
``output`` = ``"probability"`` (the target's softmax) or ``"logit"``.
Progress: ``progress=True`` shows a tqdm bar, ``False`` never; ``None`` (default) shows one once the first
chunks predict a run longer than :data:`AUTO_PROGRESS_SECONDS`.

Default ``batch_size`` (``None``): :data:`ROWS_PER_THREAD` rows per CPU thread (``torch.get_num_threads()``,
at most 64) on the CPU, :data:`BATCH_SIZE_ACCELERATOR` elsewhere. The CPU rule comes from forward-only sweeps
(interleaved, several rounds) on the 2-core CPU with EfficientNet-Lite0 at 224 px on channels-last input, the
layout the engine feeds: with two threads the per-image time was lowest at 8 rows (12.3 ms; 15.7 ms at 16,
18.7 ms at 32), with one thread at 4–8 rows — larger chunks fall out of the cache. Taken while other jobs
loaded the machine, so the figures are noisy, but the order was the same in every round.
The accelerator value is not measured here (no GPU was available): it only needs to keep the device busy.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import BadParameterError
from ..filters import gaussian_blur
from ..models.adapter import ModelAdapter
from ..regions import paint, pool
from ..types import Explanation, Segmentation, TargetLike
from ._core import check_float, check_int, collect_params, explainer, finish, logits_and_targets, make_generator

FILLS = ("zero", "mean", "blur")
OUTPUTS = ("probability", "logit")
#: rows per forward pass and CPU thread (see the module docstring for how it was chosen)
ROWS_PER_THREAD = 4
#: the engine's own default when called directly
BATCH_SIZE = 16
#: rows per forward pass on an accelerator (CUDA, MPS …)
BATCH_SIZE_ACCELERATOR = 64
#: ``progress=None`` shows a bar when a run is predicted to take longer than this (seconds)
AUTO_PROGRESS_SECONDS = 10.0
#: lime's default quickshift settings (``LimeImageExplainer.explain_instance``), used by :func:`lime` when
#: ``regions="quickshift"`` and no ``region_params`` are given
LIME_QUICKSHIFT = {"kernel_size": 4, "max_dist": 200, "ratio": 0.2}

MaskFn = Callable[[Tensor, Tensor], Tensor]
RowsFn = Callable[[Tensor, Tensor], Tensor]
Accumulate = Callable[[Tensor, Tensor, Any, Tensor], None]


# ---------------------------------------------------------------------------------------------- fills
def fill_image(x: Tensor, fill: str | float | Tensor, seg: Segmentation | None = None) -> Tensor:
    """The ``(N, 3, H, W)`` image that replaces the removed parts of ``x`` (see the module docstring)."""
    if isinstance(fill, Tensor):
        f = fill.to(device=x.device, dtype=x.dtype)
        try:
            return torch.broadcast_to(f, x.shape).contiguous()
        except RuntimeError:
            raise BadParameterError(
                f"a fill tensor must broadcast to the input {tuple(x.shape)}, got {tuple(f.shape)}"
            ) from None
    if isinstance(fill, str):
        if fill == "zero":
            return torch.zeros_like(x)
        if fill == "blur":
            return gaussian_blur(x)
        if fill == "mean":
            if seg is None:
                raise BadParameterError(
                    "fill='mean' fills each region with its mean colour and needs regions; pass regions= "
                    "or use fill='zero', 'blur', a number or a tensor"
                )
            return paint(pool(x, seg, "mean"), seg)
        raise BadParameterError(f"fill must be one of {', '.join(FILLS)}, a number or a tensor, got {fill!r}")
    if isinstance(fill, bool):
        raise BadParameterError(f"fill must be one of {', '.join(FILLS)}, a number or a tensor, got {fill!r}")
    return torch.full_like(x, check_float("fill", fill, lo=-1e6, hi=1e6))


# ---------------------------------------------------------------------------------------------- the engine
class _Progress:
    """A tqdm bar that is always (``True``), never (``False``) or lazily (``None``: predicted > N s) shown."""

    def __init__(self, total: int, mode: bool | None, desc: str) -> None:
        self.total, self.mode, self.desc = total, mode, desc
        self.t0 = time.perf_counter()
        self.done = 0
        self.bar: Any = None
        if mode:
            self._open()

    def _open(self) -> None:
        try:
            from tqdm.auto import tqdm
        except ImportError:  # pragma: no cover - tqdm is a dependency
            self.mode = False
            return
        self.bar = tqdm(total=self.total, initial=self.done, desc=self.desc, unit="img", leave=False)

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.mode is None and self.done < self.total:
            predicted = (time.perf_counter() - self.t0) * self.total / self.done
            if predicted > AUTO_PROGRESS_SECONDS:
                self._open()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def resolve_batch_size(batch_size: int | None, device: torch.device) -> int:
    """``batch_size``, or the device's default when ``None`` (see the module docstring)."""
    if batch_size is None:
        if device.type == "cpu":
            return min(64, ROWS_PER_THREAD * max(1, torch.get_num_threads()))
        return BATCH_SIZE_ACCELERATOR
    return check_int("batch_size", batch_size)


def check_output(output: str) -> str:
    if output not in OUTPUTS:
        raise BadParameterError(f"output must be one of {', '.join(OUTPUTS)}, got {output!r}")
    return output


def target_scores(logits: Tensor, targets: Tensor, output: str) -> Tensor:
    """The target's softmax probability or logit of every row, float32 ``(B,)``."""
    z = logits.float()
    if output == "probability":
        z = z.softmax(-1)
    return z.gather(1, targets.view(-1, 1)).view(-1)


@torch.no_grad()
def perturbed_scores(
    model: ModelAdapter,
    x: Tensor,
    fill: Tensor,
    targets: Tensor,
    images: Tensor,
    samples: Tensor,
    mask_fn: MaskFn | None,
    *,
    batch_size: int = BATCH_SIZE,
    output: str = "probability",
    accumulate: Accumulate | None = None,
    progress: bool | None = None,
    desc: str = "perturbations",
    rows_fn: RowsFn | None = None,
) -> Tensor:
    """Model outputs on the perturbed images of all (image, sample) pairs: the engine of this module.

    ``images``, ``samples``: long ``(P,)`` pair indices (any order; the methods use sample-major order so a
    chunk holds consecutive samples of all images). ``mask_fn(images_chunk, samples_chunk)`` returns the
    chunk's keep-masks on ``x``'s device, ``(B, H, W)``: boolean (kept pixels are ``x``, the rest ``fill``,
    exactly) or float in [0, 1] (``fill + M ⊙ (x − fill)``, RISE's ``x ⊙ M`` when the fill is 0).
    ``rows_fn(images_chunk, samples_chunk)``, given instead of ``mask_fn``, returns the chunk's perturbed
    images itself (occlusion writes its windows into a copy of the rows; ``accumulate`` then gets ``None`` for
    the masks). ``accumulate(images_chunk, samples_chunk, masks, scores)`` is called on every chunk (RISE and
    occlusion sum masks weighted by scores there, so masks are never stored). Returns the target scores ``(P,)``
    (float32, ``output``: ``"probability"`` or ``"logit"``) on ``x``'s device.

    The perturbed rows keep ``x``'s memory format (``x[i]`` preserves it; channels-last, which
    ``ModelAdapter.preprocess`` returns, runs convolutional models much faster on the CPU). A boolean mask is
    applied by one in-place ``lerp_`` towards the fill with weight ``1 − M`` (exact: a weight of 0 keeps ``x``
    and a weight of 1 gives the fill, bit for bit), several times faster on the CPU than ``torch.where``.
    """
    if (mask_fn is None) == (rows_fn is None):
        raise BadParameterError("perturbed_scores needs exactly one of mask_fn and rows_fn")
    dev = x.device
    images, samples = images.to(dev), samples.to(dev)
    diff: Tensor | None = None
    out = torch.empty(images.shape[0], dtype=torch.float32, device=dev)
    bar = _Progress(int(images.shape[0]), progress, desc)
    try:
        for s in range(0, images.shape[0], batch_size):
            i, k = images[s : s + batch_size], samples[s : s + batch_size]
            m: Tensor | None = None
            if rows_fn is not None:
                xs = rows_fn(i, k)
            else:
                assert mask_fn is not None
                m = mask_fn(i, k)
                if m.dtype == torch.bool:
                    xs = x[i].lerp_(fill[i], (~m).unsqueeze(1).to(x.dtype))
                else:
                    diff = x - fill if diff is None else diff
                    xs = torch.addcmul(fill[i], m.unsqueeze(1).to(x.dtype), diff[i])
            scores = target_scores(model.module(xs), targets[i], output)
            out[s : s + batch_size] = scores
            if accumulate is not None:
                accumulate(i, k, m, scores)
            bar.update(int(i.shape[0]))
    finally:
        bar.close()
    return out


def region_masks(seg: Segmentation, keep: Tensor, images: Tensor) -> Tensor:
    """Pixel keep-masks ``(B, H, W)`` of rows ``keep`` ``(B, K_max)`` (bool) over the regions of ``images``."""
    lab = seg.labels[images].flatten(1)
    return keep.gather(1, lab).view(-1, *seg.shape)


# ---------------------------------------------------------------------------------------------- regions
def _describe(regions: Any) -> Any:
    if regions is None or isinstance(regions, str):
        return regions
    if isinstance(regions, Segmentation):
        return f"Segmentation(N={len(regions)}, max_segments={regions.max_segments})"
    return repr(regions)


def segmentation_of(model: ModelAdapter, x: Tensor, regions: Any, region_params: dict[str, Any] | None) -> Segmentation:
    """Resolve ``regions=`` (a segmenter name, a ``Segmenter`` or a ``Segmentation``) on the de-normalised batch.

    The image segmenters (``quickshift``, ``slic`` …) are imported on first use.
    """
    from ..registry import SEGMENTERS
    from ..segmentation.base import resolve_regions

    if isinstance(regions, str) and regions not in SEGMENTERS:
        try:
            import importlib

            importlib.import_module("spixel.segmentation.image")
        except ImportError:
            pass
    if region_params is not None and not isinstance(region_params, dict):
        raise BadParameterError(f"region_params must be a dict of segmenter parameters, got {region_params!r}")
    seg = resolve_regions(regions, model.to_rgb01(x), region_params, model=model)
    if seg is None:
        raise BadParameterError("regions is required: a segmenter name, a Segmenter or a Segmentation")
    return seg.to(x.device)


def _with(e: Explanation, seg: Segmentation | None, **meta: Any) -> Explanation:
    return replace(e, segmentation=seg, meta={**e.meta, **meta})


# ---------------------------------------------------------------------------------------------- LIME
def lime_samples(seg: Segmentation, n_samples: int, gen_seed: int) -> Tensor:
    """LIME's binary keep-matrix ``(N, S, K_max)`` (bool): row 0 all ones, the rest i.i.d. fair coins.

    Image ``i`` draws ``torch.randint(0, 2, (S, K_i))`` from a CPU generator seeded with ``gen_seed`` (lime
    draws ``randint(0, 2, S·K)`` from its RandomState), so its samples depend only on the seed and its number
    of regions, never on the rest of the batch. Columns past ``K_i`` are False. torch's CPU generator and
    numpy's legacy ``RandomState`` are the same Mersenne Twister, seeded alike, and both take one 32-bit draw
    per coin, so these are exactly the samples of ``LimeImageExplainer(random_state=gen_seed)`` when
    ``explain_instance`` is given ``random_seed`` (else it spends one draw on it first) — tested.
    """
    ks = seg.num_segments.tolist()
    z = torch.zeros(len(ks), n_samples, seg.max_segments, dtype=torch.bool)
    for i, k in enumerate(ks):
        g = torch.Generator().manual_seed(gen_seed)
        z[i, :, :k] = torch.randint(0, 2, (n_samples, k), generator=g).bool()
        z[i, 0, :k] = True
    return z


def _lime_samples_arg(samples: Any, seg: Segmentation) -> Tensor:
    """Validate a user ``samples=`` keep-matrix ``(S, K)`` or ``(N, S, K)`` → bool ``(N, S, K_max)``."""
    if not isinstance(samples, Tensor):
        try:
            import numpy as np

            samples = torch.as_tensor(np.asarray(samples))
        except (TypeError, ValueError):
            raise BadParameterError("samples must be a binary (S, K) or (N, S, K) tensor") from None
    z = samples.unsqueeze(0).expand(len(seg), -1, -1) if samples.ndim == 2 else samples
    n, k = len(seg), seg.max_segments
    if z.ndim != 3 or z.shape[0] != n or z.shape[1] < 1 or z.shape[2] < k:
        raise BadParameterError(
            f"samples must be (S, K) or (N={n}, S, K) with K >= the number of regions ({k}), got {tuple(samples.shape)}"
        )
    if not bool(((z == 0) | (z == 1)).all()):
        raise BadParameterError("samples must hold 0/1 values")
    z = z[:, :, :k].bool().cpu().clone()
    valid = torch.arange(k).view(1, -1) < seg.num_segments.cpu().view(-1, 1)
    return z & valid.unsqueeze(1)


def lime_kernel(z: Tensor, n_regions: Tensor, kernel_width: float) -> Tensor:
    """Sample weights ``sqrt(exp(−d²/w²))`` with ``d`` the cosine distance of each row of ``z`` ``(N, S, K)`` to the
    all-ones vector of ``n_regions`` ``(N,)`` entries (lime_image: ``pairwise_distances(metric='cosine')``, no
    ×100 — that is lime_text/tabular): ``d = 1 − sqrt(|z| / K)``, and 1 for an all-zero row (sklearn's convention).
    """
    ones = z.sum(-1, dtype=torch.float64)
    d = 1.0 - torch.sqrt(ones / n_regions.view(-1, 1).to(torch.float64))
    return torch.sqrt(torch.exp(-(d**2) / kernel_width**2))


def weighted_ridge(x: Tensor, y: Tensor, w: Tensor, alpha: float = 1.0) -> tuple[Tensor, Tensor, Tensor]:
    """Batched ``sklearn.linear_model.Ridge(alpha, fit_intercept=True).fit(x, y, sample_weight=w)`` in closed form.

    ``x`` ``(N, S, K)``, ``y``, ``w`` ``(N, S)``, ``alpha > 0``. Centre by the weighted means, solve
    ``(X_cᵀ W X_c + α I) β = X_cᵀ W y_c``, ``b = ȳ − x̄ᵀβ``. All-zero columns get β = 0 (padding).
    Returns ``(coef (N, K), intercept (N,), weighted R² (N,))`` in float64.
    """
    x, y, w = x.double(), y.double(), w.double()
    sw = w.sum(1, keepdim=True)
    xm = (w.unsqueeze(-1) * x).sum(1, keepdim=True) / sw.unsqueeze(-1)
    ym = (w * y).sum(1, keepdim=True) / sw
    xc, yc = x - xm, y - ym
    xw = xc * w.unsqueeze(-1)
    a = xw.transpose(1, 2) @ xc
    a = a + alpha * torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
    b = xw.transpose(1, 2) @ yc.unsqueeze(-1)
    coef = torch.linalg.solve(a, b).squeeze(-1)
    intercept = ym.squeeze(1) - (xm.squeeze(1) * coef).sum(1)
    res = y - (x @ coef.unsqueeze(-1)).squeeze(-1) - intercept.unsqueeze(1)
    ss_res = (w * res**2).sum(1)
    ss_tot = (w * yc**2).sum(1)
    r2 = torch.where(ss_tot > 0, 1 - ss_res / ss_tot.clamp_min(1e-300), (ss_res <= 1e-24).double())
    return coef, intercept, r2


@explainer("lime", family="perturbation", reduction="surrogate weight of each region", stochastic=True)
def lime(
    model: ModelAdapter,
    x: Tensor,
    target: TargetLike = None,
    *,
    regions: Any = "quickshift",
    region_params: dict[str, Any] | None = None,
    n_samples: int = 1000,
    kernel_width: float = 0.25,
    alpha: float = 1.0,
    fill: str | float | Tensor = "mean",
    output: str = "probability",
    samples: Tensor | None = None,
    batch_size: int | None = None,
    progress: bool | None = None,
    seed: int | None = None,
) -> Explanation:
    """LIME for images (Ribeiro et al. 2016) with the lime package's semantics (spec §6.4).

    ``n_samples`` binary keep-vectors over the regions (row 0 all ones, the others fair coins); each perturbed
    image keeps the regions that are on and fills the others (``fill="mean"``: each region with its own mean
    colour = lime's ``hide_color=None``; ``"zero"`` = the mean colour of the dataset); the surrogate is a
    weighted ridge regression (``alpha``, intercept) of the target's probability (``output``) on the keep-vectors
    with weights ``sqrt(exp(−d²/kernel_width²))``, ``d`` the cosine distance to the all-ones vector. Map = each
    region's surrogate weight painted on its pixels. lime's default ``num_features=100000`` with
    ``feature_selection='auto'`` keeps every region (its 'highest_weights' only reorders them), so all are used.

    ``regions``: a segmenter name (default ``"quickshift"`` with lime's ``kernel_size=4, max_dist=200, ratio=0.2``
    unless ``region_params`` is given), a ``Segmenter`` or a ready ``Segmentation``. ``samples``: a 0/1
    ``(S, K)`` or ``(N, S, K)`` keep-matrix used as given instead of drawing (``n_samples`` is then ignored;
    columns past an image's region count are ignored). Random draws: :func:`lime_samples`.
    ``meta`` adds ``score`` (the surrogate's weighted R², lime's ``score``) and ``intercept`` per image.
    """
    t0 = time.perf_counter()
    check_int("n_samples", n_samples)
    batch_size = resolve_batch_size(batch_size, x.device)
    kernel_width = check_float("kernel_width", kernel_width, lo_open=True)
    alpha = check_float("alpha", alpha, lo_open=True)
    check_output(output)
    if isinstance(regions, str) and regions == "quickshift" and region_params is None:
        region_params = dict(LIME_QUICKSHIFT)
    _, seed = make_generator(seed)
    seg = segmentation_of(model, x, regions, region_params)
    logits, t = logits_and_targets(model, x, target)
    fill_x = fill_image(x, fill, seg)
    z = lime_samples(seg, n_samples, seed) if samples is None else _lime_samples_arg(samples, seg)
    n, s_count, _ = z.shape
    n_samples = s_count  # recorded: the count actually used (``samples`` overrides ``n_samples``)
    zd = z.to(x.device)
    pairs = torch.arange(n * s_count, device=x.device)
    img, smp = pairs % n, pairs // n  # sample-major: a chunk holds the same samples of every image

    def masks(i: Tensor, k: Tensor) -> Tensor:
        return region_masks(seg, zd[i, k], i)

    y = (
        perturbed_scores(
            model, x, fill_x, t, img, smp, masks, batch_size=batch_size, output=output, progress=progress, desc="lime"
        )
        .view(s_count, n)
        .T
    )
    weights = lime_kernel(zd, seg.num_segments.to(x.device), kernel_width)
    coef, intercept, r2 = weighted_ridge(zd, y, weights, alpha)
    attribution = paint(coef.float(), seg)
    params = collect_params(locals(), ["n_samples", "kernel_width", "alpha", "output", "batch_size"])
    params.update(
        regions=_describe(regions),
        region_params=region_params,
        samples=_describe_samples(samples),
        fill=fill if not isinstance(fill, Tensor) else f"tensor{tuple(fill.shape)}",
    )
    e = finish(model, "lime", attribution, None, logits, t, params, seed, t0)
    return _with(e, seg, score=r2.tolist(), intercept=intercept.tolist(), seconds=time.perf_counter() - t0)


def _describe_samples(samples: Any) -> Any:
    return None if samples is None else f"tensor{tuple(samples.shape)}"


# ---------------------------------------------------------------------------------------------- RISE
def rise_grids(
    n_masks: int, grid_size: int, p1: float, size: tuple[int, int], gen: torch.Generator
) -> tuple[Tensor, Tensor, Tensor]:
    """RISE's random draws, on the CPU in this order: ``grid = rand(S, s, s) < p1``, then the row shifts
    ``randint(0, cell_h, (S,))``, then the column shifts ``randint(0, cell_w, (S,))``, with
    ``cell = ceil(size / s)`` per axis (eclique/RISE ``generate_masks``)."""
    h, w = size
    grid = torch.rand(n_masks, grid_size, grid_size, generator=gen) < p1
    ch, cw = math.ceil(h / grid_size), math.ceil(w / grid_size)
    sh = torch.randint(0, ch, (n_masks,), generator=gen)
    sw = torch.randint(0, cw, (n_masks,), generator=gen)
    return grid, sh, sw


def rise_masks(grid: Tensor, sh: Tensor, sw: Tensor, size: tuple[int, int]) -> Tensor:
    """Up-sample binary grids ``(B, s, s)`` bilinearly to ``(s+1)·cell``, crop ``size`` at the shifts → ``(B, H, W)``.

    eclique/RISE uses ``skimage.transform.resize(order=1, mode='reflect', anti_aliasing=False)``; this is
    ``F.interpolate(mode='bilinear', align_corners=False)`` on the grids' device: the same half-pixel sampling,
    but edge-clamped instead of mirrored, so the two differ only in the outer half grid-cell of the up-sampled
    mask (within half a cell of its border: rows/columns a shift can move into the crop at the top/left).
    """
    h, w = size
    s = grid.shape[-1]
    up = (s + 1) * math.ceil(h / s), (s + 1) * math.ceil(w / s)
    big = F.interpolate(grid.unsqueeze(1).float(), size=up, mode="bilinear", align_corners=False)[:, 0]
    dev = big.device
    rows = sh.to(dev).view(-1, 1) + torch.arange(h, device=dev)
    cols = sw.to(dev).view(-1, 1) + torch.arange(w, device=dev)
    b = torch.arange(big.shape[0], device=dev).view(-1, 1, 1)
    return big[b, rows.unsqueeze(-1), cols.unsqueeze(1)]


@explainer("rise", family="perturbation", reduction="score-weighted mean of random masks", stochastic=True)
def rise(
    model: ModelAdapter,
    x: Tensor,
    target: TargetLike = None,
    *,
    n_masks: int = 4000,
    grid_size: int = 7,
    p1: float = 0.5,
    fill: str | float | Tensor = "zero",
    output: str = "probability",
    batch_size: int | None = None,
    progress: bool | None = None,
    seed: int | None = None,
) -> Explanation:
    """RISE (Petsiuk et al. 2018; eclique/RISE, spec §6.1): ``S = (1 / (n_masks · p1)) Σ_m p_t(x ⊙ M_m) M_m``.

    Masks: binary ``grid_size``² grids with cells on with probability ``p1``, bilinearly up-sampled to
    ``(grid_size+1)·cell`` and randomly shifted (:func:`rise_grids`, :func:`rise_masks` — see there for the
    border difference to the original's skimage resize). As in the original, ``x ⊙ M`` multiplies the
    *normalised* tensor (``fill="zero"``: removed pixels go to the mean colour); other fills blend
    ``fill + M ⊙ (x − fill)``. ``p_t`` = the target's softmax probability (``output="logit"`` for logits).
    The masks are drawn on the CPU from ``seed`` (device-independent), built chunk by chunk on the device and
    shared by the images of the batch.
    """
    t0 = time.perf_counter()
    check_int("n_masks", n_masks)
    check_int("grid_size", grid_size)
    batch_size = resolve_batch_size(batch_size, x.device)
    p1 = check_float("p1", p1, lo=0.0, hi=1.0, lo_open=True)
    check_output(output)
    gen, seed = make_generator(seed)
    logits, t = logits_and_targets(model, x, target)
    n, _, h, w = x.shape
    if grid_size > min(h, w):
        raise BadParameterError(f"grid_size ({grid_size}) must not exceed the image size {h}×{w}")
    fill_x = fill_image(x, fill)
    grid, sh, sw = rise_grids(n_masks, grid_size, p1, (h, w), gen)
    grid = grid.to(x.device)
    sal = torch.zeros(n, h, w, dtype=torch.float32, device=x.device)

    def masks(_i: Tensor, k: Tensor) -> Tensor:
        lo, hi = int(k[0]), int(k[-1]) + 1  # sample-major: a chunk is a contiguous range of masks
        return rise_masks(grid[lo:hi], sh[lo:hi], sw[lo:hi], (h, w))[k - lo]

    def accumulate(i: Tensor, _k: Tensor, m: Tensor, scores: Tensor) -> None:
        sal.index_add_(0, i, scores.view(-1, 1, 1) * m.float())

    pairs = torch.arange(n * n_masks, device=x.device)
    perturbed_scores(
        model,
        x,
        fill_x,
        t,
        pairs % n,
        pairs // n,
        masks,
        batch_size=batch_size,
        output=output,
        accumulate=accumulate,
        progress=progress,
        desc="rise",
    )
    sal /= n_masks * p1
    params = collect_params(locals(), ["n_masks", "grid_size", "p1", "output", "batch_size"])
    params["fill"] = fill if not isinstance(fill, Tensor) else f"tensor{tuple(fill.shape)}"
    return finish(model, "rise", sal, None, logits, t, params, seed, t0)


# ---------------------------------------------------------------------------------------------- occlusion
def window_starts(size: int, window: int, stride: int) -> Tensor:
    """Start offsets of the sliding windows along one axis (Captum ``Occlusion``): ``ceil((size−window)/stride)+1``
    windows at ``0, stride, …``; the last may run past the border (it is then cut off)."""
    count = math.ceil((size - window) / stride) + 1
    return torch.arange(count) * stride


@explainer("occlusion", family="perturbation", reduction="mean score drop over the windows covering a pixel")
def occlusion(
    model: ModelAdapter,
    x: Tensor,
    target: TargetLike = None,
    *,
    window: int = 16,
    stride: int = 8,
    fill: str | float | Tensor = "zero",
    output: str = "logit",
    regions: Any = None,
    region_params: dict[str, Any] | None = None,
    batch_size: int | None = None,
    progress: bool | None = None,
) -> Explanation:
    """Occlusion (Zeiler & Fergus 2014) with Captum ``Occlusion`` semantics.

    A ``window``×``window`` patch slides with ``stride`` (:func:`window_starts`; all channels at once); each
    pixel's attribution is the mean, over the windows that cover it, of ``f(x) − f(x with the window filled)``.
    ``f`` is the target's logit by default (Captum uses the forward output as given; ``output="probability"``
    for the softmax probability). ``fill``: see the module docstring (``"zero"`` = Captum's default baseline 0).

    With ``regions`` (a segmenter name with ``region_params``, a ``Segmenter`` or a ``Segmentation``) the
    regions are occluded one at a time instead of windows (region ablation): each region's map value is the
    score drop when it alone is filled, and ``window``/``stride`` are unused.
    """
    t0 = time.perf_counter()
    batch_size = resolve_batch_size(batch_size, x.device)
    check_output(output)
    logits, t = logits_and_targets(model, x, target)
    f0 = target_scores(logits, t, output)
    n, _, h, w = x.shape
    dev = x.device
    if regions is not None:
        seg = segmentation_of(model, x, regions, region_params)
        fill_x = fill_image(x, fill, seg)
        ks = seg.num_segments.to(dev)
        k_max = seg.max_segments
        valid = (torch.arange(k_max, device=dev).view(1, -1) < ks.view(-1, 1)).T.reshape(-1)  # region-major
        pairs = torch.arange(n * k_max, device=dev)[valid]
        img, reg = pairs % n, pairs // n

        def region_keep(i: Tensor, k: Tensor) -> Tensor:
            return seg.labels[i] != k.view(-1, 1, 1)

        y = perturbed_scores(
            model,
            x,
            fill_x,
            t,
            img,
            reg,
            region_keep,
            batch_size=batch_size,
            output=output,
            progress=progress,
            desc="occlusion",
        )
        drop = torch.zeros(n, k_max, dtype=torch.float32, device=dev)
        drop[img, reg] = f0[img] - y
        attribution = paint(drop, seg)
        params = collect_params(locals(), ["output", "batch_size"])
        params.update(
            regions=_describe(regions),
            region_params=region_params,
            fill=fill if not isinstance(fill, Tensor) else f"tensor{tuple(fill.shape)}",
        )
        e = finish(model, "occlusion", attribution, None, logits, t, params, None, t0)
        return _with(e, seg, seconds=time.perf_counter() - t0)

    if region_params is not None:
        raise BadParameterError("region_params only apply together with regions=")
    check_int("window", window)
    check_int("stride", stride)
    if window > min(h, w):
        raise BadParameterError(f"window ({window}) must not exceed the image size {h}×{w}")
    if stride > window:
        raise BadParameterError(f"stride ({stride}) must not exceed window ({window}): pixels would be skipped")
    fill_x = fill_image(x, fill)
    rs, cs = window_starts(h, window, stride).to(dev), window_starts(w, window, stride).to(dev)
    n_win = rs.numel() * cs.numel()
    yy, xx = torch.arange(h, device=dev), torch.arange(w, device=dev)
    in_r = (yy.view(1, -1) >= rs.view(-1, 1)) & (yy.view(1, -1) < rs.view(-1, 1) + window)  # (R, H)
    in_c = (xx.view(1, -1) >= cs.view(-1, 1)) & (xx.view(1, -1) < cs.view(-1, 1) + window)  # (C, W)
    count = in_r.sum(0, dtype=torch.float32).view(-1, 1) * in_c.sum(0, dtype=torch.float32).view(1, -1)
    attribution = torch.zeros(n, h, w, dtype=torch.float32, device=dev)
    # a window's pixels as indices; one cut off at the border repeats its last row/column with weight 0
    offs = torch.arange(window, device=dev)
    win_r, win_c = (rs.view(-1, 1) + offs).clamp_max(h - 1), (cs.view(-1, 1) + offs).clamp_max(w - 1)
    cut_r, cut_c = (rs.view(-1, 1) + offs) < h, (cs.view(-1, 1) + offs) < w  # (R, win), (C, win)

    def window_index(i: Tensor, k: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(image, row, column) index tensors ``(B, window, window)`` of each row's occluded window."""
        r, c = win_r[k // cs.numel()], win_c[k % cs.numel()]
        return i.view(-1, 1, 1), r.view(-1, window, 1), c.view(-1, 1, window)

    def occluded(i: Tensor, k: Tensor) -> Tensor:
        xs = x[i]  # a copy that keeps x's memory format; only the windows change
        b, r, c = window_index(i, k)
        rows = torch.arange(i.shape[0], device=dev).view(-1, 1, 1)
        xs[rows, :, r, c] = fill_x[b, :, r, c]
        return xs

    def accumulate(i: Tensor, k: Tensor, _m: Any, scores: Tensor) -> None:
        b, r, c = window_index(i, k)
        kr, kc = k // cs.numel(), k % cs.numel()
        weight = (cut_r[kr].unsqueeze(-1) & cut_c[kc].unsqueeze(1)).to(torch.float32)  # 0 on repeated pixels
        drop = (f0[i] - scores).view(-1, 1, 1) * weight
        attribution.index_put_((b, r, c), drop, accumulate=True)

    pairs = torch.arange(n * n_win, device=dev)
    perturbed_scores(
        model,
        x,
        fill_x,
        t,
        pairs % n,
        pairs // n,
        None,
        batch_size=batch_size,
        output=output,
        accumulate=accumulate,
        progress=progress,
        desc="occlusion",
        rows_fn=occluded,
    )
    attribution /= count
    params = collect_params(locals(), ["window", "stride", "output", "batch_size"])
    params.update(regions=None, fill=fill if not isinstance(fill, Tensor) else f"tensor{tuple(fill.shape)}")
    return finish(model, "occlusion", attribution, None, logits, t, params, None, t0)


__all__ = [
    "BATCH_SIZE",
    "BATCH_SIZE_ACCELERATOR",
    "FILLS",
    "LIME_QUICKSHIFT",
    "ROWS_PER_THREAD",
    "fill_image",
    "gaussian_blur",
    "lime",
    "lime_kernel",
    "lime_samples",
    "occlusion",
    "perturbed_scores",
    "region_masks",
    "resolve_batch_size",
    "rise",
    "rise_grids",
    "rise_masks",
    "weighted_ridge",
    "window_starts",
]

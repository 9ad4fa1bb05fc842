"""NAS — Neuro-Activated Superpixels (Boubekki, Fadel, Mair 2024, "Leveraging Activations for Superpixel
Explanations", arXiv 2406.04933; spec §3).

Superpixels from clustering the classifier's own multi-depth activations, without fine-tuning. Algorithm 1 as
reconstructed in spec §3.1 (the paper's code is not public; only lines 10 and 11 carry the paper's numbering):

1. forward hooks on the layers ``𝓛`` (no grad; outputs cloned because of in-place ReLUs; hooks always removed,
   the model's modes and ``requires_grad`` flags restored — :func:`nas_features`);
2. every layer's output resized to ``(h_o, w_o)`` with ``F.interpolate(mode="bicubic", align_corners=False)``
   [PAPER: bicubic], with ``antialias=True`` when the layer is larger than the target in either dimension
   [RECON: PyTorch's antialiased bicubic uses a different kernel, so it is only used when downsampling];
3. line 10, scaling [RECON] (``scale=``): ``"std"`` (default) ``A_l / (std(A_l) + 1e-8)`` with one population
   std over all channels and pixels of the image; ``"zscore"`` per channel; ``"l2"`` each pixel's feature vector
   of the layer divided by its L2 norm (+1e-8); ``None`` leaves the activations as they are;
4. line 11, weighting [RECON] (``weights=``): ``w_l = 1/sqrt(C_l)`` (``"sqrt"``, default), ``1`` (``"uniform"``)
   or one float per layer;
5. the layers concatenated into ``(h_o·w_o) × Σ C_l`` features and clustered into ``K`` clusters: k-means
   (:func:`kmeans`: greedy k-means++ seeding, Lloyd iterations, ``n_init=10`` restarts keeping the lowest inertia,
   as sklearn's ``KMeans(K, n_init=10)``), or Ward (spec §3.3: sklearn's ``AgglomerativeClustering`` with the
   4-neighbour grid connectivity, so every cluster is spatially connected). The segmenter clusters the features in
   a lossless compressed basis (``nas_features(compress=True)``: same pairwise distances, e.g. 725 instead of 2432
   dimensions for EfficientNet-Lite0's automatic layers), so every k-means step's matrix products shrink alike;
6. the ``(h_o, w_o)`` labels nearest-upsampled to the input [PAPER: nearest] (centre-aligned, PyTorch's
   ``"nearest-exact"`` grid, computed in integers), optionally split into connected components
   (``connected=True``, [RECON]).

Layers. ``layers=None`` uses :data:`PAPER_LAYERS` when ``model.name`` is ``"resnet18"`` or ``"vgg16"`` (spec §3.1
[PAPER]), and otherwise :func:`auto_layers`: one no-grad forward of the first image with a hook on every sub-module;
among the modules that run exactly once and output a 4-D tensor with more than one spatial position, the *last to
finish* at each spatial resolution is taken (the deepest activation computed at that scale; a container finishes
after its children, so ResNet's ``layer1``..``layer4`` win over their blocks). On inverted-residual networks
(EfficientNet, MobileNet) the last activation at a scale is the expansion of the next stage's first block, before
its strided depthwise convolution (e.g. ``blocks.1.0.bn1`` of EfficientNet-Lite0 at 112×112). The default output
size (spec §3.1 [RECON]) is the largest spatial size among the hooked layers. An adapter's ``nas_layers`` (set by the
zoo for ``torchvision:NAME`` / ``timm:NAME`` models, from :func:`spixel.models.layers.find_nas_layers`) come before
both. Vision Transformers (``model.tokens`` set): four blocks evenly spaced in depth, their token outputs read on the
patch grid with the class token dropped (:func:`spixel.models.layers.to_grid`).

Randomness: image ``i`` of a batch is clustered with a generator seeded with ``seed`` alone, so its superpixels
never depend on its position in the batch. With ``connected=False`` (the paper's setting) there are at most ``K``
regions, which need not be contiguous; ``connected=True`` gives contiguous regions, possibly more than ``K``.
"""

from __future__ import annotations

import contextlib
import difflib
import math
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..attribution._core import check_float, check_int, make_generator
from ..errors import BadInputError, BadParameterError
from ..models.adapter import ModelAdapter, as_adapter
from ..models.layers import find_nas_layers, grid_hook
from ..models.state import frozen
from ..types import Segmentation
from .base import relabel_batch, segmenter

#: The paper's layer lists (spec §3.1 [PAPER]) for the torchvision architectures of the same name.
PAPER_LAYERS: dict[str, tuple[str, ...]] = {
    "resnet18": ("maxpool", "layer1", "layer2", "layer3", "layer4"),
    "vgg16": ("features.2", "features.7", "features.14", "features.21", "features.28"),
}
SCALES = ("std", "zscore", "l2", None)
WEIGHTINGS = ("sqrt", "uniform")
CLUSTERINGS = ("kmeans", "ward")
#: the epsilon of the line-10 scalings (spec §3.1)
SCALE_EPS = 1e-8

LayersLike = str | Sequence[str] | None
SizeLike = int | Sequence[int] | None
WeightsLike = str | Sequence[float]


# ------------------------------------------------------------------------------------------------ layers
def auto_layers(module: nn.Module, x: Tensor) -> list[str]:
    """Names of the last module to finish at each spatial resolution (see the module docstring), in execution
    order, from one no-grad forward of ``x`` (one image suffices); :class:`BadParameterError` if there is none."""
    order: list[tuple[str, tuple[int, int]]] = []
    calls: Counter[str] = Counter()

    def recorder(name: str) -> Any:
        def hook(_m: nn.Module, _inp: Any, out: Any) -> None:
            calls[name] += 1
            if isinstance(out, Tensor) and out.ndim == 4 and out.shape[-1] * out.shape[-2] > 1:
                order.append((name, (int(out.shape[-2]), int(out.shape[-1]))))

        return hook

    handles = []
    try:
        for name, m in module.named_modules():
            if name:
                handles.append(m.register_forward_hook(recorder(name)))
        with frozen(module), torch.no_grad():
            module(x)
    finally:
        for h in handles:
            h.remove()
    last: dict[tuple[int, int], tuple[int, str]] = {}
    for i, (name, hw) in enumerate(order):
        if calls[name] == 1:
            last[hw] = (i, name)
    if not last:
        raise BadParameterError(
            "NAS found no layer with a (N, C, h, w) output; pass layers= names from model.module.named_modules()"
        )
    return [name for _, name in sorted(last.values())]


def resolve_layers(model: ModelAdapter, layers: LayersLike, x: Tensor) -> list[str]:
    """The module names NAS hooks: ``layers`` (names or roles of ``model.layers``), else :data:`PAPER_LAYERS` for
    ``model.name``, else :func:`auto_layers` on ``x[:1]``."""
    if layers is None:
        if getattr(model, "nas_layers", None):
            names = list(model.nas_layers)
        elif getattr(model, "tokens", None) is not None:
            return find_nas_layers(model.module, x[:1], tokens=model.tokens)
        elif model.name in PAPER_LAYERS:
            names = list(PAPER_LAYERS[model.name])
        else:
            return auto_layers(model.module, x[:1])
    else:
        seq = [layers] if isinstance(layers, str) else layers
        if not isinstance(seq, Sequence) or not seq or not all(isinstance(s, str) for s in seq):
            raise BadParameterError(f"layers must be a non-empty list of module names (or None), got {layers!r}")
        names = [model.layers.get(s, s) for s in seq]
    if len(set(names)) != len(names):
        raise BadParameterError(f"layers lists a module twice: {names}")
    mods = dict(model.module.named_modules())
    for name in names:
        if name not in mods or name == "":
            choices = [n for n in mods if n]
            close = difflib.get_close_matches(name, choices, n=3)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            raise BadParameterError(
                f"{model.name} has no layer {name!r}.{hint} Use names from model.module.named_modules(), "
                f"e.g. {', '.join(choices[-3:])}"
            )
    return names


@contextlib.contextmanager
def _recording(
    model: ModelAdapter, names: Sequence[str], hw: tuple[int, int] | None = None
) -> Iterator[dict[str, list[Tensor]]]:
    """Clone the output of each named module during the forward passes run inside; hooks always removed. A ViT's
    token outputs are recorded on the patch grid of an ``hw`` input."""
    store: dict[str, list[Tensor]] = {n: [] for n in names}
    mods = dict(model.module.named_modules())
    grid = grid_hook(getattr(model, "tokens", None), hw) if hw is not None else None

    def recorder(name: str) -> Any:
        def hook(_m: nn.Module, _inp: Any, out: Any) -> None:
            if store[name]:
                raise BadParameterError(
                    f"layer {name!r} of {model.name} runs more than once per forward pass; choose a layer that "
                    "runs once (e.g. its parent block)"
                )
            if grid is not None and isinstance(out, Tensor) and out.ndim == 3:
                out = grid(out)
            if not isinstance(out, Tensor) or out.ndim != 4:
                shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
                raise BadParameterError(f"NAS needs layers with (N, C, h, w) outputs; {name!r} gives {shape}")
            store[name].append(out.detach().float().clone())  # clone: in-place ReLUs may follow

        return hook

    handles = []
    try:
        for n in names:
            handles.append(mods[n].register_forward_hook(recorder(n)))
        yield store
    finally:
        for h in handles:
            h.remove()


# ------------------------------------------------------------------------------------------------ features
def _check_size(out_size: SizeLike) -> tuple[int, int] | None:
    if out_size is None:
        return None
    if isinstance(out_size, int) and not isinstance(out_size, bool):
        return check_int("out_size", out_size), out_size
    if (
        isinstance(out_size, Sequence)
        and len(out_size) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in out_size)
    ):
        return int(out_size[0]), int(out_size[1])
    raise BadParameterError(f"out_size must be None, a positive int or (h, w) positive ints, got {out_size!r}")


def _check_scale(scale: Any) -> None:
    if scale not in SCALES:
        raise BadParameterError(f"scale must be one of {', '.join(map(repr, SCALES))}, got {scale!r}")


def _layer_weights(weights: WeightsLike, channels: Sequence[int]) -> list[float]:
    """Line 11's ``w_l`` for layers with ``channels`` channels."""
    if weights == "sqrt":
        return [1.0 / math.sqrt(c) for c in channels]
    if weights == "uniform":
        return [1.0] * len(channels)
    if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence):
        raise BadParameterError(f"weights must be 'sqrt', 'uniform' or one number per layer, got {weights!r}")
    if len(weights) != len(channels):
        raise BadParameterError(f"weights has {len(weights)} values for {len(channels)} layers")
    out = []
    for w in weights:
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise BadParameterError(f"weights must be finite numbers >= 0, got {weights!r}")
        out.append(float(w))
    if not any(out):
        raise BadParameterError("weights are all zero: no layer would count")
    return out


def scale_activation(a: Tensor, scale: str | None) -> Tensor:
    """Line 10 of Algorithm 1 on one layer ``(N, C, h, w)``, per image (spec §3.1 [RECON])."""
    if scale == "std":
        s = a.flatten(1).std(dim=1, correction=0)
        return a / (s + SCALE_EPS).view(-1, 1, 1, 1)
    if scale == "zscore":
        mean = a.mean(dim=(2, 3), keepdim=True)
        s = a.std(dim=(2, 3), correction=0, keepdim=True)
        return (a - mean) / (s + SCALE_EPS)
    if scale == "l2":
        return a / (a.norm(dim=1, keepdim=True) + SCALE_EPS)
    _check_scale(scale)
    return a


def resize_activation(a: Tensor, size: tuple[int, int]) -> Tensor:
    """Bicubic resize of ``(N, C, h, w)`` to ``size`` (``align_corners=False``; antialiased when shrinking)."""
    if tuple(a.shape[-2:]) == size:
        return a
    down = a.shape[-2] > size[0] or a.shape[-1] > size[1]
    return F.interpolate(a, size=size, mode="bicubic", align_corners=False, antialias=down)


def _scale_in_basis(up: Tensor, q: Tensor, scale: str | None, channels: int) -> Tensor:
    """Line 10 on coordinates ``up`` ``(n, r, h_o, w_o)`` in the orthonormal basis ``q`` ``(n, C, r)`` of a layer's
    span, equal to scaling the ``C``-channel map first (``"std"``, ``"l2"``, ``None``): norms are kept by ``q``, and
    the mean of all ``C·P`` entries is ``Σ_p (qᵀ1)·up_p / (C·P)``."""
    if scale == "l2":
        return up / (up.norm(dim=1, keepdim=True) + SCALE_EPS)
    if scale == "std":
        count = channels * up.shape[2] * up.shape[3]
        mean = torch.einsum("nr,nrhw->n", q.sum(1), up) / count
        var = (up.pow(2).sum((1, 2, 3)) / count - mean.pow(2)).clamp_min(0)
        return up / (var.sqrt() + SCALE_EPS).view(-1, 1, 1, 1)
    return up


def _layer_features(a: Tensor, size: tuple[int, int], scale: str | None, weight: float, compress: bool) -> Tensor:
    """Lines 3, 10, 11 for one layer ``(n, C, h, w)`` → ``(n, h_o·w_o, C)`` (``(n, h_o·w_o, h·w)`` compressed).

    Compressed (``h·w < C``), the layer is first written in the basis and only its ``h·w`` coordinate channels are
    resized (the resize acts on each channel alike, so it commutes with the change of basis) — except for
    ``"zscore"``, whose per-channel statistics need the resized ``C`` channels."""
    c, hw = a.shape[1], a.shape[2] * a.shape[3]
    if compress and hw < c and scale != "zscore":
        q = torch.linalg.qr(a.flatten(2).double()).Q.to(a.dtype)  # (n, C, h·w), orthonormal columns
        up = resize_activation(torch.einsum("ncr,nchw->nrhw", q, a), size)
        return (weight * _scale_in_basis(up, q, scale, c)).flatten(2).transpose(1, 2)
    up = resize_activation(a, size)
    f = (weight * scale_activation(up, scale)).flatten(2).transpose(1, 2)
    if not compress or hw >= c:
        return f
    m = a.flatten(2).double()  # (n, C, h·w): the activation vectors whose span holds every pixel's feature
    if scale == "zscore":
        m = m / (up.std(dim=(2, 3), correction=0).double().unsqueeze(-1) + SCALE_EPS)
    q = torch.linalg.qr(m).Q.to(f.dtype)  # (n, C, h·w), orthonormal columns
    return f @ q


def nas_features(
    model: ModelAdapter | nn.Module,
    x: Tensor,
    layers: LayersLike = None,
    out_size: SizeLike = None,
    scale: str | None = "std",
    weights: WeightsLike = "sqrt",
    batch_size: int = 8,
    *,
    compress: bool = False,
) -> tuple[Tensor, tuple[int, int], list[str]]:
    """NAS pixel features (spec §3.1 lines 1–12): ``(features (N, h_o·w_o, D), (h_o, w_o), layer names)``.

    ``x``: the model's (normalised) input ``(N, 3, H, W)``; run in chunks of ``batch_size`` on the model's device
    without gradients. ``D = Σ_l C_l``, layers concatenated in the order of ``layers``. ``out_size``: ``(h_o, w_o)``
    (an int for a square), default the largest spatial size among the layers. The model is left as found.

    ``compress=True`` (what the segmenter uses): a layer with fewer positions than channels (``h_l·w_l < C_l``,
    e.g. 7×7×1280) is given in an orthonormal basis of the span of its ``h_l·w_l`` activation vectors (a QR of
    ``(C_l, h_l·w_l)``; with ``"zscore"`` of the channel-scaled ones): the resize is linear, and the line-10/11
    scalings multiply by scalars or a per-channel diagonal (plus a common shift), so every pixel's feature lies in
    that span (up to the shift) and all pairwise distances — hence k-means and Ward — are unchanged while ``D``
    shrinks (EfficientNet-Lite0's auto layers: 2432 → 725).
    """
    adapter = as_adapter(model)
    if not isinstance(x, Tensor) or x.ndim != 4 or not x.is_floating_point() or x.shape[0] == 0:
        got = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
        raise BadInputError(f"nas_features takes a float (N, C, H, W) tensor, got {got}")
    check_int("batch_size", batch_size)
    size = _check_size(out_size)
    _check_scale(scale)
    if isinstance(weights, str) and weights not in WEIGHTINGS:
        raise BadParameterError(f"weights must be 'sqrt', 'uniform' or one number per layer, got {weights!r}")
    x = x.to(adapter.device)
    names = resolve_layers(adapter, layers, x)
    chunks: list[Tensor] = []
    module = adapter.module
    hw = (int(x.shape[-2]), int(x.shape[-1]))
    with frozen(module), torch.no_grad(), _recording(adapter, names, hw) as store:
        for xc in x.split(batch_size):
            for v in store.values():
                v.clear()
            module(xc)
            missing = [n for n in names if not store[n]]
            if missing:
                raise BadParameterError(f"layers {missing} of {adapter.name} did not run in the forward pass")
            acts = [store[n][0] for n in names]
            if size is None:
                h_o, w_o = max((a.shape[-2:] for a in acts), key=lambda s: s[0] * s[1])
                size = (int(h_o), int(w_o))
            w = _layer_weights(weights, [a.shape[1] for a in acts])
            feats = [_layer_features(a, size, scale, wl, compress) for a, wl in zip(acts, w, strict=True)]
            chunks.append(torch.cat(feats, dim=2))
            for v in store.values():
                v.clear()
    assert size is not None  # x has at least one image
    return torch.cat(chunks), size, names


# ------------------------------------------------------------------------------------------------ clustering
def _sq_norms(t: Tensor) -> Tensor:
    return (t * t).sum(-1)


def kmeans_plusplus(features: Tensor, n_clusters: int, n_init: int, seed: int) -> Tensor:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007 with ``2 + ⌊ln K⌋`` local trials, as sklearn's
    ``KMeans(init="k-means++")``): initial centres ``(B, n_init, K, D)`` for features ``(B, P, D)``.

    Image ``b`` draws from its own CPU generator seeded with ``seed`` (uniforms mapped on the features' device by
    inverse CDF), so its centres do not depend on the rest of the batch nor on the device.
    """
    b, p, d = features.shape
    dev, dt = features.device, features.dtype
    trials = 2 + int(math.log(n_clusters))
    gens = [torch.Generator().manual_seed(seed) for _ in range(b)]
    xn = _sq_norms(features)  # (B, P)
    first = torch.stack([torch.randint(p, (n_init,), generator=g) for g in gens]).to(dev)  # (B, I)
    centres = torch.empty(b, n_init, n_clusters, d, device=dev, dtype=dt)
    c0 = features.gather(1, first.unsqueeze(-1).expand(-1, -1, d))  # (B, I, D)
    centres[:, :, 0] = c0
    # closest squared distance of every point to the chosen centres, per restart: (B, I, P)
    closest = (xn.unsqueeze(1) + _sq_norms(c0).unsqueeze(-1) - 2 * c0 @ features.transpose(1, 2)).clamp_min(0)
    for k in range(1, n_clusters):
        u = torch.stack([torch.rand(n_init, trials, generator=g, dtype=torch.float64) for g in gens]).to(dev)
        cum = closest.double().cumsum(-1)  # (B, I, P)
        cand = torch.searchsorted(cum, (u * cum[..., -1:]).contiguous()).clamp_max(p - 1)  # (B, I, L)
        xc = features.gather(1, cand.view(b, -1, 1).expand(-1, -1, d))  # (B, I·L, D)
        dc = (xn.unsqueeze(1) + _sq_norms(xc).unsqueeze(-1) - 2 * xc @ features.transpose(1, 2)).clamp_min(0)
        dc = torch.minimum(dc.view(b, n_init, trials, p), closest.unsqueeze(2))  # (B, I, L, P)
        best = dc.sum(-1).argmin(-1)  # (B, I): the candidate that lowers the potential most
        pick = best.view(b, n_init, 1, 1)
        closest = dc.gather(2, pick.expand(-1, -1, 1, p)).squeeze(2)
        centres[:, :, k] = xc.view(b, n_init, trials, d).gather(2, pick.expand(-1, -1, 1, d)).squeeze(2)
    return centres


def kmeans(
    features: Tensor,
    n_clusters: int,
    *,
    n_init: int = 10,
    max_iter: int = 100,
    seed: int = 0,
    init: Tensor | None = None,
    tol: float = 1e-4,
) -> tuple[Tensor, Tensor, Tensor]:
    """Batched k-means on ``features (B, P, D)`` on their device: ``(labels (B, P), inertia (B,), centres (B, K, D))``.

    Every image runs ``n_init`` restarts from :func:`kmeans_plusplus` (or from ``init``: ``(K, D)``, ``(B, K, D)``
    or ``(B, n_init, K, D)`` initial centres, as sklearn's ``init=`` array), all restarts of all images in the same
    batched Lloyd iterations. A restart stops as sklearn's ``KMeans(algorithm="lloyd")`` does: when no label changes
    ("strict convergence"), when its centres move less than ``tol`` × the mean per-feature variance of the image's
    points (summed squared shifts), or after ``max_iter`` steps; its labels are those of its final centres. The
    restart with the lowest inertia (sum of squared distances to the assigned centres) is kept. An empty cluster
    keeps its previous centre [RECON; sklearn moves it to a far point]. Ties go to the lowest cluster id.
    """
    if features.ndim != 3:
        raise BadInputError(f"kmeans takes features (B, P, D), got {tuple(features.shape)}")
    b, p, d = features.shape
    check_int("n_clusters", n_clusters)
    check_int("n_init", n_init)
    check_int("max_iter", max_iter)
    if init is None:
        k = min(n_clusters, p)
        centres = kmeans_plusplus(features, k, n_init, seed)
    else:
        c = init.to(features.device, features.dtype)
        c = c.expand(b, *c.shape) if c.ndim == 2 else c
        centres = c.unsqueeze(1) if c.ndim == 3 else c
        if centres.ndim != 4 or centres.shape[0] != b or centres.shape[-1] != d or centres.shape[2] != n_clusters:
            raise BadInputError(
                f"init must hold {n_clusters} centres: (K, D), (B, K, D) or (B, n_init, K, D), got {tuple(init.shape)}"
            )
        centres = centres.clone()
    _, n_run, k, _ = centres.shape
    dev = features.device

    def assign(c: Tensor) -> tuple[Tensor, Tensor]:
        # ||x − c||² − ||x||² = ||c||² − 2 x·c (one fused bmm), argmin over each restart's K centres: (B, P, I')
        r = c.shape[1]
        cf = c.reshape(b, r * k, d)
        part = torch.baddbmm(_sq_norms(cf).unsqueeze(1), features, cf.transpose(1, 2), alpha=-2.0)
        dist, lab = part.view(b, p, r, k).min(-1)
        return lab, dist

    # sklearn's tolerance on the centre shift: tol × the mean per-feature variance of the image's points
    tol_b = check_float("tol", tol) * features.var(dim=1, correction=0).mean(-1).view(b, 1)  # (B, 1)
    active = torch.ones(b, n_run, dtype=torch.bool, device=dev)
    labels, _ = assign(centres)
    for _ in range(max_iter):
        # only the restarts still running in some image are computed; a converged restart is frozen, so an
        # image's result never depends on the rest of the batch
        cols = active.any(0).nonzero().squeeze(1)
        r = len(cols)
        full = r == n_run
        c_old = centres if full else centres[:, cols]
        lab_old = labels if full else labels[:, :, cols]
        act = active if full else active[:, cols]
        everyone = bool(act.all())
        onehot = torch.zeros(b, r * k, p, device=dev, dtype=features.dtype)
        offsets = torch.arange(r, device=dev).view(1, 1, r) * k
        onehot.scatter_(1, (lab_old + offsets).transpose(1, 2), 1.0)  # (B, I'·K, P)
        counts = onehot.sum(-1, keepdim=True)
        sums = torch.bmm(onehot, features)  # (B, I'·K, D): the clusters' sums, one matmul for all restarts
        new = torch.where(counts > 0, sums / counts.clamp_min(1), c_old.reshape(b, r * k, d)).view(b, r, k, d)
        shift = _sq_norms(new - c_old).sum(-1)  # (B, I')
        if not everyone:
            new = torch.where(act.view(b, r, 1, 1), new, c_old)
        new_lab, _ = assign(new)
        if not everyone:
            new_lab = torch.where(act.view(b, 1, r), new_lab, lab_old)
        moved = (new_lab != lab_old).any(1)  # (B, I')
        if full:
            centres, labels = new, new_lab
        else:
            centres[:, cols] = new
            labels[:, :, cols] = new_lab
        active[:, cols] = act & moved & (shift > tol_b)
        if not bool(active.any()):
            break
    labels, dist = assign(centres)  # the converged labels again, with their distances
    inertia = (dist + _sq_norms(features).unsqueeze(-1)).clamp_min(0).sum(1)  # (B, I)
    best = inertia.argmin(1)  # (B,)
    rows = torch.arange(b, device=dev)
    return labels[rows, :, best], inertia[rows, best], centres[rows, best]


def ward(features: Tensor, n_clusters: int, hw: tuple[int, int]) -> Tensor:
    """Ward clustering with the 4-neighbour grid connectivity (spec §3.3): sklearn's
    ``AgglomerativeClustering(K, linkage="ward", connectivity=grid_to_graph(h, w))`` per image, on the CPU.
    Returns labels ``(B, P)`` on the features' device; every cluster is 4-connected on the ``hw`` grid."""
    from sklearn.cluster import AgglomerativeClustering
    from sklearn.feature_extraction.image import grid_to_graph

    conn = grid_to_graph(*hw)
    k = min(n_clusters, hw[0] * hw[1])
    arr = features.detach().cpu().double().numpy()
    labs = [
        AgglomerativeClustering(n_clusters=k, linkage="ward", connectivity=conn).fit_predict(f).astype(np.int64)
        for f in arr
    ]
    return torch.from_numpy(np.stack(labs)).to(features.device)


def upsample_labels(labels: Tensor, size: tuple[int, int]) -> Tensor:
    """Nearest-neighbour resize of integer labels ``(N, h, w)`` to ``size`` on the centre-aligned grid
    (PyTorch's ``"nearest-exact"``: output pixel ``i`` reads ``⌊(i + ½)·h/H⌋``), in exact integer arithmetic."""
    h, w = labels.shape[1:]
    hh, ww = size
    rows = ((2 * torch.arange(hh, device=labels.device) + 1) * h) // (2 * hh)
    cols = ((2 * torch.arange(ww, device=labels.device) + 1) * w) // (2 * ww)
    return labels[:, rows][:, :, cols]


def connected_components(labels: Tensor) -> Tensor:
    """Split every region of ``(N, H, W)`` labels into its 4-connected components (``skimage.measure.label``,
    ``connectivity=1``); ids per image are arbitrary but distinct."""
    from skimage.measure import label

    arr = labels.cpu().numpy()
    out = np.stack([label(a + 1, background=0, connectivity=1) for a in arr]).astype(np.int64)
    return torch.from_numpy(out).to(labels.device)


# ------------------------------------------------------------------------------------------------ segmenter
def _check_options(
    n_segments: Any,
    method: Any,
    scale: Any,
    weights: Any,
    connected: Any,
    n_init: Any,
    max_iter: Any,
    batch_size: Any,
    out_size: Any,
) -> None:
    check_int("n_segments", n_segments, lo=2)
    if method not in CLUSTERINGS:
        raise BadParameterError(f"nas method must be one of {', '.join(CLUSTERINGS)}, got {method!r}")
    _check_scale(scale)
    if isinstance(weights, str) and weights not in WEIGHTINGS:
        raise BadParameterError(f"weights must be 'sqrt', 'uniform' or one number per layer, got {weights!r}")
    if not isinstance(connected, bool):
        raise BadParameterError(f"connected must be True or False, got {connected!r}")
    check_int("n_init", n_init)
    check_int("max_iter", max_iter)
    check_int("batch_size", batch_size)
    _check_size(out_size)


@segmenter(
    "nas",
    backend="torch",
    description="Neuro-Activated Superpixels: k-means (or Ward) of the classifier's multi-depth activations "
    "(needs the model)",
)
def nas(
    rgb01: Tensor,
    *,
    model: ModelAdapter | nn.Module | None = None,
    n_segments: int = 10,
    layers: LayersLike = None,
    out_size: SizeLike = None,
    method: str = "kmeans",
    scale: str | None = "std",
    weights: WeightsLike = "sqrt",
    connected: bool = False,
    n_init: int = 10,
    max_iter: int = 100,
    seed: int | None = 0,
    batch_size: int = 8,
) -> Segmentation:
    """Neuro-Activated Superpixels (Boubekki et al. 2024, arXiv 2406.04933; spec §3.1 Algorithm 1, §3.3 Ward).

    ``model``: the classifier (a :class:`~spixel.models.adapter.ModelAdapter` or ``nn.Module``); ``rgb01`` is
    normalised with ``model.normalize`` and run on the model's device; labels come back on ``rgb01``'s device.
    ``n_segments``: ``K`` clusters [PAPER: 5 or 10] (at most ``h_o·w_o``). ``layers``, ``out_size``, ``scale``,
    ``weights``: see :func:`nas_features`. ``method``: ``"kmeans"`` (``n_init`` restarts of at most ``max_iter``
    Lloyd steps, seeded by ``seed``) or ``"ward"`` (deterministic, CPU). ``connected``: split clusters into
    4-connected components. ``batch_size``: images per forward pass and clustering batch (memory:
    ``batch_size·h_o·w_o·D`` floats). ``meta`` records the layers, ``out_size``, the seed and (k-means) the inertia
    per image.
    """
    _check_options(n_segments, method, scale, weights, connected, n_init, max_iter, batch_size, out_size)
    _, seed = make_generator(seed)
    if model is None:
        raise BadParameterError(
            "nas clusters the classifier's activations and needs the model: pass region_params={'model': m} "
            "(segment(x, 'nas', model=m)) or use spixel.explain(model, x, method, regions='nas')"
        )
    adapter = as_adapter(model)
    h, w = rgb01.shape[-2:]
    x = adapter.normalize(rgb01.to(adapter.device))
    names = resolve_layers(adapter, layers, x)
    labs: list[Tensor] = []
    inertias: list[float] = []
    hw = (0, 0)
    for xc in x.split(batch_size):
        feats, hw, _ = nas_features(adapter, xc, names, out_size, scale, weights, batch_size, compress=True)
        k = min(n_segments, hw[0] * hw[1])
        if method == "kmeans":
            lab, inertia, _ = kmeans(feats, k, n_init=n_init, max_iter=max_iter, seed=seed)
            inertias += inertia.tolist()
        else:
            lab = ward(feats, k, hw)
        labs.append(lab.view(-1, *hw))
        del feats
    labels = upsample_labels(torch.cat(labs), (h, w))
    if connected:
        labels = connected_components(labels)
    meta: dict[str, Any] = {"layers": names, "out_size": list(hw), "seed": seed, "model": adapter.name}
    if method == "kmeans":
        meta["inertia"] = inertias
    return Segmentation(relabel_batch(labels).to(rgb01.device), meta)

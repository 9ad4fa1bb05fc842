"""CAM family: Grad-CAM, Grad-CAM++, Score-CAM (spec §6.5).

All three weight the channels ``A_k`` of one layer's output ``(N, K, h, w)`` and return
``ReLU(Σ_k w_k A_k)`` upsampled to the input size with ``F.interpolate(mode="bilinear", align_corners=False)``
(Captum's ``LayerAttribution.interpolate``; OpenCV's ``INTER_LINEAR`` samples the same grid).

The maps are **not** min-max normalised: values stay in the units of ``Σ_k w_k A_k``, so maps are comparable
across images and a map that is zero everywhere says so. pytorch-grad-cam and the official Score-CAM code
divide every map by its own range; apply ``(m - m.min()) / (m.max() - m.min())`` per image to compare.
``raw`` is ``None`` (there is no input-space signal).

**Layer.** ``layer=`` is a role of ``model.layers`` (e.g. ``"cam"``) or a name from
``model.module.named_modules()``. By default the adapter's ``layers["cam"]`` is used; a plain ``nn.Module``
(wrapped with the default adapter) gets the output of the *last module, in execution order, whose output is a
4-D tensor with more than one spatial position* (found by one no-grad forward of the first image with forward
hooks on every sub-module; a container finishes after its children, so ``layer4`` wins over
``layer4.1.relu``; modules run more than once per pass are skipped; global pooling outputs ``(N, C, 1, 1)``
are skipped). The chosen name is recorded in ``meta["params"]["layer"]``. The layer must run once per forward
pass and return one tensor. Models loaded by name (``torchvision:NAME``, ``timm:NAME``) carry the layer found by
:func:`spixel.models.layers.find_cam_layer` as their ``"cam"`` role.

**Vision Transformers** (``model.tokens`` is not ``None``): the layer's token output ``(N, T, D)`` is read on the
patch grid ``(N, D, h, w)`` with the prefix (class) tokens dropped (:func:`spixel.models.layers.to_grid`), and the
default layer is the last block's first LayerNorm (:func:`spixel.models.layers.find_cam_layer`).
"""

from __future__ import annotations

import contextlib
import difflib
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import BadParameterError
from ..models.adapter import ModelAdapter
from ..models.layers import find_cam_layer, from_grid, grid_hook
from ..types import Explanation, TargetLike, resolve_targets
from ._core import check_int, explainer, finish, logits_and_targets

#: Grad-CAM++'s denominator guard (pytorch-grad-cam ``grad_cam_plusplus.py``).
GRADCAM_PP_EPS = 1e-6


# ------------------------------------------------------------------------------------------ layer choice
def default_cam_layer(module: nn.Module, x: Tensor) -> str:
    """Name of the last sub-module (in execution order) with a 4-D output of more than one spatial position,
    run exactly once in a no-grad forward of ``x``; :class:`BadParameterError` if there is none."""
    order: list[str] = []
    calls: Counter[str] = Counter()
    handles = []

    def recorder(name: str):
        def hook(_m: nn.Module, _inp: Any, out: Any) -> None:
            calls[name] += 1
            if isinstance(out, Tensor) and out.ndim == 4 and out.shape[-1] * out.shape[-2] > 1:
                order.append(name)

        return hook

    try:
        for name, m in module.named_modules():
            if name:
                handles.append(m.register_forward_hook(recorder(name)))
        with torch.no_grad():
            module(x)
    finally:
        for h in handles:
            h.remove()
    candidates = [n for n in order if calls[n] == 1]
    if not candidates:
        raise BadParameterError(
            "found no layer with a (N, C, h, w) output to use for CAM; pass layer= a name from model.named_modules()"
        )
    return candidates[-1]


def resolve_layer(model: ModelAdapter, layer: str | None, x: Tensor) -> tuple[str, nn.Module]:
    """``(name, module)`` of the CAM layer: ``layer`` (role or module name), else ``layers["cam"]``, else
    :func:`default_cam_layer`."""
    if layer is None:
        if "cam" in model.layers:
            name = model.layers["cam"]
        elif getattr(model, "tokens", None) is not None:
            name = find_cam_layer(model.module, x[:1], tokens=model.tokens)
        else:
            name = default_cam_layer(model.module, x[:1])
    elif isinstance(layer, str):
        name = model.layers.get(layer, layer)
    else:
        raise BadParameterError(f"layer must be a module name (str) or None, got {type(layer).__name__}")
    mods = dict(model.module.named_modules())
    if name not in mods or name == "":
        names = [n for n in mods if n]
        close = difflib.get_close_matches(name, names, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        roles = f" Roles: {', '.join(sorted(model.layers))}." if model.layers else ""
        raise BadParameterError(
            f"{model.name} has no layer {name!r}.{hint}{roles} Use a role or a name from "
            f"model.named_modules(), e.g. {', '.join(names[-3:])}"
        )
    return name, mods[name]


@contextlib.contextmanager
def _capture(
    layer_name: str, layer: nn.Module, leaf: bool, model: ModelAdapter | None = None, x: Tensor | None = None
) -> Iterator[list[Tensor]]:
    """Record the output of ``layer`` during one forward pass (the hook is always removed).

    ``leaf=True``: the output is replaced by a clone of a detached leaf that requires grad, so ``∂y/∂A`` is
    one ``autograd.grad`` away and nothing upstream of the layer is back-propagated (the clone keeps the
    leaf intact if the network modifies the layer's output in place). For a ViT ``model``, a token output is
    recorded on its patch grid (the leaf is the grid; the prefix tokens pass on unchanged).
    """
    prefix = getattr(model, "tokens", None) if model is not None else None
    grid = grid_hook(prefix, (int(x.shape[-2]), int(x.shape[-1]))) if x is not None else None
    store: list[Tensor] = []

    def hook(_m: nn.Module, _inp: Any, out: Any) -> Tensor | None:
        if store:
            raise BadParameterError(
                f"layer {layer_name!r} runs more than once per forward pass; choose a layer that runs once "
                "(e.g. its parent block)"
            )
        tokens = None
        if grid is not None and isinstance(out, Tensor) and out.ndim == 3:
            tokens, out = out, grid(out)
        if not isinstance(out, Tensor) or out.ndim != 4:
            shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise BadParameterError(
                f"CAM needs a layer whose output has shape (N, C, h, w); {layer_name!r} gives {shape}"
            )
        if leaf:
            a = out.detach().requires_grad_(True)
            store.append(a)
            return a.clone() if tokens is None else from_grid(a, tokens, prefix or 0)
        store.append(out.detach().clone())
        return None

    handle = layer.register_forward_hook(hook)
    try:
        yield store
    finally:
        handle.remove()


def layer_activations_and_grads(
    model: ModelAdapter, layer_name: str, layer: nn.Module, x: Tensor, target: TargetLike, batch_size: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Logits ``(N, K)``, resolved targets ``(N,)``, layer output ``A`` and ``∂ f_{t_i}(x_i) / ∂ A_i`` for every
    row, from one forward+backward per chunk of ``batch_size`` rows (the logits come from the same forward)."""
    acts, grads, all_logits = [], [], []
    t: Tensor | None = None
    for s in range(0, x.shape[0], batch_size):
        with _capture(layer_name, layer, True, model, x) as store, torch.enable_grad():
            logits = model.module(x[s : s + batch_size])
        if not store:
            raise BadParameterError(f"layer {layer_name!r} did not run during the forward pass")
        if logits.ndim != 2:
            raise BadParameterError(f"the model must return logits of shape (N, K), got {tuple(logits.shape)}")
        if t is None and target is not None:
            t = resolve_targets(target, x.shape[0], logits.shape[1]).to(x.device)
        ti = t[s : s + batch_size] if t is not None else logits.detach().argmax(1)
        a = store[0]
        (g,) = torch.autograd.grad(logits.gather(1, ti.view(-1, 1)).sum(), a, allow_unused=True)
        if g is None:
            raise BadParameterError(f"layer {layer_name!r} does not influence the model's output")
        acts.append(a.detach())
        grads.append(g)
        all_logits.append(logits.detach())
    logits = torch.cat(all_logits)
    if t is None:
        t = resolve_targets(None, x.shape[0], logits.shape[1], predicted=logits.argmax(1)).to(x.device)
    return logits, t, torch.cat(acts), torch.cat(grads)


def layer_activations(model: ModelAdapter, layer_name: str, layer: nn.Module, x: Tensor, batch_size: int) -> Tensor:
    """Layer output ``A`` ``(N, K, h, w)`` from no-grad forwards in chunks of ``batch_size``."""
    acts = []
    for s in range(0, x.shape[0], batch_size):
        with _capture(layer_name, layer, False, model, x) as store, torch.no_grad():
            model.module(x[s : s + batch_size])
        if not store:
            raise BadParameterError(f"layer {layer_name!r} did not run during the forward pass")
        acts.append(store[0])
    return torch.cat(acts)


def upsample(cam: Tensor, size: tuple[int, int]) -> Tensor:
    """``(N, h, w)`` → ``(N, H, W)``, bilinear, ``align_corners=False``."""
    return F.interpolate(cam.unsqueeze(1), size=size, mode="bilinear", align_corners=False)[:, 0]


# ------------------------------------------------------------------------------------------ methods
def _gradient_cam(
    model: ModelAdapter, x: Tensor, target: TargetLike, layer: str | None, batch_size: int, method: str
) -> Explanation:
    t0 = time.perf_counter()
    check_int("batch_size", batch_size)
    name, mod = resolve_layer(model, layer, x)
    logits, t, a, g = layer_activations_and_grads(model, name, mod, x, target, batch_size)
    if method == "gradcam":
        w = g.mean(dim=(2, 3), keepdim=True)
    else:
        g2 = g * g
        g3 = g2 * g
        sum_a = a.sum(dim=(2, 3), keepdim=True)
        alpha = g2 / (2 * g2 + sum_a * g3 + GRADCAM_PP_EPS)
        alpha = torch.where(g != 0, alpha, torch.zeros_like(alpha))
        w = (alpha * g.clamp(min=0)).sum(dim=(2, 3), keepdim=True)
    cam = (w * a).sum(1).clamp(min=0)
    attribution = upsample(cam, (x.shape[-2], x.shape[-1]))
    params = {"layer": name, "batch_size": batch_size}
    return finish(model, method, attribution, None, logits, t, params, None, t0)


@explainer("gradcam", family="cam", reduction="ReLU of the gradient-weighted channel sum, upsampled")
def gradcam(
    model: ModelAdapter,
    x: Tensor,
    target: TargetLike = None,
    *,
    layer: str | None = None,
    batch_size: int = 32,
) -> Explanation:
    """Grad-CAM (Selvaraju et al. 2017; spec §6.5): ``w_k = mean_ij ∂y_t/∂A_k``, map = ``ReLU(Σ_k w_k A_k)``
    upsampled bilinearly (not min-max normalised). ``layer``: see the module docstring; ``batch_size`` bounds
    the images per forward/backward.
    """
    return _gradient_cam(model, x, target, layer, batch_size, "gradcam")


@explainer("gradcam_pp", family="cam", reduction="ReLU of the α-weighted channel sum, upsampled")
def gradcam_pp(
    model: ModelAdapter,
    x: Tensor,
    target: TargetLike = None,
    *,
    layer: str | None = None,
    batch_size: int = 32,
) -> Explanation:
    """Grad-CAM++ (Chattopadhay et al. 2018, eq. 19, as pytorch-grad-cam's ``grad_cam_plusplus.py``;
    spec §6.5): with ``g = ∂y_t/∂A`` (the target *logit*), ``α = g² / (2g² + Σ_ij A · g³ + 1e-6)``
    (``α = 0`` where ``g = 0``), ``w_k = Σ_ij α · ReLU(g)``; map = ``ReLU(Σ_k w_k A_k)`` upsampled
    bilinearly (not normalised).
    """
    return _gradient_cam(model, x, target, layer, batch_size, "gradcam_pp")


@explainer("scorecam", family="cam", reduction="ReLU of the score-weighted channel sum, upsampled")
def scorecam(
    model: ModelAdapter,
    x: Tensor,
    target: TargetLike = None,
    *,
    layer: str | None = None,
    batch_size: int = 64,
) -> Explanation:
    """Score-CAM (Wang et al. 2020), the official code's semantics (``haofanwang/Score-CAM``
    ``cam/scorecam.py``; spec §6.5).

    For every channel ``k``: ``A_k`` is upsampled (bilinear, ``align_corners=False``) to the input size and
    min-max scaled to ``Â_k ∈ [0, 1]``; channels constant at layer resolution are skipped (weight 0). The
    weight is ``s_k = softmax(f(x ⊙ Â_k))_t``, the target's *probability* on the masked input, with no
    baseline score subtracted (the code, unlike the paper's CIC, does not). ``x ⊙ Â_k`` multiplies the
    *normalised* tensor, as the official code does (its inputs come from ``apply_transforms`` with
    ImageNet ``Normalize``), so masked pixels go to the mean colour. Map = ``ReLU(Σ_k s_k A_k^up)``,
    computed as the upsampling of ``Σ_k s_k A_k`` (bilinear interpolation is linear), not min-max
    normalised.

    Differs from pytorch-grad-cam's ``ScoreCAM``, which scores masks by the target *logit*, turns the scores
    into weights by a softmax over channels, upsamples with ``align_corners=True`` and keeps constant channels
    (dividing by their range + 1e-8).
    The ``(image, channel)`` masked inputs are evaluated in chunks of ``batch_size`` (one forward per chunk):
    ``N · K / batch_size`` forwards, e.g. 20 per image for EfficientNet-Lite0's 1280 channels.
    """
    t0 = time.perf_counter()
    check_int("batch_size", batch_size)
    name, mod = resolve_layer(model, layer, x)
    logits, t = logits_and_targets(model, x, target)
    a = layer_activations(model, name, mod, x, batch_size)
    n, k = a.shape[:2]
    size = (x.shape[-2], x.shape[-1])
    flat = a.flatten(2)
    active = flat.amax(2) > flat.amin(2)  # (N, K); constant channels keep weight 0
    ii, kk = active.nonzero(as_tuple=True)
    scores = torch.zeros(n, k, device=a.device, dtype=torch.float32)
    with torch.no_grad():
        for s in range(0, ii.numel(), batch_size):
            i, c = ii[s : s + batch_size], kk[s : s + batch_size]
            up = F.interpolate(a[i, c].unsqueeze(1), size=size, mode="bilinear", align_corners=False)
            lo = up.amin(dim=(2, 3), keepdim=True)
            hi = up.amax(dim=(2, 3), keepdim=True)
            ok = (hi > lo).view(-1)
            mask = (up - lo) / torch.where(hi > lo, hi - lo, torch.ones_like(hi))
            p = model.module(x[i] * mask).float().softmax(-1).gather(1, t[i].view(-1, 1)).view(-1)
            scores[i, c] = torch.where(ok, p, torch.zeros_like(p))
    cam = (scores.to(a.dtype).view(n, k, 1, 1) * a).sum(1)
    attribution = upsample(cam, size).clamp(min=0)
    params = {"layer": name, "batch_size": batch_size}
    return finish(model, "scorecam", attribution, None, logits, t, params, None, t0)

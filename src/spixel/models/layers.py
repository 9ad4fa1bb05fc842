"""Layers found, not hand-listed: the CAM layer, NAS's multi-depth layers and Vision-Transformer token grids.

Everything here is found from one no-grad forward of one image with a forward hook on every sub-module (hooks
always removed, the model's modes and ``requires_grad`` flags restored). A module *finishes* when its forward
returns; a container finishes after its children.

**CNNs** (:func:`find_cam_layer`, :func:`find_nas_layers`). A *feature map* is a 4-D ``(N, C, h, w)`` output with
more than one spatial position, whose aspect ratio is the input's (so channels-last ``(N, h, w, C)`` tensors, as in
torchvision's Swin, are not mistaken for one), of a module that runs exactly once per forward pass.

* CAM layer: the last module to finish with a feature map that is not the output of a pooling layer. A container
  whose output *is* a pooling layer's tensor is skipped too. So VGG gets ``features.<last ReLU>`` (the last conv
  block before its final max-pool and the head's 7×7 adaptive pool, as in the Grad-CAM paper), ResNets ``layer4``,
  DenseNet/ConvNeXt/MobileNet/EfficientNet ``features``, Inception-V3 ``Mixed_7c``.
* NAS layers: at each spatial resolution, among the modules with a feature map there, the shallowest in the module
  tree (fewest dots in its name: a stage before its blocks, a block before its layers), the last to finish among
  those; outputs of *adaptive* pooling layers (the head's) excluded. So ResNet-50 gets ``relu, layer1 … layer4``
  and EfficientNet its stage outputs, not the 1×1 expansion that opens the next stage at the same resolution
  (which :func:`spixel.segmentation.nas.auto_layers`, the last module to finish, picks for plain modules).

**Vision Transformers** (:func:`token_prefix`): a module with a patch embedding whose blocks map token tensors
``(N, T, D)`` to token tensors; ``T = prefix + h·w`` where ``prefix`` counts the class (and register /
distillation) tokens. :func:`to_grid` drops the prefix tokens and reshapes the rest to ``(N, D, h, w)`` (the patch
grid, row-major, as the patch embedding flattens it); :func:`from_grid` puts a grid back into the token tensor.

* CAM layer: the first token-output sub-module of the last transformer block (its first LayerNorm, the input of
  the last self-attention: timm ``blocks.11.norm1``, torchvision ``encoder.layers.encoder_layer_11.ln_1``). The
  last block's *output* would be useless with a class-token head: its patch tokens no longer reach the logits.
* NAS layers: the outputs of four blocks evenly spaced in depth (blocks 3, 6, 9, 12 of 12).
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import BadParameterError
from .state import frozen

__all__ = [
    "find_cam_layer",
    "find_nas_layers",
    "from_grid",
    "grid_shape",
    "refuse_transformer",
    "to_grid",
    "token_prefix",
    "transformer_blocks",
]

#: Pooling layers whose outputs are never the CAM layer.
_POOLS: tuple[type[nn.Module], ...] = (
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
    nn.LPPool2d,
)
_ADAPTIVE: tuple[type[nn.Module], ...] = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


def _is_pool(m: nn.Module, adaptive_only: bool = False) -> bool:
    kinds = _ADAPTIVE if adaptive_only else _POOLS
    if isinstance(m, kinds):
        return True
    # timm's SelectAdaptivePool2d / AdaptiveAvgMaxPool2d: global pooling wrappers
    return type(m).__name__ in ("SelectAdaptivePool2d", "AdaptiveAvgMaxPool2d", "AdaptiveCatAvgMaxPool2d")


@dataclass
class _Out:
    name: str
    shape: tuple[int, ...]
    pooled: bool  # the tensor is the output of a pooling layer
    adaptive: bool  # ... of an adaptive (global) pooling layer


_CACHE: dict[tuple[int, tuple[int, ...], str], Any] | None = None


@contextlib.contextmanager
def shared_trace() -> Iterator[None]:
    """Within the context, the finders share one forward per (module, input shape, device) instead of one each."""
    global _CACHE
    old, _CACHE = _CACHE, {}
    try:
        yield
    finally:
        _CACHE = old


def _trace(module: nn.Module, x: Tensor) -> tuple[list[_Out], Counter[str], dict[str, tuple[int, ...] | None]]:
    """One no-grad forward of ``x``: every module's output in finishing order, call counts, and the input shape of
    every module's first call (``None`` when its first argument is not a tensor)."""
    key = (id(module), tuple(x.shape), str(x.device))
    if _CACHE is not None and key in _CACHE:
        return _CACHE[key]
    result = _trace_once(module, x)
    if _CACHE is not None:
        _CACHE[key] = result
    return result


def _trace_once(module: nn.Module, x: Tensor) -> tuple[list[_Out], Counter[str], dict[str, tuple[int, ...] | None]]:
    order: list[_Out] = []
    calls: Counter[str] = Counter()
    in_shapes: dict[str, tuple[int, ...] | None] = {}
    keep: list[Tensor] = []  # keep outputs alive so that their ids stay unique during the pass
    pooled: dict[int, bool] = {}  # id(tensor) → adaptive?

    def recorder(name: str, m: nn.Module) -> Any:
        def hook(_m: nn.Module, inp: Any, out: Any) -> None:
            calls[name] += 1
            if name not in in_shapes:
                first = inp[0] if isinstance(inp, tuple) and inp else None
                in_shapes[name] = tuple(first.shape) if isinstance(first, Tensor) else None
            if not isinstance(out, Tensor):
                return
            keep.append(out)
            if _is_pool(m):
                pooled.setdefault(id(out), _is_pool(m, adaptive_only=True))
            p = id(out) in pooled
            order.append(_Out(name, tuple(out.shape), p, p and pooled[id(out)]))

        return hook

    handles = []
    try:
        for name, m in module.named_modules():
            if name:
                handles.append(m.register_forward_hook(recorder(name, m)))
        with frozen(module), torch.no_grad():
            module(x)
    finally:
        for h in handles:
            h.remove()
    return order, calls, in_shapes


def _feature_map(shape: tuple[int, ...], hw: tuple[int, int]) -> bool:
    """A 4-D ``(N, C, h, w)`` shape with more than one position, laid out as the input ``hw`` (same orientation)."""
    if len(shape) != 4 or shape[-1] * shape[-2] <= 1:
        return False
    h, w = shape[-2], shape[-1]
    H, W = hw
    if H == W:
        return h == w
    return (h >= w) == (H >= W) and abs(h * W - w * H) <= max(H, W)


# ------------------------------------------------------------------------------------------ transformers
def token_prefix(module: nn.Module) -> int | None:
    """The number of prefix (class / register / distillation) tokens of a Vision Transformer, or ``None`` for a
    module that is not one (torchvision ``VisionTransformer``; timm models with a ``patch_embed`` and
    ``num_prefix_tokens``, e.g. ViT, DeiT, BEiT, EVA). Swin-style models (no token sequence) are ``None``."""
    vt = sys.modules.get("torchvision.models.vision_transformer")  # not loaded: the module cannot be one of its ViTs
    if vt is not None and isinstance(module, vt.VisionTransformer):
        return 1
    if hasattr(module, "patch_embed") and hasattr(module, "num_prefix_tokens") and hasattr(module, "blocks"):
        return int(module.num_prefix_tokens)
    return None


def grid_shape(tokens: int, prefix: int, hw: tuple[int, int] | None = None) -> tuple[int, int]:
    """``(h, w)`` of the patch grid of ``tokens`` tokens with ``prefix`` prefix tokens (square unless the input
    ``hw`` is not); :class:`BadParameterError` when the patch tokens do not form such a grid."""
    p = tokens - prefix
    if hw is not None and hw[0] != hw[1]:
        h = round(math.sqrt(p * hw[0] / hw[1]))
        if h > 0 and p % h == 0:
            return h, p // h
    s = math.isqrt(max(p, 0))
    if p <= 0 or s * s != p:
        raise BadParameterError(f"{tokens} tokens minus {prefix} prefix token(s) do not form a patch grid")
    return s, s


def to_grid(tokens: Tensor, prefix: int, hw: tuple[int, int] | None = None) -> Tensor:
    """``(N, T, D)`` tokens → ``(N, D, h, w)``: prefix tokens dropped, patch tokens in row-major grid order."""
    n, t, d = tokens.shape
    h, w = grid_shape(t, prefix, hw)
    return tokens[:, prefix:].transpose(1, 2).reshape(n, d, h, w)


def from_grid(grid: Tensor, tokens: Tensor, prefix: int) -> Tensor:
    """Inverse of :func:`to_grid`: the prefix tokens of ``tokens`` (detached) followed by ``grid``'s cells."""
    patch = grid.flatten(2).transpose(1, 2)
    return torch.cat([tokens[:, :prefix].detach(), patch], dim=1)


def grid_hook(prefix: int | None, hw: tuple[int, int]) -> Callable[[Tensor], Tensor] | None:
    """A function turning a 3-D token output into its grid, or ``None`` for a CNN (``prefix is None``)."""
    if prefix is None:
        return None
    return lambda t: to_grid(t, prefix, hw)


def transformer_blocks(module: nn.Module, x: Tensor, prefix: int) -> list[str]:
    """Names of the transformer blocks in execution order: the children of the container with the most children
    of one class whose outputs (and inputs) are token tensors ``(N, T, D)``."""
    order, calls, in_shapes = _trace(module, x)
    out_shape = {o.name: o.shape for o in order}
    best: list[str] = []
    for cname, c in module.named_modules():
        if not isinstance(c, (nn.Sequential, nn.ModuleList)):
            continue
        kids = [f"{cname}.{k}" if cname else k for k, _ in c.named_children()]
        classes = Counter(type(m).__name__ for m in c.children())
        if not classes:
            continue
        top = classes.most_common(1)[0][0]
        blocks = [
            k
            for k, m in zip(kids, c.children(), strict=True)
            if type(m).__name__ == top
            and calls[k] == 1
            and len(out_shape.get(k, ())) == 3
            and in_shapes.get(k) is not None
            and len(in_shapes[k] or ()) == 3
        ]
        if len(blocks) > len(best):
            best = blocks
    if not best:
        raise BadParameterError("found no transformer blocks with (N, T, D) token outputs; pass the layer names")
    return best


def _first_token_child(module: nn.Module, block: str, x: Tensor) -> str:
    order, calls, _ = _trace(module, x)
    for o in order:  # finishing order: the first sub-module of the block to finish is its first step
        if o.name.startswith(block + ".") and calls[o.name] == 1 and len(o.shape) == 3:
            return o.name
    return block


# ------------------------------------------------------------------------------------------ finders
def find_cam_layer(module: nn.Module, x: Tensor, tokens: int | None = None) -> str:
    """The CAM layer of ``module`` (see the module docstring) from one forward of ``x[:1]``; ``tokens``: the prefix
    token count of a ViT (:func:`token_prefix`), ``None`` for a CNN."""
    x = x[:1]
    if tokens is not None:
        blocks = transformer_blocks(module, x, tokens)
        return _first_token_child(module, blocks[-1], x)
    order, calls, _ = _trace(module, x)
    hw = (int(x.shape[-2]), int(x.shape[-1]))
    cands = [o.name for o in order if calls[o.name] == 1 and _feature_map(o.shape, hw) and not o.pooled]
    if not cands:
        raise BadParameterError(
            "found no layer with a (N, C, h, w) output to use for CAM; pass layer= a name from model.named_modules()"
        )
    return cands[-1]


def find_nas_layers(module: nn.Module, x: Tensor, tokens: int | None = None, depths: int = 4) -> list[str]:
    """NAS's multi-depth layers of ``module`` (see the module docstring) from one forward of ``x[:1]``."""
    x = x[:1]
    if tokens is not None:
        blocks = transformer_blocks(module, x, tokens)
        n = len(blocks)
        picks = sorted({max(0, round(n * (k + 1) / depths) - 1) for k in range(min(depths, n))})
        return [blocks[i] for i in picks]
    order, calls, _ = _trace(module, x)
    hw = (int(x.shape[-2]), int(x.shape[-1]))
    best: dict[tuple[int, int], tuple[int, int, str]] = {}  # resolution → (depth, -index, name), the smallest wins
    for i, o in enumerate(order):
        if calls[o.name] == 1 and _feature_map(o.shape, hw) and not o.adaptive:
            res, cand = (o.shape[-2], o.shape[-1]), (o.name.count("."), -i, o.name)
            if res not in best or cand < best[res]:
                best[res] = cand
    last = {res: (-neg, name) for res, (_, neg, name) in best.items()}
    if not last:
        raise BadParameterError(
            "NAS found no layer with a (N, C, h, w) output; pass layers= names from model.module.named_modules()"
        )
    return [name for _, name in sorted(last.values())]


def refuse_transformer(model: Any, method: str, why: str) -> None:
    """One-line :class:`BadParameterError` when ``model`` (an adapter or module) is a Vision Transformer."""
    module = getattr(model, "module", model)
    prefix = getattr(model, "tokens", None)
    if prefix is None and isinstance(module, nn.Module):
        prefix = token_prefix(module)
    if prefix is not None:
        name = getattr(model, "name", type(module).__name__)
        raise BadParameterError(f"{method} does not apply to the Vision Transformer {name}: {why}")

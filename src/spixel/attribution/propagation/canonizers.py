"""Canonizers: rewrite a network *for the duration of one explanation* into a form the rules apply to.

Nothing is modified in place: parameters are never touched, and the only change is an instance attribute
``forward`` on some container modules, deleted on exit (the :class:`~.core.Propagator` restores everything).

* :func:`batchnorm_merges` — a batch-norm that directly follows a convolution or dense layer (consecutive in
  depth-first module order, as Zennit's ``SequentialMergeBatchNorm``; checked again at run time: the batch-norm must
  read that layer's output) is folded into the layer *for the rules only*: the layer's rule sees
  ``W' = W·γ/√(σ²+ε)``, ``b' = (b − μ)·γ/√(σ²+ε) + β`` and the batch-norm passes relevance unchanged. Unlike
  Zennit, which rewrites the parameters and leaves an emptied batch-norm that still divides by ``√(1+ε)``, the
  forward pass stays the model's own.
* :data:`RESIDUAL_BLOCKS` — residual additions written in a ``forward`` method are invisible to module hooks; the
  forward of a known block is replaced by the same computation with the addition routed through
  :meth:`~.core.Propagator.add`, where the composite's ``sum`` rule (``Norm``: ``R_i = x_i R / (x_1 + x_2)``)
  splits the relevance between the residual branch and the shortcut (Zennit's ``ResNetCanonizer``). Known blocks:
  torchvision's ``BasicBlock``/``Bottleneck``, spixel's :class:`~spixel.train.nets.BasicBlock`, timm's
  ``InvertedResidual``/``DepthwiseSeparableConv`` (EfficientNet, MobileNetV2; the addition when ``has_skip``) and
  timm's ``BatchNormAct2d`` (batch-norm, dropout and activation fused in one module: split into its three steps).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import cache
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from .composites import BATCHNORM_TYPES, LINEAR_TYPES

if TYPE_CHECKING:
    from .core import Propagator

__all__ = ["RESIDUAL_BLOCKS", "batchnorm_merges", "merged_parameters", "residual_forward"]


def _units(module: nn.Module, prefix: str = "") -> Iterator[tuple[str, nn.Module]]:
    """Leaves in depth-first order, a batch-norm (even one with children, timm's ``BatchNormAct2d``) as one unit."""
    children = list(module.named_children())
    if not children or isinstance(module, BATCHNORM_TYPES):
        yield prefix, module
        return
    for n, c in children:
        yield from _units(c, f"{prefix}.{n}" if prefix else n)


def batchnorm_merges(module: nn.Module) -> dict[nn.Module, nn.Module]:
    """``{batch_norm: linear}`` for every batch-norm that directly follows a linear layer with as many outputs."""
    out: dict[nn.Module, nn.Module] = {}
    prev: nn.Module | None = None
    for _, m in _units(module):
        if isinstance(m, BATCHNORM_TYPES) and isinstance(prev, LINEAR_TYPES) and m.track_running_stats:
            n_out = prev.out_features if isinstance(prev, nn.Linear) else prev.out_channels
            if m.num_features == n_out and m.running_mean is not None:
                out[m] = prev
        prev = m
    return out


def merged_parameters(linear: nn.Module, bn: nn.Module) -> tuple[Tensor, Tensor]:
    """``(W', b')`` of ``bn ∘ linear`` (eval-mode statistics), detached."""
    w = linear.weight.detach()
    scale = bn.running_var.detach().add(bn.eps).rsqrt()
    if bn.weight is not None:
        scale = scale * bn.weight.detach()
    shift = bn.bias.detach() if bn.bias is not None else torch.zeros_like(scale)
    b0 = linear.bias.detach() if linear.bias is not None else torch.zeros_like(scale)
    w2 = w * scale.view(-1, *([1] * (w.ndim - 1)))
    b2 = (b0 - bn.running_mean.detach()) * scale + shift
    return w2, b2


# ---------------------------------------------------------------------------------------------- residual blocks
def _tv_basic(p: Propagator, self: Any, x: Tensor) -> Tensor:
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.bn2(self.conv2(out))
    identity = self.downsample(x) if self.downsample is not None else x
    return self.relu(p.add(out, identity))


def _tv_bottleneck(p: Propagator, self: Any, x: Tensor) -> Tensor:
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.relu(self.bn2(self.conv2(out)))
    out = self.bn3(self.conv3(out))
    identity = self.downsample(x) if self.downsample is not None else x
    return self.relu(p.add(out, identity))


def _spixel_basic(p: Propagator, self: Any, x: Tensor) -> Tensor:
    y = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
    return self.relu2(p.add(y, self.shortcut(x)))


def _timm_inverted_residual(p: Propagator, self: Any, x: Tensor) -> Tensor:
    shortcut = x
    if getattr(self, "conv_s2d", None) is not None:
        x = self.bn_s2d(self.conv_s2d(x))
    x = self.bn2(self.conv_dw(self.bn1(self.conv_pw(x))))
    x = self.bn3(self.conv_pwl(self.se(self.aa(x))))
    if self.has_skip:
        x = p.add(self.drop_path(x), shortcut)
    return x


def _timm_depthwise_separable(p: Propagator, self: Any, x: Tensor) -> Tensor:
    shortcut = x
    if getattr(self, "conv_s2d", None) is not None:
        x = self.bn_s2d(self.conv_s2d(x))
    x = self.bn1(self.conv_dw(x))
    x = self.bn2(self.conv_pw(self.se(self.aa(x))))
    if self.has_skip:
        x = p.add(self.drop_path(x), shortcut)
    return x


def _timm_bn_act(p: Propagator, self: Any, x: Tensor) -> Tensor:
    return self.act(self.drop(p.batchnorm(self, x)))


@cache
def _blocks() -> dict[type, Callable[..., Tensor]]:
    from torchvision.models.resnet import BasicBlock as TVBasic
    from torchvision.models.resnet import Bottleneck as TVBottleneck

    from ...train.nets import BasicBlock

    out: dict[type, Callable[..., Tensor]] = {
        TVBasic: _tv_basic,
        TVBottleneck: _tv_bottleneck,
        BasicBlock: _spixel_basic,
    }
    try:
        from timm.layers.norm_act import BatchNormAct2d
        from timm.models._efficientnet_blocks import DepthwiseSeparableConv, InvertedResidual
    except ImportError:  # pragma: no cover - timm is a dependency
        return out
    out.update({InvertedResidual: _timm_inverted_residual, DepthwiseSeparableConv: _timm_depthwise_separable,
                BatchNormAct2d: _timm_bn_act})  # fmt: skip
    return out


def residual_forward(module: nn.Module) -> Callable[..., Tensor] | None:
    """The canonical forward ``f(propagator, module, x)`` of a known block (exact type), or ``None``."""
    return _blocks().get(type(module))


#: the block types with a canonical forward (resolved lazily: torchvision/timm imports)
RESIDUAL_BLOCKS = _blocks

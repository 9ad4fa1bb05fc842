"""Guided backpropagation and deconvolution: target-logit gradients with modified ReLU backward rules.

Spec §2.1 (SWAG pixel scores). Guided backprop (Springenberg et al. 2015) passes back, through every
rectifier, ``relu(grad_out) · 1[0 < x (< 6)]``; deconvolution (Zeiler & Fergus 2014) passes back
``relu(grad_out)`` and ignores the forward mask. Everything else (convolutions, pooling, BatchNorm,
residual sums) keeps its ordinary gradient.

Which activations are modified: every ``nn.ReLU`` and ``nn.ReLU6`` *module* (subclasses included), however
often a module is re-used per forward pass (torchvision ResNets) and whether or not it is ``inplace``
(timm's ``BatchNormAct2d.act``). Functional calls (``F.relu``, ``torch.relu``, ``x.clamp(0, 6)``) inside a
``forward`` are *not* intercepted and keep their plain gradient, nor are other activations (``nn.Hardtanh``,
``nn.LeakyReLU``, SiLU …). For ReLU networks the result equals Captum's ``GuidedBackprop``/``Deconvolution``;
on ReLU6 networks (EfficientNet-Lite, MobileNet) Captum and Zennit leave ReLU6 untouched, we do not.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from ..models.adapter import ModelAdapter
from ..models.layers import refuse_transformer
from ..types import Explanation, TargetLike
from ._core import check_int, explainer, finish, logits_targets_and_grad
from .gradients import maxabs

#: The rules of :func:`rectifier_rule`: ``"guided"`` (guided backprop) and ``"deconv"`` (deconvolution).
RULES = ("guided", "deconv")


class _RectifierFn(torch.autograd.Function):
    """``y = clamp(x, 0, upper)`` (``upper=None``: ReLU) with the backward ``relu(g) · mask``, where the mask
    is ``1[0 < x < upper]`` for guided backprop and 1 for deconvolution.

    Guided backprop saves the output ``y`` (``0 < y < upper`` exactly when ``0 < x < upper``) and applies the
    mask with ATen's fused threshold / hardtanh backward kernels, as the plain ReLU's own backward does;
    autograd's version counter raises an error should anything modify ``y`` in place before the backward.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, upper: float | None, guided: bool, inplace: bool) -> Tensor:  # type: ignore[override]
        if inplace:
            ctx.mark_dirty(x)
            y = x.clamp_(min=0.0) if upper is None else x.clamp_(0.0, upper)
        else:
            y = x.clamp(min=0.0) if upper is None else x.clamp(0.0, upper)
        ctx.guided, ctx.upper = guided, upper
        if guided:
            ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, None, None, None]:  # type: ignore[override]
        out = g.clamp(min=0.0)
        if ctx.guided:
            (y,) = ctx.saved_tensors
            if ctx.upper is None:
                out = torch.ops.aten.threshold_backward(out, y, 0.0)
            else:
                out = torch.ops.aten.hardtanh_backward(out, y, 0.0, ctx.upper)
        return out, None, None, None


def _modified_forward(module: nn.Module, x: Tensor, *, upper: float | None, guided: bool) -> Tensor:
    return _RectifierFn.apply(x, upper, guided, bool(getattr(module, "inplace", False)))


@contextlib.contextmanager
def rectifier_rule(module: nn.Module, rule: str) -> Iterator[int]:
    """Within the context, every ``nn.ReLU`` / ``nn.ReLU6`` sub-module of ``module`` back-propagates with
    ``rule`` (``"guided"`` or ``"deconv"``); yields the number of modules modified.

    Implemented by shadowing each module's ``forward`` with an instance attribute that applies
    :class:`_RectifierFn` (same forward values, same in-place behaviour); the attribute is deleted on exit,
    even after an exception, so the model is left exactly as found: same module objects, no hooks, same flags.
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    guided = rule == "guided"
    patched: list[tuple[nn.Module, bool, Any]] = []
    try:
        for m in module.modules():
            if isinstance(m, nn.ReLU6):
                upper: float | None = 6.0
            elif isinstance(m, nn.ReLU):
                upper = None
            else:
                continue
            had = "forward" in m.__dict__
            patched.append((m, had, m.__dict__.get("forward")))
            m.forward = functools.partial(_modified_forward, m, upper=upper, guided=guided)  # type: ignore[method-assign]
        yield len(patched)
    finally:
        for m, had, old in reversed(patched):
            if had:
                m.forward = old  # type: ignore[method-assign]
            else:
                del m.forward


def _rectified_gradient(
    model: ModelAdapter, x: Tensor, target: TargetLike, rule: str, method: str, batch_size: int
) -> Explanation:
    t0 = time.perf_counter()
    check_int("batch_size", batch_size)
    refuse_transformer(model, method, "its rule is defined for ReLU networks, not for attention and GELU")
    with rectifier_rule(model.module, rule):  # forward values are unchanged: its logits are the model's
        logits, t, raw = logits_targets_and_grad(model.module, x, target, batch_size)
    return finish(model, method, maxabs(raw), raw, logits, t, {"batch_size": batch_size}, None, t0)


@explainer("guided_backprop", family="guided", reduction="max |·| over channels", reduce2d="maxabs")
def guided_backprop(model: ModelAdapter, x: Tensor, target: TargetLike = None, *, batch_size: int = 32) -> Explanation:
    """Guided Backpropagation (Springenberg et al. 2015; spec §2.1): gradient of the target logit where
    every ``nn.ReLU`` passes back ``relu(g)·1[x>0]`` and every ``nn.ReLU6`` ``relu(g)·1[0<x<6]`` (functional
    ReLUs are not intercepted). ``raw`` = that gradient ``(N, C, H, W)``; map = max over channels of |raw|.
    """
    return _rectified_gradient(model, x, target, "guided", "guided_backprop", batch_size)


@explainer("deconvolution", family="guided", reduction="max |·| over channels", reduce2d="maxabs")
def deconvolution(model: ModelAdapter, x: Tensor, target: TargetLike = None, *, batch_size: int = 32) -> Explanation:
    """Deconvolution / DeconvNet (Zeiler & Fergus 2014; spec §2.1): gradient of the target logit where every
    ``nn.ReLU`` / ``nn.ReLU6`` passes back ``relu(g)``, ignoring the forward mask (functional ReLUs are not
    intercepted). ``raw`` = that signal ``(N, C, H, W)``; map = max over channels of |raw|.
    """
    return _rectified_gradient(model, x, target, "deconv", "deconvolution", batch_size)

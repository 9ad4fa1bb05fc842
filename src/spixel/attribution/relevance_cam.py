"""Relevance-CAM (Lee, Kim, Park, Eo & Hwang, "Relevance-CAM: Your model already knows where to look", CVPR 2021;
"RCAM" in paper 004), on the propagation core.

A class activation map whose channel weights are the *relevance* that reaches the layer rather than gradients:
``R = R_t − R_others`` at the layer output (contrastive LRP with α1β0 rules), ``α_k = Σ_ij R_kij``,
``map = Σ_k α_k A_k``, upsampled bilinearly to the input.

**Choices, from the authors' code** (``mongeoroo/Relevance-CAM``, ``Multi_CAM.py``, ``LRP_util.py``,
``modules/layers.py``): the relevance starts one-hot on the target (``Tt``) and with ``1/K`` on every other class
(``Tn``; the code writes ``1/1000`` for ImageNet); convolutions and dense layers take the α-β rule with α = 1
(``relprop(·, 1)``, β = 0: :class:`~.propagation.AlphaBeta` ``(1, 0)``); batch-norm passes relevance unchanged (its
z-rule without bias is the identity; not merged into the convolution); residual sums are split by the z-rule and
rescaled by each branch's share of ``|Σ|`` (:class:`~.propagation.NormHedge`, their ``Add.relprop``); max pooling
by its gradient, average pooling by the z-rule. The map is *signed* (no ReLU: the code shows it with a diverging
colormap). The layer defaults to the adapter's ``"cam"`` role (the last convolutional block, as Grad-CAM); the
released script's default for ResNet-50 is ``layer2`` (``layer="layer2"``), whose shallower maps the paper argues for.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import BadParameterError
from ..models.adapter import ModelAdapter
from ..types import Explanation, TargetLike, resolve_targets
from ._core import check_int, explainer, finish
from .cam import resolve_layer
from .propagation import AlphaBeta, Composite, Gradient, Norm, NormHedge, Pass, Propagator


def relevance_cam_composite(stabilizer: float = 1e-9) -> Composite:
    """The rules of the Relevance-CAM code: α1β0 on convolutions and dense layers, hedged residual sums."""
    ab = AlphaBeta(1.0, 0.0, stabilizer)
    return Composite("relevance_cam", ab, ab, pool=Norm(stabilizer), sum=NormHedge(stabilizer),
                     maxpool=Gradient(), activation=Pass(), batchnorm=Pass())  # fmt: skip


@explainer("relevance_cam", family="cam", reduction="relevance-weighted channel sum at a layer, upsampled")
def relevance_cam(
    model: ModelAdapter,
    x: Tensor,
    target: TargetLike = None,
    *,
    layer: str | None = None,
    batch_size: int = 16,
) -> Explanation:
    """Relevance-CAM (Lee et al. 2021): ``Σ_k (Σ_ij R_kij) A_k`` at ``layer`` (a role or module name, default the
    ``"cam"`` role) with ``R`` the contrastive relevance of the target there (see the module docstring); signed,
    upsampled to the input. ``raw`` is ``None``."""
    t0 = time.perf_counter()
    check_int("batch_size", batch_size)
    name, mod = resolve_layer(model, layer, x)
    n = x.shape[0]
    maps, all_logits = [], []
    t: Tensor | None = None
    with Propagator(model.module, relevance_cam_composite(), merge_batchnorm=False) as p:
        for s in range(0, n, batch_size):
            logits, _, (act,) = p.forward(x[s : s + batch_size], at=[mod])
            if logits.ndim != 2:
                raise BadParameterError(f"the model must return logits of shape (N, K), got {tuple(logits.shape)}")
            if act.ndim != 4:
                raise BadParameterError(f"layer {name!r} must output (N, C, h, w), got {tuple(act.shape)}")
            if t is None and target is not None:
                t = resolve_targets(target, n, logits.shape[1]).to(x.device)
            ti = t[s : s + batch_size] if t is not None else logits.detach().argmax(1)
            k = logits.shape[1]
            tt = torch.zeros_like(logits).scatter(1, ti.view(-1, 1), 1.0)
            tn = torch.full_like(logits, 1.0 / k).scatter(1, ti.view(-1, 1), 0.0)
            (r_t,) = p.backward(logits, [act], tt, retain=True)
            (r_n,) = p.backward(logits, [act], tn)
            weights = (r_t - r_n).sum((2, 3), keepdim=True)
            maps.append((weights * act.detach()).sum(1))
            all_logits.append(logits.detach())
            del logits, act
    logits = torch.cat(all_logits)
    if t is None:
        t = resolve_targets(None, n, logits.shape[1], predicted=logits.argmax(1)).to(x.device)
    cam = torch.cat(maps)
    attr = F.interpolate(cam.unsqueeze(1), size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    return finish(model, "relevance_cam", attr, None, logits, t, {"layer": name, "batch_size": batch_size}, None, t0)

"""c*EB — contrastive excitation backprop (Zhang et al., "Top-down neural attention by excitation backprop", ECCV
2016 / IJCV 2018), on the propagation core; TorchRay's ``contrastive_excitation_backprop`` is the reference.

Excitation backprop carries a *marginal winning probability* down the network: every convolution and dense
layer shares its output's probability among its inputs in proportion to ``x_i w⁺_ij`` (:class:`~.propagation.
Excitation`), average pooling and residual sums in proportion to their inputs, batch-norm passes it, ReLU and max
pooling take their gradient. The contrastive variant subtracts, at a ``contrast_layer`` high in the network, the
probability that reaches it when the classifier's weights are negated (the "dual" of the target: all that speaks
against it), and propagates the difference down to the ``saliency_layer``; the map is the positive part of its
channel sum, upsampled bilinearly to the input.

**Choices, from TorchRay** (``torchray/attribution/excitation_backprop.py``, ``examples/attribution_benchmark.py``,
commit 6a198ee): the seed is one-hot (1 on the target); the classifier layer is the last convolution or dense
layer with a weight; ``1e-20`` is added to every denominator; the layers of its pointing benchmark —
VGG-16 ``features.23`` (pool4) / ``classifier.4`` (relu7), ResNet-50 ``layer3`` / ``avgpool`` — are our defaults
for torchvision VGGs and ResNets. Elsewhere the contrast layer defaults to the last non-transparent leaf run before
the classifier (which is what those choices are: relu7, the global pool) and the saliency layer to the adapter's
``"cam"`` role. Ours runs one forward pass (TorchRay runs two, flipping the classifier weights in place) and reads
the negated weights in the backward pass only; batch-norm is merged into the preceding layer for the rules (TorchRay
passes relevance through BN as well — with the bias-free ``w⁺`` rule the merge only rescales each channel).
Upsampling (bilinear, ``align_corners=False``) as the CAM methods.
"""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import BadParameterError
from ..models.adapter import ModelAdapter
from ..types import Explanation, TargetLike, resolve_targets
from ._core import check_int, explainer, finish
from .cam import resolve_layer
from .propagation import Composite, Excitation, Gradient, Norm, Pass, Propagator
from .propagation.composites import LINEAR_TYPES
from .propagation.core import TRANSPARENT


def excitation_composite(stabilizer: float = 1e-20) -> Composite:
    """Excitation backprop's rules as a composite (TorchRay's ``ExcitationBackpropContext``)."""
    eb = Excitation(stabilizer)
    return Composite("excitation_backprop", eb, eb, pool=Norm(stabilizer), sum=Norm(stabilizer),
                     maxpool=Gradient(), activation=Gradient(), batchnorm=Pass())  # fmt: skip


def classifier_layer(module: nn.Module) -> tuple[str, nn.Module]:
    """The last convolution or dense layer with a weight, in parameter order (TorchRay's ``_get_classifier_layer``)."""
    mods = dict(module.named_modules())
    for pname, _ in reversed(list(module.named_parameters())):
        if pname.endswith(".weight"):
            name = pname[: -len(".weight")]
            if isinstance(mods.get(name), LINEAR_TYPES):
                return name, mods[name]
    raise BadParameterError(
        "contrastive_eb needs a model whose last layer with a weight is a convolution or dense layer"
    )


def _torchray_layers(module: nn.Module) -> tuple[str, str] | None:
    from torchvision.models import VGG, ResNet

    if isinstance(module, VGG) and len(module.features) == 31 and isinstance(module.features[23], nn.MaxPool2d):
        return "features.23", "classifier.4"  # VGG-16: pool4, relu7
    if isinstance(module, ResNet):
        return "layer3", "avgpool"
    return None


def _layer_before(module: nn.Module, classifier: nn.Module, x: Tensor) -> str:
    """The last leaf (not Dropout/Flatten/Identity) that runs before ``classifier`` in one forward pass."""
    names = {m: n for n, m in module.named_modules()}
    order: list[str] = []
    handles = []

    def hook(m: nn.Module, _i: Any) -> None:
        order.append(names[m])

    for m in module.modules():
        if next(m.children(), None) is None and not isinstance(m, TRANSPARENT):
            handles.append(m.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            module(x)
    finally:
        for h in handles:
            h.remove()
    cname = names[classifier]
    if cname not in order or order.index(cname) == 0:
        raise BadParameterError("contrastive_eb: no layer runs before the classifier; name contrast_layer")
    return order[order.index(cname) - 1]


@explainer("contrastive_eb", family="propagation", reduction="ReLU of the channel sum at a layer, upsampled")
def contrastive_eb(
    model: ModelAdapter,
    x: Tensor,
    target: TargetLike = None,
    *,
    saliency_layer: str | None = None,
    contrast_layer: str | None = None,
    batch_size: int = 16,
) -> Explanation:
    """Contrastive excitation backprop (c*EB; Zhang et al. 2016, TorchRay's reference implementation): the excitation
    reaching ``contrast_layer`` through the negated classifier is subtracted from the target's, and the difference
    carried down to ``saliency_layer`` (a role or module name); map = ``ReLU(Σ_channels P)`` at that layer,
    upsampled to the input. Defaults: TorchRay's benchmark layers for torchvision VGG/ResNet, otherwise the
    ``"cam"`` role and the layer that feeds the classifier (see the module docstring). ``raw`` is ``None``.
    """
    t0 = time.perf_counter()
    check_int("batch_size", batch_size)
    mod = model.module
    cls_name, cls = classifier_layer(mod)
    tr = _torchray_layers(mod)
    if saliency_layer is None and tr is not None:
        saliency_layer = tr[0]
    if contrast_layer is None:
        contrast_layer = tr[1] if tr is not None else _layer_before(mod, cls, x[:1])
    s_name, s_mod = resolve_layer(model, saliency_layer, x)
    c_name, c_mod = resolve_layer(model, contrast_layer, x)
    n = x.shape[0]
    maps, all_logits = [], []
    t: Tensor | None = None
    with Propagator(mod, excitation_composite()) as p:
        if cls not in p.bindings:
            raise BadParameterError(f"the classifier layer {cls_name!r} has no excitation rule")
        for s in range(0, n, batch_size):
            logits, _, (sal, con) = p.forward(x[s : s + batch_size], at=[s_mod, c_mod])
            if logits.ndim != 2:
                raise BadParameterError(f"the model must return logits of shape (N, K), got {tuple(logits.shape)}")
            if sal.ndim != 4:
                raise BadParameterError(f"saliency_layer {s_name!r} must output (N, C, h, w), got {tuple(sal.shape)}")
            if t is None and target is not None:
                t = resolve_targets(target, n, logits.shape[1]).to(x.device)
            ti = t[s : s + batch_size] if t is not None else logits.detach().argmax(1)
            seed = torch.zeros_like(logits).scatter(1, ti.view(-1, 1), 1.0)
            with p.override(cls, Excitation(1e-20, negate=True)):
                (neg,) = p.backward(logits, [con], seed, retain=True)
            (pos,) = p.backward(logits, [con], seed, retain=True)
            (ps,) = p.backward(con, [sal], pos - neg)
            maps.append(ps.detach().sum(1).clamp(min=0))
            all_logits.append(logits.detach())
            del logits, sal, con
    logits = torch.cat(all_logits)
    if t is None:
        t = resolve_targets(None, n, logits.shape[1], predicted=logits.argmax(1)).to(x.device)
    m = torch.cat(maps)
    attr = F.interpolate(m.unsqueeze(1), size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    params = {
        "saliency_layer": s_name,
        "contrast_layer": c_name,
        "classifier_layer": cls_name,
        "batch_size": batch_size,
    }
    return finish(model, "contrastive_eb", attr, None, logits, t, params, None, t0)

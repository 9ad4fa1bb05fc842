"""c*EB (contrastive excitation backprop) against a hand computation on a tiny net from the rule's formulas
(TorchRay does not install with our torch), TorchRay's default layers, and class-specificity."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import spixel
from spixel.attribution.contrastive import classifier_layer, contrastive_eb
from spixel.errors import BadParameterError


def _tiny() -> nn.Module:
    torch.manual_seed(4)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),  # 0, 1: saliency layer = 1
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),  # 2, 3
        nn.Linear(4, 5), nn.ReLU(),  # 4, 5: contrast layer = 5
        nn.Linear(5, 3),  # 6: classifier
    )  # fmt: skip
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net.double()


def _eb_linear(a: torch.Tensor, w: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """``P_i = Σ_j a_i w⁺_ji P_j / (Σ_i' a_i' w⁺_ji' + 1e-20)`` for one sample (loops)."""
    wp = w.clamp(min=0)
    out = torch.zeros_like(a)
    for j in range(w.shape[0]):
        z = sum(float(a[i] * wp[j, i]) for i in range(a.shape[0])) + 1e-20
        for i in range(a.shape[0]):
            out[i] += a[i] * wp[j, i] * p[j] / z
    return out


def _reference(net: nn.Module, x: torch.Tensor, t: int) -> torch.Tensor:
    conv, fc1, fc2 = net[0], net[4], net[6]
    a1 = F.relu(conv(x.unsqueeze(0)))[0]  # (4, h, w) saliency-layer activations
    g = a1.mean((1, 2))  # pooled
    h_pre = fc1(g)
    h = F.relu(h_pre)  # contrast-layer activations
    e = torch.zeros(3, dtype=x.dtype)
    e[t] = 1.0
    pos = _eb_linear(h, fc2.weight, e)
    neg = _eb_linear(h, -fc2.weight, e)
    d = (pos - neg) * (h_pre > 0)  # ReLU takes its gradient
    pg = _eb_linear(g, fc1.weight, d)  # excitation of the pooled features
    # average pooling shares P_k in proportion to the activations: a1_ki / Σ_i a1_ki
    s = a1.sum((1, 2), keepdim=True)
    ps = a1 * (pg.view(-1, 1, 1) / (s + 1e-20 * a1[0].numel()))
    return ps.sum(0).clamp(min=0)


def test_contrastive_eb_equals_hand_computation():
    net = _tiny()
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    e = contrastive_eb(net, x, [0, 2], saliency_layer="1", contrast_layer="5")
    assert e.meta["params"]["classifier_layer"] == "6"
    for i, t in enumerate([0, 2]):
        ref = _reference(net, x[i], t)  # at layer resolution = input resolution here
        assert torch.allclose(e.attribution[i].double(), ref, rtol=1e-5, atol=1e-8), i
    # the default contrast layer is the leaf that feeds the classifier: the ReLU '5'
    d = contrastive_eb(net, x, [0, 2], saliency_layer="1")
    assert d.meta["params"]["contrast_layer"] == "5"
    assert torch.equal(d.attribution, e.attribution)


def test_torchray_default_layers_for_vgg_and_resnet():
    torch.manual_seed(0)
    from torchvision.models.vgg import VGG, cfgs, make_layers

    vgg = VGG(make_layers(cfgs["D"]), num_classes=4, init_weights=False).eval()  # VGG-16
    vgg.classifier[0], vgg.classifier[3], vgg.classifier[6] = nn.Linear(25088, 8), nn.Linear(8, 8), nn.Linear(8, 4)
    e = spixel.explain(vgg, torch.randn(1, 3, 32, 32), "contrastive_eb", 1)
    assert (e.meta["params"]["saliency_layer"], e.meta["params"]["contrast_layer"]) == ("features.23", "classifier.4")
    res = torchvision.models.resnet18(weights=None, num_classes=4).eval()
    e = spixel.explain(res, torch.randn(1, 3, 32, 32), "contrastive_eb", 1)
    assert (e.meta["params"]["saliency_layer"], e.meta["params"]["contrast_layer"]) == ("layer3", "avgpool")
    assert e.attribution.shape == (1, 32, 32) and torch.isfinite(e.attribution).all()
    assert classifier_layer(res)[0] == "fc"


def test_contrastive_eb_is_class_specific():
    from test_propagation import _two_object_net

    model, x = _two_object_net()
    e = spixel.explain(model, x.expand(2, -1, -1, -1), "contrastive_eb", [0, 1], saliency_layer="1")
    left, right = e.attribution[:, :, :8].sum((1, 2)), e.attribution[:, :, 8:].sum((1, 2))
    assert left[0] > 5 * right[0] and right[1] > 5 * left[1]


def test_contrastive_eb_refuses_a_model_without_classifier():
    net = nn.Sequential(nn.Conv2d(3, 2, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Softmax(1))
    with pytest.raises(BadParameterError):
        spixel.explain(nn.Sequential(nn.Flatten(), nn.Softmax(1)), torch.randn(1, 3, 4, 4), "contrastive_eb", 0)
    assert net is not None

"""Relevance-CAM against a hand computation from its equations on a tiny net, its hedged residual rule,
class-specificity and the layer role."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import spixel
from spixel.attribution.propagation import NormHedge


def _tiny() -> nn.Module:
    torch.manual_seed(5)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(4, 3))  # fmt: skip
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net.double()


def test_relevance_cam_equals_hand_computation():
    net = _tiny()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    e = spixel.explain(net, x, "relevance_cam", [0, 2], layer="1")
    fc = net[4]
    for i, t in enumerate([0, 2]):
        a = F.relu(net[0](x[i : i + 1]))[0]  # (4, 8, 8)
        g = a.mean((1, 2))
        start = torch.full((3,), -1.0 / 3)
        start[t] = 1.0  # Tt − Tn
        alpha = torch.zeros(4, dtype=x.dtype)
        wp = fc.weight.clamp(min=0)
        for j in range(3):  # α1β0 on the dense layer, z-rule of the average pool: spatial sums = channel relevance
            z = float((g * wp[j]).sum() + fc.bias[j].clamp(min=0)) + 1e-9
            alpha += g * wp[j] * start[j] / z
        cam = (alpha.view(-1, 1, 1) * a).sum(0)
        assert torch.allclose(e.attribution[i].double(), cam, rtol=1e-5, atol=1e-7)
    assert e.meta["params"]["layer"] == "1"


def test_hedged_sum_rule():
    a = torch.tensor([[1.0, 2.0]])
    b = torch.tensor([[3.0, -1.0]])
    r = torch.tensor([[2.0, 1.0]])
    ra, rb = NormHedge(0.0).split([a, b], r)
    # z-rule shares: a: [0.5, 2], b: [1.5, -1] -> sums 2.5, 0.5; rescaled to 2.5/3·3 and 0.5/3·3 of ΣR = 3
    assert torch.allclose(ra.sum() + rb.sum(), r.sum())
    assert torch.allclose(ra, torch.tensor([[0.5, 2.0]]) * (2.5 / 2.5))
    assert torch.allclose(rb, torch.tensor([[1.5, -1.0]]) * (0.5 / 0.5))


def test_relevance_cam_is_class_specific_and_runs_on_resnet(resnet18):
    from test_propagation import _two_object_net

    model, x = _two_object_net()
    e = spixel.explain(model, x.expand(2, -1, -1, -1), "relevance_cam", [0, 1], layer="1")
    pos = e.attribution.clamp(min=0)
    assert pos[0, :, :8].sum() > 5 * pos[0, :, 8:].sum() and pos[1, :, 8:].sum() > 5 * pos[1, :, :8].sum()
    r = spixel.explain(resnet18, torch.randn(2, 3, 64, 64), "relevance_cam", [1, 2], layer="layer2")
    assert r.attribution.shape == (2, 64, 64) and torch.isfinite(r.attribution).all()

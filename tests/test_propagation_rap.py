"""RAP against a hand computation from its rules (loops over one sample) on a tiny net, conservation of the target
logit on VGG-style nets and ResNets, and the registered contract."""

from __future__ import annotations

import itertools

import torch
import torchvision
from torch import nn

import spixel


def _sd(a: float, b: float) -> float:
    return a / b if b != 0 else 0.0


def _tiny() -> nn.Module:
    torch.manual_seed(2)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 1), nn.ReLU(),  # first conv: z^B
        nn.Conv2d(4, 3, 1), nn.ReLU(),  # hidden conv: RAP rule
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),  # z-rule
        nn.Linear(3, 2),  # output layer
    )  # fmt: skip
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net.double()


def _reference(net: nn.Module, x: torch.Tensor, t: int) -> torch.Tensor:
    """RAP for one image (3, h, w) with loops, from the rules of the module docstring."""
    c0, c1, fc = net[0], net[2], net[6]
    a1 = torch.relu(c0(x[None]))[0]  # (4, h, w)
    a2 = torch.relu(c1(a1[None]))[0]  # (3, h, w)
    g = a2.mean((1, 2))  # (3,)
    # output layer: contributions to the target, bias shared over positive / negative contributions
    w, b = fc.weight[t], float(fc.bias[t])
    contrib = [float(g[i] * w[i]) for i in range(3)]
    pos = sum(v for v in contrib if v > 0)
    neg = sum(v for v in contrib if v < 0)
    r = list(contrib)
    for i in range(3):
        if contrib[i] > 0:
            r[i] += b * _sd(pos, pos + neg) * contrib[i] / pos
        elif contrib[i] < 0:
            r[i] += b * _sd(neg, pos + neg) * contrib[i] / neg
    tot, tot_abs = sum(r), sum(abs(v) for v in r)
    r = [abs(v) * tot / tot_abs for v in r]
    # average pool: z-rule
    h, wd = a2.shape[1:]
    r2 = torch.zeros_like(a2)
    for k in range(3):
        s = float(a2[k].sum())
        r2[k] = a2[k] * _sd(r[k], s)
    # hidden 1×1 conv (a1 ≥ 0): shares of R⁺ / R⁻ over positive (Z1) and negative (Z2) contributions, then shift
    wt = c1.weight[:, :, 0, 0]
    out = torch.zeros_like(a1)
    for k, y, xx in itertools.product(range(3), range(h), range(wd)):
        rk = float(r2[k, y, xx])
        if rk == 0:
            continue
        p = [float(a1[j, y, xx]) * max(float(wt[k, j]), 0) for j in range(4)]
        n = [-float(a1[j, y, xx]) * min(float(wt[k, j]), 0) for j in range(4)]
        z1, z2 = sum(p), sum(n)
        d = z1 + z2
        if d == 0:
            continue
        rp, rn = max(rk, 0), min(rk, 0)
        for j in range(4):
            out[j, y, xx] += p[j] * _sd(rp, z1) + n[j] * (rp / d) + n[j] * _sd(rn, z2) + n[j] * (rn / d)
    nz = out != 0
    out[nz] -= (float(out.sum()) - float(r2.sum())) / int(nz.sum())
    # first conv: z^B with per-image bounds
    lo, hi = float(x.min()), float(x.max())
    w0 = c0.weight[:, :, 0, 0]
    res = torch.zeros_like(x)
    for k, y, xx in itertools.product(range(4), range(h), range(wd)):
        terms = [float(x[j, y, xx] * w0[k, j]) - lo * max(float(w0[k, j]), 0) - hi * min(float(w0[k, j]), 0)
                 for j in range(3)]  # fmt: skip
        z = sum(terms)
        for j in range(3):
            res[j, y, xx] += terms[j] * _sd(float(out[k, y, xx]), z)
    return res


def test_rap_equals_hand_computation():
    net = _tiny()
    x = torch.randn(2, 3, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    e = spixel.explain(net, x, "rap", [0, 1])
    for i, t in enumerate([0, 1]):
        ref = _reference(net, x[i], t)
        assert torch.allclose(e.raw[i].double(), ref, rtol=1e-5, atol=1e-7), float((e.raw[i] - ref).abs().max())


def test_rap_conserves_the_target_logit():
    torch.manual_seed(0)
    vgg = torchvision.models.vgg11(weights=None, num_classes=5)
    vgg.classifier[0], vgg.classifier[3], vgg.classifier[6] = nn.Linear(25088, 16), nn.Linear(16, 16), nn.Linear(16, 5)
    vgg.eval()
    x = torch.randn(2, 3, 32, 32)
    e = spixel.explain(vgg, x, "rap", [1, 3])
    with torch.no_grad():
        f = vgg(x)[[0, 1], [1, 3]]
    assert torch.allclose(e.raw.flatten(1).sum(1), f, rtol=1e-4, atol=1e-6)
    assert e.meta["params"]["classifier_layer"] == "classifier.6"

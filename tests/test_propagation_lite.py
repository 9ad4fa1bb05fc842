"""The LRP family on EfficientNet-Lite-style nets (timm): ReLU6, depthwise and TF-"same" convolutions, fused
batch-norm + activation, inverted residuals with skips — conservation through all of them, and the real Lite0."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import spixel
from spixel.attribution.propagation import Propagator, make_composite

timm = pytest.importorskip("timm")


def _lite_random() -> nn.Module:
    """tf_efficientnet_lite0 with random weights, identity batch-norm statistics and no biases: every rule of the
    ε composite then conserves exactly."""
    torch.manual_seed(0)
    m = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=7)
    with torch.no_grad():
        for b in m.modules():
            if isinstance(b, nn.BatchNorm2d):
                b.running_mean.zero_()
                b.running_var.fill_(1.0)
                b.weight.fill_(1.0)
                b.bias.zero_()
        m.classifier.bias.zero_()
    m.eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


def test_lite_structure_is_what_the_canonizers_expect():
    m = _lite_random()
    kinds = {type(x).__name__ for x in m.modules()}
    assert {"InvertedResidual", "DepthwiseSeparableConv", "BatchNormAct2d", "Conv2dSame", "ReLU6"} <= kinds
    assert any(getattr(b, "has_skip", False) for b in m.modules())


@pytest.mark.parametrize("composite", ["epsilon", "gamma"])
def test_conservation_through_inverted_residuals(composite):
    """(z⁺ does not conserve here: a depthwise 3×3 kernel with no positive weight gives outputs without positive
    contributions, whose relevance z⁺ drops — Zennit's z⁺ does the same.)"""
    m = _lite_random()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([2, 5])
    comp = make_composite(composite, epsilon=1e-12, stabilizer=1e-12)
    with Propagator(m, comp) as p:
        logits, r = p.relevance(
            x, lambda lg: torch.zeros_like(lg).scatter(1, t.view(-1, 1), lg.gather(1, t.view(-1, 1)))
        )
    ft = logits.gather(1, t.view(-1, 1)).view(-1)
    assert torch.allclose(r.flatten(1).sum(1), ft, rtol=1e-4), (r.flatten(1).sum(1), ft)


def test_without_canonizer_the_skip_addition_is_refused():
    m = _lite_random()
    with pytest.raises(spixel.errors.BadParameterError, match=r"outside nn\.Modules"):
        spixel.explain(m, torch.randn(1, 3, 32, 32), "lrp", 0, canonize=False)


@pytest.mark.slow
def test_real_lite0_lrp_family(lite0):
    from spixel.data.samples import sample

    x = lite0.preprocess([sample("coffee").image])
    for method in ("lrp",):  # the others share the canonizers; benchmarks/propagation.py --gallery shows them all
        e = spixel.explain(lite0, x, method)
        assert e.meta["predicted_label"][0] == e.meta["label"][0]
        assert torch.isfinite(e.attribution).all() and e.attribution.abs().max() > 0, method

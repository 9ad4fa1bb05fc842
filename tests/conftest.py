"""Shared fixtures: a tiny CNN for the cross-cutting tests, a seeded ResNet-18 for Captum cross-checks,
and the real EfficientNet-Lite0 (loaded once per session)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import spixel
from spixel.models import ModelAdapter


class TinyCNN(nn.Module):
    """Conv-BN-ReLU ×2, max-pool, conv, global average pool, linear: 10 classes, 32×32 input."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


def random_bn_stats(net: nn.Module, mean: float = 0.1) -> None:
    """Non-trivial BatchNorm running statistics (mean ~ U(−mean, mean), var ~ U(0.5, 1.5)), so that eval mode
    matters; drawn from torch's global generator in module order."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-mean, mean)
                m.running_var.uniform_(0.5, 1.5)


def make_tiny(seed: int = 0) -> ModelAdapter:
    torch.manual_seed(seed)
    m = TinyCNN()
    # non-trivial BatchNorm statistics, so eval mode matters
    with torch.no_grad():
        for bn in (m.features[1], m.features[5]):
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 1.5)
    m.eval()
    return ModelAdapter(
        m, input_size=32, resize=36, labels=[f"c{i}" for i in range(10)], layers={"cam": "features.8"}, name="tiny"
    )


@pytest.fixture
def tiny() -> ModelAdapter:
    return make_tiny()


@pytest.fixture
def tiny_x() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randn(3, 3, 32, 32, generator=g)


@pytest.fixture(scope="session")
def resnet18() -> ModelAdapter:
    """torchvision ResNet-18 with seeded random weights and BatchNorm statistics (no download)."""
    import torchvision

    torch.manual_seed(0)
    m = torchvision.models.resnet18(weights=None, num_classes=1000)
    random_bn_stats(m)
    m.eval()
    return ModelAdapter(m, input_size=64, resize=73, layers={"cam": "layer4"}, name="resnet18-random")


@pytest.fixture(scope="session")
def lite0() -> ModelAdapter:
    return spixel.load_model("efficientnet_lite0")


def conv_taps(conv: nn.Conv2d, h: int, w: int):
    """Every (output position, [(ky, kx, iy, ix)]) of a convolution on an ``h × w`` input, padding positions left
    out: the loop the slow reference implementations of the propagation rules walk."""
    import itertools

    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = conv.kernel_size, conv.stride, conv.padding, conv.dilation
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    for oy, ox in itertools.product(range(ho), range(wo)):
        taps = []
        for ky, kx in itertools.product(range(kh), range(kw)):
            iy, ix = oy * sh + ky * dh - ph, ox * sw + kx * dw - pw
            if 0 <= iy < h and 0 <= ix < w:
                taps.append((ky, kx, iy, ix))
        yield oy, ox, taps

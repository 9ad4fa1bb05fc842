"""Guided backpropagation and deconvolution: Captum on a ReLU ResNet, a hand-written reference on ReLU6
(EfficientNet-Lite0), and the model left exactly as found."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from spixel.attribution import deconvolution, guided_backprop, saliency
from spixel.attribution.guided import rectifier_rule
from spixel.errors import BadParameterError
from spixel.registry import METHODS


def _x64(n: int = 2, seed: int = 3) -> torch.Tensor:
    return torch.randn(n, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


def snapshot(module: nn.Module) -> dict:
    """Everything the explainers promise to leave alone."""
    return {
        "modules": [(n, id(m)) for n, m in module.named_modules()],
        "params": {n: (p.detach().clone(), p.requires_grad, p.data_ptr()) for n, p in module.named_parameters()},
        "buffers": {n: b.detach().clone() for n, b in module.named_buffers()},
        "training": [m.training for m in module.modules()],
        "inplace": [getattr(m, "inplace", None) for m in module.modules()],
        "hooks": [
            len(m._forward_hooks)
            + len(m._backward_hooks)
            + len(m._forward_pre_hooks)
            + len(getattr(m, "_backward_pre_hooks", {}))
            for m in module.modules()
        ],
        "instance_forward": [n for n, m in module.named_modules() if "forward" in m.__dict__],
    }


def assert_same(a: dict, b: dict) -> None:
    assert a["modules"] == b["modules"]
    assert a["params"].keys() == b["params"].keys()
    for k, (v, rg, ptr) in a["params"].items():
        v2, rg2, ptr2 = b["params"][k]
        assert torch.equal(v, v2) and rg == rg2 and ptr == ptr2, k
    for k, v in a["buffers"].items():
        assert torch.equal(v, b["buffers"][k]), k
    for key in ("training", "inplace", "hooks", "instance_forward"):
        assert a[key] == b[key], key
    assert not any(b["hooks"]) and not b["instance_forward"]


# --------------------------------------------------------------------------------------- ReLU: Captum
@pytest.mark.parametrize("ours, name", [(guided_backprop, "GuidedBackprop"), (deconvolution, "Deconvolution")])
def test_equals_captum_on_resnet18(resnet18, ours, name):
    import captum.attr

    x = _x64()
    before = snapshot(resnet18.module)
    e = ours(resnet18, x, target=[3, 7])
    assert_same(before, snapshot(resnet18.module))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        captum_method = getattr(captum.attr, name)(resnet18.module)
        ref = captum_method.attribute(x.clone().requires_grad_(True), target=[3, 7])
    assert e.raw.shape == (2, 3, 64, 64) and e.attribution.shape == (2, 64, 64)
    scale = ref.abs().max()
    assert scale > 0
    torch.testing.assert_close(e.raw, ref, rtol=1e-5, atol=1e-6 * scale)
    torch.testing.assert_close(e.attribution, ref.abs().amax(1), rtol=1e-5, atol=1e-6 * scale)
    assert e.meta["method"] == ours.__name__ and e.meta["target"] == [3, 7]
    # per-image targets really are per image: target 7 alone on image 1 gives the same row
    one = ours(resnet18, x[1:], target=7)
    torch.testing.assert_close(one.raw[0], e.raw[1], rtol=1e-5, atol=1e-6 * scale)


def test_differs_from_plain_gradient_and_leaves_it_intact(resnet18):
    x = _x64(1, seed=5)
    s0 = saliency(resnet18, x, target=1).raw
    g = guided_backprop(resnet18, x, target=1).raw
    d = deconvolution(resnet18, x, target=1).raw
    s1 = saliency(resnet18, x, target=1).raw
    assert not torch.allclose(g, s0, atol=1e-3 * s0.abs().max())
    assert not torch.allclose(d, s0, atol=1e-3 * s0.abs().max())
    assert torch.equal(s0, s1)
    # and an ordinary autograd gradient, outside spixel, too
    xi = x.clone().requires_grad_(True)
    resnet18.module(xi)[0, 1].backward()
    torch.testing.assert_close(xi.grad, s0, rtol=1e-5, atol=1e-7)
    resnet18.module.zero_grad(set_to_none=True)


# --------------------------------------------------------------------------------------- ReLU6: hand-written
class _RefRectifier(nn.Module):
    """Reference built differently from ours: a straight-through expression whose derivative is the forward
    mask (or 1, for deconvolution), and a tensor hook that rectifies the upstream gradient."""

    def __init__(self, upper: float | None, guided: bool) -> None:
        super().__init__()
        self.upper, self.guided = upper, guided

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hi = float("inf") if self.upper is None else self.upper
        value = torch.minimum(torch.maximum(x, torch.zeros_like(x)), torch.full_like(x, hi)).detach()
        slope = ((x > 0) & (x < hi)).to(x.dtype) if self.guided else torch.ones_like(x)
        y = value + slope * (x - x.detach())
        if y.requires_grad:
            y.register_hook(lambda g: torch.where(g > 0, g, torch.zeros_like(g)))
        return y


def reference(model: nn.Module, x: torch.Tensor, target: list[int], guided: bool) -> torch.Tensor:
    ref = copy.deepcopy(model).eval()
    swapped = 0
    for name, mod in list(ref.named_modules()):
        if isinstance(mod, (nn.ReLU, nn.ReLU6)):
            parent = ref.get_submodule(name.rpartition(".")[0]) if "." in name else ref
            upper = 6.0 if isinstance(mod, nn.ReLU6) else None
            setattr(parent, name.rpartition(".")[2], _RefRectifier(upper, guided))
            swapped += 1
    assert swapped > 0
    xi = x.clone().requires_grad_(True)
    out = ref(xi)
    out.gather(1, torch.tensor(target).view(-1, 1)).sum().backward()
    return xi.grad


@pytest.fixture(scope="module")
def lite0_x(lite0):
    rng = np.random.default_rng(0)
    # a smooth synthetic photo (low-frequency colour blobs), preprocessed the model's own way
    small = rng.integers(0, 256, size=(6, 6, 3), dtype=np.uint8)
    from PIL import Image

    img = np.asarray(Image.fromarray(small).resize((256, 256), Image.Resampling.BICUBIC))
    return lite0.preprocess(img)


@pytest.mark.parametrize("ours, guided", [(guided_backprop, True), (deconvolution, False)])
def test_lite0_relu6_matches_reference(lite0, lite0_x, ours, guided):
    n6 = sum(isinstance(m, nn.ReLU6) for m in lite0.module.modules())
    assert n6 > 0 and any(getattr(m, "inplace", False) for m in lite0.module.modules())
    before = snapshot(lite0.module)
    target = [int(lite0.predict(lite0_x).argmax(1))]
    e = ours(lite0, lite0_x, target=target)
    assert_same(before, snapshot(lite0.module))
    ref = reference(lite0.module, lite0_x, target, guided)
    scale = ref.abs().max()
    assert scale > 0
    torch.testing.assert_close(e.raw, ref, rtol=1e-4, atol=1e-5 * scale)
    if guided:  # the ReLU6 rule is active: not the plain gradient (which Captum returns on this net)
        s = saliency(lite0, lite0_x, target=target).raw
        assert (e.raw - s).abs().max() > 0.1 * s.abs().max()
        assert not torch.allclose(e.attribution, s.abs().amax(1), rtol=0.05)
        import captum.attr

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cap = captum.attr.GuidedBackprop(lite0.module).attribute(
                lite0_x.clone().requires_grad_(True), target=target
            )
        torch.testing.assert_close(cap, s, rtol=1e-4, atol=1e-6 * s.abs().max())


# --------------------------------------------------------------------------------------- context manager
class _Functional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.nn.functional.relu(self.conv(x)).mean((2, 3)))


def test_functional_relu_is_not_intercepted():
    torch.manual_seed(0)
    m = _Functional().eval()
    x = torch.randn(2, 3, 8, 8)
    g = guided_backprop(m, x, target=[0, 4]).raw
    s = saliency(m, x, target=[0, 4]).raw
    torch.testing.assert_close(g, s)


class _InplaceUser(nn.Module):
    """Relies on the in-place side effect of its activations (returns ``x``, not the activation's output)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.ReLU6(inplace=True)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.act2 = nn.ReLU(inplace=True)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x) * 4.0
        self.act(h)
        h2 = self.conv2(h)
        self.act2(h2)
        return self.fc(h2.mean((2, 3)))


def test_inplace_semantics_and_forward_values_are_kept():
    torch.manual_seed(1)
    m = _InplaceUser().eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        plain = m(x)
    for rule in ("guided", "deconv"):
        with rectifier_rule(m, rule) as n, torch.no_grad():
            assert n == 2
            torch.testing.assert_close(m(x), plain, rtol=0, atol=0)
    assert m.act.inplace and m.act2.inplace
    assert "forward" not in m.act.__dict__ and "forward" not in m.act2.__dict__


def test_model_restored_after_exception(resnet18):
    before = snapshot(resnet18.module)
    with pytest.raises(RuntimeError, match="boom"), rectifier_rule(resnet18.module, "guided"):
        assert "forward" in resnet18.module.relu.__dict__
        raise RuntimeError("boom")
    assert_same(before, snapshot(resnet18.module))
    with pytest.raises(BadParameterError):  # bad user input inside the explainer: also restored
        guided_backprop(resnet18, _x64(1), target=5000)
    assert_same(before, snapshot(resnet18.module))


def test_training_mode_and_flags_restored():
    torch.manual_seed(0)
    m = _InplaceUser().train()
    m.fc.weight.requires_grad_(False)
    before = snapshot(m)
    deconvolution(m, torch.randn(1, 3, 8, 8), target=2)
    after = snapshot(m)
    assert_same(before, after)
    assert m.training and not m.fc.weight.requires_grad and m.conv.weight.requires_grad


def test_registered_and_batch_size():
    for name in ("guided_backprop", "deconvolution"):
        entry = METHODS.get(name)
        assert entry.info["family"] == "guided" and entry.info["params"] == {"batch_size": 32}
    torch.manual_seed(0)
    m = _InplaceUser().eval()
    x = torch.randn(3, 3, 8, 8)
    a = guided_backprop(m, x, target=[0, 1, 2], batch_size=1).raw
    b = guided_backprop(m, x, target=[0, 1, 2]).raw
    torch.testing.assert_close(a, b)
    with pytest.raises(BadParameterError):
        guided_backprop(m, x, batch_size=0)
    with pytest.raises(BadParameterError, match="accepts"):
        deconvolution(m, x, steps=3)

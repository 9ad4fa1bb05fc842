"""CAM family: Grad-CAM against Captum and pytorch-grad-cam, Grad-CAM++ against pytorch-grad-cam, Score-CAM
pinned on a hand-computed case (official semantics) and against a naive per-channel loop; layer choice;
the model left as found."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import TinyCNN
from spixel.attribution import gradcam, gradcam_pp, scorecam
from spixel.attribution.cam import default_cam_layer
from spixel.errors import BadParameterError
from spixel.models import ModelAdapter
from spixel.registry import METHODS


def _x64(n: int = 2, seed: int = 3) -> torch.Tensor:
    return torch.randn(n, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


def minmax(a: torch.Tensor | np.ndarray) -> np.ndarray:
    """pytorch-grad-cam's per-image normalisation (``scale_cam_image``)."""
    a = np.asarray(a, dtype=np.float32)
    a = a - a.min(axis=(1, 2), keepdims=True)
    return a / (1e-7 + a.max(axis=(1, 2), keepdims=True))


def state(module: nn.Module) -> tuple:
    hooks = sum(len(m._forward_hooks) + len(m._backward_hooks) + len(m._forward_pre_hooks) for m in module.modules())
    return (
        hooks,
        [m.training for m in module.modules()],
        [p.requires_grad for p in module.parameters()],
        [p.detach().clone() for p in module.parameters()],
        [n for n, _ in module.named_modules()],
    )


def assert_state(a: tuple, b: tuple) -> None:
    assert b[0] == 0 and a[0] == b[0]
    assert a[1] == b[1] and a[2] == b[2] and a[4] == b[4]
    assert all(torch.equal(p, q) for p, q in zip(a[3], b[3], strict=True))


# ------------------------------------------------------------------------------------- Grad-CAM: Captum
@pytest.mark.parametrize("layer", ["layer4", "layer3", "layer4.1.bn2"])
def test_gradcam_equals_captum(resnet18, layer):
    from captum.attr import LayerAttribution, LayerGradCam

    x = _x64()
    e = gradcam(resnet18, x, target=[3, 7], layer=layer)
    ref = (
        LayerGradCam(resnet18.module, resnet18.layer(layer))
        .attribute(x, target=[3, 7], relu_attributions=True)
        .detach()
    )
    # Captum's interpolate calls F.interpolate without align_corners, i.e. align_corners=False for bilinear
    ref = LayerAttribution.interpolate(ref, (64, 64), interpolate_mode="bilinear")[:, 0]
    assert e.attribution.shape == (2, 64, 64) and e.raw is None
    assert ref.max() > 0
    torch.testing.assert_close(e.attribution, ref, rtol=1e-5, atol=1e-6 * float(ref.max()))
    assert e.meta["params"] == {"layer": layer, "batch_size": 32} and e.meta["target"] == [3, 7]


def test_gradcam_default_layer_is_adapter_role(resnet18):
    x = _x64(1)
    a = gradcam(resnet18, x, target=2)
    b = gradcam(resnet18, x, target=2, layer="cam")
    c = gradcam(resnet18, x, target=2, layer="layer4")
    assert a.meta["params"]["layer"] == b.meta["params"]["layer"] == "layer4"
    assert torch.equal(a.attribution, b.attribution) and torch.equal(a.attribution, c.attribution)


# ------------------------------------------------------------------------------------- pytorch-grad-cam
@pytest.mark.parametrize("layer", ["layer4", "layer3"])
def test_gradcam_and_pp_equal_pytorch_grad_cam_after_minmax(resnet18, layer):
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    x = _x64(seed=11)
    targets = [3, 7]
    for ours, ref_cls in ((gradcam, GradCAM), (gradcam_pp, GradCAMPlusPlus)):
        e = ours(resnet18, x, target=targets, layer=layer)
        try:
            with ref_cls(resnet18.module, [resnet18.layer(layer)]) as cam:
                ref = cam(x, [ClassifierOutputTarget(t) for t in targets])
        finally:
            resnet18.module.zero_grad(set_to_none=True)  # pytorch-grad-cam's backward fills .grad
        # pytorch-grad-cam: min-max at layer resolution, cv2 INTER_LINEAR resize (same sampling grid as
        # align_corners=False), min-max again. Min-max is affine and resizing is linear, so one min-max of our
        # un-normalised map must give the same picture.
        assert ref.shape == (2, 64, 64)
        np.testing.assert_allclose(minmax(e.attribution.numpy()), ref, atol=2e-5)
    # and Grad-CAM++ is not Grad-CAM
    a = gradcam(resnet18, x, target=targets, layer=layer).attribution
    b = gradcam_pp(resnet18, x, target=targets, layer=layer).attribution
    assert not np.allclose(minmax(a), minmax(b), atol=1e-3)


def test_gradcam_pp_formula_by_hand():
    """Grad-CAM++ on a network whose layer gradient is known in closed form: logits = W · mean_ij(A) + b, so
    ∂y_t/∂A_kij = W_tk / (h w) and α = g² / (2g² + ΣA·g³)."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    x = torch.randn(2, 3, 6, 6)
    t = [2, 0]
    e = gradcam_pp(m, x, target=t, layer="1")
    g_cam = gradcam(m, x, target=t, layer="1")
    with torch.no_grad():
        A = m[1](m[0](x))  # (2, 4, 6, 6)
    W = m[4].weight.detach()
    g = W[t].view(2, 4, 1, 1) / 36.0  # constant over space
    alpha = g**2 / (2 * g**2 + A.sum((2, 3), keepdim=True) * g**3 + 1e-6)
    w_pp = (alpha * g.clamp(min=0)).expand_as(A).sum((2, 3), keepdim=True)
    torch.testing.assert_close(e.attribution, (w_pp * A).sum(1).clamp(min=0), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(g_cam.attribution, (g * A).sum(1).clamp(min=0), rtol=1e-5, atol=1e-8)


# ------------------------------------------------------------------------------------- Score-CAM
class ThreeChannel(nn.Module):
    """1×1 conv (3→3) → ReLU → 2×2 average pool = the CAM layer ``feat`` (3 channels at 2×2 for a 4×4 input;
    channel 2 is dead, i.e. constant) → spatial mean → linear (3→4)."""

    def __init__(self) -> None:
        super().__init__()
        self.feat = nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU(), nn.AvgPool2d(2))
        self.fc = nn.Linear(3, 4)
        with torch.no_grad():
            w = torch.tensor([[1.0, -0.5, 0.2], [-0.3, 0.8, 0.5], [0.0, 0.0, 0.0]])
            self.feat[0].weight.copy_(w.view(3, 3, 1, 1))
            self.feat[0].bias.copy_(torch.tensor([0.1, 0.2, -1.0]))
            self.fc.weight.copy_(torch.tensor([[1.0, -1.0, 0.3], [0.5, 2.0, -0.2], [-1.5, 0.7, 0.1], [0.2, 0.2, 0.9]]))
            self.fc.bias.copy_(torch.tensor([0.0, -0.1, 0.3, 0.05]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.feat(x).mean((2, 3)))


def _by_hand_layer(m: ThreeChannel, x: torch.Tensor) -> torch.Tensor:
    Wc = m.feat[0].weight.detach().view(3, 3)
    z = torch.einsum("oc,nchw->nohw", Wc, x) + m.feat[0].bias.detach().view(1, 3, 1, 1)
    r = z.clamp(min=0)
    n = x.shape[0]
    return r.view(n, 3, 2, 2, 2, 2).mean((3, 5))  # 2×2 average pooling of a 4×4 map


def _by_hand_logits(m: ThreeChannel, x: torch.Tensor) -> torch.Tensor:
    return _by_hand_layer(m, x).mean((2, 3)) @ m.fc.weight.detach().T + m.fc.bias.detach()


#: Bilinear 2 → 4 with align_corners=False: output pixel j samples source (j + 0.5)/2 − 0.5 ∈ {−.25, .25, .75,
#: 1.25}, clamped to [0, 1] → weights (1, 0), (.75, .25), (.25, .75), (0, 1).
U = torch.tensor([[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [0.0, 1.0]])


def test_scorecam_hand_computed_official_semantics():
    m = ThreeChannel().eval()
    x = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(m(x), _by_hand_logits(m, x))  # the by-hand network is the network
    targets = [1, 3]
    A = _by_hand_layer(m, x)
    assert torch.all(A[:, 2] == 0) and torch.all(A[:, :2].flatten(2).std(2) > 0)
    expected = torch.zeros(2, 4, 4)
    for i, t in enumerate(targets):
        for k in range(3):
            up = U @ A[i, k] @ U.T  # A_k upsampled to 4×4
            if up.max() == up.min():
                continue  # constant map: skipped
            mask = (up - up.min()) / (up.max() - up.min())
            s = _by_hand_logits(m, x[i : i + 1] * mask).softmax(-1)[0, t]  # probability, normalised input
            expected[i] += s * up
    expected = expected.clamp(min=0)
    assert expected.max() > 0
    for bs in (1, 3, 64):  # chunks that split and straddle images
        e = scorecam(m, x, target=targets, layer="feat", batch_size=bs)
        torch.testing.assert_close(e.attribution, expected, rtol=1e-5, atol=1e-6)
    assert e.raw is None and e.meta["params"]["layer"] == "feat"


def test_scorecam_differs_from_pytorch_grad_cam():
    """pytorch-grad-cam scores each mask by the target logit and softmaxes the scores over channels (and
    upsamples with align_corners=True); the official code, and we, weight by the target probability."""
    from pytorch_grad_cam import ScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    m = ThreeChannel().eval()
    with torch.no_grad():  # logits far enough apart for the two weightings to disagree visibly
        m.fc.weight.mul_(4.0)
    x = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(4))
    ours = minmax(scorecam(m, x, target=[1, 3], layer="feat").attribution.numpy())
    with ScoreCAM(m, [m.feat]) as cam:
        theirs = cam(x, [ClassifierOutputTarget(1), ClassifierOutputTarget(3)])
    assert theirs.shape == ours.shape
    assert np.abs(ours - theirs).max() > 0.15


def test_scorecam_matches_naive_loop_on_tiny(tiny, tiny_x):
    targets = [0, 4, 9]
    e = scorecam(tiny, tiny_x, target=targets, batch_size=5)
    layer = tiny.layer("cam")
    acts = {}
    h = layer.register_forward_hook(lambda _m, _i, o: acts.__setitem__("a", o.detach().clone()))
    with torch.no_grad():
        tiny.module(tiny_x)
    h.remove()
    expected = torch.zeros(3, 32, 32)
    with torch.no_grad():
        for i, t in enumerate(targets):  # the official loop, one image and one channel at a time
            for k in range(acts["a"].shape[1]):
                up = F.interpolate(acts["a"][i : i + 1, k : k + 1], size=(32, 32), mode="bilinear", align_corners=False)
                if up.max() == up.min():
                    continue
                norm = (up - up.min()) / (up.max() - up.min())
                p = tiny.module(tiny_x[i : i + 1] * norm).softmax(-1)[0, t]
                expected[i] += p * up[0, 0]
    expected = expected.clamp(min=0)
    assert expected.max() > 0
    torch.testing.assert_close(e.attribution, expected, rtol=1e-4, atol=1e-6 * float(expected.max()))


# ------------------------------------------------------------------------------------- layer choice
def test_default_layer_on_plain_module():
    torch.manual_seed(0)
    net = TinyCNN().eval()
    x = torch.randn(2, 3, 32, 32)
    # last module in execution order with a 4-D output of > 1 spatial position: the `features` Sequential
    # (AdaptiveAvgPool2d's (N, C, 1, 1) output is not a candidate)
    assert default_cam_layer(net, x) == "features"
    for fn in (gradcam, gradcam_pp, scorecam):
        e = fn(net, x, target=[1, 2])  # plain nn.Module, wrapped with the default adapter
        assert e.meta["params"]["layer"] == "features"
        same = fn(net, x, target=[1, 2], layer="features.8")  # the Sequential returns the last ReLU's output
        torch.testing.assert_close(e.attribution, same.attribution)
        wrapped = fn(ModelAdapter(net, input_size=32), x, target=[1, 2])
        torch.testing.assert_close(e.attribution, wrapped.attribution)


def test_default_layer_torchvision_and_lite0(resnet18, lite0):
    assert default_cam_layer(resnet18.module, _x64(1)) == "layer4"
    assert default_cam_layer(lite0.module, torch.zeros(1, 3, 224, 224)) == lite0.layers["cam"] == "bn2"


def test_bad_layers(tiny, tiny_x):
    with pytest.raises(BadParameterError, match=r"Did you mean .*'features\.8'"):
        gradcam(tiny, tiny_x, layer="features.88")
    with pytest.raises(BadParameterError, match="Roles: cam"):
        scorecam(tiny, tiny_x, layer="nope")
    with pytest.raises(BadParameterError, match=r"\(N, C, h, w\)"):
        gradcam(tiny, tiny_x, layer="fc")
    with pytest.raises(BadParameterError, match="module name"):
        gradcam(tiny, tiny_x, layer=3)
    with pytest.raises(BadParameterError):
        gradcam(tiny, tiny_x, layer="")


class _Reuser(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.act = nn.ReLU()
        self.fc = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.act(self.conv(self.act(x))).mean((2, 3)))


def test_layer_run_twice_is_refused_and_hooks_removed():
    m = _Reuser().eval()
    before = state(m)
    for fn in (gradcam, scorecam):
        with pytest.raises(BadParameterError, match="more than once"):
            fn(m, torch.randn(1, 3, 8, 8), layer="act")
        assert_state(before, state(m))
    assert default_cam_layer(m, torch.randn(1, 3, 8, 8)) == "conv"


# ------------------------------------------------------------------------------------- model left as found
class _Exploding(TinyCNN):
    """Raises on the ``fuse``-th forward call: a failure in the middle of an explainer."""

    def __init__(self, fuse: int) -> None:
        super().__init__()
        self.calls, self.fuse = 0, fuse

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.fuse:
            raise RuntimeError("boom")
        return super().forward(x)


@pytest.mark.parametrize("fn", [gradcam, gradcam_pp, scorecam])
def test_model_unchanged_also_after_exception(fn, tiny_x):
    torch.manual_seed(0)
    net = TinyCNN().train()
    net.fc.bias.requires_grad_(False)
    before = state(net)
    fn(net, tiny_x, target=[0, 1, 2], batch_size=2)
    assert_state(before, state(net))
    assert net.training and not net.fc.bias.requires_grad and all(p.grad is None for p in net.parameters())
    # forward calls: 1 = default-layer discovery (hooks on every module); Grad-CAM: 2 and 3 = the two chunks
    # with the layer hook (their logits serve as the model's output); Score-CAM: 2 = logits, 3 and 4 = the
    # chunks' activations, 5 = its first masked batch
    for fuse in (1, 3, 4, 5) if fn is scorecam else (1, 2, 3):
        torch.manual_seed(0)
        boom = _Exploding(fuse).train()
        before = state(boom)
        with pytest.raises(RuntimeError, match="boom"):
            fn(boom, tiny_x, target=[0, 1, 2], batch_size=2)
        assert_state(before, state(boom))


def test_registered():
    for name, bs in (("gradcam", 32), ("gradcam_pp", 32), ("scorecam", 64)):
        entry = METHODS.get(name)
        assert entry.info["family"] == "cam"
        assert entry.info["params"] == {"layer": None, "batch_size": bs}


def test_batch_size_and_targets(tiny, tiny_x):
    a = gradcam(tiny, tiny_x, target=torch.tensor([3, 3, 5]), batch_size=1)
    b = gradcam(tiny, tiny_x, target=[3, 3, 5])
    torch.testing.assert_close(a.attribution, b.attribution)
    c = gradcam(tiny, tiny_x[2:], target=5)
    torch.testing.assert_close(c.attribution[0], b.attribution[2])
    p = gradcam(tiny, tiny_x)  # predicted class
    assert p.meta["target"] == p.meta["predicted"]
    with pytest.raises(BadParameterError):
        scorecam(tiny, tiny_x, batch_size=0)
    assert (b.attribution >= 0).all()

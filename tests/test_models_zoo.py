"""torchvision / timm architectures by name with the user's weights, found layers, ViT token grids, multi-label
heads (issue 15). Random weights at small inputs; nothing is downloaded."""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from captum.attr import LayerAttribution, LayerGradCam

import spixel
from conftest import random_bn_stats
from spixel.errors import BadParameterError, SpixelError, UnknownNameError
from spixel.models import load_model
from spixel.models.adapter import expand_targets
from spixel.models.layers import find_cam_layer, to_grid, token_prefix
from spixel.models.torchvision_zoo import torchvision_names, torchvision_preprocessing, wrap_torchvision
from spixel.models.weights import VOC_CLASSES, WeightsNotFoundError, WrongArchitectureError
from spixel.registry import METHODS
from spixel.segmentation import segment
from spixel.segmentation.nas import PAPER_LAYERS

# arch: (input size, the CAM layer that must be found)
ARCHS = {
    "resnet18": (64, "layer4"),
    "vgg11": (64, "features.19"),  # the last conv block's ReLU, before the final max-pool and the 7×7 avgpool
    "densenet121": (64, "features"),
    "inception_v3": (107, "Mixed_7c"),
    "mobilenet_v3_small": (64, "features"),
    "convnext_tiny": (64, "features"),
}
GRADIENT_METHODS = {
    "saliency": {},
    "input_x_gradient": {},
    "integrated_gradients": {"n_steps": 4},
    "smoothgrad": {"n_samples": 3},
}
CNN_METHODS = {**GRADIENT_METHODS, "guided_backprop": {}, "deconvolution": {}, "gradcam": {}, "gradcam_pp": {}}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Many small forwards of many architectures: one thread is faster on a shared 2-core machine (measured)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@functools.cache
def _random(name: str, seed: int = 0) -> torch.nn.Module:
    """A seeded random-weight torchvision net with 10 classes (cached: tests leave models as found)."""
    torch.manual_seed(seed)
    kw = {"init_weights": False, "aux_logits": False} if name == "inception_v3" else {}
    m = torchvision.models.get_model(name, weights=None, num_classes=10, **kw)
    random_bn_stats(m)
    return m.eval()


def _x(size: int, n: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg and len(msg) < 300, msg
    return msg


# ------------------------------------------------------------------------------------------ CNN architectures
@pytest.mark.parametrize("name", list(ARCHS))
def test_cnn_found_layers_gradcam_equals_captum_and_methods_run(name: str) -> None:
    size, cam = ARCHS[name]
    m = _random(name)
    ad = wrap_torchvision(name, m, input_size=size)
    assert ad.layers["cam"] == cam and ad.tokens is None and ad.input_size == size
    x, target = _x(size), [3, 7]
    e = spixel.explain(ad, x, "gradcam", target=target)
    assert e.meta["params"]["layer"] == cam
    ref = LayerGradCam(m, ad.layer("cam")).attribute(x, target=target, relu_attributions=True).detach()
    ref = LayerAttribution.interpolate(ref, (size, size), interpolate_mode="bilinear")[:, 0]
    assert float(ref.max()) > 0
    torch.testing.assert_close(e.attribution, ref, rtol=1e-4, atol=1e-5 * float(ref.max()))
    for method, params in CNN_METHODS.items():
        if method == "gradcam":
            continue
        out = spixel.explain(ad, x, method, target=target, seed=0, **params)
        assert out.attribution.shape == (2, size, size) and torch.isfinite(out.attribution).all(), method
    seg = segment(ad.to_rgb01(x[:1]), "nas", model=ad, n_segments=4, n_init=2)
    assert seg.meta["layers"] == (ad.nas_layers or list(PAPER_LAYERS[name])) and seg.labels.shape == (1, size, size)
    assert not m.training and all(p.requires_grad for p in m.parameters())  # left as found


def test_scorecam_on_found_layer() -> None:
    ad = wrap_torchvision("mobilenet_v3_small", _random("mobilenet_v3_small"), input_size=64)
    e = spixel.explain(ad, _x(64, 1), "scorecam", target=2, batch_size=128)
    assert e.meta["params"]["layer"] == "features" and e.attribution.shape == (1, 64, 64)


def test_layer_override() -> None:
    ad = wrap_torchvision("resnet18", _random("resnet18"), input_size=64, cam_layer="layer3", nas_layers=["layer1"])
    assert ad.layers["cam"] == "layer3" and ad.nas_layers == ["layer1"]
    assert spixel.explain(ad, _x(64, 1), "gradcam").meta["params"]["layer"] == "layer3"
    assert spixel.explain(ad, _x(64, 1), "gradcam", layer="layer2").meta["params"]["layer"] == "layer2"
    # resnet18 / vgg16 keep NAS's paper layers (spec §3.1) unless overridden
    assert wrap_torchvision("resnet18", _random("resnet18"), input_size=64).nas_layers is None


def test_every_torchvision_classifier_has_a_preprocessing() -> None:
    names = torchvision_names()
    assert len(names) >= 80 and {"vit_b_16", "inception_v3", "efficientnet_b0", "convnext_tiny"} <= set(names)
    for n in names:
        p = torchvision_preprocessing(n)
        assert p.resize >= p.input_size >= 224
    inc = torchvision_preprocessing("inception_v3")
    assert (inc.input_size, inc.resize, inc.interpolation) == (299, 342, "bilinear")
    eff = torchvision_preprocessing("efficientnet_b0")
    assert (eff.input_size, eff.resize, eff.interpolation) == (224, 256, "bicubic")
    assert torchvision_preprocessing("resnet50", preset="IMAGENET1K_V1").resize == 256
    assert torchvision_preprocessing("resnet50").resize == 232  # DEFAULT = V2
    with pytest.raises(BadParameterError, match="IMAGENET1K_V2"):
        torchvision_preprocessing("resnet50", preset="V3")


# ------------------------------------------------------------------------------------------ files
def test_state_dict_round_trip_labels_and_errors(tmp_path: Path) -> None:
    m = _random("resnet18")  # a 10-class head: fine-tuned weights load with their own head size
    p = tmp_path / "r18.pt"
    torch.save(m.state_dict(), p)
    ad = load_model("torchvision:resnet18", weights=p)
    assert ad.num_classes is None and ad.label(3) == "class 3" and not ad.multilabel
    assert (ad.input_size, ad.resize) == (224, 256) and ad.layers["cam"] == "layer4"
    x = _x(64)
    with torch.no_grad():
        torch.testing.assert_close(ad.module(x), m(x), rtol=0, atol=0)
    # labels: a file (option in the name or keyword), or carried by the checkpoint
    lf = tmp_path / "classes.txt"
    lf.write_text("\n".join(f"bird {i}" for i in range(10)) + "\n")
    assert load_model(f"torchvision:resnet18?labels={lf}", weights=p).label(4) == "bird 4"
    assert load_model("torchvision:resnet18", weights=p, labels=lf, input_size=64).input_size == 64
    q = tmp_path / "wrapped.pt"
    torch.save({"state_dict": {"module." + k: v for k, v in m.state_dict().items()}, "labels": list("abcdefghij")}, q)
    assert load_model("torchvision:resnet18", weights=q).label(2) == "c"
    with pytest.raises(BadParameterError, match="10 outputs"):
        load_model("torchvision:resnet18", weights=p, labels=["a", "b"])
    # a missing file, a wrong architecture, pickled code, an unknown arch or option: one line each
    with pytest.raises(WeightsNotFoundError) as e:
        load_model("torchvision:resnet18", weights=tmp_path / "nope.pt")
    assert "not found" in _one_line(e)
    with pytest.raises(WrongArchitectureError) as e:
        load_model("torchvision:resnet34", weights=p)
    assert "does not fit resnet34" in _one_line(e)
    with pytest.raises(SpixelError) as e:
        load_model("torchvision:resnet18")
    assert "--weights" in _one_line(e)
    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": m.state_dict(), "cfg": _Payload()}, evil)
    with pytest.raises(SpixelError) as e:
        load_model("torchvision:resnet18", weights=evil)
    assert "not a loadable weights file" in _one_line(e) and _CALLED == []
    with pytest.raises(UnknownNameError, match="resnet18"):
        load_model("torchvision:resnet181", weights=p)
    with pytest.raises(BadParameterError, match="unknown model option"):
        load_model("torchvision:resnet18?colour=red", weights=p)


_CALLED: list[int] = []


def _side_effect() -> None:
    _CALLED.append(1)


class _Payload:
    def __reduce__(self) -> tuple:
        return (_side_effect, ())


def test_imagenet_head_gets_imagenet_labels_and_inception_aux(tmp_path: Path) -> None:
    torch.manual_seed(0)
    m = torchvision.models.inception_v3(weights=None, init_weights=False).eval()  # 1000 classes, AuxLogits
    p = tmp_path / "inc.pt"
    torch.save(m.state_dict(), p)
    ad = load_model("torchvision:inception_v3", weights=p)
    assert ad.num_classes == 1000 and ad.label(281) == "tabby" and ad.input_size == 299 and ad.resize == 342
    assert ad.module.transform_input and ad.module.AuxLogits is not None and ad.layers["cam"] == "Mixed_7c"
    off = load_model("torchvision:inception_v3?transform_input=false", weights=p)
    assert not off.module.transform_input


def test_registered_bare_names_are_torchvision(tmp_path: Path) -> None:
    m = _random("resnet18")
    p = tmp_path / "r18.pt"
    torch.save(m.state_dict(), p)
    assert load_model("resnet18", weights=p).layers["cam"] == "layer4"
    with pytest.raises(UnknownNameError, match="timm has no architecture"):
        load_model("timm:resnet18x", weights=p)
    with pytest.raises(BadParameterError, match="torchvision:/timm:"):
        load_model("efficientnet_lite0", labels="x.txt")


# ------------------------------------------------------------------------------------------ Vision Transformers
def _vit_reference(module: torch.nn.Module, layer: torch.nn.Module, x: torch.Tensor, target: list[int]) -> torch.Tensor:
    """Grad-CAM on a ViT the pytorch-grad-cam way (reshape_transform): hook the layer, keep its gradient, drop the
    class token, reshape to the patch grid."""
    store = {}

    def hook(_m, _i, out):
        out.retain_grad()
        store["a"] = out

    h = layer.register_forward_hook(hook)
    try:
        logits = module(x)
        logits.gather(1, torch.tensor(target).view(-1, 1)).sum().backward()
    finally:
        h.remove()
        module.zero_grad(set_to_none=True)
    a, g = store["a"][:, 1:].detach(), store["a"].grad[:, 1:]
    n, p, d = a.shape
    s = math.isqrt(p)
    a = a.reshape(n, s, s, d).permute(0, 3, 1, 2)
    g = g.reshape(n, s, s, d).permute(0, 3, 1, 2)
    cam = (g.mean((2, 3), keepdim=True) * a).sum(1).clamp(min=0)
    return F.interpolate(cam.unsqueeze(1), size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]


def _check_vit(ad: spixel.ModelAdapter, size: int, grid: int, cam: str, blocks: list[str]) -> None:
    assert ad.tokens is not None and ad.layers["cam"] == cam and ad.nas_layers == blocks
    x, target = _x(size), [1, 4]
    e = spixel.explain(ad, x, "gradcam", target=target)
    ref = _vit_reference(ad.module, ad.layer("cam"), x, target)
    assert float(ref.max()) > 0
    torch.testing.assert_close(e.attribution, ref, rtol=1e-4, atol=1e-5 * float(ref.max()))
    for method, params in {**GRADIENT_METHODS, "gradcam_pp": {}}.items():
        out = spixel.explain(ad, x, method, target=target, seed=0, **params)
        assert out.attribution.shape == (2, size, size) and torch.isfinite(out.attribution).all(), method
    seg = segment(ad.to_rgb01(x[:1]), "nas", model=ad, n_segments=3, n_init=2)
    assert seg.meta["layers"] == blocks and seg.meta["out_size"] == [grid, grid]
    # guided backprop's ReLU rule, AE and the LRP family's rules do not apply to attention: one line each
    refused = {"guided_backprop", "deconvolution"} | {e.name for e in METHODS if e.info.get("family") == "propagation"}
    assert "attribution_equilibrium" in refused
    for method in sorted(refused):
        with pytest.raises(SpixelError) as exc:
            spixel.explain(ad, x, method, target=target)
        _one_line(exc)


def test_torchvision_vit_token_grid() -> None:
    torch.manual_seed(0)
    m = torchvision.models.vit_b_16(weights=None, image_size=32, num_classes=10).eval()  # a 2×2 patch grid
    torch.nn.init.normal_(m.heads.head.weight, std=0.5)  # torchvision zero-initialises the head
    assert token_prefix(m) == 1
    ad = wrap_torchvision("vit_b_16", m, input_size=32)
    blocks = [f"encoder.layers.encoder_layer_{i}" for i in (2, 5, 8, 11)]
    _check_vit(ad, 32, 2, "encoder.layers.encoder_layer_11.ln_1", blocks)
    with pytest.raises(BadParameterError, match="Vision Transformer"):
        spixel.explain(ad, _x(32), "guided_backprop")


def test_timm_vit_from_file(tmp_path: Path) -> None:
    import timm

    torch.manual_seed(0)
    m = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=64, num_classes=20).eval()
    p = tmp_path / "vit.pt"
    torch.save(m.state_dict(), p)
    ad = load_model("timm:vit_tiny_patch16_224", weights=p)  # img_size 64 read from the position embedding
    assert ad.input_size == 64 and ad.mean == (0.5, 0.5, 0.5) and ad.interpolation == "bicubic"
    assert ad.multilabel and ad.labels == list(VOC_CLASSES)  # 20 outputs: a VOC multi-label head
    _check_vit(ad, 64, 4, "blocks.11.norm1", [f"blocks.{i}" for i in (2, 5, 8, 11)])
    grid = to_grid(torch.arange(2 * 17 * 3.0).view(2, 17, 3), 1)
    assert grid.shape == (2, 3, 4, 4) and grid[0, :, 0, 1].tolist() == [6.0, 7.0, 8.0]  # token 2 → row 0, col 1


def test_timm_cnn_from_file_gradcam_equals_captum(tmp_path: Path) -> None:
    import timm

    torch.manual_seed(0)
    m = timm.create_model("resnet18", pretrained=False, num_classes=5)
    random_bn_stats(m)
    m.eval()
    p = tmp_path / "timm_r18.pt"
    torch.save(m.state_dict(), p)
    ad = load_model("timm:resnet18?input_size=64", weights=p)
    assert ad.layers["cam"] == "layer4" and ad.num_classes is None and ad.name == "timm:resnet18"
    x = _x(64)
    e = spixel.explain(ad, x, "gradcam", target=[0, 4])
    ref = LayerGradCam(m, m.layer4).attribute(x, target=[0, 4], relu_attributions=True).detach()
    ref = LayerAttribution.interpolate(ref, (64, 64), interpolate_mode="bilinear")[:, 0]
    torch.testing.assert_close(e.attribution, ref, rtol=1e-4, atol=1e-5 * float(ref.max()))
    with pytest.raises(WrongArchitectureError) as exc:
        load_model("timm:resnet34", weights=p)
    assert "does not fit resnet34 (timm)" in _one_line(exc)


# ------------------------------------------------------------------------------------------ multi-label heads
def test_multilabel_head(tmp_path: Path) -> None:
    torch.manual_seed(0)
    m = torchvision.models.mobilenet_v3_small(weights=None, num_classes=20).eval()
    ad = wrap_torchvision("mobilenet_v3_small", m, input_size=64)
    assert ad.multilabel and ad.label(14) == "person"
    x = _x(64)
    p = ad.predict(x)
    with torch.no_grad():
        torch.testing.assert_close(p, m(x).sigmoid())
    assert not torch.allclose(p.sum(1), torch.ones(2))
    pos = ad.positive_labels(x, threshold=0.5)
    assert all(t == (p[i] > 0.5).nonzero().view(-1).tolist() or t == [int(p[i].argmax())] for i, t in enumerate(pos))
    xr, t, idx = expand_targets(x, [[1, 2, 3], [5]])
    assert xr.shape[0] == 4 and t.tolist() == [1, 2, 3, 5] and idx.tolist() == [0, 0, 0, 1]
    e = spixel.explain(ad, xr, "gradcam", target=t)
    assert e.attribution.shape == (4, 64, 64)
    assert not wrap_torchvision("mobilenet_v3_small", m, input_size=64, multilabel=False).multilabel
    single = wrap_torchvision("mobilenet_v3_small", _random("mobilenet_v3_small"), input_size=64)
    assert not single.multilabel and single.positive_labels(x) == [[int(i)] for i in single.predict(x).argmax(1)]


def test_find_cam_layer_skips_pooled_containers() -> None:
    m = _random("vgg11")
    assert find_cam_layer(m, _x(64, 1)) == "features.19"
    assert find_cam_layer(m, _x(224, 1)) == "features.19"


def test_imagenet_pair(lite0) -> None:
    from spixel.models.zoo import IMAGENET_PAIR, imagenet_pair

    assert IMAGENET_PAIR == ("efficientnet_lite0", "efficientnet_lite1")
    a, b = imagenet_pair()
    assert (a.name, b.name, a.input_size, b.input_size) == ("efficientnet_lite0", "efficientnet_lite1", 224, 240)


def test_cli_explain_with_torchvision_weights_and_labels(tmp_path: Path) -> None:
    from PIL import Image

    from spixel import cli

    m = _random("mobilenet_v3_small")
    w = tmp_path / "mnv3.pt"
    torch.save(m.state_dict(), w)
    labels = tmp_path / "labels.json"
    labels.write_text('["c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8", "bird"]')
    img = tmp_path / "photo.png"
    Image.fromarray((np.random.default_rng(0).random((90, 120, 3)) * 255).astype(np.uint8)).save(img)
    out = tmp_path / "maps"
    argv = ["explain", str(img), "--model", f"torchvision:mobilenet_v3_small?labels={labels}", "--weights", str(w),
            "--method", "gradcam", "--target", "bird", "--out", str(out), "--device", "cpu"]  # fmt: skip
    assert cli.main(argv) == 0
    meta = json.loads(next(out.rglob("*.json")).read_text())
    assert "bird" in json.dumps(meta) and "features" in json.dumps(meta)
    assert cli.main([*argv[:4], "--weights", str(tmp_path / "missing.pt"), *argv[6:]]) == 2

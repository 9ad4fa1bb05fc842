"""`ModelAdapter` (preprocessing, geometry, layers) and the model zoo (`load_model`), checked against PIL and
torchvision computations written out in the tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from skimage import data as skdata
from torch import nn

from conftest import random_bn_stats
from spixel.errors import BadImageError, BadInputError, BadParameterError, SpixelError, UnknownNameError
from spixel.models import ModelAdapter, as_adapter, load_model


def _photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


# ---------------------------------------------------------------------------------------------- preprocessing
def test_preprocess_sources_agree(tiny: ModelAdapter, tmp_path: Path) -> None:
    a = _photo(40, 50)
    p = tmp_path / "a.png"
    Image.fromarray(a).save(p)
    x_arr = tiny.preprocess(a)
    assert x_arr.shape == (1, 3, 32, 32) and x_arr.dtype == torch.float32
    torch.testing.assert_close(tiny.preprocess(p), x_arr, rtol=0, atol=0)
    torch.testing.assert_close(tiny.preprocess(str(p)), x_arr, rtol=0, atol=0)
    torch.testing.assert_close(tiny.preprocess(Image.fromarray(a)), x_arr, rtol=0, atol=0)
    b = _photo(60, 45, seed=1)
    xs = tiny.preprocess([p, Image.fromarray(b), a])
    assert xs.shape == (3, 3, 32, 32)
    torch.testing.assert_close(xs[0], x_arr[0], rtol=0, atol=0)
    torch.testing.assert_close(xs[1], tiny.preprocess(b)[0], rtol=0, atol=0)
    stacked = tiny.preprocess(np.stack([a, a]))  # an (N, H, W, 3) array is a batch
    assert stacked.shape == (2, 3, 32, 32)
    assert x_arr.device == tiny.device
    assert tiny.preprocess(a, device="meta").device.type == "meta"  # an explicit device wins


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_preprocess_follows_the_model_device(tiny: ModelAdapter) -> None:
    tiny.to("cuda")
    x = tiny.preprocess(_photo(40, 50))
    assert x.device.type == "cuda" and tiny.predict(x).device.type == "cuda"
    torch.testing.assert_close(x.cpu(), tiny.to("cpu").preprocess(_photo(40, 50)))


def test_preprocess_is_crop_then_normalize(tiny: ModelAdapter) -> None:
    a = _photo(45, 70, seed=3)
    crop = tiny.crop(a)
    assert crop.shape == (32, 32, 3) and crop.dtype == np.uint8
    x = tiny.preprocess(a)
    mean = torch.tensor(tiny.mean).view(1, 3, 1, 1)
    std = torch.tensor(tiny.std).view(1, 3, 1, 1)
    expect = (torch.from_numpy(np.array(crop)).permute(2, 0, 1)[None].float() / 255 - mean) / std
    torch.testing.assert_close(x, expect, rtol=1e-6, atol=1e-6)
    back = tiny.to_rgb01(x)[0].permute(1, 2, 0).numpy()
    assert np.abs(back - crop / 255.0).max() <= 1 / 255
    back3 = tiny.to_rgb01(x[0])  # (3, H, W) works too
    assert back3.shape == (3, 32, 32)


def test_crop_matches_pil_by_hand() -> None:
    """Shorter side → resize, centre crop: computed here with PIL directly."""
    ad = ModelAdapter(nn.Identity(), input_size=20, resize=30, interpolation="bilinear")
    a = _photo(40, 100, seed=5)  # H=40, W=100: scale 0.75 → 75×30, crop left (75-20)//2=27, top 5
    ref = np.asarray(Image.fromarray(a).resize((75, 30), Image.Resampling.BILINEAR).crop((27, 5, 47, 25)))
    np.testing.assert_array_equal(ad.crop(a), ref)
    assert ad.crop(a).flags.writeable


def test_preprocess_errors(tiny: ModelAdapter, tmp_path: Path) -> None:
    with pytest.raises(BadImageError, match="at least one image"):
        tiny.preprocess([])
    with pytest.raises(BadImageError, match="path, PIL image or HWC array"):
        tiny.preprocess([42])
    with pytest.raises(BadImageError, match="no such file"):
        tiny.preprocess(tmp_path / "missing.png")
    with pytest.raises(BadInputError):
        tiny.to_rgb01(torch.zeros(1, 4, 8, 8))


def test_lite0_preprocessing_independent(lite0: ModelAdapter) -> None:
    """EfficientNet-Lite: bicubic shorter side → 256, centre crop 224, then (x - 127) / 128 on 0..255."""
    cat = skdata.chelsea()  # 300×451 (H×W)
    h, w = cat.shape[:2]
    nw, nh = round(w * 256 / h), 256
    assert nw == 385
    left, top = (nw - 224) // 2, (nh - 224) // 2
    crop = np.asarray(
        Image.fromarray(cat).resize((nw, nh), Image.Resampling.BICUBIC).crop((left, top, left + 224, top + 224)),
        dtype=np.float32,
    )
    expect = torch.from_numpy((crop - 127.0) / 128.0).permute(2, 0, 1)[None]
    x = lite0.preprocess(cat)
    assert x.shape == (1, 3, 224, 224)
    torch.testing.assert_close(x, expect, rtol=0, atol=1e-5)
    assert 281 <= int(lite0.predict(x).argmax()) <= 285  # tabby / tiger cat / Persian / Siamese / Egyptian


# ---------------------------------------------------------------------------------------------- geometry
def test_map_boxes_by_hand() -> None:
    ad = ModelAdapter(nn.Identity(), input_size=224, resize=256)
    shape = (100, 200, 3)  # H=100, W=200 → 512×256, crop left (512-224)//2 = 144, top (256-224)//2 = 16
    # x: 70*2.56-144 = 35.2, 120*2.56-144 = 163.2; y: 10*2.56-16 = 9.6, 90*2.56-16 = 214.4
    assert ad.map_boxes([(70, 10, 120, 90)], shape) == [(35, 10, 163, 214)]
    # partly outside: clipped to the crop (x: 50*2.56-144 < 0, 150*2.56-144 = 240 > 224)
    assert ad.map_boxes([(50, 0, 150, 100)], shape) == [(0, 0, 224, 224)]
    # entirely left of the crop (40*2.56 = 102.4 < 144) and entirely right (195*2.56-144 = 355.2 > 224)
    for b in ad.map_boxes([(0, 0, 40, 100), (195, 20, 200, 80)], shape):
        assert b[0] == b[2]
    assert ad.map_boxes([], shape) == []


def test_map_boxes_agree_with_crop() -> None:
    """A red rectangle in the photo lands inside the mapped box of the crop."""
    ad = ModelAdapter(nn.Identity(), input_size=224, resize=256)
    a = np.full((100, 200, 3), 255, np.uint8)
    a[10:90, 70:120] = (255, 0, 0)
    c = ad.crop(a).astype(int)
    x0, y0, x1, y1 = ad.map_boxes([(70, 10, 120, 90)], a.shape)[0]
    inner = c[y0 + 2 : y1 - 2, x0 + 2 : x1 - 2]
    assert (inner[..., 1] < 10).all()  # red inside
    outer = np.ones(c.shape[:2], bool)
    outer[max(y0 - 2, 0) : y1 + 2, max(x0 - 2, 0) : x1 + 2] = False
    assert (c[outer][:, 1] > 245).all()  # white outside


def test_map_boxes_bad_box() -> None:
    ad = ModelAdapter(nn.Identity(), input_size=224, resize=256)
    with pytest.raises(BadParameterError, match="x1 >= x0"):
        ad.map_boxes([(50, 10, 40, 20)], (100, 200))
    with pytest.raises(BadParameterError):
        ad.map_boxes([(0, 30, 10, 20)], (100, 200))


# ---------------------------------------------------------------------------------------------- construction, layers
def test_layer_roles_and_names(tiny: ModelAdapter) -> None:
    assert tiny.layer("cam") is tiny.module.features[8]
    assert tiny.layer("features.8") is tiny.module.features[8]
    assert tiny.layer("fc") is tiny.module.fc
    with pytest.raises(BadParameterError, match="named_modules"):
        tiny.layer("no_such_layer")


def test_unknown_layer_in_constructor(tiny: ModelAdapter) -> None:
    with pytest.raises(BadParameterError, match="not a module"):
        ModelAdapter(tiny.module, layers={"cam": "features.99"})


@pytest.mark.parametrize(
    "kw",
    [
        {"mean": (0.5, 0.5)},
        {"std": (0.2, 0.0, 0.2)},
        {"input_size": 4},
        {"interpolation": "nearest"},
        {"input_size": 64, "resize": 32},
    ],
)
def test_constructor_rejects(kw: dict) -> None:
    with pytest.raises(BadParameterError):
        ModelAdapter(nn.Conv2d(3, 3, 1), **kw)


def test_constructor_rejects_non_module() -> None:
    with pytest.raises(BadParameterError, match=r"nn\.Module"):
        ModelAdapter(lambda x: x)  # type: ignore[arg-type]
    with pytest.raises(BadParameterError):
        as_adapter("resnet18")  # type: ignore[arg-type]


def test_defaults_labels_and_as_adapter(tiny: ModelAdapter) -> None:
    ad = as_adapter(nn.Conv2d(3, 3, 1))
    assert ad.resize == 256 and ad.input_size == 224 and ad.interpolation == "bilinear"
    assert ad.num_classes is None and ad.label(3) == "class 3"
    assert as_adapter(tiny) is tiny
    assert tiny.num_classes == 10 and tiny.label(2) == "c2" and tiny.label(10) == "class 10"
    assert tiny.device == torch.device("cpu")


def test_predict_softmax_restores_mode(tiny: ModelAdapter, tiny_x: torch.Tensor) -> None:
    tiny.module.train()
    p = tiny.predict(tiny_x, batch_size=2)
    assert tiny.module.training
    tiny.module.eval()
    torch.testing.assert_close(p, tiny.module(tiny_x).softmax(-1))
    torch.testing.assert_close(p.sum(-1), torch.ones(3))


# ---------------------------------------------------------------------------------------------- zoo
def _random_resnet18(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    m = torchvision.models.resnet18(weights=None)
    random_bn_stats(m)
    return m.eval()


_CALLED: list[str] = []


def _side_effect() -> dict:
    _CALLED.append("unpickled")
    return {}


class _Payload:
    """Unpickling this would run code: the zoo must refuse it."""

    def __reduce__(self) -> tuple:
        return (_side_effect, ())


def test_unknown_model() -> None:
    with pytest.raises(UnknownNameError, match="resnet18"):  # lists the known names
        load_model("nonexistent")
    with pytest.raises(SpixelError, match="not found"):  # a path is a spixel.train checkpoint
        load_model("some/dir/model.pt")


def test_torchvision_needs_weights() -> None:
    with pytest.raises(SpixelError, match="--weights"):
        load_model("resnet18")


def test_resnet18_from_local_weights(tmp_path: Path) -> None:
    ref = _random_resnet18()
    p = tmp_path / "r18.pth"
    torch.save(ref.state_dict(), p)
    ad = load_model("resnet18", weights=p)
    assert ad.input_size == 224 and ad.num_classes == 1000 and ad.label(281) == "tabby"
    assert ad.layer("cam") is ad.module.layer4
    assert not ad.module.training
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ad.module(x), ref(x), rtol=0, atol=0)
    # a checkpoint that wraps the state_dict is accepted too
    q = tmp_path / "wrapped.pth"
    torch.save({"state_dict": ref.state_dict(), "epoch": 3}, q)
    with torch.no_grad():
        torch.testing.assert_close(load_model("resnet18", weights=q).module(x), ref(x), rtol=0, atol=0)


def test_weights_pickle_refused(tmp_path: Path) -> None:
    p = tmp_path / "evil.pth"
    torch.save(_Payload(), p)
    with pytest.raises(SpixelError, match="not a loadable weights file"):
        load_model("resnet18", weights=p)
    assert _CALLED == []


def test_weights_not_a_state_dict(tmp_path: Path) -> None:
    p = tmp_path / "list.pth"
    torch.save({"a": torch.zeros(2), "b": 3}, p)
    with pytest.raises(SpixelError, match="state_dict"):
        load_model("resnet18", weights=p)
    with pytest.raises(SpixelError, match="not found"):
        load_model("resnet18", weights=tmp_path / "missing.pth")


def test_wrong_architecture(tmp_path: Path, tiny: ModelAdapter) -> None:
    p = tmp_path / "tiny.pth"
    torch.save(tiny.module.state_dict(), p)
    with pytest.raises(SpixelError, match="does not fit resnet18"):
        load_model("resnet18", weights=p)
    with pytest.raises(SpixelError, match="not efficientnet_lite0 weights"):
        load_model("efficientnet_lite0", weights=p)


def test_bad_device(tmp_path: Path) -> None:
    p = tmp_path / "r18.pth"
    torch.save(_random_resnet18().state_dict(), p)
    with pytest.raises(BadParameterError, match="device"):
        load_model("resnet18", weights=p, device="no_such_device")


@pytest.mark.parametrize(("name", "size"), [("efficientnet_lite1", 240), ("efficientnet_lite2", 260)])
def test_lite_larger_predict_cat(name: str, size: int) -> None:
    ad = load_model(name)
    assert ad.input_size == size and ad.resize == size + 32 and ad.interpolation == "bicubic"
    assert ad.layer("cam") is ad.module.bn2
    x = ad.preprocess(skdata.chelsea())
    assert x.shape == (1, 3, size, size)
    assert 281 <= int(ad.predict(x).argmax()) <= 285

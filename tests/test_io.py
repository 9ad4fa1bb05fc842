"""Image loading, array validation, map and JSON files (`spixel.io`): every check against hand-computed values."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from spixel.errors import BadImageError, SpixelError
from spixel.io import MAX_SIDE, check_image_array, load_image, load_map, save_json, save_map


def _photo(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    """A smooth colour image (JPEG-friendly) of shape (h, w, 3) uint8."""
    yy, xx = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(seed)
    ph = rng.uniform(0, 2 * np.pi, 3)
    chans = [127.5 + 100 * np.sin(xx / 7.0 + ph[c]) * np.cos(yy / 5.0 + ph[c]) for c in range(3)]
    return np.clip(np.stack(chans, -1), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------- bad files
def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BadImageError, match="no such file"):
        load_image(tmp_path / "nope.png")


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(BadImageError, match="directory"):
        load_image(tmp_path)


def test_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.png"
    p.write_bytes(b"")
    with pytest.raises(BadImageError, match="empty"):
        load_image(p)


def test_text_file_named_jpg(tmp_path: Path) -> None:
    p = tmp_path / "notes.jpg"
    p.write_text("this is not a picture\n" * 20)
    with pytest.raises(BadImageError, match="not an image file") as ei:
        load_image(p)
    assert "PNG" in str(ei.value)  # tells the user which formats work


def test_truncated_jpeg(tmp_path: Path) -> None:
    p = tmp_path / "cut.jpg"
    Image.fromarray(_photo(200, 300)).save(p, quality=95)
    data = p.read_bytes()
    assert len(data) > 2000
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadImageError, match="damaged or truncated"):
        load_image(p)


def test_one_pixel_png(tmp_path: Path) -> None:
    p = tmp_path / "dot.png"
    Image.new("RGB", (1, 1), (10, 20, 30)).save(p)
    with pytest.raises(BadImageError, match="at least 8") as ei:
        load_image(p)
    assert "1×1" in str(ei.value)


def test_errors_are_spixel_errors() -> None:
    assert issubclass(BadImageError, SpixelError)


# ---------------------------------------------------------------------------------------------- file modes
def test_rgb_png_roundtrip_exact(tmp_path: Path) -> None:
    a = _photo(20, 30)
    p = tmp_path / "a.png"
    Image.fromarray(a).save(p)
    out = load_image(p)
    assert out.dtype == np.uint8 and out.shape == (20, 30, 3)
    np.testing.assert_array_equal(out, a)


def test_grayscale_png(tmp_path: Path) -> None:
    g = np.arange(12 * 10, dtype=np.uint8).reshape(12, 10) * 2
    p = tmp_path / "g.png"
    Image.fromarray(g, mode="L").save(p)
    out = load_image(p)
    assert out.shape == (12, 10, 3) and out.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], g)


def test_rgba_transparent_becomes_white(tmp_path: Path) -> None:
    a = np.zeros((10, 10, 4), np.uint8)
    a[..., :3] = (200, 10, 30)
    a[:5, :, 3] = 255  # top half opaque
    a[5:, :, 3] = 0  # bottom half fully transparent (underlying RGB is red-ish, must not show)
    a[5:, :5, 3] = 128  # bottom-left half-transparent: 128/255 of colour + 127/255 of white
    p = tmp_path / "t.png"
    Image.fromarray(a, mode="RGBA").save(p)
    out = load_image(p).astype(int)
    np.testing.assert_array_equal(out[0, 0], (200, 10, 30))
    np.testing.assert_array_equal(out[9, 9], (255, 255, 255))
    expect = [round((v * 128 + 255 * 127) / 255) for v in (200, 10, 30)]
    assert np.abs(out[9, 0] - np.array(expect)).max() <= 1


def test_palette_png(tmp_path: Path) -> None:
    idx = np.zeros((9, 12), np.uint8)
    idx[:, 6:] = 1
    im = Image.fromarray(idx, mode="P")
    im.putpalette([255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 6))
    p = tmp_path / "p.png"
    im.save(p)
    out = load_image(p)
    np.testing.assert_array_equal(out[0, 0], (255, 0, 0))
    np.testing.assert_array_equal(out[0, 11], (0, 0, 255))


def test_palette_with_transparency_is_white(tmp_path: Path) -> None:
    idx = np.zeros((9, 12), np.uint8)
    idx[:, 6:] = 1
    im = Image.fromarray(idx, mode="P")
    im.putpalette([0, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 6))
    p = tmp_path / "pt.png"
    im.save(p, transparency=0)  # palette entry 0 (black) is transparent
    out = load_image(p)
    np.testing.assert_array_equal(out[0, 0], (255, 255, 255))
    np.testing.assert_array_equal(out[0, 11], (0, 255, 0))


def test_16bit_png(tmp_path: Path) -> None:
    a = np.zeros((8, 9), np.uint16)
    a[:, 3:6] = 32768
    a[:, 6:] = 65535
    p = tmp_path / "d.png"
    Image.fromarray(a).save(p)
    assert Image.open(p).mode.startswith("I")
    out = load_image(p)
    assert out.dtype == np.uint8 and out.shape == (8, 9, 3)
    np.testing.assert_array_equal(out[0, 0], (0, 0, 0))
    np.testing.assert_array_equal(out[0, 4], (128, 128, 128))  # 32768 / 65535 * 255 = 127.5 → 128
    np.testing.assert_array_equal(out[0, 8], (255, 255, 255))


def test_large_jpeg_downscaled_keeping_aspect(tmp_path: Path) -> None:
    a = np.zeros((4000, 6000, 3), np.uint8)
    a[:, :3000] = (220, 40, 40)
    a[:, 3000:] = (40, 40, 220)
    p = tmp_path / "big.jpg"
    Image.fromarray(a).save(p, quality=90)
    out = load_image(p)
    assert out.shape == (round(4000 * MAX_SIDE / 6000), MAX_SIDE, 3) == (2731, 4096, 3)
    assert np.abs(out[1000, 500].astype(int) - (220, 40, 40)).max() <= 8
    assert np.abs(out[1000, 3500].astype(int) - (40, 40, 220)).max() <= 8


def test_max_side_argument(tmp_path: Path) -> None:
    p = tmp_path / "m.png"
    Image.fromarray(_photo(50, 100)).save(p)
    assert load_image(p, max_side=40).shape == (20, 40, 3)
    assert load_image(p).shape == (50, 100, 3)


def test_large_rgba_downscaled_on_white(tmp_path: Path) -> None:
    """The downscale path must composite transparency on white too (not drop the alpha channel)."""
    a = np.zeros((40, 200, 4), np.uint8)  # fully transparent black
    a[:, :100] = (0, 0, 255, 255)  # left half opaque blue
    p = tmp_path / "big.png"
    Image.fromarray(a, mode="RGBA").save(p)
    out = load_image(p, max_side=100)
    assert out.shape == (20, 100, 3)
    np.testing.assert_array_equal(out[10, 10], (0, 0, 255))
    np.testing.assert_array_equal(out[10, 90], (255, 255, 255))


def test_large_16bit_downscaled_keeps_values(tmp_path: Path) -> None:
    a = np.full((20, 200), 32768, np.uint16)
    a[:, 100:] = 65535
    p = tmp_path / "big16.png"
    Image.fromarray(a).save(p)
    out = load_image(p, max_side=100)
    assert out.shape == (10, 100, 3)
    np.testing.assert_array_equal(out[5, 10], (128, 128, 128))
    np.testing.assert_array_equal(out[5, 90], (255, 255, 255))


# ---------------------------------------------------------------------------------------------- arrays
def test_array_uint8_passthrough() -> None:
    a = _photo(10, 12)
    out = check_image_array(a)
    np.testing.assert_array_equal(out, a)
    assert out.flags["C_CONTIGUOUS"]


def test_array_float01() -> None:
    a = np.zeros((8, 8, 3), np.float32)
    a[0, 0] = (0.0, 0.5, 1.0)
    a[0, 1] = (0.2, 0.4, 0.6)
    out = check_image_array(a)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out[0, 0], (0, 128, 255))  # round(127.5) = 128 (half to even)
    np.testing.assert_array_equal(out[0, 1], (51, 102, 153))


def test_array_uint16() -> None:
    a = np.zeros((8, 8, 3), np.uint16)
    a[0, 0] = (65535, 257 * 100, 0)
    out = check_image_array(a)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out[0, 0], (255, 100, 0))


def test_array_gray_and_single_channel() -> None:
    g = np.full((9, 8), 77, np.uint8)
    for a in (g, g[..., None]):
        out = check_image_array(a)
        assert out.shape == (9, 8, 3)
        assert (out == 77).all()


def test_array_rgba_drops_alpha() -> None:
    a = np.zeros((8, 8, 4), np.uint8)
    a[..., :3] = (1, 2, 3)
    out = check_image_array(a)
    assert out.shape == (8, 8, 3)
    np.testing.assert_array_equal(out[3, 3], (1, 2, 3))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_array_nonfinite(bad: float) -> None:
    a = np.zeros((8, 8, 3), np.float64)
    a[2, 3, 1] = bad
    with pytest.raises(BadImageError, match="NaN or infinite"):
        check_image_array(a)


@pytest.mark.parametrize("v", [-0.1, 1.5, 255.0])
def test_array_float_out_of_range(v: float) -> None:
    a = np.zeros((8, 8, 3), np.float32)
    a[0, 0, 0] = v
    with pytest.raises(BadImageError, match=r"\[0, 1\]"):
        check_image_array(a)


@pytest.mark.parametrize(
    "a",
    [np.zeros((8, 8, 2), np.uint8), np.zeros((8,), np.uint8), np.zeros((2, 8, 8, 3), np.uint8)],
    ids=["2ch", "1d", "4d"],
)
def test_array_bad_shape(a: np.ndarray) -> None:
    with pytest.raises(BadImageError, match="shape"):
        check_image_array(a)


def test_array_bad_dtype_and_type() -> None:
    with pytest.raises(BadImageError, match="dtype"):
        check_image_array(np.zeros((8, 8, 3), np.int64))
    with pytest.raises(BadImageError, match="numpy array"):
        check_image_array([[0] * 8] * 8)  # type: ignore[arg-type]


def test_array_too_small() -> None:
    with pytest.raises(BadImageError, match="at least 8"):
        check_image_array(np.zeros((7, 100, 3), np.uint8))


# ---------------------------------------------------------------------------------------------- maps and JSON
def test_map_roundtrip(tmp_path: Path) -> None:
    m = np.random.default_rng(0).normal(size=(13, 17))
    p = tmp_path / "sub" / "m.npy"
    save_map(p, m)
    out = load_map(p)
    assert out.dtype == np.float32 and out.shape == (13, 17)
    np.testing.assert_array_equal(out, m.astype(np.float32))


def test_object_npy_refused(tmp_path: Path) -> None:
    p = tmp_path / "obj.npy"
    np.save(p, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(BadImageError, match=r"not a readable \.npy map"):
        load_map(p)


def test_garbage_npy_refused(tmp_path: Path) -> None:
    p = tmp_path / "g.npy"
    p.write_bytes(b"definitely not numpy")
    with pytest.raises(BadImageError):
        load_map(p)


def test_save_json_converts(tmp_path: Path) -> None:
    obj = {
        "t": torch.tensor([[1.0, 2.5], [float("nan"), 4.0]]),
        "t0": torch.tensor(3),
        "i": np.int64(7),
        "f": np.float32(0.25),
        "nan": float("nan"),
        "inf": np.float64(np.inf),
        "arr": np.array([1, 2, 3], np.uint8),
        "tup": (1, "a", None, True),
        3: "int key",
        "path": tmp_path / "x.png",
    }
    p = tmp_path / "out" / "e.json"
    save_json(p, obj)
    text = p.read_text()
    assert "NaN" not in text and "Infinity" not in text  # strict JSON
    back = json.loads(text)
    assert back["t"] == [[1.0, 2.5], [None, 4.0]]
    assert back["t0"] == 3
    assert back["i"] == 7 and isinstance(back["i"], int)
    assert math.isclose(back["f"], 0.25)
    assert back["nan"] is None and back["inf"] is None
    assert back["arr"] == [1, 2, 3]
    assert back["tup"] == [1, "a", None, True]
    assert back["3"] == "int key"
    assert back["path"] == str(tmp_path / "x.png")

"""Overlays, box drawing and the HTML gallery (``spixel.viz``)."""

from __future__ import annotations

import io
import re
import warnings

import numpy as np
import pytest
from matplotlib import colormaps
from PIL import Image

from spixel.errors import BadInputError
from spixel.viz import GalleryColumn, GalleryRow, GalleryTile, blend, draw_boxes, overlay, render_map, write_gallery

H, W = 40, 60


@pytest.fixture
def gray_photo() -> np.ndarray:
    return np.full((H, W, 3), 128, np.uint8)


def _blobs() -> np.ndarray:
    """A signed map: +1 on the left block, −1 on the right block, 0 elsewhere."""
    a = np.zeros((H, W), np.float32)
    a[10:30, 5:25] = 1.0
    a[10:30, 35:55] = -1.0
    return a


def test_size_and_dtype(gray_photo):
    a = np.random.default_rng(0).random((H, W))
    bare = overlay(gray_photo, a, colorbar=False)
    assert bare.dtype == np.uint8 and bare.shape == (H, W, 3)  # no title, no bar: exactly the image
    with_bar = overlay(gray_photo, a)
    assert with_bar.dtype == np.uint8 and with_bar.ndim == 3 and with_bar.shape[2] == 3
    assert with_bar.shape[1] == W + 8 and with_bar.shape[0] > H + 8
    titled = overlay(gray_photo, a, title="saliency\ntabby (p = 0.62)")
    assert titled.shape[1] == W + 8 and titled.shape[0] > with_bar.shape[0]
    assert overlay(gray_photo, a, colorbar=False, scale=2).shape == (2 * H, 2 * W, 3)
    # min_side enlarges a small image but not its title band and colour bar
    big = overlay(gray_photo, a, title="saliency\ntabby (p = 0.62)", min_side=3 * max(H, W))
    assert big.shape[1] == 3 * W + 8
    assert big.shape[0] - 3 * H == titled.shape[0] - H
    assert overlay(gray_photo, a, min_side=10).shape == with_bar.shape  # already large enough: unchanged
    # float [0, 1] images and (3, H, W) layouts are accepted too
    assert overlay(gray_photo / 255.0, a, colorbar=False).shape == (H, W, 3)
    assert overlay(np.moveaxis(gray_photo / 255.0, -1, 0), a, colorbar=False).shape == (H, W, 3)


def test_signed_maps_use_a_diverging_map_centred_at_zero(gray_photo):
    a = _blobs()
    _, cs = blend(gray_photo, a)
    assert cs["signed"] and cs["cmap"] in ("RdBu_r", "bwr") and cs["vmin"] == -cs["vmax"]
    px = overlay(gray_photo, a, colorbar=False).astype(int)
    pos, neg, zero = px[20, 15], px[20, 45], px[2, 2]
    assert pos[0] > pos[2] + 40  # positive → red
    assert neg[2] > neg[0] + 40  # negative → blue
    # zero attribution leaves the (dimmed) photo uncoloured: grey stays grey
    assert abs(zero[0] - zero[2]) <= 1


def test_non_negative_maps_use_a_sequential_map(gray_photo):
    a = np.clip(_blobs(), 0, None)
    _, cs = blend(gray_photo, a)
    assert not cs["signed"] and cs["cmap"] == "inferno" and cs["vmin"] == 0
    top = colormaps["inferno"](1.0)[:3]  # pale yellow
    px = overlay(gray_photo, a, colorbar=False, alpha=1.0)[20, 15] / 255.0
    np.testing.assert_allclose(px, top, atol=2 / 255)
    _, cs2 = blend(gray_photo, a, cmap="viridis")
    assert cs2["cmap"] == "viridis"
    _, cs3 = blend(gray_photo, a, signed=True)
    assert cs3["cmap"] == "RdBu_r"


def test_percentile_clipping(gray_photo):
    rng = np.random.default_rng(1)
    a = rng.random((H, W)).astype(np.float32)
    a[0, 0] = 1000.0  # one outlier must not wash out the rest
    _, cs = blend(gray_photo, a)
    assert cs["vmax"] == pytest.approx(np.percentile(np.abs(a), 99))
    _, cs_none = blend(gray_photo, a, clip_percentile=None)
    assert cs_none["vmax"] == pytest.approx(1000.0)


@pytest.mark.parametrize("value", [0.0, 5.0, -2.0])
def test_constant_maps_do_not_crash(gray_photo, value):
    a = np.full((H, W), value, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no 0/0 → NaN on the way
        mixed, cs = blend(gray_photo, a)
        out = overlay(gray_photo, a, title="constant")
    assert np.isfinite(mixed).all() and np.isfinite([cs["vmin"], cs["vmax"]]).all() and cs["vmax"] > cs["vmin"]
    assert out.dtype == np.uint8
    if value == 0.0:  # nothing to show: just the dimmed photo, uniform
        bare = overlay(gray_photo, a, colorbar=False)
        assert (bare == bare[0, 0]).all()


def test_non_finite_values_are_ignored(gray_photo):
    a = _blobs()
    a[0, :5] = np.nan
    a[1, :5] = np.inf
    out = overlay(gray_photo, a, colorbar=False)
    assert out.shape == (H, W, 3)
    np.testing.assert_array_equal(out[0, 0], out[2, 2])  # treated as 0


def test_boundaries_are_drawn_in_white(gray_photo):
    a = np.random.default_rng(2).random((H, W))
    mask = np.zeros((H, W), bool)
    mask[:, 30] = True
    mask[20, :] = True
    out = overlay(gray_photo, a, colorbar=False, boundaries=mask)
    assert (out[mask] == 255).all()
    assert not (out[~mask] == 255).all(-1).any()
    with pytest.raises(BadInputError):
        overlay(gray_photo, a, boundaries=mask[:-1])


def test_shape_mismatch_is_a_clear_error(gray_photo):
    with pytest.raises(BadInputError, match="must match"):
        overlay(gray_photo, np.zeros((H + 1, W)))


def test_render_map_png(gray_photo):
    a = _blobs()
    png = render_map(gray_photo, a, title="t")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    np.testing.assert_array_equal(
        np.asarray(Image.open(io.BytesIO(png)).convert("RGB")), overlay(gray_photo, a, title="t")
    )


def test_no_pyplot_figures_leak(gray_photo):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    overlay(gray_photo, _blobs(), title="x")
    assert plt.get_fignums() == before


def test_draw_boxes(gray_photo):
    out = draw_boxes(gray_photo, [(10, 5, 30, 25), (3, 3, 3, 9)], color=(0, 255, 0), width=1)
    assert out.shape == gray_photo.shape and out.dtype == np.uint8
    for y, x in [(5, 10), (24, 29), (5, 29), (24, 10), (15, 10)]:  # exclusive ends: last pixel is 29 / 24
        assert tuple(out[y, x]) == (0, 255, 0), (y, x)
    assert tuple(out[15, 20]) == (128, 128, 128)  # inside untouched
    assert tuple(out[25, 30]) == (128, 128, 128)  # just outside the exclusive end
    assert tuple(out[5, 3]) == (128, 128, 128)  # the empty box is skipped


def test_gallery_page(tmp_path):
    cols = [
        GalleryColumn("saliency", "saliency", "gradient <magnitude>", "gradient", "note"),
        GalleryColumn("gradcam", "Grad-CAM", "coarse", "cam"),
    ]
    rows = [
        GalleryRow(
            "cat <script>",
            GalleryTile("cat/photo.png"),
            ["predicted: tabby (62%)"],
            True,
            {"saliency": GalleryTile("cat/saliency.png", "0.1 s")},
        )
    ]
    page = write_gallery(
        tmp_path / "g" / "index.html", title="T & co", intro=["hello"], columns=cols, rows=rows, notes=["read me"]
    )
    text = page.read_text()
    assert "<script>" not in text and "cat &lt;script&gt;" in text and "T &amp; co" in text
    assert re.findall(r'src="([^"]+)"', text) == ["cat/photo.png", "cat/saliency.png"]
    assert "Grad-CAM" in text and "gradient &lt;magnitude&gt;" in text and 'class="badge ok"' in text
    assert text.count('class="row"') == 1

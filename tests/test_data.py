"""The bundled photos: they load offline, their annotations are sane, and EfficientNet-Lite0 agrees where we
say it should."""

from __future__ import annotations

import numpy as np
import pytest

import spixel.data as D
from spixel.errors import UnknownNameError

CAT = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO = 967


@pytest.fixture(scope="module")
def photos() -> list[D.Sample]:
    return D.samples()


def test_every_sample_loads_with_a_box_inside(photos: list[D.Sample]) -> None:
    assert len(photos) >= 8
    assert [s.name for s in photos] == D.sample_names()
    for s in photos:
        assert s.image.dtype == np.uint8 and s.image.ndim == 3 and s.image.shape[2] == 3, s.name
        h, w = s.image.shape[:2]
        x0, y0, x1, y1 = s.box
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h, (s.name, s.box, (w, h))
        assert all(0 <= c < 1000 for c in s.classes), s.name
        assert s.source and s.note


def test_unknown_sample_name_is_a_clear_error() -> None:
    with pytest.raises(UnknownNameError, match="chelsea"):
        D.sample("chelsea_typo")


def test_lite0_top1(lite0, photos: list[D.Sample]) -> None:
    x = lite0.preprocess([s.image for s in photos])
    top = lite0.predict(x).argmax(1).tolist()
    by_name = dict(zip([s.name for s in photos], top, strict=True))
    assert by_name["chelsea"] in CAT
    assert by_name["coffee"] == ESPRESSO
    for s, t in zip(photos, top, strict=True):
        if s.confident:
            assert t in s.classes, (s.name, t, lite0.label(t))
        else:
            assert t not in s.classes, f"{s.name} is right now: mark it confident"


def test_boxes_map_into_the_crop(lite0, photos: list[D.Sample]) -> None:
    for s in photos:
        ((x0, y0, x1, y1),) = lite0.map_boxes([s.box], s.image.shape)
        assert 0 <= x0 < x1 <= 224 and 0 <= y0 < y1 <= 224, (s.name, (x0, y0, x1, y1))


def test_selection_order_and_unknown_names() -> None:
    names = D.sample_names()
    assert {"chelsea", "coffee", "rocket", "motorcycle", "astronaut", "grace_hopper", "china", "flower"} <= set(names)
    picked = D.samples(["coffee", "chelsea"])
    assert [s.name for s in picked] == ["coffee", "chelsea"]
    with pytest.raises(UnknownNameError, match="nope"):
        D.samples(["chelsea", "nope"])
    s = D.sample("chelsea")
    with pytest.raises(AttributeError):
        s.name = "other"  # type: ignore[misc]  # frozen


def test_pixels_are_the_packaged_photos() -> None:
    """The loader returns the very photos the packages ship (read here without spixel)."""
    from skimage import data as skdata
    from sklearn.datasets import load_sample_image

    np.testing.assert_array_equal(D.sample("chelsea").image, skdata.chelsea())
    np.testing.assert_array_equal(D.sample("motorcycle").image, skdata.stereo_motorcycle()[0])  # left view
    np.testing.assert_array_equal(D.sample("china").image, load_sample_image("china.jpg"))
    if "camera" in D.sample_names():  # grayscale photo, replicated to RGB
        cam = D.sample("camera").image
        assert cam.shape == (*skdata.camera().shape, 3)
        for c in range(3):
            np.testing.assert_array_equal(cam[..., c], skdata.camera())


def test_flower_box_is_tight() -> None:
    """The dahlia is the only orange thing above row 365 (a second bloom starts below): the box must hold
    almost all orange pixels, and each side of the box must touch the bloom."""
    s = D.sample("flower")
    a = s.image.astype(int)
    orange = (a[..., 0] > 150) & (a[..., 0] - a[..., 2] > 60)
    x0, y0, x1, y1 = s.box
    inside = np.zeros(orange.shape, bool)
    inside[y0:y1, x0:x1] = True
    assert orange[:365][inside[:365]].sum() >= 0.98 * orange[:365].sum()
    for band in (
        orange[y0:y1, x0 : x0 + 3],
        orange[y0:y1, x1 - 3 : x1],
        orange[y0 : y0 + 3, x0:x1],
        orange[y1 - 3 : y1, x0:x1],
    ):
        assert band.any()


def test_rocket_box_is_on_the_rocket() -> None:
    """The white rocket is brighter than the dusk sky beside and above it."""
    s = D.sample("rocket")
    g = s.image.astype(float).mean(-1)
    x0, y0, x1, y1 = s.box
    assert x1 - x0 < 40 and y1 - y0 > 250  # a tall thin object
    body = g[y0:y1, x0:x1].mean()
    upper = slice(y0, y1 - 60)  # beside the upper rocket there is only sky (the launch mount is lower)
    assert body > 1.4 * g[upper, x0 - 25 : x0].mean() and body > 1.4 * g[upper, x1 : x1 + 25].mean()
    assert body > 1.8 * g[y0 - 20 : y0, x0:x1].mean()

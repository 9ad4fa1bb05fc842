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
        (x0, y0, x1, y1), = lite0.map_boxes([s.box], s.image.shape)
        assert 0 <= x0 < x1 <= 224 and 0 <= y0 < y1 <= 224, (s.name, (x0, y0, x1, y1))

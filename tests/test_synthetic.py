"""The generated ground-truth dataset: deterministic, exact masks, shapes that are what their class says, and
colour that tells nothing about the class."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from skimage.measure import label, regionprops

from spixel.data import SyntheticDataset
from spixel.data.synthetic import render
from spixel.errors import BadParameterError


@pytest.fixture(scope="module")
def ds() -> SyntheticDataset:
    return SyntheticDataset(280, seed=3)


@pytest.fixture(scope="module")
def arrays(ds):
    return ds.arrays()


def test_deterministic_from_seed_and_index(ds, arrays) -> None:
    images, labels, masks = arrays
    again = SyntheticDataset(280, seed=3)
    for i in (0, 17, 279, -1):
        s = again[i]
        assert np.array_equal(s.image, images[i]) and s.label == labels[i] and np.array_equal(s.mask, masks[i])
    # order and dataset length do not matter: image i is a function of (seed, i) only
    part = SyntheticDataset(1000, seed=3).arrays([279, 5])
    assert np.array_equal(part[0][0], images[279]) and np.array_equal(part[0][1], images[5])
    other = SyntheticDataset(280, seed=4).arrays(range(20))[0]
    assert not any(np.array_equal(a, b) for a, b in zip(other, images[:20], strict=True))


def test_shapes_and_types(ds, arrays) -> None:
    images, labels, masks = arrays
    assert images.shape == (280, 64, 64, 3) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and masks.dtype == bool and masks.shape == (280, 64, 64)
    assert len(ds.classes) >= 6 and set(labels.tolist()) == set(range(len(ds.classes)))
    big = SyntheticDataset(3, size=97, seed=0)[2]
    assert big.image.shape == (97, 97, 3) and big.mask.shape == (97, 97)


def test_mask_is_exactly_what_the_object_covers(ds, arrays) -> None:
    images, _, masks = arrays
    for i in range(40):
        bg, _, m = render(3, i, 64, 2, draw_object=False)
        assert np.array_equal(m, masks[i])
        changed = (bg != images[i]).any(-1)
        assert not (changed & ~masks[i]).any(), i  # nothing outside the mask was touched
        assert changed[masks[i]].mean() > 0.97, i  # and the object really covers the mask


def test_box_is_the_masks_bounding_box(ds) -> None:
    for i in range(0, 280, 7):
        s = ds[i]
        x0, y0, x1, y1 = s.box
        assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
        assert s.mask[y0:y1, x0:x1].sum() == s.mask.sum() > 50
        assert s.mask[y0, x0:x1].any() and s.mask[y1 - 1, x0:x1].any()
        assert s.mask[y0:y1, x0].any() and s.mask[y0:y1, x1 - 1].any()


def test_each_class_has_its_shape(ds, arrays) -> None:
    """Geometry measured by skimage, independent of the generator: one connected object per image; a ring has a
    hole (and only a ring has one); disks, squares and triangles are convex, crosses, rings, stars and crescents
    are not; a disk fills π/4 of its box."""
    _, labels, masks = arrays
    name = dict(enumerate(ds.classes))
    for m, y in zip(masks, labels, strict=True):
        assert label(m, connectivity=2).max() == 1
        (p,) = regionprops(m.astype(np.uint8))
        c = name[int(y)]
        inner = [h for h in regionprops(label(~m, connectivity=1)) if min(h.bbox[:2]) > 0 and max(h.bbox[2:]) < 64]
        holes = [h for h in inner if h.area >= 4]
        assert (len(holes) == 1) == (c == "ring"), c
        if c in ("disk", "triangle", "square"):
            assert p.solidity > 0.85, (c, p.solidity)
        if c in ("cross", "star", "crescent", "ring"):
            assert p.solidity < 0.83, (c, p.solidity)
        if c == "disk":
            assert abs(p.area / p.area_bbox - np.pi / 4) < 0.06 and p.eccentricity < 0.3


def test_colour_does_not_tell_the_class(ds, arrays) -> None:
    """A nearest-centroid classifier on the object's mean colour (fit on half, scored on the other half) stays
    near chance, while the same classifier on the mask's shape descriptors does far better."""
    images, labels, masks = arrays
    colour = np.stack([im[m].mean(0) for im, m in zip(images, masks, strict=True)])
    shape = np.stack(
        [
            [p.solidity, p.extent, p.euler_number, p.eccentricity]
            for p in (regionprops(m.astype(np.uint8))[0] for m in masks)
        ]
    )

    def centroid_accuracy(f: np.ndarray) -> float:
        f = (f - f.mean(0)) / (f.std(0) + 1e-9)
        k = len(ds.classes)
        cent = np.stack([f[:140][labels[:140] == c].mean(0) for c in range(k)])
        pred = ((f[140:, None] - cent[None]) ** 2).sum(-1).argmin(1)
        return float((pred == labels[140:]).mean())

    chance = 1 / len(ds.classes)
    assert centroid_accuracy(colour) < chance + 0.12
    assert centroid_accuracy(shape) > 0.5


def test_export_writes_png_and_json(tmp_path, ds) -> None:
    path = ds.export(tmp_path, indices=[0, 5])
    meta = json.loads(path.read_text())
    assert meta["classes"] == ds.classes and meta["seed"] == 3 and len(meta["images"]) == 2
    row = meta["images"][1]
    s = ds[5]
    assert row["label"] == s.label and tuple(row["box"]) == s.box and row["class"] == s.class_name
    assert np.array_equal(np.asarray(Image.open(tmp_path / row["image"])), s.image)
    assert np.array_equal(np.asarray(Image.open(tmp_path / row["mask"])) > 0, s.mask)


@pytest.mark.parametrize(
    "kwargs", [{"n": 0}, {"n": 2.5}, {"n": 4, "size": 8}, {"n": 4, "seed": -1}, {"n": 4, "distractors": -2}]
)
def test_bad_parameters_are_clear_errors(kwargs) -> None:
    with pytest.raises(BadParameterError, match="SyntheticDataset"):
        SyntheticDataset(**kwargs)


def test_index_errors(ds) -> None:
    with pytest.raises(IndexError):
        ds[280]
    with pytest.raises(BadParameterError):
        ds["a"]
    assert len(list(SyntheticDataset(3))) == 3

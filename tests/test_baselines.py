"""spixel.metrics.random_map: random reference maps at an explanation's granularity."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from spixel import Explanation
from spixel.errors import BadParameterError
from spixel.metrics import random_map
from spixel.types import Segmentation


def _seg() -> Segmentation:
    lab = torch.zeros(2, 8, 8, dtype=torch.long)
    lab[0, :, 4:] = 1
    lab[1, 4:] = 1
    lab[1, 4:, 6:] = 2
    return Segmentation(lab)


def test_regions_one_score_per_region_and_the_same_partition():
    seg = _seg()
    e = Explanation(attribution=torch.zeros(2, 8, 8), segmentation=seg)
    r = random_map(e, seed=3)
    assert r.segmentation is seg and r.meta == {"method": "random", "kind": "regions", "seed": 3}
    for i, k in enumerate((2, 3)):
        vals = [r.attribution[i][seg.labels[i] == j] for j in range(k)]
        assert all(bool((v == v[0]).all()) for v in vals)  # constant inside each region
        assert len({float(v[0]) for v in vals}) == k  # distinct scores between regions
    scores = torch.rand(3, generator=torch.Generator().manual_seed(3 + 1))  # the documented draw: seed + i
    assert float(r.attribution[1, 7, 7]) == float(scores[2])


def test_an_image_map_does_not_depend_on_its_batch_mates():
    seg = _seg()
    e = Explanation(attribution=torch.zeros(2, 8, 8), segmentation=seg)
    both = random_map(e, seed=[5, 9])
    alone = random_map(e[1], seed=[9])
    assert torch.equal(both.attribution[1], alone.attribution[0])  # 3 regions; its mate has only 2
    assert torch.equal(random_map(e, seed=5).attribution[1], random_map(e[1], seed=6).attribution[0])
    for grid in (None, 4):
        plain = Explanation(attribution=torch.zeros(3, 8, 8))
        b = random_map(plain, seed=[1, 2, 3], grid=grid)
        assert torch.equal(b.attribution[2], random_map(plain[2], seed=[3], grid=grid).attribution[0])
    with pytest.raises(BadParameterError, match="one per map"):
        random_map(e, seed=[1])


def test_grid_is_an_upsampled_coarse_map():
    r = random_map(Explanation(attribution=torch.zeros(2, 14, 14)), seed=0, grid=7)
    coarse = torch.stack([torch.rand(1, 7, 7, generator=torch.Generator().manual_seed(i)) for i in range(2)])
    ref = F.interpolate(coarse, size=(14, 14), mode="bilinear", align_corners=False)[:, 0]
    assert torch.equal(r.attribution, ref)
    assert r.segmentation is None and r.meta["kind"] == "grid 7×7"


def test_pixels_seeded_and_iid():
    e = Explanation(attribution=torch.zeros(2, 16, 16))
    a, b, c = random_map(e, seed=1), random_map(e, seed=1), random_map(e, seed=2)
    assert torch.equal(a.attribution, b.attribution) and not torch.equal(a.attribution, c.attribution)
    assert a.attribution.unique().numel() == 2 * 16 * 16 and a.meta["kind"] == "pixels"


def test_bad_grid():
    e = Explanation(attribution=torch.zeros(1, 8, 8))
    with pytest.raises(BadParameterError, match="finer"):
        random_map(e, grid=9)
    with pytest.raises(BadParameterError):
        random_map(e, grid=0)

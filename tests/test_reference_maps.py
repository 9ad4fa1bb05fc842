"""Paper 001's class-agnostic reference maps (centre and random-point distance maps), by hand."""

from __future__ import annotations

import math

import torch

import spixel


def test_centre_map_by_hand(tiny, tiny_x):
    e = spixel.explain(tiny, tiny_x, "centre_map")
    a = e.attribution[0]
    h, w = a.shape
    d = [[math.hypot(y + 0.5 - h / 2, x + 0.5 - w / 2) for x in range(w)] for y in range(h)]
    dmax = max(max(r) for r in d)
    ref = torch.tensor([[1 - v / dmax for v in r] for r in d])
    torch.testing.assert_close(a, ref, rtol=1e-5, atol=1e-6)
    assert torch.equal(e.attribution[1], a) and float(a.min()) == 0.0
    assert e.meta["target"] == tiny.predict(tiny_x).argmax(1).tolist()


def test_random_point_map_is_seeded_and_peaks_at_its_point(tiny, tiny_x):
    a = spixel.explain(tiny, tiny_x, "random_point_map", seed=5).attribution
    b = spixel.explain(tiny, tiny_x, "random_point_map", seed=5).attribution
    c = spixel.explain(tiny, tiny_x, "random_point_map", seed=6).attribution
    assert torch.equal(a, b) and not torch.equal(a, c)
    u = torch.rand(2, generator=torch.Generator().manual_seed(5))  # the documented draw
    h, w = a.shape[-2:]
    peak = divmod(int(a[0].argmax()), w)
    assert abs(peak[0] + 0.5 - float(u[0]) * h) <= 1 and abs(peak[1] + 0.5 - float(u[1]) * w) <= 1
    assert float(a[0].max()) <= 1 and float(a[0].min()) == 0.0

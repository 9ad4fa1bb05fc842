"""Complexity metrics: Gini of known vectors, Quantus Sparseness, RC and RS on tiny maps with known hulls."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spixel.errors import BadParameterError
from spixel.metrics import evaluate
from spixel.metrics.complexity import gini, hull_masks, top_fraction
from spixel.types import Explanation


def test_gini_known_vectors():
    v = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 5.0], [1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0]])
    # uniform → 0; one non-zero of D → (D − 1)/D; 1..4 → Σ(2i−5)·i / (4·10) = (−3 + −2 + 3 + 12)/40 = 0.25
    assert gini(v).tolist() == pytest.approx([0.0, 0.75, 0.25, 0.0])


def test_sparseness_matches_quantus(tiny):
    quantus = pytest.importorskip("quantus")
    g = torch.Generator().manual_seed(0)
    maps = torch.randn(4, 32, 32, generator=g) ** 3  # signed, heavy-tailed
    x = torch.zeros(4, 3, 32, 32)
    ours = evaluate(tiny, x, Explanation(maps), "sparseness", target=0).scores.numpy()
    q = quantus.Sparseness(disable_warnings=True, display_progressbar=False)
    ref = np.asarray(q(model=None, x_batch=x.numpy(), y_batch=np.zeros(4, int), a_batch=maps.numpy()[:, None]))
    assert np.allclose(ours, ref, atol=1e-4)
    assert 0.3 < ours.min() < ours.max() < 1


def test_sparseness_zero_map_warns(tiny):
    with pytest.warns(UserWarning, match="all zero"):
        r = evaluate(tiny, torch.zeros(1, 3, 32, 32), Explanation(torch.zeros(1, 32, 32)), "sparseness", target=0)
    assert r.scores.item() == 0.0


def test_top_half_and_hull():
    m = torch.zeros(1, 4, 4)
    m[0, 0, 0] = m[0, 0, 3] = m[0, 3, 0] = 1.0  # three corners of a 4x4 map
    keep = top_fraction(m, 3 / 16)
    assert keep.sum() == 3
    hull = hull_masks(keep)
    # the hull of three corners is the triangle on and above the anti-diagonal: 4 + 3 + 2 + 1 = 10 pixels
    assert hull.sum() == 10 and bool(hull[0, 0, 3]) and not bool(hull[0, 3, 3])
    assert not hull_masks(torch.zeros(1, 4, 4, dtype=torch.bool)).any()
    with pytest.raises(BadParameterError):
        top_fraction(m, 0.0)


def test_top_fraction_ignores_pixels_without_positive_relevance():
    # a sparse map (3 positive pixels of 16): the top half would otherwise tie every zero in and cover the image
    m = torch.zeros(1, 4, 4)
    m[0, 0, 0] = m[0, 0, 3] = m[0, 3, 0] = 1.0
    assert top_fraction(m, 0.5).sum() == 3
    m[0, 2, 2] = -1.0  # negative relevance is not importance either
    assert top_fraction(m, 1.0).sum() == 3
    assert not top_fraction(-torch.rand(1, 4, 4), 0.5).any()


def test_convex_hull_ratio_of_a_sparse_map_and_an_empty_reference(tiny):
    x = torch.zeros(1, 3, 32, 32)
    sparse = torch.zeros(1, 32, 32)
    sparse[0, 8:12, 8:12] = torch.rand(4, 4) + 0.1  # 16 positive pixels, the rest exactly 0
    ref = torch.zeros(1, 32, 32)
    ref[0, :, :16] = 1.0
    r = evaluate(tiny, x, Explanation(sparse), "convex_hull_ratio", reference=ref, target=0)
    assert r.meta["area"].item() == 16 and r.scores.item() == pytest.approx(16 / (32 * 16))
    with pytest.warns(UserWarning, match="no positive pixel"):
        e = evaluate(tiny, x, Explanation(sparse), "convex_hull_ratio", reference=-ref, target=0)
    assert e.scores.item() == float("inf")
    with pytest.warns(UserWarning, match="no positive pixel"):
        z = evaluate(tiny, x, Explanation(-sparse), "convex_hull_ratio", reference=-ref, target=0)
    assert z.scores.item() == 1.0


def test_convex_hull_ratio(tiny):
    h = w = 32
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    # top half of `small` = the 16 x 32 upper band (value 2 > 1); of `ref` everything (hull = whole image)
    small = torch.where(ys < 16, 2.0, 1.0).float().unsqueeze(0)
    ref = (xs + ys * 0).float().unsqueeze(0)  # increasing to the right: top half = right half, hull = 32 x 16
    r = evaluate(tiny, torch.zeros(1, 3, h, w), Explanation(small), "convex_hull_ratio", reference=ref, target=0)
    assert r.scores.item() == pytest.approx((16 * 32) / (32 * 16))
    quarter = torch.where((ys < 16) & (xs < 16), 1.0, 0.0).unsqueeze(0)
    r2 = evaluate(
        tiny,
        torch.zeros(1, 3, h, w),
        Explanation(quarter),
        "convex_hull_ratio",
        reference=ref,
        fraction=0.25,
        target=0,
    )
    # top quarter of `quarter`: the 16x16 block (256 px); of `ref`: columns 24..31 (256 px)
    assert r2.scores.item() == pytest.approx(1.0)
    assert r2.meta["area"].item() == 256
    with pytest.raises(BadParameterError):
        evaluate(tiny, torch.zeros(1, 3, h, w), Explanation(small), "convex_hull_ratio", target=0)


def test_occlusion_sensitivity_by_hand(tiny, tiny_x):
    x = tiny_x[:1]
    t = 3
    mask = torch.zeros(1, 32, 32, dtype=torch.bool)
    mask[0, 4:12, 6:20] = True
    with torch.no_grad():
        z = tiny.module(x)[0, t]
        zo = tiny.module(x * (~mask).float())[0, t]
    expected = float((z - zo).abs() / mask.sum())
    expl = Explanation(torch.rand(1, 32, 32))
    r = evaluate(tiny, x, expl, "occlusion_sensitivity", mask=mask, target=t)
    assert r.scores.item() == pytest.approx(expected, rel=1e-5)
    # default mask: hull of the top half of the map; a map bright on the left half occludes the left half
    left = torch.zeros(1, 32, 32)
    left[0, :, :16] = 1.0
    lmask = torch.zeros(1, 32, 32, dtype=torch.bool)
    lmask[0, :, :16] = True
    r2 = evaluate(tiny, x, Explanation(left), "occlusion_sensitivity", target=t)
    r3 = evaluate(tiny, x, expl, "occlusion_sensitivity", mask=lmask, target=t)
    assert r2.scores.item() == pytest.approx(r3.scores.item(), rel=1e-6)
    # supplementary mask: reference hull (everything) minus the map's hull (left half) = the right half
    rmask = ~lmask
    sup = evaluate(tiny, x, Explanation(left), "occlusion_sensitivity", reference=torch.ones(1, 32, 32), target=t)
    assert sup.scores.item() == pytest.approx(
        evaluate(tiny, x, expl, "occlusion_sensitivity", mask=rmask, target=t).scores.item(), rel=1e-6
    )
    with pytest.warns(UserWarning, match="empty"):
        e = evaluate(tiny, x, expl, "occlusion_sensitivity", mask=torch.zeros(1, 32, 32, dtype=torch.bool), target=t)
    assert e.scores.item() == 0.0


def test_positive_ratio_by_hand():
    import spixel
    from spixel import Explanation

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 3))
    x = torch.zeros(2, 3, 4, 4)
    a = torch.zeros(2, 4, 4)
    a[0, 0, :3] = 1.0  # 3 of 16 positive
    a[0, 1, 0] = -2.0  # a negative pixel does not count
    a[1] = 0.5  # all positive
    r = spixel.evaluate(net, x, Explanation(attribution=a), "positive_ratio")
    assert r.scores.tolist() == [3 / 16, 1.0]

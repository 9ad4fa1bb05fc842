"""Localisation metrics: hand-checkable maps, TorchRay tolerance, wsolevaluation thresholds, Quantus cross-check."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spixel.errors import BadInputError, BadParameterError
from spixel.metrics import evaluate
from spixel.metrics.localization import binarise, largest_component_box
from spixel.types import Explanation


def _x(n: int = 1, s: int = 32) -> torch.Tensor:
    return torch.zeros(n, 3, s, s)


def _map_with_peak(y: int, x: int, s: int = 32) -> torch.Tensor:
    m = torch.zeros(1, s, s)
    m[0, y, x] = 1.0
    return m


def test_pointing_game_inside_outside_and_tolerance(tiny):
    box = [[(10, 10, 20, 20)]]  # pixels x, y in 10..19
    inside = evaluate(tiny, _x(), Explanation(_map_with_peak(15, 15)), "pointing_game", boxes=box, target=0)
    assert inside.scores.tolist() == [1.0]
    # peak 3 px right of the box (x = 22; nearest box pixel x = 19): distance 3
    m = _map_with_peak(15, 22)
    assert evaluate(tiny, _x(), Explanation(m), "pointing_game", boxes=box, tolerance=0, target=0).scores.item() == 0
    assert evaluate(tiny, _x(), Explanation(m), "pointing_game", boxes=box, tolerance=2.9, target=0).scores.item() == 0
    # TorchRay's disk is open: distance 3 < tolerance 3 is false
    assert evaluate(tiny, _x(), Explanation(m), "pointing_game", boxes=box, tolerance=3, target=0).scores.item() == 0
    assert evaluate(tiny, _x(), Explanation(m), "pointing_game", boxes=box, tolerance=3.1, target=0).scores.item() == 1
    # diagonal: peak at (22, 22), nearest box pixel (19, 19): distance sqrt(18) ≈ 4.24 (Euclidean, not Chebyshev)
    d = _map_with_peak(22, 22)
    assert evaluate(tiny, _x(), Explanation(d), "pointing_game", boxes=box, tolerance=4, target=0).scores.item() == 0
    assert evaluate(tiny, _x(), Explanation(d), "pointing_game", boxes=box, tolerance=4.3, target=0).scores.item() == 1
    # default tolerance 15 px: a point 12 px away is a hit
    far = _map_with_peak(15, 31)
    assert evaluate(tiny, _x(), Explanation(far), "pointing_game", boxes=box, target=0).scores.item() == 1


def test_pointing_game_masks_and_smoothing(tiny):
    mask = torch.zeros(1, 32, 32, dtype=torch.bool)
    mask[0, 0:5, 0:5] = True
    m = torch.zeros(1, 32, 32)
    m[0, 2, 2] = 1.0  # a sharp peak in the mask ...
    m[0, 20:26, 20:26] = 0.9  # ... and a broad blob outside
    assert evaluate(tiny, _x(), Explanation(m), "pointing_game", masks=mask, tolerance=0, target=0).mean == 1
    # smoothing makes the blob win
    r = evaluate(tiny, _x(), Explanation(m), "pointing_game", masks=mask, tolerance=0, smooth=0.05, target=0)
    assert r.mean == 0
    assert 20 <= int(r.meta["points"][0, 0]) <= 25


def test_pointing_game_matches_quantus_at_tolerance_0(tiny):
    quantus = pytest.importorskip("quantus")
    g = torch.Generator().manual_seed(0)
    n = 8
    maps = torch.rand(n, 32, 32, generator=g)  # continuous values: unique maxima
    masks = torch.zeros(n, 32, 32, dtype=torch.bool)
    for i in range(n):
        y0, x0 = torch.randint(0, 20, (2,), generator=g).tolist()
        masks[i, y0 : y0 + 12, x0 : x0 + 12] = True
        if i % 2 == 0:  # force a hit on half of them
            maps[i, y0 + 3, x0 + 3] = 2.0
    ours = evaluate(tiny, _x(n), Explanation(maps), "pointing_game", masks=masks, tolerance=0, target=0).scores
    q = quantus.PointingGame(disable_warnings=True, display_progressbar=False)
    ref = q(
        model=None,
        x_batch=np.zeros((n, 3, 32, 32), np.float32),
        y_batch=np.zeros(n, int),
        a_batch=maps.numpy()[:, None],
        s_batch=masks.numpy()[:, None].astype(np.float32),
    )
    assert ours.tolist() == [float(v) for v in ref]
    assert 0 < ours.mean() < 1


def test_pointing_game_constant_map_and_bad_ground_truth(tiny):
    with pytest.warns(UserWarning, match="constant"):
        r = evaluate(tiny, _x(), Explanation(torch.zeros(1, 32, 32)), "pointing_game", boxes=[[(0, 0, 4, 4)]], target=0)
    assert r.scores.item() == 1 and r.meta["constant_maps"] == [0]
    with pytest.raises(BadParameterError):
        evaluate(tiny, _x(), Explanation(torch.rand(1, 32, 32)), "pointing_game", target=0)
    with pytest.raises(BadInputError):
        evaluate(tiny, _x(), Explanation(torch.rand(1, 32, 32)), "pointing_game", boxes=[[(5, 5, 5, 9)]], target=0)
    with pytest.raises(BadInputError):
        evaluate(
            tiny, _x(), Explanation(torch.rand(1, 32, 32)), "pointing_game", masks=torch.zeros(1, 32, 32), target=0
        )


def test_outside_inside_ratio_hand_computed(tiny):
    box = [[(0, 0, 16, 32)]]  # left half
    m = torch.zeros(1, 32, 32)
    m[0, :, :16] = 2.0
    m[0, :, 16:] = 0.5
    m[0, 0, 20] = -3.0  # negative relevance is ignored
    r = evaluate(tiny, _x(), Explanation(m), "outside_inside_ratio", boxes=box, target=0)
    expected = ((0.5 * (16 * 32 - 1)) / (16 * 32)) / 2.0
    assert r.scores.item() == pytest.approx(expected, rel=1e-6)
    with pytest.warns(UserWarning, match="no positive"):
        z = evaluate(tiny, _x(), Explanation(torch.zeros(1, 32, 32)), "outside_inside_ratio", boxes=box, target=0)
    assert z.scores.item() == 1.0
    out_only = torch.zeros(1, 32, 32)
    out_only[0, 5, 30] = 1.0
    with pytest.warns(UserWarning, match="inside"):
        o = evaluate(tiny, _x(), Explanation(out_only), "outside_inside_ratio", boxes=box, target=0)
    assert o.scores.item() == float("inf")


def _wsol_reference(m: np.ndarray, gt_incl: tuple[int, int, int, int], taus: np.ndarray) -> np.ndarray:
    """Independent per-threshold best IoU: connected components stand in for contours (same boxes for blobs)."""
    import cv2

    mm = (m - m.min()) / (m.max() - m.min())
    img = (mm * 255).astype(np.uint8)
    out = []
    for t in taus:
        keep = img > int(t * img.max())
        k, _, st, _ = cv2.connectedComponentsWithStats(keep.astype(np.uint8), connectivity=8)
        best = 0.0
        for j in range(1, k):
            x0, y0, w, h = st[j, :4]
            x1, y1 = min(x0 + w, m.shape[1] - 1), min(y0 + h, m.shape[0] - 1)
            iw = min(x1, gt_incl[2]) - max(x0, gt_incl[0]) + 1
            ih = min(y1, gt_incl[3]) - max(y0, gt_incl[1]) + 1
            inter = max(iw, 0) * max(ih, 0)
            union = (x1 - x0 + 1) * (y1 - y0 + 1) + (gt_incl[2] - gt_incl[0] + 1) * (gt_incl[3] - gt_incl[1] + 1)
            best = max(best, inter / (union - inter))
        out.append(best)
    return np.asarray(out)


def test_max_box_acc_v2_hand_built(tiny):
    # a nested map: value 1.0 on an 8x8 square exactly matching the GT, 0.5 on a 16x16 square around it
    m = torch.zeros(1, 32, 32)
    m[0, 4:20, 4:20] = 0.5
    m[0, 8:16, 8:16] = 1.0
    box = [[(8, 8, 16, 16)]]
    r = evaluate(tiny, _x(), Explanation(m), "max_box_acc_v2", boxes=box, target=0)
    taus = r.meta["x"].numpy()
    curve = r.curves[0].numpy()
    # uint8 map: 0 / 127 / 255; thresholds int(τ·255) < 127 keep the 16x16 square, else the 8x8 one. wsolevaluation
    # takes cv2's x + w as an *inclusive* end: the 8x8 square becomes 9x9 (IoU 64/81 with the 8x8 GT), the 16x16 one
    # 17x17 (IoU 64/289)
    low = (taus * 255).astype(int) < 127
    assert np.allclose(curve[low], 64 / 289) and np.allclose(curve[~low], 64 / 81)
    assert r.meta["max_box_acc_v2"] == 1.0 and r.scores.item() == 1.0
    # only the big square: IoU 0.25 everywhere → BoxAcc(0.3) = BoxAcc(0.5) = BoxAcc(0.7) = 0
    big = torch.zeros(1, 32, 32)
    big[0, 4:20, 4:20] = 1.0
    assert evaluate(tiny, _x(), Explanation(big), "max_box_acc_v2", boxes=box, target=0).scores.item() == 0.0


def test_max_box_acc_v2_batch_and_independent_reference(tiny):
    g = torch.Generator().manual_seed(3)
    n = 4
    ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    maps, boxes, gts = [], [], []
    for _ in range(n):
        cy, cx = (torch.rand(2, generator=g) * 16 + 8).tolist()
        sy, sx = (torch.rand(2, generator=g) * 4 + 2).tolist()
        maps.append(torch.exp(-((ys - cy) ** 2) / (2 * sy**2) - (xs - cx) ** 2 / (2 * sx**2)))
        b = (int(cx) - 5, int(cy) - 4, int(cx) + 6, int(cy) + 5)
        boxes.append([b])
        gts.append((b[0], b[1], b[2] - 1, b[3] - 1))
    a = torch.stack(maps)
    r = evaluate(tiny, _x(n), Explanation(a), "max_box_acc_v2", boxes=boxes, target=0)
    taus = np.arange(0, 1, 0.01)
    ref = np.stack([_wsol_reference(a[i].numpy(), gts[i], taus) for i in range(n)])
    assert np.allclose(r.curves.numpy(), ref, atol=1e-6)
    accs = [(ref >= d).mean(0).max() for d in (0.3, 0.5, 0.7)]
    assert r.meta["max_box_acc_v2"] == pytest.approx(np.mean(accs))
    assert r.scores.mean().item() == pytest.approx(np.mean(accs))


def test_max_box_acc_v2_constant_map(tiny):
    with pytest.warns(UserWarning, match="constant"):
        r = evaluate(tiny, _x(), Explanation(torch.ones(1, 32, 32)), "max_box_acc_v2", boxes=[[(0, 0, 8, 8)]], target=0)
    assert r.scores.item() == 0.0 and not torch.isnan(r.curves).any()


def test_binarisations_on_tiny_map():
    m = torch.tensor([[[4.0, 3.0, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 0.0]]])  # total 10, mean 10/9
    assert binarise(m, "value", 0.5).int().tolist() == [[[1, 1, 0], [1, 0, 0], [0, 0, 0]]]  # ≥ 2
    assert binarise(m, "mean").int().tolist() == [[[1, 1, 0], [1, 0, 0], [0, 0, 0]]]  # ≥ 1.11
    assert binarise(m, "energy").int().tolist() == [[[1, 1, 0], [0, 0, 0], [0, 0, 0]]]  # 4 + 3 ≥ 5
    assert not binarise(torch.zeros(1, 3, 3), "energy").any()
    assert largest_component_box(np.array([[1, 0, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]], bool)) == (2, 1, 4, 3)


def test_weak_localization(tiny):
    m = torch.zeros(2, 32, 32)
    m[:, 8:16, 8:16] = 1.0
    m[:, 25:27, 25:27] = 0.9  # a small second component
    boxes = [[(8, 8, 16, 16)], [(8, 8, 12, 12)]]  # the second GT box has IoU 16/64 with the component
    r = evaluate(tiny, _x(2), Explanation(m), "weak_localization", boxes=boxes, target=0)
    assert r.scores.tolist() == [1.0, 0.0]
    assert r.meta["boxes"][0] == (8, 8, 16, 16)
    assert r.meta["error"] == pytest.approx(50.0)
    masks = torch.zeros(2, 32, 32, dtype=torch.bool)
    masks[:, 9:16, 8:16] = True  # IoU 56/64
    for mode in ("value", "mean", "energy"):
        assert evaluate(
            tiny, _x(2), Explanation(m), "weak_localization", masks=masks, threshold=mode, target=0
        ).scores.tolist() == [1.0, 1.0]
    with pytest.raises(BadParameterError):
        evaluate(tiny, _x(2), Explanation(m), "weak_localization", masks=masks, threshold="otsu", target=0)


@pytest.mark.parametrize(
    ("name", "higher"),
    [("pointing_game", True), ("outside_inside_ratio", False), ("max_box_acc_v2", True), ("weak_localization", True)],
)
def test_end_to_end_with_our_explanation(tiny, tiny_x, name, higher):
    import spixel

    expl = spixel.explain(tiny, tiny_x, "saliency")
    boxes = [[(4, 4, 20, 20)], [(0, 0, 32, 16), (10, 20, 30, 30)], [(8, 8, 24, 24)]]
    r = evaluate(tiny, tiny_x, expl, name, boxes=boxes)
    assert r.scores.shape == (3,) and torch.isfinite(r.scores).all()
    assert r.meta["higher_is_better"] is higher and r.meta["category"] == "localisation" and r.meta["reference"]

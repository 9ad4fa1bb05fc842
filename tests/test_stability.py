"""Stability metrics: SSIM (protocols A, B) against scikit-image, top-k intersection by hand, MeGe / ReCo."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from spixel.errors import BadInputError, BadParameterError
from spixel.metrics import mege, ssim, topk_intersection
from spixel.metrics.stability import reco_score
from spixel.registry import METRICS
from spixel.types import Explanation


def _pair(seed: int = 0, n: int = 2, c: int = 3, s: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, c, s, s, generator=g)
    b = a + 0.7 * torch.randn(n, c, s, s, generator=g)
    return a, b


def _gray_pair(r: np.ndarray) -> np.ndarray:
    """PAIR VisualizeImageGrayscale, written out independently (channels first)."""
    g = np.abs(r).sum(0)
    vmax, vmin = np.percentile(g, 99), g.min()
    return np.clip((g - vmin) / (vmax - vmin), 0, 1)


def test_ssim_protocol_b_matches_skimage():
    a, b = _pair()
    ea = Explanation(a.abs().sum(1), raw=a)
    eb = Explanation(b.abs().sum(1), raw=b)
    ours = ssim(ea, eb, protocol="B").scores
    for i in range(2):
        ref = structural_similarity(
            _gray_pair(a[i].double().numpy()),
            _gray_pair(b[i].double().numpy()),
            data_range=1.0,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
        assert ours[i].item() == pytest.approx(ref, abs=1e-5)
    # identical maps: SSIM 1; B on the 2-D attribution when a map has no raw
    assert ssim(ea, ea).scores.tolist() == pytest.approx([1.0, 1.0])
    r = ssim(Explanation(a[:, 0]), Explanation(b[:, 0]))
    assert r.meta["use_raw"] is False
    ref0 = structural_similarity(
        _gray_pair(a[0, :1].double().numpy()),
        _gray_pair(b[0, :1].double().numpy()),
        data_range=1.0,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
    )
    assert r.scores[0].item() == pytest.approx(ref0, abs=1e-5)


def test_ssim_protocol_a_matches_skimage():
    a, b = _pair(1)
    ea, eb = Explanation(a.abs().sum(1), raw=a), Explanation(b.abs().sum(1), raw=b)
    ours = ssim(ea, eb, protocol="A").scores
    for i in range(2):
        s1 = a[i].double().numpy() / np.linalg.norm(a[i].double().numpy())
        s2 = b[i].double().numpy() / np.linalg.norm(b[i].double().numpy())
        ref = structural_similarity(
            s1,
            s2,
            channel_axis=0,
            data_range=s2.max() - s2.min(),
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
        assert ours[i].item() == pytest.approx(ref, abs=1e-5)
    with pytest.raises(BadInputError):
        ssim(Explanation(a[:, 0]), Explanation(b[:, 0]), protocol="A")
    with pytest.raises(BadParameterError):
        ssim(ea, eb, protocol="C")


def test_ssim_constant_maps_warn_and_stay_finite():
    z = torch.zeros(1, 16, 16)
    with pytest.warns(UserWarning, match="constant"):
        r = ssim(Explanation(z), Explanation(torch.rand(1, 16, 16)))
    assert torch.isfinite(r.scores).all()
    with pytest.raises(BadInputError):
        ssim(Explanation(torch.rand(1, 8, 8)), Explanation(torch.rand(1, 8, 8)))  # smaller than the 11-px window


def test_topk_intersection_by_hand():
    a = torch.arange(10.0).view(1, 2, 5)  # top-3: 9, 8, 7 at flat 9, 8, 7
    b = torch.tensor([[[9.0, 0, 0, 0, 0], [0, 0, 5.0, 8.0, 7.0]]])  # top-3 at flat 0, 8, 9
    r = topk_intersection(Explanation(a), Explanation(b), k=0.3)
    assert r.meta["k"] == 3 and r.scores.item() == pytest.approx(2 / 3)
    # signed: the most negative values are not "top"
    assert topk_intersection(Explanation(a), Explanation(-a), k=0.3).scores.item() == 0.0
    # raw (C·H·W) is used when both carry one
    raw = torch.randn(1, 3, 2, 5)
    ra = topk_intersection(Explanation(a, raw=raw), Explanation(b, raw=raw), k=0.1)
    assert ra.meta["use_raw"] and ra.meta["k"] == 3 and ra.scores.item() == 1.0
    with pytest.raises(BadParameterError):
        topk_intersection(Explanation(a), Explanation(b), k=0.0)


def test_topk_intersection_top1():
    a = torch.arange(10.0).view(1, 2, 5)
    b = torch.tensor([[[9.0, 0, 0, 0, 0], [0, 0, 5.0, 8.0, 7.0]]])
    assert topk_intersection(Explanation(a), Explanation(b), k=1).scores.item() == 0.0  # argmax 9 vs 0
    assert topk_intersection(Explanation(a), Explanation(a + 1), k=1).scores.item() == 1.0


def test_reco_hand_computed():
    # perfectly separable: all S= below all S!= → TPR + TNR − 1 = 1 at a γ between them
    assert reco_score(np.array([0.1, 0.2, 0.3]), np.array([0.6, 0.7, 0.8])) == pytest.approx(1.0, abs=1e-6)
    # identical distributions → 0
    assert reco_score(np.array([0.5, 0.5]), np.array([0.5, 0.5])) == 0.0
    assert reco_score(np.array([0.1, 0.2]), np.zeros(0)) == 0.0


def test_mege_in_unit_interval_and_hand_checked(tiny_x):
    import copy

    from conftest import make_tiny

    models = []
    for seed in range(3):  # three slightly different copies of one network: mostly the same predictions
        m = copy.deepcopy(make_tiny(0))
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in m.module.parameters():
                p.add_(0.3 * p.std() * torch.randn(p.shape, generator=g))
        models.append(m)
    x = torch.cat([tiny_x, tiny_x.flip(-1)])  # 6 samples
    folds = [0, 0, 1, 1, 2, 2]
    with torch.no_grad():
        preds = [m.module(x).argmax(1) for m in models]
    y = preds[1]  # labels = model 1's predictions: at least one model is right on every sample
    m, r = mege(models, folds, x, y, "saliency")
    assert 0 < m <= 1 and 0 <= r <= 1
    # independent recomputation of MeGe with scipy's spearmanr on the same maps
    from scipy.stats import spearmanr

    import spixel

    maps = [spixel.explain(md, x, "saliency", target=y).attribution.reshape(6, -1).double().numpy() for md in models]
    s_eq = []
    for i in range(3):
        for j in range(i + 1, 3):
            for n in range(6):
                if folds[n] in (i, j) and (preds[i][n] == y[n] or preds[j][n] == y[n]):
                    d = math.sqrt(1 - abs(spearmanr(maps[i][n], maps[j][n])[0]))
                    if preds[i][n] == preds[j][n]:
                        s_eq.append(d)
    assert m == pytest.approx(1 / (1 + np.mean(s_eq)), rel=1e-6)
    m_raw, _ = mege(models, folds, x, y, "saliency", use_raw=True)  # signed channel mean of the gradient
    assert 0 < m_raw <= 1 and m_raw != pytest.approx(m)
    # identical models: every distance 0 → MeGe = 1
    same = [make_tiny(0) for _ in range(2)]
    with torch.no_grad():
        y_same = same[0].module(x).argmax(1)
    with pytest.warns(UserWarning, match="S!= is empty"):
        m1, r1 = mege(same, [0, 0, 0, 1, 1, 1], x, y_same, "saliency")
    assert m1 == pytest.approx(1.0) and r1 == 0.0
    with pytest.raises(BadParameterError):
        mege(same, [0, 0, 0, 1, 1, 5], x, y_same, "saliency")


def test_registered_as_comparison_metrics():
    for name in ("ssim", "topk_intersection", "mege"):
        e = METRICS.get(name)
        assert e.info["category"] == "stability" and e.info["scores_explanation"] is False

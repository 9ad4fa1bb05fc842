"""Grouping as an axis (paper 000, spec §1.2–1.5): ``spixel.explain(..., regions=...)`` and ``regions.Grouped``.

References are written here with explicit loops over the segments (``_ref_group``) and, for Sparsified
SmoothGrad, a hand-written loop noisy gradient → P_G → sparsify → mean over the same noise draws."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

import spixel
from conftest import make_tiny
from spixel.attribution.gradients import draw_noise, noise_sigma
from spixel.errors import BadInputError, BadParameterError, SpixelError
from spixel.regions import Grouped, group, group_explanation
from spixel.registry import METHODS, SEGMENTERS
from spixel.segmentation import Segmenter, segment
from spixel.types import Explanation, Segmentation

TARGETS = [0, 3, 7]
#: cheap settings of the methods grouped below
CHEAP: dict[str, dict[str, Any]] = {
    "integrated_gradients": {"n_steps": 6},
    "smoothgrad": {"n_samples": 4},
    "sparsified_smoothgrad": {"n_samples": 4},
}
GROUPABLE = [
    "saliency",
    "input_x_gradient",
    "integrated_gradients",
    "smoothgrad",
    "sparsified_smoothgrad",
    "guided_backprop",
    "deconvolution",
    "gradcam",
]
REGIONS = [("grid", {"size": 4}), ("random", {"n_segments": 20, "seed": 3}), ("slic", {"n_segments": 30})]


def _regions_ok(name: str) -> None:
    if name not in SEGMENTERS:
        pytest.skip(f"segmenter {name} not registered")


def _ref_group(a: torch.Tensor, labels: torch.Tensor, channels: str = "joint") -> torch.Tensor:
    """P_G by a loop over each image's segments (float64): the mean over the region (× all channels if joint)."""
    a = a.double()
    out = torch.empty_like(a)
    for n in range(a.shape[0]):
        for k in torch.unique(labels[n]):
            m = labels[n] == k
            if a.ndim == 3:
                out[n][m] = a[n][m].mean()
            elif channels == "joint":
                out[n][:, m] = a[n][:, m].mean()
            else:
                for c in range(a.shape[1]):
                    out[n, c][m] = a[n, c][m].mean()
    return out


def _constant_on_segments(a: torch.Tensor, labels: torch.Tensor, atol: float = 1e-6) -> bool:
    """Whether each channel of ``a`` ``(N, H, W)`` / ``(N, C, H, W)`` is constant on every segment."""
    for n in range(a.shape[0]):
        for k in torch.unique(labels[n]):
            v = a[n][..., labels[n] == k]  # (P,) or (C, P)
            spread = v.amax(-1) - v.amin(-1)
            if float(spread.max()) > atol * (1 + float(v.abs().max())):
                return False
    return True


def run(model: Any, x: torch.Tensor, name: str, target: Any = TARGETS, **kw: Any) -> Explanation:
    return spixel.explain(model, x, name, target, seed=0, **{**CHEAP.get(name, {}), **kw})


# ---------------------------------------------------------------------------------------------- P_G itself
@pytest.mark.parametrize("channels", ["joint", "per_channel"])
@pytest.mark.parametrize("regions", REGIONS, ids=[r[0] for r in REGIONS])
def test_group_properties_against_loop(tiny_x, regions, channels):
    _regions_ok(regions[0])
    seg = segment(torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(2)), regions[0], **regions[1])
    a = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    b = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    ga = group(a, seg, channels=channels)
    torch.testing.assert_close(ga, _ref_group(a, seg.labels, channels))
    torch.testing.assert_close(group(ga, seg, channels=channels), ga)  # idempotent
    torch.testing.assert_close(ga.sum((1, 2, 3)), a.sum((1, 2, 3)))  # total preserved
    if channels == "per_channel":
        torch.testing.assert_close(ga.sum((2, 3)), a.sum((2, 3)))  # … in every channel
    else:
        assert torch.equal(ga, ga[:, :1].expand_as(ga))  # the same in every channel
    assert _constant_on_segments(ga, seg.labels)
    assert float((group(a - b, seg, channels=channels)).norm()) <= float((a - b).norm()) + 1e-9
    # 2-D maps too
    torch.testing.assert_close(group(a[:, 0], seg), _ref_group(a[:, 0], seg.labels))


# ---------------------------------------------------------------------------------------------- explain(regions=)
@pytest.mark.parametrize("name", GROUPABLE)
def test_grouped_methods_against_loop(tiny, tiny_x, name):
    """explain(regions=) = P_G of the signed raw, then the method's own 2-D reduction (CAM: P_G of the map)."""
    seg = segment(tiny.to_rgb01(tiny_x), "grid", size=4)
    base = run(tiny, tiny_x, name)
    for channels in ("joint", "per_channel"):
        e = run(tiny, tiny_x, name, regions=seg, channels=channels)
        assert e.segmentation is not None and torch.equal(e.segmentation.labels, seg.labels)
        assert _constant_on_segments(e.attribution, seg.labels)
        if base.raw is None:
            torch.testing.assert_close(e.attribution, _ref_group(base.attribution, seg.labels).float())
            continue
        if name == "sparsified_smoothgrad":  # grouped per noisy sample: its own test below
            continue
        ref = _ref_group(base.raw, seg.labels, channels).float()
        torch.testing.assert_close(e.raw, ref, rtol=1e-5, atol=1e-6 * float(ref.abs().max()))
        want = ref.sum(1) if METHODS.get(name).info["reduce2d"] == "sum" else ref.abs().amax(1)
        torch.testing.assert_close(e.attribution, want, rtol=1e-5, atol=1e-6 * float(want.abs().max()))


def test_grouped_ig_keeps_completeness(tiny, tiny_x):
    base = run(tiny, tiny_x, "integrated_gradients", n_steps=8)
    for channels in ("joint", "per_channel"):
        e = run(
            tiny,
            tiny_x,
            "integrated_gradients",
            n_steps=8,
            regions="grid",
            region_params={"size": 5},
            channels=channels,
        )
        torch.testing.assert_close(e.raw.sum((1, 2, 3)), base.raw.sum((1, 2, 3)), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(e.attribution.sum((1, 2)), base.attribution.sum((1, 2)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["saliency", "integrated_gradients", "input_x_gradient"])
def test_grouping_never_increases_the_distance_between_two_models(tiny_x, name):
    m0, m1 = make_tiny(0), make_tiny(1)
    seg = segment(m0.to_rgb01(tiny_x), "random", n_segments=40, seed=1)
    for channels in ("joint", "per_channel"):
        a, b = run(m0, tiny_x, name), run(m1, tiny_x, name)
        ga, gb = (run(m, tiny_x, name, regions=seg, channels=channels) for m in (m0, m1))
        d, dg = float((a.raw - b.raw).norm()), float((ga.raw - gb.raw).norm())
        assert dg <= d * (1 + 1e-6)
        assert dg < 0.9 * d  # and really shrinks it on 40 groups of ~25 pixels
        if METHODS.get(name).info["reduce2d"] == "sum":  # linear 2-D reduction: the maps too
            assert float((ga.attribution - gb.attribution).norm()) <= float((a.attribution - b.attribution).norm())


@pytest.mark.parametrize("name", GROUPABLE)
def test_grid_of_size_one_is_the_identity(tiny, tiny_x, name):
    base = run(tiny, tiny_x, name)
    e = run(tiny, tiny_x, name, regions="grid", region_params={"size": 1}, channels="per_channel")
    torch.testing.assert_close(e.attribution, base.attribution)
    if base.raw is not None:
        torch.testing.assert_close(e.raw, base.raw)


def test_joint_versus_per_channel(tiny, tiny_x):
    joint = run(tiny, tiny_x, "saliency", regions="grid", region_params={"size": 4})
    per = run(tiny, tiny_x, "saliency", regions="grid", region_params={"size": 4}, channels="per_channel")
    assert torch.equal(joint.raw, joint.raw[:, :1].expand_as(joint.raw))
    assert not torch.allclose(per.raw[:, 0], per.raw[:, 1])
    torch.testing.assert_close(per.raw.mean(1), joint.raw[:, 0], rtol=1e-5, atol=1e-7)
    assert joint.meta["channels"] == "joint" and per.meta["channels"] == "per_channel"


@pytest.mark.parametrize("regions", REGIONS, ids=[r[0] for r in REGIONS])
def test_regions_name_segmenter_and_segmentation_agree(tiny, tiny_x, regions):
    name, params = regions
    _regions_ok(name)
    by_name = run(tiny, tiny_x, "integrated_gradients", regions=name, region_params=params)
    by_segmenter = run(tiny, tiny_x, "integrated_gradients", regions=Segmenter(name, **params))
    seg = segment(tiny.to_rgb01(tiny_x), name, **params)
    by_seg = run(tiny, tiny_x, "integrated_gradients", regions=seg)
    by_object = Grouped("integrated_gradients", name, params)(tiny, tiny_x, TARGETS, **CHEAP["integrated_gradients"])
    for e in (by_segmenter, by_seg, by_object):
        assert torch.equal(e.segmentation.labels, by_name.segmentation.labels)
        assert torch.equal(e.attribution, by_name.attribution)
        assert e.meta["regions"] == name
        assert e.meta["region_params"] == by_name.meta["region_params"]


def test_meta_and_segmentation_travel(tiny, tiny_x):
    e = run(tiny, tiny_x, "smoothgrad", regions="grid", region_params={"size": 8})
    m = e.meta
    assert m["method"] == "smoothgrad" and m["seed"] == 0 and m["target"] == TARGETS
    assert m["regions"] == "grid" and m["region_params"] == {"size": 8} and m["channels"] == "joint"
    assert m["num_segments"] == [16, 16, 16]
    assert isinstance(e.segmentation, Segmentation) and len(e.segmentation) == 3
    one = e[1]
    assert torch.equal(one.segmentation.labels, e.segmentation.labels[1:2]) and one.meta["target"] == [3]
    # per-image results do not depend on the rest of the batch
    alone = run(tiny, tiny_x[1:2], "smoothgrad", [3], regions="grid", region_params={"size": 8})
    torch.testing.assert_close(alone.attribution, one.attribution)
    # the plain call is unchanged: no segmentation, no region keys
    plain = run(tiny, tiny_x, "smoothgrad")
    assert plain.segmentation is None and "regions" not in plain.meta


def test_regions_with_image_segmenter_on_a_plain_module(tiny, tiny_x):
    _regions_ok("slic")
    a = run(tiny, tiny_x, "saliency", regions="slic", region_params={"n_segments": 25})
    b = run(tiny.module, tiny_x, "saliency", regions="slic", region_params={"n_segments": 25})
    # a plain module is wrapped with ImageNet mean/std, the same as the tiny adapter's
    assert torch.equal(a.segmentation.labels, b.segmentation.labels)
    torch.testing.assert_close(a.attribution, b.attribution)


# ---------------------------------------------------------------------------------------------- SSG per sample
def _sparsify_ties(h: torch.Tensor, tau: float, flatten: float) -> torch.Tensor:
    """Spec §1.4 on one (C, H, W) map, keeping every entry tied with the int(tau·D)-th largest."""
    flat = h.reshape(-1).double()
    srt = flat.sort(descending=True).values
    d = flat.numel()
    t1, kth = srt[max(1, int(flatten * d)) - 1], srt[max(1, int(tau * d)) - 1]
    if t1 <= 0:
        return torch.zeros_like(h, dtype=torch.float64)
    return torch.where(flat >= kth, torch.minimum(flat, t1) / t1, 0.0).view(h.shape)


@pytest.mark.parametrize("channels", ["joint", "per_channel"])
def test_sparsified_smoothgrad_groups_each_noisy_gradient(tiny, tiny_x, channels):
    n, spread, tau, flat, seed = 5, 0.1, 0.1, 0.01, 21
    seg = segment(tiny.to_rgb01(tiny_x), "grid", size=4)
    kw = dict(n_samples=n, stdev_spread=spread, tau=tau, flatten=flat, batch_size=4)
    e = spixel.explain(tiny, tiny_x, "sparsified_smoothgrad", TARGETS, seed=seed, regions=seg, channels=channels, **kw)
    eps = draw_noise(tiny_x, n, torch.Generator().manual_seed(seed))
    sigma = noise_sigma(tiny_x, spread)
    acc = torch.zeros(tiny_x.shape, dtype=torch.float64)
    for k in range(n):
        xn = (tiny_x + sigma * eps[k]).requires_grad_(True)
        (g,) = torch.autograd.grad(tiny.module(xn)[torch.arange(3), torch.tensor(TARGETS)].sum(), xn)
        pg = _ref_group(g, seg.labels, channels)
        for b in range(3):
            acc[b] += _sparsify_ties(pg[b].abs(), tau, flat)
    ref = (acc / n).float()
    torch.testing.assert_close(e.raw, ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(e.attribution, ref.sum(1), rtol=1e-4, atol=1e-4)
    assert _constant_on_segments(e.attribution, seg.labels) and _constant_on_segments(e.raw, seg.labels)
    assert e.meta["params"]["group_first"] is True and e.meta["params"]["group_channels"] == channels

    # group after: P_G of the ungrouped map — a different result
    after = spixel.explain(
        tiny,
        tiny_x,
        "sparsified_smoothgrad",
        TARGETS,
        seed=seed,
        regions=seg,
        channels=channels,
        group_first=False,
        **kw,
    )
    plain = spixel.explain(tiny, tiny_x, "sparsified_smoothgrad", TARGETS, seed=seed, **kw)
    torch.testing.assert_close(after.raw, _ref_group(plain.raw, seg.labels, channels).float(), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(after.attribution, e.attribution, rtol=1e-2, atol=1e-3)


# ---------------------------------------------------------------------------------------------- degenerate, errors
def test_single_region_gives_a_finite_constant_map(tiny, tiny_x):
    one = Segmentation(torch.zeros(3, 32, 32, dtype=torch.long))
    for name in ("integrated_gradients", "saliency", "sparsified_smoothgrad", "gradcam"):
        e = run(tiny, tiny_x, name, regions=one)
        assert torch.isfinite(e.attribution).all()
        flat = e.attribution.flatten(1)
        assert torch.equal(flat, flat[:, :1].expand_as(flat))
        assert e.meta["num_segments"] == [1, 1, 1]


def test_group_explanation_without_reduction_groups_the_map(tiny, tiny_x):
    seg = segment(tiny.to_rgb01(tiny_x), "grid", size=4)
    base = run(tiny, tiny_x, "saliency")
    e = group_explanation(base, seg, "joint", reduce2d=None)  # an unknown reduction: the 2-D map is grouped
    torch.testing.assert_close(e.attribution, _ref_group(base.attribution, seg.labels).float())


def test_errors(tiny, tiny_x):
    with pytest.raises(BadParameterError, match="channels"):
        run(tiny, tiny_x, "saliency", regions="grid", channels="rgb")
    with pytest.raises(BadParameterError, match="regions"):
        run(tiny, tiny_x, "saliency", channels="per_channel")
    with pytest.raises(BadParameterError, match="regions"):
        run(tiny, tiny_x, "saliency", region_params={"size": 2})
    seg = segment(tiny.to_rgb01(tiny_x), "grid", size=4)
    with pytest.raises(BadParameterError, match="region_params"):
        run(tiny, tiny_x, "saliency", regions=seg, region_params={"size": 2})
    with pytest.raises(BadParameterError, match="region_params"):
        run(tiny, tiny_x, "saliency", regions=Segmenter("grid", size=2), region_params={"size": 2})
    with pytest.raises(BadInputError, match="segmentation"):
        run(tiny, tiny_x[:2], "saliency", regions=seg)  # 3 partitions for 2 images
    with pytest.raises(SpixelError, match="regions must be"):
        run(tiny, tiny_x, "saliency", regions=3)
    with pytest.raises(SpixelError, match="grdi"):
        run(tiny, tiny_x, "saliency", regions="grdi")
    with pytest.raises(BadParameterError, match="no parameter"):
        run(tiny, tiny_x, "saliency", regions="grid", region_params={"sise": 2})
    with pytest.raises(BadParameterError, match="group_first"):
        run(tiny, tiny_x, "saliency", regions="grid", group_first=False)  # only Sparsified SmoothGrad has it
    with pytest.raises(BadParameterError, match="regions="):
        run(tiny, tiny_x, "sparsified_smoothgrad", regions="grid", segmentation=seg)
    with pytest.raises(BadParameterError, match="segmentation must be"):
        run(tiny, tiny_x, "sparsified_smoothgrad", segmentation=seg.labels)
    with pytest.raises(BadParameterError, match="uses regions itself"):
        Grouped("xrai", "grid")
    if "swag" in METHODS:
        with pytest.raises(BadParameterError, match="own superpixels"):
            run(tiny, tiny_x, "swag", regions="grid")


def test_methods_that_use_regions_receive_them(tiny, tiny_x):
    if "xrai" not in METHODS:
        pytest.skip("xrai not registered")
    seg = segment(tiny.to_rgb01(tiny_x), "grid", size=8)
    via_explain = run(tiny, tiny_x, "xrai", regions="grid", region_params={"size": 8}, n_steps=4, min_pixel_diff=1)
    direct = METHODS.get("xrai").fn(tiny, tiny_x, TARGETS, regions=seg, n_steps=4, min_pixel_diff=1)
    np.testing.assert_allclose(via_explain.numpy(), direct.numpy())
    with pytest.raises(BadParameterError, match="channels"):
        run(tiny, tiny_x, "xrai", regions="grid", channels="per_channel", n_steps=4)

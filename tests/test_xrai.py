"""XRAI (spec §6.3) against PAIR saliency's own implementation (``saliency.core.xrai``, ``integrated_gradients``):
segments, region selection (``full`` and ``fast``), the IG base attribution through a torch
``call_model_function``; plus skimage's binary dilation, the grouping identity on a partition, batching and
bad input. Small images (32–64 px) keep it fast."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from saliency.core import xrai as pair_xrai
from saliency.core.base import INPUT_OUTPUT_GRADIENTS
from saliency.core.integrated_gradients import IntegratedGradients
from skimage import data
from skimage.morphology import dilation, disk
from skimage.transform import resize

import spixel
from spixel.errors import BadInputError, BadParameterError
from spixel.regions import group
from spixel.segmentation import segment
from spixel.types import Explanation, Segmentation

X = sys.modules["spixel.attribution.xrai"]  # the package attribute ``xrai`` is the explainer function


def close(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray, rtol: float = 1e-5, atol_frac: float = 1e-6):
    a = torch.as_tensor(np.asarray(a, dtype=np.float64)) if not isinstance(a, torch.Tensor) else a.double()
    b = torch.as_tensor(np.asarray(b, dtype=np.float64)) if not isinstance(b, torch.Tensor) else b.double()
    assert a.shape == b.shape, (a.shape, b.shape)
    atol = atol_frac * float(b.abs().max()) + 1e-12
    assert torch.allclose(a, b, rtol=rtol, atol=atol), f"max abs error {float((a - b).abs().max()):.3g}"


def photo(size: int, which: str = "chelsea") -> np.ndarray:
    """A real photo, resized to ``size``², float32 HWC in [0, 1]."""
    im = getattr(data, which)()
    return resize(im, (size, size), anti_aliasing=True).astype(np.float32)


def as_x(model: spixel.ModelAdapter, rgb: np.ndarray) -> torch.Tensor:
    return model.normalize(torch.from_numpy(rgb).permute(2, 0, 1)[None].float())


def pair_params(algorithm: str, area_threshold: float = 1.0, min_pixel_diff: int = 50, steps: int = 100):
    p = pair_xrai.XRAIParameters(
        steps=steps,
        area_threshold=area_threshold,
        algorithm=algorithm,
        return_xrai_segments=True,
        return_ig_attributions=True,
    )
    p.experimental_params["min_pixel_diff"] = min_pixel_diff
    return p


def pair_cmf(model: spixel.ModelAdapter, target: int):
    """PAIR's ``call_model_function`` for a torch model: HWC numpy batches in, input gradients out."""

    def cmf(xb, call_model_args=None, expected_keys=None):
        xt = torch.from_numpy(np.asarray(xb, dtype=np.float32)).permute(0, 3, 1, 2).requires_grad_(True)
        score = model.module(xt)[:, target].sum()
        (g,) = torch.autograd.grad(score, xt)
        return {INPUT_OUTPUT_GRADIENTS: g.permute(0, 2, 3, 1).numpy()}

    return cmf


def hwc(x: torch.Tensor) -> np.ndarray:
    return x[0].permute(1, 2, 0).numpy()


# ---------------------------------------------------------------------------------------------- segments
@pytest.mark.parametrize("radius", [0, 1, 3, 5, 8])
def test_disk_dilate_equals_skimage(radius):
    g = torch.Generator().manual_seed(radius)
    masks = torch.rand(12, 23, 31, generator=g) > 0.97
    masks[0] = False
    masks[1, 11, 15] = True  # a single pixel: the footprint itself
    ref = np.stack([dilation(m, footprint=disk(radius)) for m in masks.numpy()])
    assert np.array_equal(X.disk_dilate(masks, radius).numpy(), ref)
    tiny = torch.rand(3, 3, 2, generator=g) > 0.5  # smaller than the disk
    ref = np.stack([dilation(m, footprint=disk(radius)) for m in tiny.numpy()])
    assert np.array_equal(X.disk_dilate(tiny, radius).numpy(), ref)


@pytest.mark.parametrize("size, which, radius", [(64, "chelsea", 5), (48, "astronaut", 2), (40, "coffee", 0)])
def test_felzenszwalb_segments_equal_pair(size, which, radius):
    rgb = photo(size, which)
    ours = X.xrai_segments(torch.from_numpy(rgb).permute(2, 0, 1)[None], dilation_radius=radius)
    ref = pair_xrai._get_segments_felzenszwalb(rgb, dilation_rad=radius)
    assert len(ours) == 1 and ours[0].shape == (len(ref), size, size)
    assert np.array_equal(ours[0].numpy(), np.stack(ref))


# ---------------------------------------------------------------------------------------------- selection
def _random_masks(rng: np.random.Generator, h: int, w: int, k: int) -> list[np.ndarray]:
    """Overlapping rectangles and blobs of many sizes (some below min_pixel_diff, one empty, one full)."""
    out = [np.zeros((h, w), bool), np.ones((h, w), bool)]
    for _ in range(k):
        y0, x0 = rng.integers(0, h - 2), rng.integers(0, w - 2)
        y1, x1 = rng.integers(y0 + 1, h + 1), rng.integers(x0 + 1, w + 1)
        m = np.zeros((h, w), bool)
        m[y0:y1, x0:x1] = True
        out.append(m)
    out.append(rng.random((h, w)) > 0.8)
    return out


@pytest.mark.parametrize("algorithm", ["full", "fast"])
@pytest.mark.parametrize(
    "area_threshold, min_pixel_diff, kind",
    [(1.0, 50, "felzenszwalb"), (0.3, 50, "felzenszwalb"), (1.0, 1, "random"), (0.6, 20, "random")],
)
def test_xrai_equals_pair_given_segments_and_attribution(tiny, algorithm, area_threshold, min_pixel_diff, kind):
    rng = np.random.default_rng(7)
    rgb = photo(64)
    x = as_x(tiny, rgb)
    segs = pair_xrai._get_segments_felzenszwalb(rgb) if kind == "felzenszwalb" else _random_masks(rng, 64, 64, 40)
    base = rng.standard_normal((64, 64, 3)).astype(np.float32)  # PAIR reduces channels by max, so do we
    out = pair_xrai.XRAI().GetMaskWithDetails(
        rgb,
        None,
        segments=segs,
        base_attribution=base,
        extra_parameters=pair_params(algorithm, area_threshold, min_pixel_diff),
    )
    e = spixel.explain(
        tiny,
        x,
        "xrai",
        segments=segs,
        base_attribution=torch.from_numpy(base).permute(2, 0, 1)[None],
        algorithm=algorithm,
        area_threshold=area_threshold,
        min_pixel_diff=min_pixel_diff,
    )
    close(e.attribution[0], out.attribution_mask)
    # the ranked regions: PAIR's flattened segments are 1-based ranks
    assert np.array_equal(e.segmentation.labels[0].numpy() + 1, out.segments)
    assert e.meta["n_masks"] == [len(segs)]
    assert e.raw is None


def test_xrai_select_batch_equals_one_by_one():
    rng = np.random.default_rng(3)
    attrs = torch.from_numpy(rng.standard_normal((3, 30, 20)))
    masks = [torch.from_numpy(np.stack(_random_masks(rng, 30, 20, k))) for k in (5, 25, 12)]
    masks[1] = masks[1][:0]  # no masks at all: the whole image is one region, its mean
    for alg in ("full", "fast"):
        v, r, nr = X.xrai_select(attrs, masks, alg, 0.8, 10)
        for i in range(3):
            vi, ri, ni = X.xrai_select(attrs[i : i + 1], masks[i : i + 1], alg, 0.8, 10)
            assert torch.equal(v[i : i + 1], vi) and torch.equal(r[i : i + 1], ri) and int(nr[i]) == int(ni[0])
        assert torch.allclose(v[1], attrs[1].mean().expand(30, 20)) and int(nr[1]) == 0


@pytest.mark.parametrize("algorithm", ["full", "fast"])
def test_partition_with_min_pixel_diff_1_is_the_region_mean(tiny, algorithm):
    """On a partition every region is added whole, its gain is its mean: XRAI == grouping by the mean (P_G)."""
    rng = np.random.default_rng(0)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    base = torch.from_numpy(rng.standard_normal((2, 32, 32))).float()
    seg = Segmentation.from_labels(
        torch.from_numpy(rng.integers(0, 4, (2, 4, 4))).repeat_interleave(8, 1).repeat_interleave(8, 2)
    )
    e = spixel.explain(tiny, x, "xrai", base_attribution=base, regions=seg, min_pixel_diff=1, algorithm=algorithm)
    close(e.attribution, group(base, seg, "mean"))
    # ranks follow the region means, highest first
    for i in range(2):
        labs = e.segmentation.labels[i].flatten()
        means = torch.zeros(int(labs.max()) + 1).scatter_reduce(
            0, labs, e.attribution[i].flatten(), "mean", include_self=False
        )
        assert torch.all(means[:-1] >= means[1:])
    # a segmenter name with parameters works the same way
    g = spixel.explain(
        tiny,
        x,
        "xrai",
        base_attribution=base,
        regions="grid",
        region_params={"size": 8},
        min_pixel_diff=1,
        algorithm=algorithm,
    )
    grid = segment(tiny.to_rgb01(x), "grid", size=8)
    close(g.attribution, group(base, grid, "mean"))
    assert g.meta["params"]["segments"] == "regions:grid"


# ---------------------------------------------------------------------------------------------- IG base attribution
def test_ig_base_equals_pair_integrated_gradients(tiny):
    rgb = photo(32, "astronaut")
    x = as_x(tiny, rgb)
    target, steps = 4, 12
    xv = hwc(x)
    ig = IntegratedGradients()
    ref = [
        ig.GetMask(xv, pair_cmf(tiny, target), x_baseline=np.full_like(xv, v), x_steps=steps, batch_size=5)
        for v in (xv.min(), xv.max())
    ]
    ours = X.ig_min_max(tiny, x, torch.tensor([target]), n_steps=steps, batch_size=7)
    close(ours[0], np.mean(ref, axis=0).max(axis=-1), rtol=1e-4, atol_frac=1e-5)


@pytest.mark.parametrize("algorithm", ["full", "fast"])
def test_xrai_with_ig_equals_pair_end_to_end(tiny, algorithm):
    """PAIR computes its own IG (min/max baselines) through a torch call_model_function; same segments."""
    rgb = photo(48, "coffee")
    x = as_x(tiny, rgb)
    target, steps = 2, 10
    segs = pair_xrai._get_segments_felzenszwalb(rgb, dilation_rad=3)
    out = pair_xrai.XRAI().GetMaskWithDetails(
        hwc(x),
        pair_cmf(tiny, target),
        segments=segs,
        batch_size=4,
        extra_parameters=pair_params(algorithm, steps=steps),
    )
    e = spixel.explain(tiny, x, "xrai", target, segments=[segs], n_steps=steps, algorithm=algorithm)
    close(e.attribution[0], out.attribution_mask, rtol=1e-4, atol_frac=1e-5)
    assert np.array_equal(e.segmentation.labels[0].numpy() + 1, out.segments)
    if algorithm == "fast":
        return
    # and with our own Felzenszwalb segments (same radius) instead of PAIR's
    f = spixel.explain(tiny, x, "xrai", target, n_steps=steps, algorithm=algorithm, dilation_radius=3)
    close(f.attribution, e.attribution, rtol=1e-6, atol_frac=1e-7)
    assert f.meta["params"]["segments"] == "felzenszwalb" and f.meta["n_masks"] == [len(segs)]


# ---------------------------------------------------------------------------------------------- batching, contract
def test_batch_equals_per_image_and_explanation_inputs(tiny):
    x = torch.cat([as_x(tiny, photo(32, w)) for w in ("chelsea", "coffee", "astronaut")])
    kw = {"n_steps": 4, "scales": (150,), "dilation_radius": 2, "min_pixel_diff": 10}
    batch = spixel.explain(tiny, x, "xrai", [1, 2, 3], **kw)
    for i in range(3):
        one = spixel.explain(tiny, x[i : i + 1], "xrai", [i + 1], **kw)
        close(batch.attribution[i : i + 1], one.attribution)
        assert torch.equal(batch.segmentation.labels[i], one.segmentation.labels[0])
        assert batch.meta["n_regions"][i] == one.meta["n_regions"][0]
    # the map is constant on every ranked region
    for i in range(3):
        lab, a = batch.segmentation.labels[i].flatten(), batch.attribution[i].flatten()
        mx = torch.full((int(lab.max()) + 1,), -torch.inf).scatter_reduce(0, lab, a, "amax")
        assert torch.equal(mx[lab], a)
    # any method can feed XRAI: an Explanation, or the same map as a tensor
    ig = spixel.explain(tiny, x, "integrated_gradients", [1, 2, 3], n_steps=5)
    kw = {"segments": X.xrai_segments(tiny.to_rgb01(x), scales=(500,)), "min_pixel_diff": 10}
    a = spixel.explain(tiny, x, "xrai", [1, 2, 3], base_attribution=ig, **kw)
    b = spixel.explain(tiny, x, "xrai", [1, 2, 3], base_attribution=ig.attribution, **kw)
    c = spixel.explain(tiny, x, "xrai", [1, 2, 3], base_attribution=ig.raw, **kw)  # (N, C, H, W): max over C
    d = spixel.explain(tiny, x, "xrai", [1, 2, 3], base_attribution=ig.raw.amax(1), **kw)
    e = spixel.explain(tiny, x, "xrai", [1, 2, 3], base_attribution=ig.attribution.unsqueeze(1).numpy(), **kw)
    assert torch.equal(a.attribution, b.attribution) and torch.equal(c.attribution, d.attribution)
    assert torch.equal(a.attribution, e.attribution)
    # segments as one (N, M, H, W) boolean tensor, padded with empty masks (which change nothing)
    mmax = max(k.shape[0] for k in kw["segments"])
    padded = torch.zeros(3, mmax + 2, 32, 32, dtype=torch.bool)
    for i, k in enumerate(kw["segments"]):
        padded[i, : k.shape[0]] = k
    f = spixel.explain(tiny, x, "xrai", [1, 2, 3], base_attribution=ig, segments=padded, min_pixel_diff=10)
    assert torch.equal(a.attribution, f.attribution)
    assert a.meta["params"]["base_attribution"] == "given"


def test_degenerate_images_give_finite_maps(tiny):
    black = tiny.normalize(torch.zeros(1, 3, 32, 32))
    e = spixel.explain(tiny, black, "xrai", n_steps=3, scales=(100, 1200))
    assert torch.isfinite(e.attribution).all()
    flat = torch.zeros(1, 3, 32, 32)  # constant in model space: both baselines equal x, IG is zero
    e = spixel.explain(tiny, flat, "xrai", n_steps=3, scales=(100,))
    assert torch.equal(e.attribution, torch.zeros(1, 32, 32))
    small = torch.randn(1, 3, 3, 3)
    e = spixel.explain(tiny, small, "xrai", n_steps=3, min_pixel_diff=1, scales=(100,))
    assert e.attribution.shape == (1, 3, 3) and torch.isfinite(e.attribution).all()
    # a single-region segmentation: the whole map is the mean of the base attribution
    base = torch.randn(1, 32, 32)
    one = Segmentation(torch.zeros(1, 32, 32, dtype=torch.long))
    e = spixel.explain(tiny, black, "xrai", base_attribution=base, regions=one)
    assert torch.allclose(e.attribution, base.mean().expand(1, 32, 32))


def test_bad_parameters(tiny, tiny_x):
    def run(**kw):
        return spixel.explain(tiny, tiny_x, "xrai", **{"n_steps": 2, "scales": (500,), **kw})

    for kw, match in [
        ({"algorithm": "medium"}, "algorithm"),
        ({"area_threshold": 1.5}, "area_threshold"),
        ({"area_threshold": -0.1}, "area_threshold"),
        ({"min_pixel_diff": 0}, "min_pixel_diff"),
        ({"dilation_radius": -1}, "dilation_radius"),
        ({"scales": ()}, "scales"),
        ({"scales": (100, -5)}, "scales"),
        ({"scales": "100"}, "scales"),
        ({"n_steps": 1}, "n_steps"),
        ({"felzenszwalb_sigma": -1.0}, "felzenszwalb_sigma"),
        ({"region_params": {"size": 4}}, "region_params"),
        ({"regions": 3}, "regions"),
        ({"regions": "grid", "segments": [[np.ones((32, 32), bool)]] * 3}, "not both"),
    ]:
        with pytest.raises(BadParameterError, match=match):
            run(**kw)
    ok = np.ones((32, 32), bool)
    for kw in [
        {"segments": [ok, ok]},  # one image's masks for a batch of 3
        {"segments": [[ok]] * 2},  # 2 lists for 3 images
        {"segments": [[ok.astype(np.uint8)]] * 3},  # not boolean
        {"segments": [[np.ones((16, 16), bool)]] * 3},  # wrong size
        {"segments": "masks"},
        {"segments": [[ok, np.ones((16, 16), bool)]] * 3},  # masks of different sizes
        {"base_attribution": "map"},
        {"base_attribution": torch.zeros(3, 16, 16)},
        {"base_attribution": torch.zeros(2, 32, 32)},
        {"base_attribution": torch.full((3, 32, 32), float("nan"))},
        {"base_attribution": Explanation(attribution=torch.zeros(1, 32, 32))},
    ]:
        with pytest.raises(BadInputError):
            run(**kw)


def test_model_left_untouched_with_given_inputs(tiny, tiny_x):
    tiny.module.train()
    before = {k: v.clone() for k, v in tiny.module.state_dict().items()}
    flags = [p.requires_grad for p in tiny.module.parameters()]
    spixel.explain(tiny, tiny_x, "xrai", n_steps=2, scales=(500,))
    assert all(torch.equal(v, tiny.module.state_dict()[k]) for k, v in before.items())
    assert tiny.module.training and [p.requires_grad for p in tiny.module.parameters()] == flags
    assert all(p.grad is None for p in tiny.module.parameters())


# ---------------------------------------------------------------------------------------------- base layouts
def test_pair_layout_base_attribution_equals_pair_and_our_nhw_path(tiny):
    """PAIR users pass their own ``(H, W, C)`` numpy map: same XRAI as PAIR's, and as our ``(N, H, W)`` path."""
    rng = np.random.default_rng(11)
    rgb = photo(64, "astronaut")
    x = as_x(tiny, rgb)
    segs = pair_xrai._get_segments_felzenszwalb(rgb, dilation_rad=3)
    base = rng.standard_normal((64, 64, 3)).astype(np.float32)
    out = pair_xrai.XRAI().GetMaskWithDetails(
        rgb, None, segments=segs, base_attribution=base, extra_parameters=pair_params("full")
    )
    e = spixel.explain(tiny, x, "xrai", segments=segs, base_attribution=base)
    close(e.attribution[0], out.attribution_mask)
    assert np.array_equal(e.segmentation.labels[0].numpy() + 1, out.segments)
    ref = spixel.explain(tiny, x, "xrai", segments=segs, base_attribution=torch.from_numpy(base.max(-1))[None])
    assert torch.equal(e.attribution, ref.attribution)


def test_every_base_attribution_layout_equals_the_nhw_map(tiny):
    rng = np.random.default_rng(3)
    x = as_x(tiny, photo(32, "coffee"))
    kw = {"segments": X.xrai_segments(tiny.to_rgb01(x), scales=(150,), dilation_radius=2), "min_pixel_diff": 10}
    hwc_map = rng.standard_normal((32, 32, 3)).astype(np.float32)
    nhw = torch.from_numpy(hwc_map.max(-1))[None]
    ref = spixel.explain(tiny, x, "xrai", base_attribution=nhw, **kw).attribution
    for layout in [
        hwc_map,  # PAIR's (H, W, C), numpy
        torch.from_numpy(hwc_map),  # (H, W, C), tensor
        hwc_map.max(-1),  # (H, W), numpy
        nhw[0],  # (H, W), tensor
        nhw.numpy(),  # (N, H, W), numpy
        torch.from_numpy(hwc_map).permute(2, 0, 1)[None],  # (N, C, H, W), tensor
        np.ascontiguousarray(hwc_map.transpose(2, 0, 1)[None]),  # (N, C, H, W), numpy
        np.ascontiguousarray(hwc_map[::-1])[::-1],  # (H, W, C), a negatively strided numpy view
        Explanation(attribution=nhw),
    ]:
        got = spixel.explain(tiny, x, "xrai", base_attribution=layout, **kw).attribution
        assert torch.equal(got, ref), (type(layout), tuple(layout.shape) if hasattr(layout, "shape") else None)
    # one channel: (H, W, 1) is HWC too, not (N, H, W)
    one = spixel.explain(tiny, x, "xrai", base_attribution=hwc_map[:, :, :1], **kw).attribution
    assert torch.equal(one, spixel.explain(tiny, x, "xrai", base_attribution=hwc_map[None, :, :, 0], **kw).attribution)


def test_three_dim_base_attribution_is_told_apart_by_the_batch(tiny):
    """A ``(4, 4, 4)`` map is PAIR's ``(H, W, C)`` for one 4×4 image and ``(N, H, W)`` for four of them."""
    g = torch.Generator().manual_seed(5)
    cube = torch.randn(4, 4, 4, generator=g)
    cells = Segmentation(torch.arange(4).repeat_interleave(4).view(1, 4, 4))  # four rows
    one = torch.randn(1, 3, 4, 4, generator=g)
    kw = {"min_pixel_diff": 1}
    a = spixel.explain(tiny, one, "xrai", base_attribution=cube, regions=cells, **kw)
    b = spixel.explain(tiny, one, "xrai", base_attribution=cube.amax(-1)[None], regions=cells, **kw)
    assert torch.equal(a.attribution, b.attribution)
    four = one.expand(4, -1, -1, -1).contiguous()
    cells4 = Segmentation(cells.labels.expand(4, -1, -1).contiguous())
    c = spixel.explain(tiny, four, "xrai", base_attribution=cube, regions=cells4, **kw)
    for i in range(4):
        d = spixel.explain(tiny, one, "xrai", base_attribution=cube[i], regions=cells, **kw)
        assert torch.equal(c.attribution[i], d.attribution[0])


@pytest.mark.parametrize(
    "n, shape",
    [
        (1, (16, 16)),  # (H, W) of another size
        (1, (32, 16, 3)),  # (H, W, C) of another size
        (1, (1, 32, 32, 3)),  # NHWC is not a layout we guess
        (1, (2, 32, 32)),  # two maps for one image
        (1, (3, 32, 32)),  # (C, H, W) without the batch dimension
        (1, (32,)),
        (1, (1, 1, 32, 32, 1)),
        (3, (32, 32)),  # (H, W) for a batch of 3
        (3, (32, 32, 3)),  # (H, W, C) for a batch of 3
        (3, (3, 3, 16, 16)),
        (3, (2, 3, 32, 32)),
    ],
)
def test_bad_base_attribution_shape_names_the_accepted_ones(tiny, n, shape):
    x = torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with pytest.raises(BadInputError, match=r"\(N, H, W\).*\(N, C, H, W\)") as err:
        spixel.explain(tiny, x, "xrai", base_attribution=np.zeros(shape, np.float32), regions="grid")
    msg = str(err.value)
    assert str(shape) in msg and f"({n}, 32, 32)" in msg
    assert ("(H, W, C)" in msg) == (n == 1)

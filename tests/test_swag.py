"""SWAG (paper 001, spec §2): the map equals the segment mean of max_c |guided backprop| (Captum's, independent of
ours) over the method's superpixels, min-max normalised per image; the superpixels are the ones SLIC /
guided SLIC give for that image (and that gradient)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from captum.attr import GuidedBackprop

import spixel
from spixel.attribution.swag import minmax01, swag_map
from spixel.errors import BadParameterError
from spixel.registry import SEGMENTERS
from spixel.segmentation import segment
from spixel.types import Segmentation

TARGETS = [0, 3, 7]
VARIANTS = {"swag_ig": "image+gradient", "swag_g": "gradient"}


@pytest.fixture
def smooth_x(tiny) -> torch.Tensor:
    """Three 32×32 images with smooth colour blobs and a little noise (SLIC on pure noise is degenerate)."""
    g = torch.Generator().manual_seed(1)
    rgb = F.interpolate(torch.rand(3, 3, 5, 5, generator=g), size=32, mode="bilinear", align_corners=False)
    return tiny.normalize((rgb + 0.03 * torch.randn(3, 3, 32, 32, generator=g)).clamp(0, 1))


def _need(segmenter: str) -> None:
    if segmenter not in SEGMENTERS:
        pytest.skip(f"segmenter {segmenter} not registered yet")


def _captum_scores(model, x, targets) -> torch.Tensor:
    """``max_c |guided backprop|`` by Captum (tiny is a ReLU network: Captum's rule is ours there)."""
    gb = GuidedBackprop(model.module).attribute(x.clone(), target=torch.tensor(targets))
    return gb.abs().amax(1)


def _ref_swag(g: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Segment means by a loop over segments, then min-max to [0, 1] per image (float64)."""
    out = torch.empty_like(g, dtype=torch.float64)
    for n in range(g.shape[0]):
        for k in torch.unique(labels[n]):
            m = labels[n] == k
            out[n][m] = g[n][m].double().mean()
        lo, hi = out[n].min(), out[n].max()
        out[n] = (out[n] - lo) / (hi - lo) if hi > lo else torch.zeros_like(out[n])
    return out


def _check_map(e: spixel.Explanation) -> None:
    a, lab = e.attribution, e.segmentation.labels
    assert torch.isfinite(a).all() and float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    for n in range(len(e)):
        assert float(a[n].min()) == 0.0
        # one superpixel: a constant map, min-maxed to zeros (documented); else the range is [0, 1]
        assert float(a[n].max()) == (0.0 if e.meta["num_segments"][n] == 1 else pytest.approx(1.0))
        for k in torch.unique(lab[n]):
            v = a[n][lab[n] == k]
            assert float(v.max() - v.min()) <= 1e-6, "not constant on a superpixel"


def test_swag_equals_segment_mean_of_guided_backprop(tiny, smooth_x):
    _need("slic")
    e = spixel.explain(tiny, smooth_x, "swag", TARGETS)
    # the superpixels: plain SLIC of the image, 300 segments, compactness 20 (spec §2.3/§2.6)
    seg = segment(tiny.to_rgb01(smooth_x), "slic", n_segments=300, compactness=20.0, backend="skimage")
    assert torch.equal(e.segmentation.labels, seg.labels)
    _check_map(e)
    ref = _ref_swag(_captum_scores(tiny, smooth_x, TARGETS), seg.labels).float()
    torch.testing.assert_close(e.attribution, ref, rtol=1e-4, atol=1e-5)
    assert e.raw is None
    assert e.meta["method"] == "swag" and e.meta["target"] == TARGETS and e.meta["seed"] is None
    assert e.meta["params"] == {"n_segments": 300, "compactness": 20.0, "batch_size": 32}
    assert e.meta["num_segments"] == seg.num_segments.tolist()


@pytest.mark.parametrize("name", ["swag_ig", "swag_g"])
def test_gradient_slic_variants(tiny, smooth_x, name):
    _need("guided_slic")
    e = spixel.explain(tiny, smooth_x, name, TARGETS, n_segments=60, batch_size=2)
    g = _captum_scores(tiny, smooth_x, TARGETS)
    kw = {"wc": 20.0, "wg": 8.0} if name == "swag_ig" else {"wg": 8.0}
    seg = segment(tiny.to_rgb01(smooth_x), "guided_slic", gradient=g, variant=VARIANTS[name], n_segments=60, **kw)
    # the same superpixels as guided SLIC fed with the gradient (allowing a stray pixel for float noise in g)
    assert (e.segmentation.labels == seg.labels).double().mean() >= 0.99
    _check_map(e)
    ref = _ref_swag(g, e.segmentation.labels).float()
    torch.testing.assert_close(e.attribution, ref, rtol=1e-4, atol=1e-5)
    assert e.meta["params"]["n_segments"] == 60 and e.meta["params"]["wg"] == 8.0
    assert e.segmentation.meta["variant"] == VARIANTS[name]
    # the gradient shapes the superpixels: they differ from plain image SLIC's and between the two variants
    other = "swag_g" if name == "swag_ig" else "swag_ig"
    f = spixel.explain(tiny, smooth_x, other, TARGETS, n_segments=60)
    assert not torch.equal(f.segmentation.labels, e.segmentation.labels)


@pytest.mark.parametrize("name", ["swag", "swag_ig", "swag_g"])
def test_batched_per_image_targets(tiny, smooth_x, name):
    _need("slic" if name == "swag" else "guided_slic")
    batch = spixel.explain(tiny, smooth_x, name, TARGETS, n_segments=50, batch_size=2)
    for i, t in enumerate(TARGETS):
        one = spixel.explain(tiny, smooth_x[i : i + 1], name, t, n_segments=50)
        torch.testing.assert_close(one.attribution, batch.attribution[i : i + 1], rtol=1e-5, atol=1e-6)
        assert torch.equal(one.segmentation.labels, batch.segmentation.labels[i : i + 1])
    other = spixel.explain(tiny, smooth_x, name, 5, n_segments=50)
    assert not torch.allclose(other.attribution[0], batch.attribution[0])


def test_swag_map_and_degenerate_partitions():
    g = torch.rand(2, 6, 6, generator=torch.Generator().manual_seed(0))
    seg = Segmentation.from_labels(torch.arange(36).view(6, 6).expand(2, 6, 6) // 12)  # 3 horizontal bands
    torch.testing.assert_close(swag_map(g, seg), _ref_swag(g, seg.labels).float())
    # a single region: the mean map is constant, min-max of a constant is documented as all zeros (no NaN)
    one = Segmentation(torch.zeros(2, 6, 6, dtype=torch.long))
    assert torch.equal(swag_map(g, one), torch.zeros(2, 6, 6))
    assert torch.equal(minmax01(torch.full((1, 4, 4), 3.5)), torch.zeros(1, 4, 4))
    assert torch.equal(minmax01(torch.zeros(1, 4, 4)), torch.zeros(1, 4, 4))


def test_degenerate_inputs(tiny, smooth_x):
    _need("slic")
    with pytest.raises(BadParameterError, match="n_segments"):
        spixel.explain(tiny, smooth_x, "swag", n_segments=0)
    with pytest.raises(BadParameterError, match="compactness"):
        spixel.explain(tiny, smooth_x, "swag", compactness=-1)
    with pytest.raises(BadParameterError, match="own superpixels"):
        spixel.explain(tiny, smooth_x, "swag", regions="grid")
    one = spixel.explain(tiny, smooth_x, "swag", n_segments=1)  # one superpixel: zeros, documented
    assert one.meta["num_segments"] == [1, 1, 1]
    assert torch.equal(one.attribution, torch.zeros(3, 32, 32))
    black = tiny.normalize(torch.zeros(2, 3, 32, 32))  # all-black images
    tiny3 = torch.randn(1, 3, 3, 3, generator=torch.Generator().manual_seed(3))  # a 3×3 image
    names = ["swag"] + (["swag_ig", "swag_g"] if "guided_slic" in SEGMENTERS else [])
    for name in names:
        for x in (black, tiny3):
            e = spixel.explain(tiny, x, name)
            assert torch.isfinite(e.attribution).all()
            assert float(e.attribution.min()) >= 0 and float(e.attribution.max()) <= 1
        with pytest.raises(BadParameterError, match="n_segments"):
            spixel.explain(tiny, smooth_x, name, n_segments=-2)
    if "guided_slic" in SEGMENTERS:
        with pytest.raises(BadParameterError, match="clip_percentile"):
            spixel.explain(tiny, smooth_x, "swag_ig", clip_percentile=0)
        clipped = spixel.explain(tiny, smooth_x, "swag_ig", clip_percentile=99.0, n_segments=60)
        _check_map(clipped)

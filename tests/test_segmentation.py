"""Segmenters (every registered one), SWAG's gradient-aware SLIC against a brute-force SLIC step (spec §2.3),
the grouping operator's properties (spec §1.2) and the Segmentation / segment / resolve_regions contracts."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
import torch
from skimage import data
from skimage.color import rgb2lab
from skimage.segmentation import slic as sk_slic
from skimage.transform import resize

from spixel.errors import BadInputError, BadParameterError, UnknownNameError
from spixel.regions import group, paint, pool
from spixel.registry import SEGMENTERS
from spixel.segmentation import Segmenter, resolve_regions, segment
from spixel.segmentation import image as image_mod
from spixel.segmentation.base import relabel, relabel_batch
from spixel.segmentation.guided_slic import scale_gradient, slic_features
from spixel.types import Segmentation

HAS_FAST_SLIC = importlib.util.find_spec("fast_slic") is not None

#: cheap parameters per segmenter (a new segmenter gets {} and is still covered)
CHEAP: dict[str, dict] = {
    "slic": {"n_segments": 20},
    "quickshift": {"max_dist": 20.0},
    "felzenszwalb": {},
    "watershed": {"n_segments": 30},
    "grid": {"size": 8},
    "random": {"n_segments": 10},
    "guided_slic": {"n_segments": 30},
    "nas": {"n_segments": 5, "n_init": 2},
}
#: segmenters whose result for an image depends on its position in the batch (documented in their docstring)
POSITION_DEPENDENT = {"random"}


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    """Two real photos (astronaut, chelsea) resized to 64×64, float RGB (2, 3, 64, 64) in [0, 1]."""
    ims = [resize(im, (64, 64), anti_aliasing=True) for im in (data.astronaut(), data.chelsea())]
    return torch.from_numpy(np.stack(ims)).permute(0, 3, 1, 2).float().clamp(0, 1)


def _gradient_for(x: torch.Tensor) -> torch.Tensor:
    """A deterministic non-negative map with structure (the colour-difference magnitude of the image)."""
    gy = (x[:, :, 1:, :] - x[:, :, :-1, :]).abs().amax(1)
    gx = (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().amax(1)
    g = torch.zeros(x.shape[0], *x.shape[2:])
    g[:, 1:, :] += gy
    g[:, :, 1:] += gx
    return g


def _classifier() -> torch.nn.Module:
    """A small seeded CNN (full, 1/2 and 1/4 resolution) for segmenters that take a model (nas)."""
    g = torch.Generator().manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 16, 3, stride=2, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(16, 16, 3, stride=2, padding=1),
    )
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return net.eval()


def _params(name: str, x: torch.Tensor) -> dict:
    p = dict(CHEAP.get(name, {}))
    if "gradient" in SEGMENTERS.get(name).info.get("needs", ()):
        p["gradient"] = _gradient_for(x)
    if "model" in SEGMENTERS.get(name).info["params"]:
        p["model"] = _classifier()
    return p


def _run(name: str, x: torch.Tensor, **extra) -> Segmentation:
    return segment(x, name, **{**_params(name, x), **extra})


# --------------------------------------------------------------------------- every registered segmenter


@pytest.mark.parametrize("name", SEGMENTERS.names())
def test_segmenter_contract(name: str, photos: torch.Tensor) -> None:
    seg = _run(name, photos)
    assert isinstance(seg, Segmentation)
    assert seg.labels.dtype == torch.int64 and tuple(seg.labels.shape) == (2, 64, 64)
    for i in range(2):
        ids = torch.unique(seg.labels[i])
        assert torch.equal(ids, torch.arange(len(ids)))  # contiguous 0..K-1
        if name != "xrai":
            assert _is_canonical(seg.labels[i])  # ids by first appearance in raster order
    assert bool((seg.num_segments >= 1).all())
    assert seg.meta["segmenter"] == name
    assert torch.equal(_run(name, photos).labels, seg.labels)  # deterministic (seeded where stochastic)
    if name not in POSITION_DEPENDENT:
        for i in range(2):  # batch == per image
            assert torch.equal(_run(name, photos[i : i + 1]).labels[0], seg.labels[i])
    if "workers" in SEGMENTERS.get(name).info["params"]:  # serial == threads
        assert torch.equal(_run(name, photos, workers=1).labels, seg.labels)


@pytest.mark.parametrize("name", SEGMENTERS.names())
@pytest.mark.parametrize("kind", ["black", "constant", "tiny3x3"])
def test_degenerate_images_give_valid_partitions(name: str, kind: str) -> None:
    if kind == "black":
        x = torch.zeros(2, 3, 16, 16)
    elif kind == "constant":
        x = torch.full((2, 3, 16, 16), 0.6)
    else:
        x = torch.rand(2, 3, 3, 3, generator=torch.Generator().manual_seed(0))
    seg = _run(name, x)
    assert tuple(seg.labels.shape) == (2, *x.shape[2:])
    assert bool((seg.num_segments >= 1).all()) and int(seg.num_segments.max()) <= x.shape[2] * x.shape[3]
    g = group(torch.rand(2, *x.shape[2:]), seg)
    assert bool(torch.isfinite(g).all())
    if kind != "tiny3x3" and name in ("quickshift", "felzenszwalb"):
        assert seg.num_segments.tolist() == [1, 1]  # documented: a constant image is one region


@pytest.mark.parametrize("name", [n for n in SEGMENTERS.names() if "n_segments" in SEGMENTERS.get(n).info["params"]])
@pytest.mark.parametrize("bad", [0, -3, 2.5])
def test_bad_n_segments(name: str, bad, photos: torch.Tensor) -> None:
    with pytest.raises(BadParameterError, match="n_segments"):
        _run(name, photos, n_segments=bad)


def test_bad_values_of_other_parameters(photos: torch.Tensor) -> None:
    for name, kw in [
        ("slic", {"compactness": 0}),
        ("slic", {"backend": "opencv"}),
        ("slic", {"workers": 0}),
        ("quickshift", {"ratio": 2.0}),
        ("felzenszwalb", {"scale": -1.0}),
        ("watershed", {"compactness": -1.0}),
    ]:
        with pytest.raises(BadParameterError):
            segment(photos, name, **kw)


def test_grid_size_one_is_the_identity(photos: torch.Tensor) -> None:
    seg = segment(photos, "grid", size=1)
    h, w = seg.shape
    assert seg.num_segments.tolist() == [h * w] * 2
    assert torch.equal(seg.labels[1], torch.arange(h * w).view(h, w))
    v = torch.randn(2, 3, h, w, dtype=torch.float64)
    assert torch.equal(group(v[:, 0], seg), v[:, 0])
    assert torch.equal(group(v, seg, channels="per_channel"), v)


def test_grid_blocks(photos: torch.Tensor) -> None:
    seg = segment(photos[:, :, :20, :30], "grid", size=8)  # 3 × 4 blocks, the last ones narrower
    assert seg.num_segments.tolist() == [12, 12]
    assert int(seg.labels[0, 19, 29]) == 11 and int(seg.labels[0, 8, 0]) == 4


# --------------------------------------------------------------------------- slic backends


def test_slic_matches_skimage_directly(photos: torch.Tensor) -> None:
    seg = segment(photos, "slic", n_segments=40, compactness=15.0)
    img = photos[0].permute(1, 2, 0).double().numpy()
    ref = sk_slic(img, n_segments=40, compactness=15.0, sigma=0, start_label=0, channel_axis=-1)
    assert torch.equal(seg.labels[0], torch.from_numpy(_canonical_reference(ref)))
    assert seg.meta["backend"] == "skimage"  # "auto" is skimage


def test_slic_fast_slic_missing_is_a_clear_error(photos: torch.Tensor, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(image_mod, "fast_slic_available", lambda: False)
    with pytest.raises(BadParameterError, match="fast-slic"):
        segment(photos, "slic", backend="fast_slic")


@pytest.mark.skipif(not HAS_FAST_SLIC, reason="fast_slic is not installed (optional)")
def test_slic_fast_slic_backend(photos: torch.Tensor) -> None:
    seg = segment(photos, "slic", n_segments=30, backend="fast_slic")
    assert seg.meta["backend"] == "fast_slic"
    assert bool((seg.num_segments > 5).all()) and int(seg.num_segments.max()) <= 60
    assert torch.equal(segment(photos, "slic", n_segments=30, backend="fast_slic", workers=1).labels, seg.labels)
    assert torch.equal(segment(photos[1:], "slic", n_segments=30, backend="fast_slic").labels[0], seg.labels[1])
    # more regions than pixels (fast-slic itself would die of SIGFPE), black and sigma > 0 images
    assert segment(torch.rand(1, 3, 3, 3), "slic", n_segments=100, backend="fast_slic").num_segments.item() <= 9
    assert segment(torch.zeros(1, 3, 16, 16), "slic", backend="fast_slic").num_segments.item() >= 1
    assert segment(photos, "slic", backend="fast_slic", sigma=1.0).num_segments.min() >= 1
    with pytest.raises(BadParameterError, match="connectivity"):
        segment(photos, "slic", backend="fast_slic", enforce_connectivity=False)


# --------------------------------------------------------------------------- guided SLIC (SWAG, spec §2.3)


def _skimage_grid(h: int, w: int, k: int) -> tuple[np.ndarray, np.ndarray, int]:
    """skimage's seed grid for a 2-D image (``regular_grid((1, h, w), k)``, re-derived): the depth axis (1) is
    discarded, the step is ``s = sqrt(hw/k)``, the first seed at ``floor(s/2)``, the spacing ``round(s)``."""
    s = math.sqrt(h * w / k)
    assert h * w > k and (h * w / k) ** (1 / 3) > 1 and s <= min(h, w)  # the case re-derived here
    start, step = int(s // 2), int(np.round(s))
    cy, cx = np.meshgrid(np.arange(start, h, step), np.arange(start, w, step), indexing="ij")
    return cy.ravel().astype(float), cx.ravel().astype(float), step


def _assign(cy, cx, step, h, w, colour_term) -> np.ndarray:
    """One SLIC assignment: every centre k scans its ±2·step window; a pixel goes to the centre with the smallest
    D² = (d_s/step)² + colour_term(k, ys, xs), the lower k on ties (skimage's strict '<' over ascending k)."""
    best = np.full((h, w), np.inf)
    lab = np.full((h, w), -1)
    for k in range(len(cy)):
        y0, y1 = int(max(cy[k] - 2 * step, 0)), int(min(cy[k] + 2 * step + 1, h))
        x0, x1 = int(max(cx[k] - 2 * step, 0)), int(min(cx[k] + 2 * step + 1, w))
        ys, xs = np.mgrid[y0:y1, x0:x1]
        d = ((ys - cy[k]) ** 2 + (xs - cx[k]) ** 2) / step**2 + colour_term(k, ys, xs)
        win_best, win_lab = best[y0:y1, x0:x1], lab[y0:y1, x0:x1]
        better = d < win_best
        win_best[better], win_lab[better] = d[better], k
    return lab


def _brute_force_two_steps(rgb: np.ndarray, g: np.ndarray, k: int, variant: str, wc: float, wg: float) -> np.ndarray:
    """Two SLIC steps with the paper's distance, from skimage's seed grid (spec §2.2).

    skimage starts every centre with colour 0, so its first step is colour-blind (purely spatial); the centres
    then move to their clusters' means (position, Lab, g') and the second step uses
    D'² = (d_c/w_c)² + (d_s/S)² + (d_g/w_g)² (or D_G² without the colour term)."""
    h, w = g.shape
    lab = rgb2lab(rgb)
    g100 = 100 * (g - g.min()) / (g.max() - g.min())
    cy, cx, step = _skimage_grid(h, w, k)
    first = _assign(cy, cx, step, h, w, lambda k_, ys, xs: 0.0)
    yy, xx = np.mgrid[:h, :w]
    ks = range(len(cy))
    my = np.array([yy[first == j].mean() for j in ks])
    mx = np.array([xx[first == j].mean() for j in ks])
    mlab = np.array([lab[first == j].mean(0) for j in ks])
    mg = np.array([g100[first == j].mean() for j in ks])

    def term(j, ys, xs):
        dg = ((g100[ys, xs] - mg[j]) / wg) ** 2
        if variant == "gradient":
            return dg
        return (((lab[ys, xs] - mlab[j]) / wc) ** 2).sum(-1) + dg

    return _assign(my, mx, step, h, w, term)


def _test_image(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 32×32 random image and gradient with some structure (4×4 blocks plus noise)."""
    rng = np.random.default_rng(seed)
    rgb = np.clip(np.kron(rng.random((8, 8, 3)), np.ones((4, 4, 1))) + 0.15 * rng.standard_normal((32, 32, 3)), 0, 1)
    g = np.abs(np.kron(rng.standard_normal((8, 8)), np.ones((4, 4))) + 0.3 * rng.standard_normal((32, 32)))
    return rgb, g


@pytest.mark.parametrize("variant", ["image+gradient", "gradient"])
@pytest.mark.parametrize("seed", [0, 1])
def test_guided_slic_equals_brute_force_slic_step(variant: str, seed: int) -> None:
    rgb, g = _test_image(seed)
    k, wc, wg = 16, 20.0, 8.0
    ref = _brute_force_two_steps(rgb, g, k, variant, wc, wg)
    feats, m, axis = slic_features(rgb, g, variant, wc, wg)
    common = {"n_segments": k, "max_num_iter": 2, "enforce_connectivity": False, "convert2lab": False, "sigma": 0}
    sk = sk_slic(feats, compactness=m, channel_axis=axis, start_label=0, **common)
    assert (sk == ref).mean() >= 0.995

    # the test has teeth: the spatial-only first step, the mapping without skimage's rescale (≈ spatial only too)
    # and a brute force whose gradient weight is 25 % off all disagree with skimage on many pixels
    first_only = sk_slic(feats, compactness=m, channel_axis=axis, start_label=0, **{**common, "max_num_iter": 1})
    assert (first_only == ref).mean() < 0.9
    wrong = sk_slic(feats, compactness=wc if variant != "gradient" else wg, channel_axis=axis, start_label=0, **common)
    assert (wrong == ref).mean() < 0.9
    assert (sk == _brute_force_two_steps(rgb, g, k, variant, wc, 1.25 * wg)).mean() < 0.97

    # and the registered segmenter runs exactly this
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float()
    rgb32 = x[0].permute(1, 2, 0).double().numpy()  # the float32 round trip of the public path
    feats32, m32, _ = slic_features(rgb32, g, variant, wc, wg)
    sk32 = sk_slic(feats32, compactness=m32, channel_axis=axis, start_label=0, **common)
    seg = segment(
        x,
        "guided_slic",
        gradient=torch.from_numpy(g),
        variant=variant,
        n_segments=k,
        max_num_iter=2,
        enforce_connectivity=False,
    )
    assert torch.equal(seg.labels[0], torch.from_numpy(_canonical_reference(sk32)))


def test_guided_slic_needs_a_gradient(photos: torch.Tensor) -> None:
    with pytest.raises(BadParameterError, match="gradient="):
        segment(photos, "guided_slic")
    with pytest.raises(BadInputError, match="shape"):
        segment(photos, "guided_slic", gradient=torch.rand(2, 32, 32))
    bad = torch.rand(2, 64, 64)
    bad[0, 0, 0] = float("nan")
    with pytest.raises(BadInputError, match="NaN"):
        segment(photos, "guided_slic", gradient=bad)
    with pytest.raises(BadParameterError, match="variant"):
        segment(photos, "guided_slic", gradient=torch.rand(2, 64, 64), variant="image")
    with pytest.raises(BadParameterError, match="wg"):
        segment(photos, "guided_slic", gradient=torch.rand(2, 64, 64), wg=0)
    seg = segment(photos, "guided_slic", gradient=torch.rand(2, 64, 64))
    assert seg.meta["params"]["gradient"] == "<Tensor float32 (2, 64, 64)>"  # no tensor copied into meta


def test_guided_slic_constant_gradient_is_finite(photos: torch.Tensor) -> None:
    for variant in ("image+gradient", "gradient"):
        a = segment(photos, "guided_slic", gradient=torch.zeros(2, 64, 64), variant=variant, n_segments=30)
        b = segment(photos, "guided_slic", gradient=torch.full((2, 64, 64), 7.0), variant=variant, n_segments=30)
        assert torch.equal(a.labels, b.labels) and bool((a.num_segments >= 1).all())
    # gradient only + constant map = purely spatial SLIC: the same partition for both photos
    assert torch.equal(a.labels[0], a.labels[1])


def test_guided_slic_gradient_matters_and_clipping(photos: torch.Tensor) -> None:
    g = _gradient_for(photos)
    a = segment(photos, "guided_slic", gradient=g, variant="gradient", n_segments=30)
    b = segment(photos, "guided_slic", gradient=g.flip(-1), variant="gradient", n_segments=30)
    assert not torch.equal(a.labels, b.labels)
    spiky = g.clone()
    spiky[:, 5, 5] = 1000.0  # one outlier squashes every other value of g' to ~0 unless clipped
    c = segment(photos, "guided_slic", gradient=spiky, variant="gradient", n_segments=30)
    d = segment(photos, "guided_slic", gradient=spiky, variant="gradient", n_segments=30, clip_percentile=99.0)
    assert not torch.equal(c.labels, d.labels)


def test_scale_gradient() -> None:
    g = np.array([[1.0, 3.0], [5.0, 101.0]])
    np.testing.assert_allclose(scale_gradient(g), [[0, 2], [4, 100]])
    clipped = scale_gradient(g, clip_percentile=50)  # clip at 4: [1, 3, 4, 4] → [0, 66.7, 100, 100]
    np.testing.assert_allclose(clipped, [[0, 200 / 3], [100, 100]])
    assert not scale_gradient(np.full((3, 3), 2.0)).any()


# --------------------------------------------------------------------------- grouping (spec §1.2)


@pytest.fixture(scope="module")
def segs(photos: torch.Tensor) -> list[Segmentation]:
    return [
        segment(photos, "slic", n_segments=30),
        segment(photos, "quickshift", max_dist=20.0),
        segment(photos, "grid", size=7),
        segment(photos, "random", n_segments=25),
    ]


def _maps(seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_group_properties(segs: list[Segmentation]) -> None:
    for seg in segs:
        for shape in [(2, 64, 64), (2, 3, 64, 64)]:
            a, b = _maps(1, shape), _maps(2, shape)
            for channels in ("joint", "per_channel"):
                ga = group(a, seg, channels=channels)
                torch.testing.assert_close(group(ga, seg, channels=channels), ga)  # idempotent
                # the total is preserved per image (joint) and per image and channel (per_channel / 2-D maps)
                dims = (1, 2, 3) if channels == "joint" and a.ndim == 4 else (-2, -1)
                torch.testing.assert_close(ga.sum(dims), a.sum(dims))
                dist = (group(a, seg, channels=channels) - group(b, seg, channels=channels)).norm()
                assert dist <= (a - b).norm() + 1e-9  # non-expansive
                flat = ga if ga.ndim == 4 else ga.unsqueeze(1)
                # constant on each segment (every channel)
                assert torch.equal(pool(flat, seg, "max"), pool(flat, seg, "min"))


def test_group_joint_and_per_channel_against_the_formula(segs: list[Segmentation]) -> None:
    a = _maps(3, (2, 3, 64, 64))
    for seg in segs[:2]:
        joint, per = group(a, seg, channels="joint"), group(a, seg, channels="per_channel")
        for i in range(2):
            for m in seg.masks(i):
                torch.testing.assert_close(joint[i][:, m], a[i][:, m].mean().expand(3, int(m.sum())))
                torch.testing.assert_close(per[i][:, m], a[i][:, m].mean(1, keepdim=True).expand(-1, int(m.sum())))


@pytest.mark.parametrize("reduce", ["mean", "sum", "max", "min"])
def test_pool_against_a_loop(reduce: str, segs: list[Segmentation]) -> None:
    fn = {"mean": torch.mean, "sum": torch.sum, "max": torch.amax, "min": torch.amin}[reduce]
    a = _maps(4, (2, 3, 64, 64))
    for seg in segs:
        out, out2d = pool(a, seg, reduce), pool(a[:, 0], seg, reduce)
        assert tuple(out.shape) == (2, 3, seg.max_segments)
        for i in range(2):
            k = int(seg.num_segments[i])
            ref = torch.stack([fn(a[i][:, m], dim=1) for m in seg.masks(i)], 1)
            torch.testing.assert_close(out[i][:, :k], ref)
            torch.testing.assert_close(out2d[i][:k], ref[0])
            assert not out[i][:, k:].any()  # padding past num_segments is 0
        painted = paint(out2d, seg)
        assert torch.equal(painted, torch.gather(out2d, 1, seg.labels.flatten(1)).view_as(painted))


# --------------------------------------------------------------------------- Segmentation, segment, resolve_regions


def test_segmentation_validation() -> None:
    with pytest.raises(BadInputError, match="start at 0"):
        Segmentation(torch.tensor([[[1, 2], [2, 1]]]))
    with pytest.raises(BadInputError, match="contiguous"):
        Segmentation(torch.tensor([[[0, 2], [2, 0]]]))
    with pytest.raises(BadInputError, match="integer"):
        Segmentation(torch.zeros(1, 2, 2))
    with pytest.raises(BadInputError, match="integer"):
        Segmentation(torch.zeros(4, dtype=torch.long))
    with pytest.raises(BadInputError):
        Segmentation([[0, 1]])  # type: ignore[arg-type]
    seg = Segmentation.from_labels(np.array([[[5, 5, 9], [7, 7, 9]], [[3, 3, 3], [3, 3, 3]]]))
    assert seg.num_segments.tolist() == [3, 1]
    assert seg.labels[0].tolist() == [[0, 0, 1], [2, 2, 1]]  # canonical: ids by first appearance in raster order
    assert seg.areas.tolist() == [[2, 2, 2], [6, 0, 0]]
    adj = seg.adjacency(0)
    assert adj.tolist() == [[False, True, True], [True, False, True], [True, True, False]]
    assert seg[1].num_segments.tolist() == [1] and seg[1].max_segments == 1


def _canonical_reference(lab: np.ndarray) -> np.ndarray:
    """Ids by first appearance in raster order, by a plain loop over the pixels."""
    seen: dict[int, int] = {}
    out = np.empty(lab.size, dtype=np.int64)
    for j, v in enumerate(lab.ravel().tolist()):
        out[j] = seen.setdefault(v, len(seen))
    return out.reshape(lab.shape)


def _is_canonical(lab: torch.Tensor) -> bool:
    """Every id's first pixel comes after the first pixel of every smaller id."""
    flat = lab.flatten()
    k = int(flat.max()) + 1
    first = [int((flat == i).nonzero()[0]) for i in range(k)]
    return first == sorted(first)


def test_relabel_gives_the_canonical_order() -> None:
    rng = np.random.default_rng(0)
    cases = (rng.integers(-3, 40, (9, 7)), rng.integers(0, 5, (4, 4)).astype(np.uint8) * 3, np.full((2, 2), 7))
    for lab in cases:
        np.testing.assert_array_equal(relabel(lab), _canonical_reference(lab))
        assert relabel(lab).dtype == np.int64
        perm = rng.permutation(100)  # the same partition under other ids gets the same labels
        np.testing.assert_array_equal(relabel(perm[lab - lab.min()]), relabel(lab))
    batch = torch.from_numpy(rng.integers(0, 30, (3, 6, 5)))
    want = np.stack([_canonical_reference(b) for b in batch.numpy()])
    assert torch.equal(relabel_batch(batch), torch.from_numpy(want))
    assert torch.equal(Segmentation.from_labels(batch).labels, torch.from_numpy(want))
    sparse = batch * 1_000_003  # ids far apart: the torch.unique branch
    assert torch.equal(relabel_batch(sparse), torch.from_numpy(want))


def test_segment_errors(photos: torch.Tensor) -> None:
    with pytest.raises(UnknownNameError, match="slic"):
        segment(photos, "slik")
    with pytest.raises(BadParameterError, match="n_segmentz"):
        segment(photos, "slic", n_segmentz=10)
    with pytest.raises(BadInputError, match="to_rgb01"):
        segment((photos - 0.45) / 0.22, "slic")  # a normalised tensor
    nan = photos.clone()
    nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(BadInputError, match="NaN"):
        segment(nan, "slic")
    seg = segment((photos * 255).round().byte().permute(0, 2, 3, 1).numpy(), "grid", size=8)  # uint8 HWC arrays
    assert len(seg) == 2


def test_resolve_regions(photos: torch.Tensor) -> None:
    assert resolve_regions(None, photos) is None
    by_name = resolve_regions("slic", photos, {"n_segments": 25})
    by_obj = resolve_regions(Segmenter("slic", n_segments=25), photos)
    assert torch.equal(by_name.labels, by_obj.labels)
    assert resolve_regions(by_name, photos) is not None
    assert torch.equal(resolve_regions(by_name, photos).labels, by_name.labels)
    with pytest.raises(BadInputError, match="segmentation has"):
        resolve_regions(by_name[:1], photos)
    with pytest.raises(BadInputError, match="segmentation has"):
        resolve_regions(segment(photos[:, :, :32], "grid"), photos)
    with pytest.raises(BadParameterError, match="region_params"):
        resolve_regions(by_name, photos, {"n_segments": 3})
    with pytest.raises(BadParameterError, match="regions must be"):
        resolve_regions(42, photos)  # type: ignore[arg-type]
    with pytest.raises(UnknownNameError):
        Segmenter("nope")

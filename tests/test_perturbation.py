"""The perturbation engine and LIME / RISE / occlusion, checked against independent references: the lime package
(same segmentation and samples), RISE's formula evaluated mask by mask, Captum's ``Occlusion``, sklearn's
``Ridge``, skimage's ``resize``, and perturbed images written out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import spixel
from spixel.attribution import perturbation as P
from spixel.errors import BadInputError, BadParameterError
from spixel.models.adapter import IMAGENET_MEAN
from spixel.regions import pool
from spixel.types import Segmentation


def close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-4, atol_frac: float = 1e-5) -> None:
    a, b = torch.as_tensor(a).double(), torch.as_tensor(b).double()
    atol = atol_frac * float(b.abs().max()) + 1e-12
    assert torch.allclose(a, b, rtol=rtol, atol=atol), f"max abs error {float((a - b).abs().max()):.3g}"


def sharp(model: spixel.ModelAdapter, scale: float = 40.0) -> spixel.ModelAdapter:
    """The tiny model with a steeper classifier, so perturbations move its probabilities visibly."""
    with torch.no_grad():
        model.module.fc.weight.mul_(scale)
    return model


def smooth_rgb(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Smooth random RGB images in [0, 1] (up-sampled noise), ``(n, 3, size, size)``."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 5, 5, generator=g)
    return F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)


def voronoi(n: int, k: int, size: int = 32, seed: int = 0) -> Segmentation:
    """Irregular partitions: each pixel to the nearest of ``k`` random points (``k`` may differ per image)."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    labs = []
    for i in range(n):
        pts = torch.rand(k + i, 2, generator=g) * size
        d = (yy[..., None] - pts[:, 0]) ** 2 + (xx[..., None] - pts[:, 1]) ** 2
        labs.append(d.argmin(-1))
    return Segmentation.from_labels(torch.stack(labs))


def lime_classifier(model: spixel.ModelAdapter):
    """lime's ``classifier_fn``: HWC float images in [0, 1] → our model's softmax probabilities (numpy)."""

    def fn(images: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
        with torch.no_grad():
            return model.module(model.normalize(x)).softmax(-1).double().numpy()

    return fn


# ---------------------------------------------------------------------------------------------- LIME
@pytest.mark.parametrize(("fill", "hide_color"), [("mean", None), ("zero", np.array(IMAGENET_MEAN))])
def test_lime_equals_lime_package_on_the_same_samples(tiny, fill, hide_color):
    from lime.lime_image import LimeImageExplainer

    model = sharp(tiny)
    rgb = smooth_rgb(1)
    x = model.normalize(rgb)
    seg = voronoi(1, 12)
    k = int(seg.num_segments[0])
    n_samples, t = 300, 4
    # the samples lime draws: RandomState(seed).randint(0, 2, S·K), row 0 set to ones
    z = np.random.RandomState(3).randint(0, 2, n_samples * k).reshape(n_samples, k)
    z[0] = 1
    ex = LimeImageExplainer(random_state=3).explain_instance(
        rgb[0].permute(1, 2, 0).double().numpy(),
        lime_classifier(model),
        labels=(t,),
        top_labels=None,
        hide_color=hide_color,
        num_samples=n_samples,
        batch_size=64,
        segmentation_fn=lambda _img: seg.labels[0].numpy(),
        random_seed=0,
    )
    theirs = np.zeros(k)
    for f, w in ex.local_exp[t]:
        theirs[f] = w
    ours = spixel.explain(
        model, x, "lime", t, seed=0, regions=seg, samples=torch.from_numpy(z), fill=fill, batch_size=37
    )
    coef = pool(ours.attribution, seg, "mean")[0, :k]
    assert float(np.abs(theirs).max()) > 1e-3, "the surrogate is degenerate: the test would prove little"
    close(coef, torch.from_numpy(theirs))
    assert math.isclose(ours.meta["intercept"][0], float(ex.intercept[t]), rel_tol=1e-4, abs_tol=1e-7)
    assert math.isclose(ours.meta["score"][0], float(ex.score), rel_tol=1e-4, abs_tol=1e-7)
    assert ours.segmentation is not None and torch.equal(ours.segmentation.labels, seg.labels)


def test_lime_seed_draws_lime_package_samples():
    """``lime(seed=s)`` draws the very samples of ``LimeImageExplainer(random_state=s)`` (torch's CPU generator and
    numpy's legacy RandomState are the same Mersenne Twister and both take the low bit for randint(0, 2))."""
    seg = voronoi(2, 7)
    for seed in (0, 5, 2024):
        z = P.lime_samples(seg, 40, seed)
        for i in range(2):
            k = int(seg.num_segments[i])
            ref = np.random.RandomState(seed).randint(0, 2, 40 * k).reshape(40, k)
            ref[0] = 1
            assert np.array_equal(z[i, :, :k].numpy(), ref.astype(bool))
            assert not z[i, :, k:].any()


@pytest.mark.slow
def test_lime_top5_agrees_with_lime_package_independent_samples(lite0):
    """Real photo, real EfficientNet-Lite0, the same quickshift segmentation, 1000 independent samples each.

    Lite0 runs at 128 px (it is fully convolutional) to keep the ~2000 forwards of this test near a minute on
    2 CPU cores; quickshift with lime's settings gives ~14 regions there."""
    from lime.lime_image import LimeImageExplainer
    from skimage import data

    model = spixel.ModelAdapter(lite0.module, input_size=128, labels=lite0.labels, name="lite0-128")
    x = model.preprocess(data.chelsea())
    t = int(model.predict(x).argmax())
    ours = spixel.explain(model, x, "lime", t, seed=1, n_samples=1000, progress=False)
    seg = ours.segmentation
    k = int(seg.num_segments[0])
    assert k >= 8
    ex = LimeImageExplainer(random_state=2).explain_instance(
        model.to_rgb01(x)[0].permute(1, 2, 0).double().numpy(),
        lime_classifier(model),
        labels=(t,),
        top_labels=None,
        hide_color=None,
        num_samples=1000,
        batch_size=64,
        segmentation_fn=lambda _img: seg.labels[0].numpy(),
        random_seed=0,
    )
    theirs = np.zeros(k)
    for f, w in ex.local_exp[t]:
        theirs[f] = w
    coef = pool(ours.attribution, seg, "mean")[0, :k].numpy()
    top_ours, top_theirs = set(np.argsort(-coef)[:5].tolist()), set(np.argsort(-theirs)[:5].tolist())
    assert len(top_ours & top_theirs) >= 4, (top_ours, top_theirs)


def test_weighted_ridge_equals_sklearn():
    from sklearn.linear_model import Ridge

    g = torch.Generator().manual_seed(0)
    x = (torch.rand(3, 60, 9, generator=g) < 0.5).double()
    x[1, :, 7:] = 0  # a padded image with 7 regions
    y = torch.randn(3, 60, generator=g, dtype=torch.float64)
    w = torch.rand(3, 60, generator=g, dtype=torch.float64)
    coef, intercept, r2 = P.weighted_ridge(x, y, w, alpha=1.0)
    for i, k in enumerate((9, 7, 9)):
        r = Ridge(alpha=1.0, fit_intercept=True).fit(x[i, :, :k].numpy(), y[i].numpy(), sample_weight=w[i].numpy())
        close(coef[i, :k], torch.from_numpy(r.coef_), rtol=1e-9, atol_frac=1e-9)
        assert not coef[i, k:].any()
        assert math.isclose(float(intercept[i]), float(r.intercept_), rel_tol=1e-9, abs_tol=1e-12)
        score = r.score(x[i, :, :k].numpy(), y[i].numpy(), sample_weight=w[i].numpy())
        assert math.isclose(float(r2[i]), score, rel_tol=1e-9, abs_tol=1e-12)


def test_lime_kernel_equals_lime_cosine_distance_kernel():
    from sklearn.metrics import pairwise_distances

    seg = voronoi(1, 10)
    k = int(seg.num_segments[0])
    z = P.lime_samples(seg, 50, 0)
    z[0, 7] = False  # an all-off row: cosine distance 1 by sklearn's convention
    ours = P.lime_kernel(z, torch.tensor([k]), 0.25)[0]
    d = pairwise_distances(z[0, :, :k].numpy().astype(float), np.ones((1, k)), metric="cosine").ravel()
    close(ours, torch.from_numpy(np.sqrt(np.exp(-(d**2) / 0.25**2))), rtol=1e-9, atol_frac=1e-12)


def test_lime_samples_shape_and_first_row():
    seg = voronoi(3, 5)
    z = P.lime_samples(seg, 500, 9)
    assert z.shape == (3, 500, seg.max_segments) and z.dtype == torch.bool
    for i, k in enumerate(seg.num_segments.tolist()):
        assert z[i, 0, :k].all() and not z[i, :, k:].any()
        assert abs(float(z[i, 1:, :k].double().mean()) - 0.5) < 0.05
    assert torch.equal(z, P.lime_samples(seg, 500, 9))
    assert not torch.equal(z, P.lime_samples(seg, 500, 10))


# ---------------------------------------------------------------------------------------------- RISE
@pytest.mark.parametrize(("grid_size", "p1", "fill"), [(4, 0.5, "zero"), (7, 0.3, "zero"), (5, 0.5, 0.7)])
def test_rise_equals_its_formula(tiny, grid_size, p1, fill):
    model = sharp(tiny, 10.0)
    x = torch.randn(2, 3, 30, 32, generator=torch.Generator().manual_seed(2))
    targets = [1, 6]
    n_masks, seed = 23, 5
    e = spixel.explain(
        model, x, "rise", targets, seed=seed, n_masks=n_masks, grid_size=grid_size, p1=p1, fill=fill, batch_size=7
    )
    # the same generator sequence, written out mask by mask
    gen = torch.Generator().manual_seed(seed)
    h, w = x.shape[-2:]
    grid = torch.rand(n_masks, grid_size, grid_size, generator=gen) < p1
    ch, cw = math.ceil(h / grid_size), math.ceil(w / grid_size)
    sh = torch.randint(0, ch, (n_masks,), generator=gen)
    sw = torch.randint(0, cw, (n_masks,), generator=gen)
    base = torch.full_like(x[0], float(fill)) if not isinstance(fill, str) else torch.zeros_like(x[0])
    for i, t in enumerate(targets):
        sal = torch.zeros(h, w, dtype=torch.float64)
        for m in range(n_masks):
            up = F.interpolate(
                grid[m][None, None].float(),
                size=((grid_size + 1) * ch, (grid_size + 1) * cw),
                mode="bilinear",
                align_corners=False,
            )[0, 0]
            mask = up[int(sh[m]) : int(sh[m]) + h, int(sw[m]) : int(sw[m]) + w]
            xm = base + mask * (x[i] - base)
            with torch.no_grad():
                p = model.module(xm[None]).softmax(-1)[0, t]
            sal += float(p) * mask.double()
        sal /= n_masks * p1
        close(e.attribution[i], sal)


def test_rise_masks_equal_skimage_resize_away_from_the_border():
    """eclique/RISE up-samples with skimage ``resize(order=1, mode='reflect')``: identical half-pixel bilinear
    sampling, so our masks equal it except within half a grid cell of the up-sampled mask's border."""
    from skimage.transform import resize

    gen = torch.Generator().manual_seed(0)
    s, h, w = 6, 40, 37
    grid, sh, sw = P.rise_grids(10, s, 0.5, (h, w), gen)
    ours = P.rise_masks(grid, sh, sw, (h, w))
    ch, cw = math.ceil(h / s), math.ceil(w / s)
    uh, uw = (s + 1) * ch, (s + 1) * cw
    bh, bw = math.ceil(uh / s / 2), math.ceil(uw / s / 2)
    differs = 0
    for m in range(10):
        big = resize(grid[m].numpy().astype("float32"), (uh, uw), order=1, mode="reflect", anti_aliasing=False)
        ref = torch.from_numpy(big[int(sh[m]) : int(sh[m]) + h, int(sw[m]) : int(sw[m]) + w])
        rows = torch.arange(h) + sh[m]
        cols = torch.arange(w) + sw[m]
        inner = ((rows >= bh) & (rows < uh - bh)).view(-1, 1) & ((cols >= bw) & (cols < uw - bw)).view(1, -1)
        assert torch.allclose(ours[m][inner], ref.float()[inner], atol=1e-6)
        differs += int(((ours[m] - ref.float()).abs() > 1e-6).sum())
    assert differs > 0  # the documented border difference is real


def test_rise_rejects_mean_fill_and_large_grids(tiny, tiny_x):
    with pytest.raises(BadParameterError, match="mean"):
        spixel.explain(tiny, tiny_x, "rise", 0, seed=0, n_masks=4, fill="mean")
    with pytest.raises(BadParameterError, match="grid_size"):
        spixel.explain(tiny, tiny_x, "rise", 0, seed=0, n_masks=4, grid_size=33)
    with pytest.raises(BadParameterError, match="p1"):
        spixel.explain(tiny, tiny_x, "rise", 0, seed=0, n_masks=4, p1=0.0)


# ---------------------------------------------------------------------------------------------- occlusion
@pytest.mark.parametrize(
    ("window", "stride", "fill", "output"),
    [(8, 5, 0.0, "logit"), (6, 6, 0.5, "logit"), (5, 3, "tensor", "probability"), (32, 1, 0.0, "logit")],
)
def test_occlusion_equals_captum(tiny, tiny_x, window, stride, fill, output):
    from captum.attr import Occlusion

    model = sharp(tiny, 10.0)
    targets = [0, 3, 7]
    if fill == "tensor":
        fill = torch.randn(tiny_x.shape, generator=torch.Generator().manual_seed(4))
    fwd = model.module if output == "logit" else (lambda z: model.module(z).softmax(-1))
    ref = Occlusion(fwd).attribute(
        tiny_x,
        sliding_window_shapes=(3, window, window),
        strides=(3, stride, stride),
        baselines=fill,
        target=targets,
        perturbations_per_eval=16,
    )
    assert torch.allclose(ref[:, 0], ref[:, 2])
    e = spixel.explain(
        model, tiny_x, "occlusion", targets, window=window, stride=stride, fill=fill, output=output, batch_size=13
    )
    close(e.attribution, ref[:, 0], rtol=1e-4, atol_frac=1e-4)
    assert e.segmentation is None


@pytest.mark.parametrize("fill", ["zero", "mean", "blur"])
def test_region_occlusion_by_hand(tiny, tiny_x, fill):
    model = sharp(tiny, 10.0)
    seg = voronoi(3, 6)
    e = spixel.explain(model, tiny_x, "occlusion", [2, 5, 9], regions=seg, fill=fill, batch_size=4)
    assert e.segmentation is seg or torch.equal(e.segmentation.labels, seg.labels)
    for i, t in enumerate([2, 5, 9]):
        xi = tiny_x[i]
        if fill == "zero":
            base = torch.zeros_like(xi)
        elif fill == "blur":
            base = P.gaussian_blur(xi[None])[0]
        else:
            base = torch.zeros_like(xi)
            for k in range(int(seg.num_segments[i])):
                m = seg.labels[i] == k
                base[:, m] = xi[:, m].mean(1, keepdim=True)
        with torch.no_grad():
            f0 = model.module(xi[None])[0, t]
            for k in range(int(seg.num_segments[i])):
                m = seg.labels[i] == k
                xo = torch.where(m, base, xi)
                drop = f0 - model.module(xo[None])[0, t]
                assert torch.allclose(e.attribution[i][m], drop.expand(int(m.sum())), rtol=1e-4, atol=1e-6)


def test_occlusion_parameter_errors(tiny, tiny_x):
    for kw, match in [
        ({"window": 40}, "window"),
        ({"window": 4, "stride": 5}, "stride"),
        ({"output": "x"}, "output"),
        ({"fill": "mean"}, "mean"),
        ({"fill": "purple"}, "fill"),
        ({"region_params": {"size": 4}}, "region_params"),
    ]:
        with pytest.raises(BadParameterError, match=match):
            spixel.explain(tiny, tiny_x, "occlusion", 0, **kw)


# ---------------------------------------------------------------------------------------------- engine
class Recorder(nn.Module):
    """Records every batch it sees; logits = per-image channel sums (so targets pick something real)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return torch.cat([x.sum((2, 3)), x.amax((2, 3))], 1) * self.w


def test_perturbed_images_by_hand_4x4():
    """Keep-vectors over 4 regions of a 4×4 image build exactly the images written out below."""
    rec = Recorder()
    model = spixel.ModelAdapter(rec, name="recorder")
    x = torch.arange(48, dtype=torch.float32).view(1, 3, 4, 4) / 10
    lab = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]])
    seg = Segmentation(lab)
    z = torch.tensor([[1, 1, 1, 1], [1, 0, 1, 0], [0, 0, 0, 1]])
    means = x.view(1, 3, 2, 2, 2, 2).mean((3, 5))  # (1, 3, 2, 2) block means
    rgb = torch.tensor([1.0, 2.0, 3.0])
    for fill, base in [
        ("zero", torch.zeros(1, 3, 4, 4)),
        (-1.5, torch.full((1, 3, 4, 4), -1.5)),
        ("mean", means.repeat_interleave(2, 2).repeat_interleave(2, 3)),
        (rgb.view(3, 1, 1), rgb.view(1, 3, 1, 1).expand(1, 3, 4, 4)),
    ]:
        rec.seen.clear()
        spixel.explain(model, x, "lime", 0, seed=0, regions=seg, samples=z, fill=fill, batch_size=2)
        imgs = torch.cat(rec.seen[1:])  # the first forward is the unperturbed prediction
        assert imgs.shape == (3, 3, 4, 4)
        for s in range(3):
            keep = z[s][lab].bool()
            expected = torch.where(keep, x[0], base[0])
            assert torch.equal(imgs[s], expected), (fill, s)
    # the hand-computed "mean" fill of region 3 of channel 0: pixels 10, 11, 14, 15 → 1.25
    assert math.isclose(float(P.fill_image(x, "mean", seg)[0, 0, 3, 3]), 1.25, rel_tol=1e-6)


def test_occluded_images_by_hand_with_a_window_cut_at_the_border():
    """Occlusion's rows are copies of x with exactly one window filled (the last one cut off by the border),
    in x's memory format; the map is the mean drop over the windows covering each pixel, written out here."""
    rec = Recorder()
    model = spixel.ModelAdapter(rec, name="recorder")
    x = (torch.arange(108, dtype=torch.float32).view(1, 3, 6, 6) / 7).contiguous(memory_format=torch.channels_last)
    fill = torch.full((1, 3, 6, 6), -2.0)
    e = spixel.explain(model, x, "occlusion", 0, window=3, stride=2, fill=fill, output="logit", batch_size=3)
    imgs = rec.seen[1:]  # the first forward is the unperturbed prediction
    assert all(b.is_contiguous(memory_format=torch.channels_last) for b in imgs)
    imgs = torch.cat(imgs)
    starts = [0, 2, 4]  # ceil((6 - 3) / 2) + 1 = 3 windows per axis; the last covers only rows/columns 4-5
    assert imgs.shape == (9, 3, 6, 6)
    drop_sum, count = torch.zeros(6, 6), torch.zeros(6, 6)
    f0 = float(x[0, 0].sum())  # target 0: the channel-0 sum
    for k, (r, c) in enumerate([(r, c) for r in starts for c in starts]):
        expected = x[0].clone()
        expected[:, r : r + 3, c : c + 3] = -2.0
        assert torch.equal(imgs[k], expected), (r, c)
        drop_sum[r : r + 3, c : c + 3] += f0 - float(expected[0].sum())
        count[r : r + 3, c : c + 3] += 1
    close(e.attribution[0], drop_sum / count, rtol=1e-5)


def test_blur_fill_is_rise_gkern_with_zero_padding_and_the_metrics_substrate():
    from scipy.ndimage import gaussian_filter

    from spixel.metrics.fidelity import _substrate

    x = torch.randn(1, 3, 9, 12, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    delta = np.zeros((11, 11))
    delta[5, 5] = 1.0
    k2 = gaussian_filter(delta, 5.0)  # RISE's gkern(11, 5): the Gaussian's tails reflected back into the window
    pad = np.pad(x[0].numpy(), ((0, 0), (5, 5), (5, 5)))
    ref = np.zeros((3, 9, 12))
    for c in range(3):
        for i in range(9):
            for j in range(12):
                ref[c, i, j] = (pad[c, i : i + 11, j : j + 11] * k2).sum()
    close(P.fill_image(x, "blur")[0], torch.from_numpy(ref), rtol=1e-10, atol_frac=1e-12)
    assert torch.equal(P.fill_image(x, "blur"), _substrate(x, "blur"))  # one blur for explainers and metrics


@pytest.mark.parametrize("name", ["lime", "rise", "occlusion"])
def test_batched_equals_per_image_and_batch_size_invariant(tiny, name):
    """Samples of several images share forward passes; results must not depend on the batch or the chunking."""
    model = sharp(tiny, 10.0)
    x = model.normalize(smooth_rgb(3, seed=4))
    seg = voronoi(3, 5, seed=1)  # 5, 6 and 7 regions
    targets = [1, 2, 3]
    kw = {
        "lime": {"n_samples": 40, "regions": seg, "seed": 3},
        "rise": {"n_masks": 30, "grid_size": 4, "seed": 3},
        "occlusion": {"window": 10, "stride": 7},
    }[name]
    batch = spixel.explain(model, x, name, targets, batch_size=11, **kw)
    for bs in (1, 64):
        close(spixel.explain(model, x, name, targets, batch_size=bs, **kw).attribution, batch.attribution)
    for i, t in enumerate(targets):
        one_kw = dict(kw)
        if name == "lime":
            one_kw["regions"] = seg[i]
        one = spixel.explain(model, x[i : i + 1], name, t, batch_size=5, **one_kw)
        close(one.attribution[0], batch.attribution[i])
    if name == "occlusion":
        region = spixel.explain(model, x, name, targets, regions=seg, batch_size=3)
        for i, t in enumerate(targets):
            one = spixel.explain(model, x[i : i + 1], name, t, regions=seg[i], batch_size=64)
            close(one.attribution[0], region.attribution[i])


def test_perturbed_scores_fills_each_forward_with_several_images():
    rec = Recorder()
    model = spixel.ModelAdapter(rec)
    x = torch.randn(3, 3, 8, 8)
    spixel.explain(model, x, "lime", 0, seed=0, n_samples=10, regions="grid", region_params={"size": 4}, batch_size=8)
    sizes = [int(b.shape[0]) for b in rec.seen[1:]]
    assert sizes == [8, 8, 8, 6]  # 30 perturbed images in chunks of 8, mixing images


def test_lime_regions_and_samples_validation(tiny, tiny_x):
    seg = voronoi(3, 4)
    with pytest.raises(BadParameterError, match="samples"):
        spixel.explain(tiny, tiny_x, "lime", 0, seed=0, regions=seg, samples=torch.ones(5, 2))
    with pytest.raises(BadParameterError, match="0/1"):
        spixel.explain(tiny, tiny_x, "lime", 0, seed=0, regions=seg, samples=torch.full((5, 10), 0.5))
    with pytest.raises(BadParameterError, match="regions"):
        P.lime(tiny, tiny_x, 0, seed=0, regions=None)  # explain(regions=None) means "lime's default regions"
    with pytest.raises(BadInputError, match="segmentation"):
        spixel.explain(tiny, tiny_x, "lime", 0, seed=0, regions=seg[0])
    with pytest.raises(BadParameterError, match="kernel_width"):
        spixel.explain(tiny, tiny_x, "lime", 0, seed=0, regions=seg, kernel_width=0)


@pytest.mark.parametrize("name", ["lime", "occlusion"])
def test_degenerate_single_region_and_black_image(tiny, name):
    """One region, an all-black image, a single sample: finite maps, constant on the region."""
    x = tiny.normalize(torch.zeros(2, 3, 16, 16))
    seg = Segmentation(torch.zeros(2, 16, 16, dtype=torch.long))
    kw = {"n_samples": 1, "seed": 0} if name == "lime" else {}
    e = spixel.explain(tiny, x, name, 0, regions=seg, **kw)
    assert torch.isfinite(e.attribution).all()
    assert torch.equal(e.attribution, e.attribution[:, :1, :1].expand_as(e.attribution))
    if name == "lime":
        assert all(math.isfinite(s) for s in e.meta["score"])
        e = spixel.explain(tiny, x, name, 0, regions=seg, n_samples=20, seed=0)
        assert torch.isfinite(e.attribution).all()


def test_lime_records_segmentation_and_meta(tiny, tiny_x):
    e = spixel.explain(tiny, tiny_x, "lime", [0, 1, 2], seed=4, n_samples=8, regions="grid", region_params={"size": 8})
    assert e.segmentation is not None and e.segmentation.num_segments.tolist() == [16, 16, 16]
    assert e.meta["params"]["regions"] == "grid" and e.meta["params"]["region_params"] == {"size": 8}
    assert len(e.meta["score"]) == 3 and len(e.meta["intercept"]) == 3
    # constant on every region
    pooled = pool(e.attribution, e.segmentation, "max")
    assert torch.allclose(pooled, pool(e.attribution, e.segmentation, "min"))


def test_progress_bar_auto_on_off(tiny, tiny_x, capsys, monkeypatch):
    monkeypatch.setattr(P, "AUTO_PROGRESS_SECONDS", 0.0)  # every run now counts as long
    spixel.explain(tiny, tiny_x, "rise", 0, seed=0, n_masks=8, batch_size=4)
    assert "rise" in capsys.readouterr().err
    spixel.explain(tiny, tiny_x, "rise", 0, seed=0, n_masks=8, batch_size=4, progress=False)
    assert "rise" not in capsys.readouterr().err
    monkeypatch.setattr(P, "AUTO_PROGRESS_SECONDS", 1e9)
    spixel.explain(tiny, tiny_x, "occlusion", 0, window=8, stride=8, batch_size=4, progress=True)
    assert "occlusion" in capsys.readouterr().err
    with pytest.raises(BadParameterError, match="alpha"):
        spixel.explain(tiny, tiny_x, "lime", 0, seed=0, regions="grid", alpha=0.0)

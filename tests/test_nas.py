"""NAS — Neuro-Activated Superpixels (spec §3): features against hand computations with ``F.interpolate`` and the
line-10/11 formulas, k-means against ``sklearn.cluster.KMeans``, exact recovery of flat colour patches, Ward's
connectivity, the real EfficientNet-Lite0, the ``regions="nas"`` plumbing (explain, Segmenter, occlusion, XRAI,
``spixel segment``) and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data
from skimage.measure import label as cc_label
from skimage.transform import resize
from torch import nn

import spixel
from spixel.errors import BadParameterError
from spixel.models import ModelAdapter
from spixel.segmentation import Segmenter, resolve_regions, segment
from spixel.segmentation.nas import PAPER_LAYERS, kmeans, nas_features, resolve_layers

# ----------------------------------------------------------------------------------------------- helpers


def _hand_model() -> ModelAdapter:
    """Layer "0": 1×1 conv copying the 3 channels (16×16); "1": 4×4 average pool; "2": 1×1 conv 3 → 40 with
    seeded weights (4×4, so 16 positions < 40 channels)."""
    net = nn.Sequential(nn.Conv2d(3, 3, 1), nn.AvgPool2d(4), nn.Conv2d(3, 40, 1))
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        net[0].weight.copy_(torch.eye(3).view(3, 3, 1, 1))
        net[0].bias.zero_()
        net[2].weight.copy_(torch.randn(40, 3, 1, 1, generator=g))
        net[2].bias.copy_(torch.randn(40, generator=g))
    return ModelAdapter(net.eval(), input_size=16, resize=16, name="hand")


def _by_hand(x: torch.Tensor, size: tuple[int, int], scale: str | None, weights) -> torch.Tensor:
    """Spec §3.1 lines 1–12 for the hand model, written out independently of spixel."""
    net = _hand_model().module
    a0 = x.clone()  # identity conv
    a2 = torch.einsum("oc,nchw->nohw", net[2].weight[:, :, 0, 0], F.avg_pool2d(x, 4)) + net[2].bias.view(1, -1, 1, 1)
    out = []
    for a in (a0, a2):
        h, w = a.shape[-2:]
        if (h, w) != size:
            a = F.interpolate(a, size=size, mode="bicubic", align_corners=False, antialias=h > size[0] or w > size[1])
        if scale == "std":
            a = a / (a.reshape(len(a), -1).std(1, unbiased=False).view(-1, 1, 1, 1) + 1e-8)
        elif scale == "zscore":
            m = a.mean((2, 3), keepdim=True)
            s = ((a - m) ** 2).mean((2, 3), keepdim=True).sqrt()
            a = (a - m) / (s + 1e-8)
        elif scale == "l2":
            a = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-8)
        out.append(a)
    if weights == "sqrt":
        ws = [1 / math.sqrt(3), 1 / math.sqrt(40)]
    else:
        ws = [1.0, 1.0] if weights == "uniform" else list(weights)
    f = torch.cat([wl * a for wl, a in zip(ws, out, strict=True)], 1)
    return f.flatten(2).transpose(1, 2)


def _colour_model(seed: int = 0) -> ModelAdapter:
    """Pixel-wise linear map of the colour (two 1×1 convs, no non-linearity): distinct colours → distinct features."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 8, 1), nn.Conv2d(8, 6, 1))
    return ModelAdapter(net.eval(), input_size=32, resize=32, name="colour")


def _quadrants(h: int = 32, w: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """An image of 4 flat colour quadrants (1, 3, h, w) and its quadrant ids (h, w)."""
    colours = torch.tensor([[0.9, 0.1, 0.1], [0.1, 0.8, 0.2], [0.2, 0.2, 0.9], [0.95, 0.9, 0.2]])
    q = (torch.arange(h).view(-1, 1) >= h // 2).long() * 2 + (torch.arange(w).view(1, -1) >= w // 2).long()
    return colours[q].permute(2, 0, 1).unsqueeze(0), q


def _same_partition(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two label maps are equal up to a renaming of the ids (a bijection)."""
    pairs = torch.unique(torch.stack([a.flatten(), b.flatten()]), dim=1)
    return pairs.shape[1] == len(torch.unique(a)) == len(torch.unique(b))


def _components(lab: np.ndarray) -> int:
    return int(cc_label(lab + 1, background=0, connectivity=1).max())


def _hw(out) -> tuple:
    return tuple(out.shape[-2:]) if isinstance(out, torch.Tensor) and out.ndim == 4 else ()


def _untouched(module: nn.Module) -> None:
    for name, m in module.named_modules():
        assert not m._forward_hooks and not m._forward_pre_hooks, name


@pytest.fixture(scope="module")
def chelsea_small() -> torch.Tensor:
    img = resize(data.chelsea(), (48, 48), anti_aliasing=True)
    return torch.from_numpy(img).permute(2, 0, 1).unsqueeze(0).float().clamp(0, 1)


@pytest.fixture(scope="module")
def toy() -> ModelAdapter:
    """A small strided CNN (48 → 48, 24, 12) with seeded weights."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),
    )
    return ModelAdapter(net.eval(), input_size=48, resize=48, name="toy")


# ----------------------------------------------------------------------------------------------- features


@pytest.mark.parametrize("scale", ["std", "zscore", "l2", None])
@pytest.mark.parametrize("weights", ["sqrt", "uniform", [0.5, 2.0]])
def test_features_match_the_hand_computation(scale, weights) -> None:
    m = _hand_model()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    feats, hw, names = nas_features(m, x, layers=["0", "2"], scale=scale, weights=weights)
    assert hw == (16, 16) and names == ["0", "2"]  # default: the largest layer's size
    expected = _by_hand(x, (16, 16), scale, weights)
    assert feats.shape == (2, 256, 43)
    torch.testing.assert_close(feats, expected, rtol=1e-4, atol=1e-5)


def test_features_downsampled_out_size_and_auto_layers() -> None:
    m = _hand_model()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    feats, hw, names = nas_features(m, x, out_size=(8, 6))
    assert names == ["0", "2"]  # the last module at 16×16 and at 4×4 ("2" finishes after the pool "1")
    assert hw == (8, 6)
    torch.testing.assert_close(feats, _by_hand(x, (8, 6), "std", "sqrt"), rtol=1e-4, atol=1e-5)
    # batch_size only chunks the forward passes
    torch.testing.assert_close(nas_features(m, x, out_size=(8, 6), batch_size=1)[0], feats)


@pytest.mark.parametrize("scale", ["std", "zscore", "l2", None])
def test_compressed_features_keep_all_pairwise_distances(scale) -> None:
    m = _hand_model()
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    full, _, _ = nas_features(m, x, scale=scale)
    small, _, _ = nas_features(m, x, scale=scale, compress=True)
    assert small.shape == (1, 256, 3 + 16)  # the 40-channel layer has 4×4 = 16 positions
    d_full = torch.cdist(full[0].double(), full[0].double())
    d_small = torch.cdist(small[0].double(), small[0].double())
    torch.testing.assert_close(d_small, d_full, rtol=1e-4, atol=1e-5 * float(d_full.max()))


def test_paper_layers_for_torchvision_resnet18_and_vgg16() -> None:
    import torchvision

    assert PAPER_LAYERS["resnet18"] == ("maxpool", "layer1", "layer2", "layer3", "layer4")
    torch.manual_seed(0)
    m = ModelAdapter(torchvision.models.resnet18(weights=None).eval(), input_size=64, resize=64, name="resnet18")
    x = torch.randn(1, 3, 64, 64)
    feats, hw, names = nas_features(m, x)
    assert names == list(PAPER_LAYERS["resnet18"])
    assert hw == (16, 16) and feats.shape == (1, 256, 64 + 64 + 128 + 256 + 512)  # Σ C = 1024 (spec)
    with torch.device("meta"):  # the architecture only, no weights
        vgg = torchvision.models.vgg16(weights=None)
    mods = dict(vgg.named_modules())
    va = ModelAdapter(vgg, name="vgg16")
    assert resolve_layers(va, None, torch.empty(1, 3, 224, 224)) == list(PAPER_LAYERS["vgg16"])
    convs = [mods[n] for n in PAPER_LAYERS["vgg16"]]  # conv1_2 … conv5_3, before their ReLU
    assert all(isinstance(c, nn.Conv2d) for c in convs)
    assert [c.out_channels for c in convs] == [64, 128, 256, 512, 512]


# ----------------------------------------------------------------------------------------------- k-means


def _toy_features(toy: ModelAdapter, rgb01: torch.Tensor) -> torch.Tensor:
    return nas_features(toy, toy.normalize(rgb01))[0]


@pytest.mark.parametrize("tol", [0.0, 1e-4])
def test_kmeans_matches_sklearn_from_the_same_start(toy, chelsea_small, tol) -> None:
    from sklearn.cluster import KMeans

    X = _toy_features(toy, chelsea_small)[0].double()
    k = 6
    start = X[np.random.default_rng(0).choice(X.shape[0], k, replace=False)].numpy()
    ref = KMeans(k, init=start, n_init=1, max_iter=300, tol=tol, algorithm="lloyd").fit(X.numpy())
    lab, inertia, centres = kmeans(X[None], k, init=torch.from_numpy(start), max_iter=300, tol=tol)
    np.testing.assert_array_equal(lab[0].numpy(), ref.labels_)
    assert abs(float(inertia[0]) - ref.inertia_) <= 1e-4 * ref.inertia_
    np.testing.assert_allclose(centres[0].numpy(), ref.cluster_centers_, rtol=1e-6, atol=1e-8)


def test_kmeans_restarts_reach_sklearn_inertia(toy, chelsea_small) -> None:
    from sklearn.cluster import KMeans

    X = _toy_features(toy, chelsea_small)[0]
    ref = KMeans(6, n_init=10, random_state=0).fit(X.double().numpy()).inertia_
    _, inertia, _ = kmeans(X[None], 6, n_init=10, seed=0)
    assert abs(float(inertia[0]) - ref) <= 0.01 * ref
    # the inertia really is the sum of squared distances to the assigned centres
    lab, inertia1, centres = kmeans(X[None], 6, n_init=1, seed=5)
    direct = ((X - centres[0][lab[0]]) ** 2).sum()
    torch.testing.assert_close(inertia1[0], direct, rtol=1e-4, atol=1e-4)


def test_kmeans_batch_equals_per_image_and_is_seeded(toy, chelsea_small) -> None:
    other = torch.flip(chelsea_small, dims=[3]).roll(7, dims=2)
    feats = _toy_features(toy, torch.cat([chelsea_small, other]))
    lab, inertia, _ = kmeans(feats, 5, n_init=3, seed=2)
    for i in range(2):
        li, ii, _ = kmeans(feats[i : i + 1], 5, n_init=3, seed=2)
        # the same clusters; the inertia's float sum may round differently with the batch's shape and threads
        assert torch.equal(li[0], lab[i])
        torch.testing.assert_close(ii[0], inertia[i], rtol=1e-6, atol=0)
    assert torch.equal(kmeans(feats, 5, n_init=3, seed=2)[0], lab)


# ----------------------------------------------------------------------------------------------- segmenter


@pytest.mark.parametrize("method", ["kmeans", "ward"])
def test_flat_colour_patches_are_recovered_exactly(method) -> None:
    img, quadrants = _quadrants()
    seg = segment(img, "nas", model=_colour_model(), n_segments=4, method=method, n_init=2)
    assert seg.labels.shape == (1, 32, 32)
    assert seg.num_segments.tolist() == [4]
    assert _same_partition(seg.labels[0], quadrants)
    assert seg.meta["layers"] == ["1"] and seg.meta["out_size"] == [32, 32]


def test_ward_clusters_and_connected_regions_are_contiguous(toy, chelsea_small) -> None:
    big = F.interpolate(chelsea_small, size=(64, 64), mode="bilinear", align_corners=False).clamp(0, 1)
    ward = segment(big, "nas", model=toy, n_segments=7, method="ward", out_size=24)
    lab = ward.labels[0].numpy()
    assert int(ward.num_segments[0]) == 7
    assert _components(lab) == 7  # every Ward cluster is one 4-connected region (grid connectivity)
    km = segment(big, "nas", model=toy, n_segments=5, n_init=2)
    con = segment(big, "nas", model=toy, n_segments=5, n_init=2, connected=True)
    assert int(km.num_segments[0]) <= 5
    assert _components(con.labels[0].numpy()) == int(con.num_segments[0]) >= int(km.num_segments[0])
    # connected=True only splits the k-means clusters into their components
    pairs = torch.unique(torch.stack([con.labels[0].flatten(), km.labels[0].flatten()]), dim=1)
    assert len(torch.unique(pairs[0])) == pairs.shape[1]


def test_labels_are_nearest_upsampled_from_the_output_grid(toy, chelsea_small) -> None:
    seg = segment(chelsea_small, "nas", model=toy, n_segments=4, out_size=12, n_init=2)
    lab = seg.labels[0]
    assert torch.equal(lab, lab[::4, ::4].repeat_interleave(4, 0).repeat_interleave(4, 1))  # 12 → 48: 4×4 blocks


def test_model_is_left_exactly_as_found() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(inplace=True), nn.MaxPool2d(2))
    net[1].running_mean.fill_(0.3)
    net.train()
    net[0].weight.requires_grad_(False)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    img, _ = _quadrants(16, 16)
    segment(img, "nas", model=net, n_segments=3, n_init=1)
    assert net.training and net[1].training
    assert not net[0].weight.requires_grad and net[0].bias.requires_grad
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k  # eval mode inside: the BatchNorm statistics did not move
    _untouched(net)
    with pytest.raises(BadParameterError):  # hooks are removed on errors too
        segment(img, "nas", model=net, layers=["0", "0"])
    with pytest.raises(BadParameterError, match="runs more than once"):
        shared = nn.ReLU()
        twice = nn.Sequential(nn.Conv2d(3, 3, 1), shared, shared)
        segment(img, "nas", model=twice, layers=["1"])
    _untouched(twice)


def test_efficientnet_lite0_on_a_photo(lite0) -> None:
    x = lite0.preprocess(data.chelsea())
    # independent record of every module's output resolution and call count
    res: dict[str, list] = {}
    hooks = [
        m.register_forward_hook(lambda _m, _i, o, n=n: res.setdefault(n, []).append(_hw(o)))
        for n, m in lite0.module.named_modules()
        if n
    ]
    try:
        with torch.no_grad():
            lite0.module(x)
    finally:
        for h in hooks:
            h.remove()
    once = {n: r[0] for n, r in res.items() if len(r) == 1 and len(r[0]) == 2 and r[0][0] * r[0][1] > 1}
    scales = set(once.values())
    training = lite0.module.training
    kw = {"n_segments": 8, "out_size": 28, "n_init": 3}
    seg = segment(lite0.to_rgb01(x), "nas", model=lite0, **kw)
    layers = seg.meta["layers"]
    assert sorted(once[n] for n in layers) == sorted(scales)  # one layer per resolution
    assert len(layers) == len(scales) == 5  # 112, 56, 28, 14, 7
    order = list(once)
    for n in layers:  # the last module to finish at that resolution
        assert not [o for o in order[order.index(n) + 1 :] if once[o] == once[n]]
    assert seg.labels.shape == (1, 224, 224) and 2 <= int(seg.num_segments[0]) <= 8
    assert seg.meta["params"]["model"] == "efficientnet_lite0"
    assert torch.equal(segment(lite0.to_rgb01(x), "nas", model=lite0, **kw).labels, seg.labels)  # seeded
    segment(lite0.to_rgb01(x), "nas", model=lite0, **{**kw, "seed": 1})  # another seed runs (may differ)
    assert lite0.module.training == training
    _untouched(lite0.module)


# ----------------------------------------------------------------------------------------------- plumbing


def test_explain_with_nas_regions(lite0) -> None:
    x = lite0.preprocess(data.chelsea())
    e = spixel.explain(lite0, x, "saliency", regions="nas", region_params={"n_segments": 6, "out_size": 28})
    seg = e.segmentation
    assert seg is not None and int(seg.num_segments.max()) <= 6
    for i in range(len(seg)):  # constant inside every region
        for k in range(int(seg.num_segments[i])):
            v = e.attribution[i][seg.labels[i] == k]
            assert float(v.max() - v.min()) <= 1e-6 * max(1.0, float(v.abs().max()))
    assert e.meta["regions"] == "nas" and e.meta["region_params"]["model"] == "efficientnet_lite0"
    _untouched(lite0.module)


def test_segmenter_objects_and_region_methods_get_the_model(tiny) -> None:
    x = tiny.preprocess(data.chelsea())
    s = Segmenter("nas", n_segments=4, n_init=2)
    seg = s(tiny.to_rgb01(x), model=tiny)
    assert int(seg.num_segments[0]) <= 4
    assert torch.equal(resolve_regions(s, tiny.to_rgb01(x), model=tiny).labels, seg.labels)
    assert torch.equal(
        resolve_regions("nas", tiny.to_rgb01(x), {"n_segments": 4, "n_init": 2}, model=tiny).labels, seg.labels
    )
    with pytest.raises(BadParameterError, match="needs the model"):
        s(tiny.to_rgb01(x))
    occ = spixel.explain(tiny, x, "occlusion", regions=s)
    assert torch.equal(occ.segmentation.labels, seg.labels)
    occ2 = spixel.explain(tiny, x, "occlusion", regions="nas", region_params={"n_segments": 4, "n_init": 2})
    assert torch.equal(occ2.segmentation.labels, seg.labels)
    if "xrai" in spixel.list_methods():
        xr = spixel.explain(tiny, x, "xrai", regions=s, n_steps=4)
        assert xr.attribution.shape == (1, 32, 32)


# ----------------------------------------------------------------------------------------------- bad input


def test_bad_input(toy, chelsea_small) -> None:
    with pytest.raises(BadParameterError, match=r"region_params=\{'model': m\}.*regions='nas'"):
        segment(chelsea_small, "nas")
    bad = [
        ({"n_segments": 1}, "n_segments"),
        ({"n_segments": 2.5}, "n_segments"),
        ({"layers": ["4", "nope"]}, r"toy has no layer 'nope'"),
        ({"layers": []}, "layers"),
        ({"method": "spectral"}, "kmeans, ward"),
        ({"scale": "minmax"}, "scale"),
        ({"weights": "cubic"}, "weights"),
        ({"weights": [1.0]}, "1 values for 3 layers"),
        ({"out_size": 0}, "out_size"),
        ({"out_size": (4, 4, 4)}, "out_size"),
        ({"connected": "yes"}, "connected"),
        ({"n_init": 0}, "n_init"),
        ({"max_iter": 0}, "max_iter"),
        ({"batch_size": 0}, "batch_size"),
        ({"seed": -1}, "seed"),
    ]
    for kw, pattern in bad:
        with pytest.raises(BadParameterError, match=pattern):
            segment(chelsea_small, "nas", model=toy, **kw)
    with pytest.raises(BadParameterError, match=r"torch\.nn\.Module"):
        segment(chelsea_small, "nas", model="efficientnet_lite0")
    _untouched(toy.module)

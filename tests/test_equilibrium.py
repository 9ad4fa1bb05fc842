"""AE — Attribution Equilibrium (spec §5): per-layer rules against hand-written loops over the spec's formulas,
the residual-block rule (§5.3 [CODE]) against a hand composition of the layer rules, conservation, the explainer's
contract on VGG-style nets and ResNets, and refusals of networks outside its scope."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import spixel
from conftest import conv_taps, random_bn_stats
from spixel.attribution import equilibrium as ae
from spixel.errors import BadParameterError
from spixel.registry import METHODS
from spixel.train.nets import BasicBlock, build_net, cam_layer, net_config


# ---------------------------------------------------------------------------------------------- references
def _ref_rule(inp: Tensor, rel: Tensor, weight: Tensor, conv: nn.Conv2d) -> Tensor:
    """``out_j = Σ_k inp_j w_jk rel_k / Σ_j' inp_j' w_j'k`` with loops; a share with a zero denominator is dropped."""
    cin, h, w = inp.shape
    out = torch.zeros_like(inp)
    for oy, ox, taps in conv_taps(conv, h, w):
        for co in range(weight.shape[0]):
            if rel[co, oy, ox] == 0:
                continue
            z = sum(inp[ci, iy, ix] * weight[co, ci, ky, kx] for ci in range(cin) for ky, kx, iy, ix in taps)
            if z == 0:
                continue
            for ci in range(cin):
                for ky, kx, iy, ix in taps:
                    out[ci, iy, ix] += inp[ci, iy, ix] * weight[co, ci, ky, kx] * rel[co, oy, ox] / z
    return out


def _ref_ae_terms(x: Tensor, rel: Tensor, conv: nn.Conv2d, r: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Spec §5.2 items 1–5 (and 7 for 1×1 kernels) for one sample, straight from the formulas."""
    pos, neg = rel.clamp(min=0), rel.clamp(max=0)
    rp = pos / pos.sum() if pos.sum() != 0 else pos
    rn = neg / neg.sum().abs() if neg.sum() != 0 else neg
    wabs = conv.weight.detach().double().abs()
    one_by_one = conv.kernel_size == (1, 1)
    c1 = _ref_rule(x, (1.0 if one_by_one else r) * rp, wabs, conv) + _ref_rule(x, rn, wabs, conv)
    act = (x > 0).double()
    a = _ref_rule(act, rp, wabs, conv)
    b = _ref_rule(1 - act, rn, wabs, conv)
    if one_by_one:
        return c1, c1, a, b
    nz = c1 != 0
    shifted = c1.clone()
    shifted[nz] -= 1.0 / int(nz.sum())
    return c1, shifted, a, b


def _ref_zb(x: Tensor, rel: Tensor, conv: nn.Conv2d) -> Tensor:
    """The z^B rule of spec §5.3 for one sample with loops."""
    w = conv.weight.detach().double()
    wp, wn = w.clamp(min=0), w.clamp(max=0)
    lo, hi = float(x.min()), float(x.max())
    cin, h, wd = x.shape
    out = torch.zeros_like(x)
    for oy, ox, taps in conv_taps(conv, h, wd):
        for co in range(w.shape[0]):

            def share(ci, ky, kx, iy, ix, co=co):
                return x[ci, iy, ix] * w[co, ci, ky, kx] - lo * wp[co, ci, ky, kx] - hi * wn[co, ci, ky, kx]

            z = sum(share(ci, *t) for ci in range(cin) for t in taps)
            for ci in range(cin):
                for t in taps:
                    out[ci, t[2], t[3]] += share(ci, *t) * rel[co, oy, ox] / z
    return out


def _relu_like(shape: tuple[int, ...], seed: int) -> Tensor:
    """Non-negative activations with many exact zeros, and a zero block (receptive fields without active inputs)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64).clamp(min=0)
    x[..., :2, :2] = 0
    return x


def _signed(shape: tuple[int, ...], seed: int) -> Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _conv(cin: int, cout: int, k: int, seed: int = 0, **kw) -> nn.Conv2d:
    torch.manual_seed(seed)
    return nn.Conv2d(cin, cout, k, bias=True, **kw).double()


# ---------------------------------------------------------------------------------------------- layer rules
@pytest.mark.parametrize(
    "kw", [{"padding": 1}, {"padding": 0}, {"stride": 2, "padding": 1}, {"dilation": 2, "padding": 2}]
)
@pytest.mark.parametrize("r", [1.0, 1.5, 2.0])
def test_hidden_conv_rule_matches_the_spec_formulas(kw, r):
    conv = _conv(2, 3, 3, **kw)
    x = _relu_like((2, 2, 5, 5), seed=1)
    h = conv(x).shape[-1]
    rel = _signed((2, 3, h, h), seed=2)
    terms = ae.ae_conv_terms(x, rel, conv, r)
    for i in range(2):
        ref = _ref_ae_terms(x[i], rel[i], conv, r)
        for got, want, what in zip(terms, ref, ("C1", "C1 shifted", "A", "B"), strict=True):
            assert torch.allclose(got[i], want, atol=1e-10), what
        assert torch.allclose(ae.ae_conv_rule(x, rel, conv, r)[i], ref[1] + ref[2] + ref[3], atol=1e-10)


def test_one_by_one_conv_branch_matches_the_spec():
    conv = _conv(4, 3, 1)
    x = _relu_like((2, 4, 4, 4), seed=3)
    rel = _signed((2, 3, 4, 4), seed=4)
    terms = ae.ae_conv_terms(x, rel, conv, ratio=2.0)  # the ratio plays no part (spec §5.2 item 7)
    assert torch.equal(terms.shifted, terms.c1)
    for i in range(2):
        ref = _ref_ae_terms(x[i], rel[i], conv, r=2.0)
        for got, want in zip(terms, ref, strict=True):
            assert torch.allclose(got[i], want, atol=1e-10)


@pytest.mark.parametrize("kw", [{"padding": 1}, {"stride": 2, "padding": 0}])
def test_zb_rule_matches_the_spec_and_conserves(kw):
    conv = _conv(3, 4, 3, **kw)
    x = _signed((2, 3, 6, 6), seed=5)
    h = conv(x).shape[-1]
    rel = _signed((2, 4, h, h), seed=6)
    got = ae.zb_rule(x, rel, conv)
    for i in range(2):
        assert torch.allclose(got[i], _ref_zb(x[i], rel[i], conv), atol=1e-10)
    # z^B conserves wherever Z ≠ 0 (with a stride of 2 and no padding the last row/column of 6×6 is never read)
    assert torch.allclose(got.flatten(1).sum(1), rel.flatten(1).sum(1), atol=1e-10)


def test_max_pool_sends_everything_to_the_arg_max():
    x = torch.randperm(32, generator=torch.Generator().manual_seed(0)).double().view(2, 1, 4, 4) - 8  # no ties
    rel = _signed((2, 1, 2, 2), seed=7)
    got = ae.pool_rule(x, rel, nn.MaxPool2d(2))
    want = torch.zeros_like(x)
    for n, oy, ox in itertools.product(range(2), range(2), range(2)):
        win = x[n, 0, 2 * oy : 2 * oy + 2, 2 * ox : 2 * ox + 2]
        iy, ix = divmod(int(win.argmax()), 2)
        want[n, 0, 2 * oy + iy, 2 * ox + ix] = rel[n, 0, oy, ox]
    assert torch.allclose(got, want, atol=1e-12)


def test_avg_pool_shares_in_proportion_to_the_positive_input():
    x = _signed((1, 2, 4, 4), seed=8)
    rel = _signed((1, 2, 2, 2), seed=9)
    got = ae.pool_rule(x, rel, nn.AvgPool2d(2))
    xp = x.clamp(min=0) + 1e-9
    want = torch.zeros_like(x)
    for c, oy, ox in itertools.product(range(2), range(2), range(2)):
        sl = (0, c, slice(2 * oy, 2 * oy + 2), slice(2 * ox, 2 * ox + 2))
        want[sl] = xp[sl] * rel[0, c, oy, ox] / xp[sl].sum()
    assert torch.allclose(got, want, atol=1e-12)
    assert torch.allclose(ae.pool_rule(x, rel, nn.AdaptiveAvgPool2d(2)), want, atol=1e-12)


def test_initial_relevance_is_per_channel_and_normalised_by_the_absolute_sum():
    a, g = _signed((2, 3, 4, 4), seed=10).clamp(min=0), _signed((2, 3, 4, 4), seed=11)
    got = ae.initial_relevance(a, g)
    for i in range(2):
        r = torch.stack([a[i, k] * g[i, k].mean() for k in range(3)])
        assert torch.allclose(got[i], r / abs(float(r.sum())), atol=1e-12)
        assert math.isclose(abs(float(got[i].sum())), 1.0, rel_tol=1e-12)


# ---------------------------------------------------------------------------------------------- conservation
def _checkerboard(shape: tuple[int, ...], seed: int) -> Tensor:
    """Positive values on one colour of a checkerboard, 0 on the other: every 2×2 (or larger) window of every
    channel holds active and inactive inputs, so no AE denominator vanishes."""
    h, w = shape[-2:]
    board = ((torch.arange(h).view(-1, 1) + torch.arange(w)) % 2 == 0).double()
    return (_signed(shape, seed).abs() + 0.1) * board


@pytest.mark.parametrize("padding", [0, 1])
@pytest.mark.parametrize("r", [1.0, 1.5, 2.0])
def test_hidden_conv_sums_are_exact_when_every_window_has_active_and_inactive_inputs(padding, r):
    conv = _conv(4, 5, 3, padding=padding)
    x = _checkerboard((3, 4, 7, 7), seed=12)
    h = conv(x).shape[-1]
    rel = _signed((3, 5, h, h), seed=13)
    t = ae.ae_conv_terms(x, rel, conv, r)
    s = {k: getattr(t, k).flatten(1).sum(1) for k in ("c1", "shifted", "active", "inactive")}
    for name, want in (("c1", r - 1), ("shifted", r - 2), ("active", 1.0), ("inactive", -1.0)):
        assert torch.allclose(s[name], torch.full((3,), want, dtype=torch.float64), atol=1e-12), name
    assert torch.allclose(t.total.flatten(1).sum(1), torch.full((3,), r - 2, dtype=torch.float64), atol=1e-12)


def test_inactive_term_is_dropped_where_no_window_has_an_inactive_input():
    """The documented limit of the sums: with every input active, B has nowhere to go (0/0 := 0)."""
    conv = _conv(2, 3, 3, padding=1)
    x = _signed((1, 2, 5, 5), seed=14).abs() + 0.1
    t = ae.ae_conv_terms(x, _signed((1, 3, 5, 5), seed=15), conv, 1.5)
    assert torch.equal(t.inactive, torch.zeros_like(x))
    assert math.isclose(float(t.active.sum()), 1.0, rel_tol=1e-12)
    assert math.isclose(float(t.total.sum()), 1.5 - 1, rel_tol=1e-12)


def test_empty_section_gives_zeros_not_nan():
    conv = _conv(2, 3, 3, padding=1)
    x = _relu_like((1, 2, 5, 5), seed=16)
    t = ae.ae_conv_terms(x, _signed((1, 3, 5, 5), seed=17).abs(), conv, 2.0)  # no negative relevance
    assert torch.isfinite(t.total).all()
    assert torch.equal(t.inactive, torch.zeros_like(x))


def _receptive_fields_mixed(model: nn.Module, x: Tensor) -> bool:
    """Independent check of the precondition of exact sums: every receptive field of every hidden conv's input
    (padding left out) holds an active (> 0) and an inactive (≤ 0) input. Shortcut convs are not traversed."""
    inputs: list[tuple[nn.Conv2d, Tensor]] = []
    convs = [
        m
        for n, m in model.named_modules()
        if isinstance(m, nn.Conv2d) and "downsample" not in n and "shortcut" not in n
    ][1:]
    hooks = [m.register_forward_pre_hook(lambda m, i: inputs.append((m, i[0].detach()))) for m in convs]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    ok = True
    for m, xi in inputs:
        args = {"kernel_size": m.kernel_size, "padding": m.padding, "stride": m.stride, "dilation": m.dilation}
        active = F.unfold((xi > 0).float(), **args).sum(1)
        inactive = F.unfold((xi <= 0).float(), **args).sum(1)
        ok &= bool((active > 0).all() and (inactive > 0).all())
    return ok


@pytest.mark.parametrize("r", [1.0, 1.5, 2.0])
def test_map_of_a_vgg_style_net_sums_to_r_minus_2(tiny, tiny_x, r):
    """Spec §5.4: final Σ R = r − 2 — exact once every hidden conv's receptive fields mix active and inactive
    inputs (checked independently); pools, BatchNorm, ReLU and z^B conserve."""
    assert _receptive_fields_mixed(tiny.module, tiny_x), "precondition of exact sums fails for this input"
    e = ae.attribution_equilibrium(tiny, tiny_x, [0, 3, 7], ratio=r)
    assert torch.allclose(e.raw.flatten(1).sum(1), torch.full((3,), r - 2.0), atol=1e-5)
    assert torch.allclose(e.attribution.flatten(1).sum(1), torch.full((3,), r - 2.0), atol=1e-5)


# ---------------------------------------------------------------------------------------------- residual blocks
def _block(kind: str, seed: int) -> nn.Module:
    """A residual block in float64, eval mode, seeded weights, random BN; ``cin`` 4 → 6 with stride 2 (so the
    shortcut is a 1×1 conv + BN), ``basic-id``: 6 → 6, identity shortcut."""
    from torchvision.models.resnet import BasicBlock as TVBasic
    from torchvision.models.resnet import Bottleneck as TVBottleneck

    torch.manual_seed(seed)

    def down(cin: int, cout: int) -> nn.Module:
        return nn.Sequential(nn.Conv2d(cin, cout, 1, stride=2, bias=False), nn.BatchNorm2d(cout))

    block = {
        "spixel": lambda: BasicBlock(4, 6, stride=2),
        "spixel-id": lambda: BasicBlock(6, 6),
        "tv-basic": lambda: TVBasic(4, 6, stride=2, downsample=down(4, 6)),
        "tv-bottleneck": lambda: TVBottleneck(4, 2, stride=2, downsample=down(4, 8)),
    }[kind]()
    _randomise_bn(block)
    return block.double().eval()


def _cin(block: nn.Module) -> int:
    return block.conv1.in_channels


def _branch_by_hand(block: nn.Module, x: Tensor, rel: Tensor, r: float) -> Tensor:
    """The released rule written out (§5.3 [CODE]): a plain forward of the branch records the layer inputs, then
    ``rel / 2`` goes back bn_last → conv_last → (ReLU) → … → bn1 → conv1 with the per-layer rules, times 2."""
    convs = [block.conv1, block.conv2] + ([block.conv3] if hasattr(block, "conv3") else [])
    bns = [block.bn1, block.bn2] + ([block.bn3] if hasattr(block, "bn3") else [])
    conv_in, bn_in, a = [], [], x
    with torch.no_grad():
        for conv, bn in zip(convs, bns, strict=True):
            conv_in.append(a)
            bn_in.append(conv(a))
            a = F.relu(bn(bn_in[-1]))
    out = rel / 2
    for conv, xc, xb in reversed(list(zip(convs, conv_in, bn_in, strict=True))):
        out = ae.batchnorm_rule(xb, out)
        out = ae.ae_conv_rule(xc, out, conv, r)
    return 2 * out


@pytest.mark.parametrize("kind", ["spixel", "spixel-id", "tv-basic", "tv-bottleneck"])
@pytest.mark.parametrize("r", [1.0, 2.0])
def test_residual_rule_is_the_branch_rules_composed_by_hand(kind, r):
    block = _block(kind, seed=20)
    torch.manual_seed(21)
    stem = nn.Conv2d(3, _cin(block), 3, padding=1).double()
    net = nn.Sequential(stem, nn.ReLU(), block)
    img = _signed((2, 3, 8, 8), seed=22)
    a0 = F.relu(stem(img)).detach()
    rel = _signed(tuple(block(a0).shape), seed=23)
    _, steps, act = ae.forward_chain(net, "2", block, img)
    assert torch.equal(act, block(a0))
    want = _branch_by_hand(block, a0, rel, r)
    assert torch.allclose(ae.residual_rule(steps[2], rel, r), want, atol=1e-12)
    # the whole chain: the block, then the ReLU (identity) and the image conv's z^B rule
    assert torch.allclose(ae.propagate(steps, rel, r), ae.zb_rule(img, want, stem), atol=1e-12)
    n = 3 if kind == "tv-bottleneck" else 2
    want_names = [f"2.{layer}{i}" for i in range(1, n + 1) for layer in ("conv", "bn")]
    assert [s.name for s in steps[2].branch if s.x is not None] == want_names, "the branch only, in order"
    if kind != "tv-bottleneck":  # a 3×3 conv1 totals r − 2 once every window mixes active and inactive inputs
        assert _receptive_fields_mixed(nn.Sequential(nn.Identity(), block), a0), "precondition of exact sums"
        assert torch.allclose(want.flatten(1).sum(1), torch.full((2,), 2 * (r - 2), dtype=torch.float64))


@pytest.mark.parametrize("kind", ["spixel", "tv-basic", "tv-bottleneck"])
def test_shortcut_is_ignored(kind):
    block = _block(kind, seed=30)
    net = nn.Sequential(block)
    x = _relu_like((2, _cin(block), 8, 8), seed=31)
    rel = _signed(tuple(block(x).shape), seed=32)
    _, steps, _ = ae.forward_chain(net, "0", block, x)
    before, out_before = ae.residual_rule(steps[0], rel, 1.5), block(x).detach()
    shortcut = block.shortcut if kind == "spixel" else block.downsample
    with torch.no_grad():
        shortcut[0].weight.mul_(-3.0)
        shortcut[1].bias.add_(1.0)
    _, steps, _ = ae.forward_chain(net, "0", block, x)
    assert not torch.allclose(block(x), out_before), "the shortcut must matter to the forward pass"
    assert torch.equal(ae.residual_rule(steps[0], rel, 1.5), before)


@pytest.mark.parametrize("net", ["small_resnet", "tv_resnet18"])
@pytest.mark.parametrize("r", [1.0, 1.5, 2.0])
def test_map_of_a_basic_block_resnet_sums_to_twice_r_minus_2(net, r, request):
    """Each BasicBlock returns 2 × its conv1 rule's total, 2(r − 2), whatever comes in; max pool, BN, ReLU and z^B
    conserve — exact once every traversed conv's receptive fields mix active and inactive inputs (checked)."""
    model = request.getfixturevalue(net)
    size = model.input_size
    x = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(3))
    assert _receptive_fields_mixed(model.module, x), "precondition of exact sums fails for this input"
    e = ae.attribution_equilibrium(model, x, ratio=r)
    assert torch.allclose(e.raw.flatten(1).sum(1), torch.full((3,), 2 * (r - 2)), atol=1e-4)


def test_torchvision_resnet18(tv_resnet18):
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    e = ae.attribution_equilibrium(tv_resnet18, x, [1, 7])
    assert e.attribution.shape == (2, 64, 64) and e.raw.shape == (2, 3, 64, 64)
    assert torch.isfinite(e.raw).all() and e.raw.abs().sum() > 0
    assert e.meta["params"]["layer"] == "layer4"
    # a stage's output is its last block's output: starting at either is the same
    assert torch.equal(ae.attribution_equilibrium(tv_resnet18, x, [1, 7], layer="layer4.1").raw, e.raw)
    assert torch.equal(ae.attribution_equilibrium(tv_resnet18, x, [1, 7]).raw, e.raw)
    assert _hooks(tv_resnet18.module) == 0 and not tv_resnet18.module.training


# ---------------------------------------------------------------------------------------------- explainer
@pytest.fixture(scope="module")
def small_vgg() -> spixel.ModelAdapter:
    cfg = net_config("vgg", num_classes=5, widths=[8, 16])
    torch.manual_seed(0)
    net = build_net(cfg)
    random_bn_stats(net, 0.2)
    net.eval()
    return spixel.ModelAdapter(
        net, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), input_size=32, layers={"cam": cam_layer(cfg)}
    )


def _randomise_bn(net: nn.Module) -> None:
    """Random BN affine parameters and statistics (spixel's nets zero-init the last BN of a residual branch)."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)


@pytest.fixture(scope="module")
def small_resnet() -> spixel.ModelAdapter:
    cfg = net_config("resnet", num_classes=5, widths=[8, 16])
    torch.manual_seed(0)
    net = build_net(cfg)
    _randomise_bn(net)
    net.eval()
    return spixel.ModelAdapter(
        net, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), input_size=32, layers={"cam": cam_layer(cfg)}
    )


@pytest.fixture(scope="module")
def tv_resnet18() -> spixel.ModelAdapter:
    """torchvision ResNet-18, random weights and BN statistics; the stem BN's means are raised so that the max-pool
    output (layer1.0.conv1's input) keeps inactive inputs in every receptive field (precondition of exact sums)."""
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None, num_classes=10)
    random_bn_stats(net)
    with torch.no_grad():
        net.bn1.running_mean.uniform_(0.2, 0.6)
    net.eval()
    return spixel.ModelAdapter(net, input_size=64, layers={"cam": "layer4"})


@pytest.fixture(scope="module")
def xs() -> Tensor:
    return torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("net", ["small_vgg", "small_resnet"])
def test_shapes_meta_and_finiteness(net, xs, request):
    e = ae.attribution_equilibrium(request.getfixturevalue(net), xs, [0, 1, 2, 4], ratio=1.5, batch_size=3)
    assert e.attribution.shape == (4, 32, 32) and e.raw.shape == (4, 3, 32, 32)
    assert torch.isfinite(e.raw).all()
    assert torch.equal(e.attribution, e.raw.sum(1))
    assert e.meta["method"] == "attribution_equilibrium" and e.meta["target"] == [0, 1, 2, 4]
    assert e.meta["params"] == {"ratio": 1.5, "layer": "stages.1", "batch_size": 3}
    assert METHODS.get("attribution_equilibrium").info["family"] == "propagation"


@pytest.mark.parametrize("net", ["small_vgg", "small_resnet", "tv_resnet18"])
def test_batch_equals_single_images_with_per_image_targets(net, xs, request):
    model = request.getfixturevalue(net)
    if net == "tv_resnet18":
        xs = F.interpolate(xs, size=64, mode="bilinear")
    targets = [4, 0, 2, 2]
    batch = ae.attribution_equilibrium(model, xs, targets, batch_size=2).raw
    for i, t in enumerate(targets):
        one = ae.attribution_equilibrium(model, xs[i : i + 1], t).raw[0]
        assert torch.allclose(batch[i], one, rtol=1e-4, atol=1e-6 * float(one.abs().max()))
    other = ae.attribution_equilibrium(model, xs[:1], 1).raw[0]
    assert not torch.allclose(other, batch[0]), "the target must matter"


@pytest.mark.parametrize("net", ["small_vgg", "small_resnet"])
def test_default_target_is_the_prediction_and_runs_are_deterministic(net, xs, request):
    model = request.getfixturevalue(net)
    a = ae.attribution_equilibrium(model, xs)
    assert a.meta["target"] == model.predict(xs).argmax(1).tolist()
    assert torch.equal(a.raw, ae.attribution_equilibrium(model, xs).raw)


def _hooks(module: nn.Module) -> int:
    names = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    return sum(len(getattr(m, d, {})) for m in module.modules() for d in names)


@pytest.mark.parametrize("net", ["small_vgg", "small_resnet", "tv_resnet18"])
def test_model_left_untouched(net, xs, request):
    model = request.getfixturevalue(net)
    net = model.module
    first = next(m for m in net.modules() if isinstance(m, nn.Conv2d))
    reference = ae.attribution_equilibrium(model, xs, 1).raw
    net.train()
    first.requires_grad_(False)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    try:
        got = ae.attribution_equilibrium(model, xs, 1).raw
        assert torch.equal(got, reference), "must run in eval mode"
        assert all(m.training for m in net.modules())
        assert not first.weight.requires_grad and net.fc.weight.requires_grad
        assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items()), "BN statistics changed"
        assert _hooks(net) == 0
        assert all(p.grad is None for p in net.parameters())
    finally:
        net.eval()
        net.requires_grad_(True)


def test_vgg16_default_layer():
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.vgg16(weights=None).eval()
    model = spixel.ModelAdapter(net, input_size=224, layers={"cam": "features.29"})
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    e = ae.attribution_equilibrium(model, x, ratio=1.5)
    assert e.attribution.shape == (1, 224, 224) and torch.isfinite(e.raw).all()
    assert e.meta["params"]["layer"] == "features.29"
    # in-place ReLUs are handled; 64–512 channels make receptive fields without inactive inputs unlikely
    assert math.isclose(float(e.raw.sum()), -0.5, abs_tol=1e-3)


# ---------------------------------------------------------------------------------------------- refusals
@pytest.mark.parametrize("ratio", [0.5, 2.5, float("nan"), "two"])
def test_ratio_outside_1_2_is_refused(small_vgg, xs, ratio):
    with pytest.raises(BadParameterError, match="ratio"):
        ae.attribution_equilibrium(small_vgg, xs[:1], ratio=ratio)


def test_efficientnet_lite0_is_refused(lite0):
    with pytest.raises(BadParameterError, match=r"AE supports sequential ReLU networks \(VGG-style\)"):
        ae.attribution_equilibrium(lite0, torch.zeros(1, 3, 224, 224))
    assert _hooks(lite0.module) == 0


class _FunctionalResidual(nn.Module):
    """A residual block AE does not know: the addition is a tensor operation inside ``forward``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(x + self.conv(x))


class _SubclassedBlock(BasicBlock):
    """Recognition is by exact class: a subclass may change ``forward``."""


@pytest.mark.parametrize("block", [_FunctionalResidual(), _SubclassedBlock(4, 4)])
def test_unknown_residual_blocks_are_refused(block):
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), block, nn.Flatten(), nn.Linear(4 * 8 * 8, 2))
    model = spixel.ModelAdapter(net.eval(), input_size=8, layers={"cam": "2"})
    with pytest.raises(BadParameterError, match="does not read the output of"):
        ae.attribution_equilibrium(model, torch.randn(1, 3, 8, 8))
    assert _hooks(net) == 0


def test_target_layer_inside_a_block_is_refused(tv_resnet18):
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    for layer in ("layer4.1.conv2", "layer4.1.bn2"):
        with pytest.raises(BadParameterError, match=r"inside the residual block 'layer4\.1'"):
            ae.attribution_equilibrium(tv_resnet18, x, layer=layer)
    assert _hooks(tv_resnet18.module) == 0


@pytest.mark.parametrize(
    "layer, match",
    [
        (nn.ReLU6(), "ReLU6"),
        (nn.Conv2d(4, 4, 3, padding=1, groups=4), "groups=4"),
        (nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"), "padding_mode"),
    ],
)
def test_layers_without_a_rule_are_refused(layer, match):
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), layer, nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 2)
    )
    model = spixel.ModelAdapter(net, input_size=8, layers={"cam": "3"})
    with pytest.raises(BadParameterError, match=match):
        ae.attribution_equilibrium(model, torch.zeros(1, 3, 8, 8))

"""AE — Attribution Equilibrium (spec §5): per-layer rules against hand-written loops over the spec's formulas,
conservation, the explainer's contract on VGG-style nets, and refusals of networks outside its scope."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import spixel
from spixel.attribution import equilibrium as ae
from spixel.errors import BadParameterError
from spixel.registry import METHODS
from spixel.train.nets import build_net, cam_layer, net_config


# ---------------------------------------------------------------------------------------------- references
def _taps(conv: nn.Conv2d, h: int, w: int):
    """Every (output position, weight tap, input position) of a convolution, padding positions left out."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = conv.kernel_size, conv.stride, conv.padding, conv.dilation
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    for oy, ox in itertools.product(range(ho), range(wo)):
        taps = []
        for ky, kx in itertools.product(range(kh), range(kw)):
            iy, ix = oy * sh + ky * dh - ph, ox * sw + kx * dw - pw
            if 0 <= iy < h and 0 <= ix < w:
                taps.append((ky, kx, iy, ix))
        yield oy, ox, taps


def _ref_rule(inp: Tensor, rel: Tensor, weight: Tensor, conv: nn.Conv2d) -> Tensor:
    """``out_j = Σ_k inp_j w_jk rel_k / Σ_j' inp_j' w_j'k`` with loops; a share with a zero denominator is dropped."""
    cin, h, w = inp.shape
    out = torch.zeros_like(inp)
    for oy, ox, taps in _taps(conv, h, w):
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
    for oy, ox, taps in _taps(conv, h, wd):
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
    (padding left out) holds an active (> 0) and an inactive (≤ 0) input."""
    inputs: list[tuple[nn.Conv2d, Tensor]] = []
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)][1:]
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


# ---------------------------------------------------------------------------------------------- explainer
@pytest.fixture(scope="module")
def small_vgg() -> spixel.ModelAdapter:
    cfg = net_config("vgg", num_classes=5, widths=[8, 16])
    torch.manual_seed(0)
    net = build_net(cfg)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    net.eval()
    return spixel.ModelAdapter(
        net, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), input_size=32, layers={"cam": cam_layer(cfg)}
    )


@pytest.fixture(scope="module")
def xs() -> Tensor:
    return torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(3))


def test_shapes_meta_and_finiteness(small_vgg, xs):
    e = ae.attribution_equilibrium(small_vgg, xs, [0, 1, 2, 4], ratio=1.5, batch_size=3)
    assert e.attribution.shape == (4, 32, 32) and e.raw.shape == (4, 3, 32, 32)
    assert torch.isfinite(e.raw).all()
    assert torch.equal(e.attribution, e.raw.sum(1))
    assert e.meta["method"] == "attribution_equilibrium" and e.meta["target"] == [0, 1, 2, 4]
    assert e.meta["params"] == {"ratio": 1.5, "layer": "stages.1", "batch_size": 3}
    assert METHODS.get("attribution_equilibrium").info["family"] == "propagation"


def test_batch_equals_single_images_with_per_image_targets(small_vgg, xs):
    targets = [4, 0, 2, 2]
    batch = ae.attribution_equilibrium(small_vgg, xs, targets, batch_size=2).raw
    for i, t in enumerate(targets):
        one = ae.attribution_equilibrium(small_vgg, xs[i : i + 1], t).raw[0]
        assert torch.allclose(batch[i], one, rtol=1e-4, atol=1e-6 * float(one.abs().max()))
    other = ae.attribution_equilibrium(small_vgg, xs[:1], 1).raw[0]
    assert not torch.allclose(other, batch[0]), "the target must matter"


def test_default_target_is_the_prediction_and_runs_are_deterministic(small_vgg, xs):
    a = ae.attribution_equilibrium(small_vgg, xs)
    assert a.meta["target"] == small_vgg.predict(xs).argmax(1).tolist()
    assert torch.equal(a.raw, ae.attribution_equilibrium(small_vgg, xs).raw)


def _hooks(module: nn.Module) -> int:
    names = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    return sum(len(getattr(m, d, {})) for m in module.modules() for d in names)


def test_model_left_untouched(small_vgg, xs):
    net = small_vgg.module
    reference = ae.attribution_equilibrium(small_vgg, xs, 1).raw
    net.train()
    net.stages[0][0].requires_grad_(False)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    try:
        got = ae.attribution_equilibrium(small_vgg, xs, 1).raw
        assert torch.equal(got, reference), "must run in eval mode"
        assert all(m.training for m in net.modules())
        assert not net.stages[0][0].weight.requires_grad and net.fc.weight.requires_grad
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


def test_residual_networks_are_refused(resnet18):
    cfg = net_config("resnet", widths=[4, 8])
    small = spixel.ModelAdapter(build_net(cfg).eval(), input_size=32, layers={"cam": cam_layer(cfg)})
    for model, size in ((small, 32), (resnet18, 64)):
        with pytest.raises(BadParameterError, match="sequential ReLU networks"):
            ae.attribution_equilibrium(model, torch.zeros(1, 3, size, size))
        assert _hooks(model.module) == 0


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

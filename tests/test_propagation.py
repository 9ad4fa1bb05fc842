"""The relevance-propagation core and the LRP family: every composite against Zennit on VGG-16 and ResNet-50
(random weights, a batch of 3 with distinct targets), single rules against loops written from their formulas,
conservation, class-specificity of the contrastive methods, canonizers, and refusals naming the layer."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import Tensor, nn

import spixel
from conftest import conv_taps, random_bn_stats
from spixel.attribution.propagation import (
    AlphaBeta,
    Epsilon,
    Flat,
    Gamma,
    Layer,
    Norm,
    Propagator,
    ZBox,
    ZPlus,
    make_composite,
)
from spixel.attribution.propagation.core import _linear_fn
from spixel.errors import BadParameterError
from spixel.models import ModelAdapter

zennit = pytest.importorskip("zennit")
from zennit import composites as zc  # noqa: E402
from zennit.attribution import Gradient  # noqa: E402
from zennit.torchvision import ResNetCanonizer, VGGCanonizer  # noqa: E402

TARGETS = torch.tensor([1, 5, 9])
ZENNIT_COMPOSITES = ["epsilon_plus_flat", "epsilon_gamma_box", "epsilon_alpha2_beta1", "epsilon_alpha2_beta1_flat",
                     "epsilon_plus"]  # fmt: skip


def _frozen(m: nn.Module) -> nn.Module:
    m.eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


@pytest.fixture(scope="module")
def vgg16() -> nn.Module:
    """torchvision's VGG-16 (13 convolutions, 5 max pools, 3 dense layers) with random weights, in float64 (float32
    roundoff reaches 1e-5 of the map's scale on some images); the
    dense layers narrowed from 4096 to 64 units and 10 classes to keep the test fast (benchmarks/propagation.py
    compares the full-width net)."""
    torch.manual_seed(0)
    m = torchvision.models.vgg16(weights=None, num_classes=10)
    m.classifier[0], m.classifier[3], m.classifier[6] = nn.Linear(25088, 64), nn.Linear(64, 64), nn.Linear(64, 10)
    return _frozen(m.double())


@pytest.fixture(scope="module")
def resnet50() -> nn.Module:
    """Random ResNet-50 with random BN statistics and ``eps = 0``, in float64: Zennit's batch-norm merge leaves an
    emptied BN that still divides by √(1 + eps) (≈1e-4 relative over 50 layers), and in float32 its merged
    parameters round differently from the model's conv → BN (≈1e-4 relative on some pixels after 50 layers); with
    eps = 0 in float64 both compute the same function and agree to ~1e-15."""
    torch.manual_seed(0)
    m = torchvision.models.resnet50(weights=None)
    random_bn_stats(m)
    for b in m.modules():
        if isinstance(b, nn.BatchNorm2d):
            b.eps = 0.0
    return _frozen(m.double())


def _zennit_composite(name: str, canonizers: list, low: Tensor, high: Tensor):
    return {
        "epsilon_plus_flat": lambda: zc.EpsilonPlusFlat(canonizers=canonizers),
        "epsilon_gamma_box": lambda: zc.EpsilonGammaBox(low=low, high=high, canonizers=canonizers),
        "epsilon_alpha2_beta1": lambda: zc.EpsilonAlpha2Beta1(canonizers=canonizers),
        "epsilon_alpha2_beta1_flat": lambda: zc.EpsilonAlpha2Beta1Flat(canonizers=canonizers),
        "epsilon_plus": lambda: zc.EpsilonPlus(canonizers=canonizers),
    }[name]()


def _compare_with_zennit(model: nn.Module, canonizer: type, composite: str, size: int) -> float:
    g = torch.Generator().manual_seed(3)
    dtype = next(model.parameters()).dtype
    x = torch.randn(3, 3, size, size, generator=g, dtype=dtype)
    adapter = ModelAdapter(model, input_size=size, name="random")
    e = spixel.explain(adapter, x, "lrp", TARGETS, composite=composite)
    mean = torch.tensor(adapter.mean, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(adapter.std, dtype=x.dtype).view(1, 3, 1, 1)
    low, high = ((0 - mean) / std).expand_as(x), ((1 - mean) / std).expand_as(x)
    with torch.no_grad():
        logits = model(x)
    seed = torch.zeros_like(logits).scatter(1, TARGETS.view(-1, 1), logits.gather(1, TARGETS.view(-1, 1)))
    with Gradient(model, _zennit_composite(composite, [canonizer()], low, high)) as attributor:
        _, rz = attributor(x.clone().requires_grad_(True), seed)
    assert e.raw.shape == rz.shape
    rel = float((e.raw - rz).abs().max() / rz.abs().max())
    # per image too: each map equals Zennit's to 1e-5 of its own scale
    for i in range(3):
        assert float((e.raw[i] - rz[i]).abs().max() / rz[i].abs().max()) < 1e-5, (composite, i)
    return rel


@pytest.mark.slow
@pytest.mark.parametrize("composite", ZENNIT_COMPOSITES)
def test_lrp_equals_zennit_on_vgg16(vgg16, composite):
    assert _compare_with_zennit(vgg16, VGGCanonizer, composite, 32) < 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("composite", ZENNIT_COMPOSITES)
def test_lrp_equals_zennit_on_resnet50(resnet50, composite):
    assert _compare_with_zennit(resnet50, ResNetCanonizer, composite, 32) < 1e-5


def test_start_one_is_zennits_one_hot_seed(vgg16):
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    t = torch.tensor([2, 7])
    e = spixel.explain(vgg16, x, "lrp", t, start="one", composite="epsilon_plus")
    with Gradient(vgg16, zc.EpsilonPlus(canonizers=[VGGCanonizer()])) as attributor:
        _, rz = attributor(x.clone().requires_grad_(True), torch.eye(10, dtype=x.dtype)[t])
    assert float((e.raw - rz).abs().max() / rz.abs().max()) < 1e-5


# ---------------------------------------------------------------------------------------------- loop references
def _stab(z: float, eps: float) -> float:
    return z + eps if z >= 0 else z - eps


def _contrib(conv: nn.Conv2d, x: Tensor, w: Tensor):
    """For each output (co, oy, ox): the list of (input index, contribution x_i·w_ij) — groups honoured."""
    cin, h, wd = x.shape
    cout = w.shape[0]
    gin, gout = cin // conv.groups, cout // conv.groups
    out = {}
    for oy, ox, taps in conv_taps(conv, h, wd):
        for co in range(cout):
            grp = co // gout
            items = []
            for cj in range(gin):
                ci = grp * gin + cj
                for ky, kx, iy, ix in taps:
                    items.append(((ci, iy, ix), cj, ky, kx))
            out[co, oy, ox] = items
    return out


def _ref_rule(rule, conv: nn.Conv2d, x: Tensor, r: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """Loop reference of each linear rule for one sample (formulas of the rules' docstrings)."""
    out = torch.zeros_like(x)
    for (co, oy, ox), items in _contrib(conv, x, w).items():
        rk = float(r[co, oy, ox])
        wk = [(i, float(w[co, cj, ky, kx])) for i, cj, ky, kx in items]
        bk = float(b[co])
        xi = {i: float(x[i]) for i, _ in wk}
        if isinstance(rule, Epsilon):
            z = sum(xi[i] * wv for i, wv in wk) + bk
            for i, wv in wk:
                out[i] += xi[i] * wv * rk / _stab(z, rule.epsilon)
        elif isinstance(rule, ZPlus):
            parts = [(i, max(xi[i], 0) * max(wv, 0) + min(xi[i], 0) * min(wv, 0)) for i, wv in wk]
            z = sum(p for _, p in parts) + max(bk, 0)
            for i, p in parts:
                out[i] += p * rk / _stab(z, rule.stabilizer)
        elif isinstance(rule, AlphaBeta):
            pos = [(i, max(xi[i], 0) * max(wv, 0) + min(xi[i], 0) * min(wv, 0)) for i, wv in wk]
            neg = [(i, max(xi[i], 0) * min(wv, 0) + min(xi[i], 0) * max(wv, 0)) for i, wv in wk]
            zp = sum(p for _, p in pos) + max(bk, 0)
            zn = sum(p for _, p in neg) + min(bk, 0)
            for (i, p), (_, q) in zip(pos, neg, strict=True):
                out[i] += rule.alpha * p * rk / _stab(zp, rule.stabilizer) - rule.beta * q * rk / _stab(
                    zn, rule.stabilizer
                )
        elif isinstance(rule, Gamma):
            g = rule.gamma
            z0 = sum(xi[i] * wv for i, wv in wk) + bk
            if z0 > 0:
                parts = [(i, xi[i] * (wv + g * (max(wv, 0) if xi[i] >= 0 else min(wv, 0)))) for i, wv in wk]
                z = sum(p for _, p in parts) + bk + g * max(bk, 0)
            elif z0 < 0:
                parts = [(i, xi[i] * (wv + g * (min(wv, 0) if xi[i] >= 0 else max(wv, 0)))) for i, wv in wk]
                z = sum(p for _, p in parts) + bk + g * min(bk, 0)
            else:
                continue
            for i, p in parts:
                out[i] += p * rk / _stab(z, rule.stabilizer)
        elif isinstance(rule, ZBox):
            lo, hi = float(rule.low), float(rule.high)
            parts = [(i, xi[i] * wv - lo * max(wv, 0) - hi * min(wv, 0)) for i, wv in wk]
            z = sum(p for _, p in parts)
            for i, p in parts:
                out[i] += p * rk / _stab(z, rule.stabilizer)
        elif isinstance(rule, Flat):
            for i, _ in wk:
                out[i] += rk / _stab(float(len(wk)), rule.stabilizer)
    return out


RULES = [Epsilon(0.01), ZPlus(), AlphaBeta(2.0, 1.0), AlphaBeta(1.5, 0.5), Gamma(0.25), ZBox(-2.0, 2.5), Flat()]


@pytest.mark.parametrize("rule", RULES, ids=lambda r: repr(r)[:24])
@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("signed", [False, True], ids=["relu_input", "signed_input"])
def test_rule_equals_loop_reference(rule, groups, signed):
    torch.manual_seed(groups)
    conv = _frozen(nn.Conv2d(4, 4, 3, stride=2, padding=1, groups=groups).double())
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    if not signed:
        x = x.clamp(min=0)
    r = torch.randn(2, 4, 3, 3, dtype=torch.float64)
    layer = Layer(conv, _linear_fn("conv", conv), conv.weight.detach(), conv.bias.detach())
    ours = rule.relevance(layer, x, r)
    for n in range(2):
        ref = _ref_rule(rule, conv, x[n], r[n], conv.weight.detach(), conv.bias.detach())
        assert torch.allclose(ours[n], ref, rtol=1e-9, atol=1e-10), (rule, float((ours[n] - ref).abs().max()))


def test_dense_epsilon_and_norm_rules():
    lin = _frozen(nn.Linear(5, 3).double())
    x = torch.randn(2, 5, dtype=torch.float64)
    r = torch.randn(2, 3, dtype=torch.float64)
    ours = Epsilon(0.1).relevance(Layer(lin, _linear_fn("fc", lin), lin.weight, lin.bias), x, r)
    z = x @ lin.weight.T + lin.bias
    zs = z + 0.1 * torch.where(z >= 0, 1.0, -1.0)
    assert torch.allclose(ours, x * ((r / zs) @ lin.weight))
    # Norm on an average pool: R_i = x_i / (4·z) · R per 2×2 window
    pool = nn.AvgPool2d(2)
    xp = torch.rand(1, 1, 4, 4, dtype=torch.float64)
    rp = torch.randn(1, 1, 2, 2, dtype=torch.float64)
    got = Norm(0.0).relevance(Layer(pool, call=pool), xp, rp)
    sums = nn.functional.avg_pool2d(xp, 2) * 4
    want = xp * torch.repeat_interleave(torch.repeat_interleave(rp / sums, 2, 2), 2, 3)
    assert torch.allclose(got, want)
    assert torch.allclose(got.sum(), rp.sum())


# ---------------------------------------------------------------------------------------------- conservation
class _NoBias(nn.Module):
    """Conv-ReLU-MaxPool-Conv-ReLU ×1 residual block (spixel BasicBlock, identity BN) - AvgPool - Linear, no bias."""

    def __init__(self) -> None:
        super().__init__()
        from spixel.train.nets import BasicBlock

        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1, bias=False),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 8, 3, padding=1, bias=False),
            nn.ReLU(),
        )
        self.block = BasicBlock(8, 8)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 4, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pool(self.block(self.features(x))).flatten(1))


@pytest.mark.parametrize(
    "composite",
    ["epsilon", "zplus", "gamma", "flat", "zbox", "epsilon_plus", "epsilon_plus_flat", "epsilon_gamma_box", "lrp_cmp"],
)
def test_conservation_without_bias(composite):
    """Σ R_input = f_t(x) where the rules conserve: no bias (BN at identity statistics), tiny ε/stabiliser."""
    torch.manual_seed(0)
    net = _frozen(_NoBias().double())
    x = torch.randn(3, 3, 16, 16, dtype=torch.float64)
    kw = {"epsilon": 1e-12, "stabilizer": 1e-12} if composite != "lrp_cmp" else {}
    comp = make_composite(composite, low=-3.0, high=3.0, **kw)
    if composite == "lrp_cmp":
        comp = make_composite(composite, epsilon=1e-12, stabilizer=1e-12, alpha=1.0, beta=0.0)
    t = torch.tensor([0, 1, 3])
    with Propagator(net, comp) as p:
        logits, r = p.relevance(
            x, lambda lg: torch.zeros_like(lg).scatter(1, t.view(-1, 1), lg.gather(1, t.view(-1, 1)))
        )
    ft = logits.gather(1, t.view(-1, 1)).view(-1)
    assert torch.allclose(r.flatten(1).sum(1), ft, rtol=1e-6, atol=1e-9), (r.flatten(1).sum(1), ft)


def test_alpha_beta_sections():
    """α2β1 puts α = 2 on the positive and β = 1 on the negative contributions: a single layer with both signs
    in every output conserves ``α·R − β·R = R``."""
    lin = _frozen(nn.Linear(6, 2, bias=False).double())
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, -1.0, 2.0, -0.5, 1.0, -1.0], [-1.0, 1.0, 0.5, -2.0, 1.0, 1.0]]))
    x = torch.rand(4, 6, dtype=torch.float64) + 0.1
    r = torch.randn(4, 2, dtype=torch.float64)
    out = AlphaBeta(2.0, 1.0, 1e-12).relevance(Layer(lin, _linear_fn("fc", lin), lin.weight, None), x, r)
    assert torch.allclose(out.sum(1), r.sum(1))


# ---------------------------------------------------------------------------------------------- contrastive
def _two_object_net() -> tuple[ModelAdapter, Tensor]:
    """Class 0 = 'red' evidence, class 1 = 'green' evidence, class 2 = 'blue'; an image with a red object on the
    left and a green one on the right."""
    net = nn.Sequential(
        nn.Conv2d(3, 3, 1, bias=False), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 3, bias=False)
    )
    with torch.no_grad():
        net[0].weight.copy_(torch.eye(3).view(3, 3, 1, 1))
        net[4].weight.copy_(torch.tensor([[2.0, -1.0, -1.0], [-1.0, 2.0, -1.0], [-1.0, -1.0, 2.0]]))
    x = torch.full((1, 3, 16, 16), 0.05)
    x[0, 0, 4:10, 1:7] = 1.0  # red, left
    x[0, 1, 4:10, 9:15] = 1.0  # green, right
    adapter = ModelAdapter(_frozen(net), input_size=16, mean=(0.0,) * 3, std=(1.0,) * 3, name="two-objects")
    return adapter, x


@pytest.mark.parametrize("method", ["clrp", "sglrp"])
def test_contrastive_maps_are_class_specific(method):
    model, x = _two_object_net()
    xs = x.expand(2, -1, -1, -1)
    e = spixel.explain(model, xs, method, [0, 1])
    pos = e.attribution.clamp(min=0)
    left, right = pos[:, :, :8].sum((1, 2)), pos[:, :, 8:].sum((1, 2))
    assert left[0] > 5 * right[0], "class 0 (red, left) not on the left"
    assert right[1] > 5 * left[1], "class 1 (green, right) not on the right"
    assert not torch.allclose(pos[0], pos[1])


def test_clrp_is_the_normalised_difference():
    model, x = _two_object_net()
    e = spixel.explain(model, x, "clrp", [0])
    comp = make_composite("zplus_box", stabilizer=1e-9, low=0.0, high=1.0)
    with Propagator(model.module, comp) as p:
        _, r_t = p.relevance(x, lambda lg: torch.tensor([[float(lg[0, 0]), 0.0, 0.0]]))
        _, r_d = p.relevance(x, lambda lg: torch.tensor([[0.0, float(lg[0, 1].abs()), float(lg[0, 2].abs())]]))
    want = r_t / r_t.sum() - r_d / r_d.sum()
    assert torch.allclose(e.raw, want, atol=1e-6)


# ---------------------------------------------------------------------------------------------- canonizers
def test_resnet_without_canonizer_is_refused_naming_the_layer(resnet18):
    with pytest.raises(BadParameterError, match=r"layer 'layer1\.0\.relu'.*residual addition"):
        spixel.explain(resnet18, torch.randn(1, 3, 64, 64), "lrp", 1, canonize=False)


def test_unknown_functional_join_is_refused():
    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(3, 4, 3, padding=1)
            self.fc = nn.Linear(4, 2)

        def forward(self, x: Tensor) -> Tensor:
            y = self.a(x) * self.b(x)  # a product: no rule
            return self.fc(y.mean((2, 3)))

    with pytest.raises(
        BadParameterError, match=r"layer 'fc' reads the result of an operation outside nn.Modules \(Mean"
    ):
        spixel.explain(Odd(), torch.randn(1, 3, 8, 8), "lrp", 0)


def test_layer_without_rule_is_refused():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.GroupNorm(2, 4), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(BadParameterError, match=r"layer '1' \(GroupNorm\) has no rule"):
        spixel.explain(net, torch.randn(1, 3, 8, 8), "lrp", 0)


def test_merged_batchnorm_equals_folded_model():
    """LRP of conv→BN equals LRP of the same net with the BN folded into the conv by hand."""
    torch.manual_seed(0)
    a = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                      nn.Flatten(), nn.Linear(4, 3))  # fmt: skip
    random_bn_stats(a, mean=0.3)
    _frozen(a)
    b = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    bn = a[1]
    s = bn.weight / (bn.running_var + bn.eps).sqrt()
    with torch.no_grad():
        b[0].weight.copy_(a[0].weight * s.view(-1, 1, 1, 1))
        b[0].bias.copy_((a[0].bias - bn.running_mean) * s + bn.bias)
        b[4].load_state_dict(a[5].state_dict())
    _frozen(b)
    x = torch.randn(2, 3, 8, 8)
    for comp in ("epsilon_plus_flat", "epsilon_gamma_box", "epsilon"):
        ea = spixel.explain(a, x, "lrp", [0, 2], composite=comp)
        eb = spixel.explain(b, x, "lrp", [0, 2], composite=comp)
        assert torch.allclose(ea.raw, eb.raw, rtol=1e-5, atol=1e-7), comp


def test_forward_values_unchanged_and_model_restored(resnet18):
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = resnet18.module(x)
    forwards = {k: m.forward for k, m in resnet18.module.named_modules()}
    with Propagator(resnet18.module, make_composite("epsilon_plus_flat")) as p:
        logits, _, _ = p.forward(x)
    assert torch.allclose(logits, before, rtol=1e-5, atol=1e-6)
    assert {k: m.forward for k, m in resnet18.module.named_modules()} == forwards
    assert all("forward" not in m.__dict__ for m in resnet18.module.modules())


# ---------------------------------------------------------------------------------------------- parameters
def test_bad_lrp_parameters(tiny, tiny_x):
    with pytest.raises(BadParameterError, match="composite"):
        spixel.explain(tiny, tiny_x, "lrp", 0, composite="nope")
    with pytest.raises(BadParameterError, match="alpha"):
        spixel.explain(tiny, tiny_x, "lrp", 0, composite="alpha_beta", alpha=2.0, beta=0.5)
    with pytest.raises(BadParameterError, match="start"):
        spixel.explain(tiny, tiny_x, "lrp", 0, start="max")
    with pytest.raises(BadParameterError, match="low"):
        spixel.explain(tiny, tiny_x, "lrp", 0, composite="zbox", low=[1, 2])
    with pytest.raises(BadParameterError, match="variant"):
        spixel.explain(tiny, tiny_x, "lrp_comp", 0, variant="alpha3")


def test_every_composite_runs_and_records_its_rules(tiny, tiny_x):
    from spixel.attribution.propagation import COMPOSITES

    for name in COMPOSITES:
        e = spixel.explain(tiny, tiny_x, "lrp", [0, 1, 2], composite=name)
        assert torch.isfinite(e.raw).all(), name
        assert e.meta["params"]["composite"] == name and "conv" in e.meta["params"]["rules"]


def test_lrp_comp_is_lrp_cmp(tiny, tiny_x):
    a = spixel.explain(tiny, tiny_x, "lrp_comp", [0, 1, 2])
    b = spixel.explain(tiny, tiny_x, "lrp", [0, 1, 2], composite="lrp_cmp", epsilon=0.1, alpha=1.0, beta=0.0)
    assert torch.allclose(a.raw, b.raw)
    c = spixel.explain(tiny, tiny_x, "lrp_comp", [0, 1, 2], variant="alpha2_beta1", flat_first=True)
    assert not torch.allclose(a.raw, c.raw)


@pytest.mark.parametrize("method", ["lrp", "clrp", "rap", "contrastive_eb", "relevance_cam"])
def test_regions_axis(tiny, tiny_x, method):
    """Every propagation method composes with ``regions=`` (grid cells: constant per cell)."""
    e = spixel.explain(tiny, tiny_x, method, [0, 1, 2], regions="grid", region_params={"size": 8})
    assert e.segmentation is not None and e.attribution.shape == (3, 32, 32)
    lab = e.segmentation.labels[0]
    for k in lab.unique():
        vals = e.attribution[0][lab == k]
        assert torch.allclose(vals, vals[0].expand_as(vals))

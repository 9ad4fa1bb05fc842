"""Gradient methods against independent references: Captum (Saliency, InputXGradient, IntegratedGradients),
hand-written formulas of spec §1.4 (the "mean" IG rule, SmoothGrad over the same noise, Sparsified SmoothGrad),
and the real EfficientNet-Lite0 on two photos."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import InputXGradient, IntegratedGradients, Saliency

import spixel
from spixel.attribution.gradients import draw_noise, noise_sigma, sparsify

TARGETS = [1, 5]


def close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-4, atol_frac: float = 1e-5) -> None:
    """``allclose`` with an absolute tolerance relative to the reference's scale."""
    assert a.shape == b.shape, (a.shape, b.shape)
    a, b = a.detach(), b.detach()
    atol = atol_frac * float(b.abs().max()) + 1e-12
    err = float((a - b).abs().max())
    assert torch.allclose(a, b, rtol=rtol, atol=atol), f"max abs error {err:.3g} (atol {atol:.3g})"


@pytest.fixture(scope="module")
def rx(resnet18) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    return torch.randn(2, 3, 64, 64, generator=g)


def _target_variants():
    return [TARGETS, torch.tensor(TARGETS)]


# ---------------------------------------------------------------------------------------------- saliency
@pytest.mark.parametrize("target", _target_variants(), ids=["list", "tensor"])
def test_saliency_equals_captum(resnet18, rx, target):
    e = spixel.explain(resnet18, rx, "saliency", target)
    ref = Saliency(resnet18.module).attribute(rx, target=torch.as_tensor(TARGETS), abs=False)
    close(e.raw, ref, rtol=1e-5, atol_frac=1e-6)
    close(e.attribution, ref.abs().amax(1), rtol=1e-5, atol_frac=1e-6)
    assert e.meta["target"] == TARGETS


def test_saliency_batch_size_does_not_change_result(resnet18, rx):
    a = spixel.explain(resnet18, rx, "saliency", TARGETS, batch_size=1)
    b = spixel.explain(resnet18, rx, "saliency", TARGETS, batch_size=64)
    close(a.raw, b.raw, rtol=1e-5, atol_frac=1e-6)


def test_input_x_gradient_equals_captum(resnet18, rx):
    e = spixel.explain(resnet18, rx, "input_x_gradient", torch.tensor(TARGETS))
    ref = InputXGradient(resnet18.module).attribute(rx, target=TARGETS)
    close(e.raw, ref, rtol=1e-5, atol_frac=1e-6)
    close(e.attribution, ref.sum(1), rtol=1e-4, atol_frac=1e-5)


# ---------------------------------------------------------------------------------------------- integrated gradients
@pytest.mark.parametrize(
    "rule", ["gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid"]
)
def test_integrated_gradients_equals_captum(resnet18, rx, rule):
    n_steps = 7
    ig = IntegratedGradients(resnet18.module)
    # zero baseline; Captum unbatched, ours in chunks of 5 (which straddle steps and images)
    ours = spixel.explain(resnet18, rx, "integrated_gradients", TARGETS, n_steps=n_steps, rule=rule, batch_size=5)
    ref = ig.attribute(rx, baselines=0.0, target=TARGETS, n_steps=n_steps, method=rule)
    close(ours.raw, ref)
    close(ours.attribution, ref.sum(1), rtol=1e-4, atol_frac=1e-4)
    # a non-zero, non-constant baseline; Captum with an internal batch size of its own (3 steps × 2 images)
    base = 0.3 * torch.randn(rx.shape, generator=torch.Generator().manual_seed(7)) - 0.2
    ours = spixel.explain(
        resnet18,
        rx,
        "integrated_gradients",
        torch.tensor(TARGETS),
        n_steps=n_steps,
        rule=rule,
        baseline=base,
        batch_size=64,
    )
    ref = ig.attribute(rx, baselines=base, target=TARGETS, n_steps=n_steps, method=rule, internal_batch_size=6)
    close(ours.raw, ref)


def test_integrated_gradients_scalar_baseline_equals_captum(resnet18, rx):
    ours = spixel.explain(resnet18, rx, "integrated_gradients", TARGETS, n_steps=6, baseline=-0.5)
    ref = IntegratedGradients(resnet18.module).attribute(rx, baselines=-0.5, target=TARGETS, n_steps=6)
    close(ours.raw, ref)


def test_integrated_gradients_chunking_does_not_change_result(resnet18, rx):
    kw = dict(n_steps=5, rule="riemann_middle")
    a = spixel.explain(resnet18, rx, "integrated_gradients", TARGETS, batch_size=1, **kw)
    b = spixel.explain(resnet18, rx, "integrated_gradients", TARGETS, batch_size=3, **kw)
    c = spixel.explain(resnet18, rx, "integrated_gradients", TARGETS, batch_size=100, **kw)
    close(a.raw, c.raw)
    close(b.raw, c.raw)


def test_integrated_gradients_mean_rule_matches_formula(resnet18, rx):
    """Spec §1.4: ``IG = (x − x') ⊙ (1/m) Σ_{α ∈ linspace(0, 1, m)} ∇f_y(x' + α (x − x'))``."""
    m = 6
    base = torch.full_like(rx, 0.25)
    model = resnet18.module
    acc = torch.zeros_like(rx)
    for j in range(m):
        alpha = j / (m - 1)
        for n, y in enumerate(TARGETS):
            xi = (base[n] + alpha * (rx[n] - base[n])).unsqueeze(0).requires_grad_(True)
            (g,) = torch.autograd.grad(model(xi)[0, y], xi)
            acc[n] += g[0]
    ref = (rx - base) * acc / m
    ours = spixel.explain(
        resnet18, rx, "integrated_gradients", TARGETS, n_steps=m, rule="mean", baseline=0.25, batch_size=4
    )
    close(ours.raw, ref)


def test_integrated_gradients_completeness(tiny, tiny_x):
    """Σ IG ≈ f_t(x) − f_t(x') (Sundararajan et al., Prop. 1) once the integral is resolved."""
    base = torch.full_like(tiny_x, 0.1)
    e = spixel.explain(tiny, tiny_x, "integrated_gradients", [0, 3, 7], n_steps=256, baseline=0.1, batch_size=256)
    with torch.no_grad():
        f = tiny.module(tiny_x)[torch.arange(3), torch.tensor([0, 3, 7])]
        fb = tiny.module(base)[torch.arange(3), torch.tensor([0, 3, 7])]
    total = e.raw.sum(dim=(1, 2, 3))
    torch.testing.assert_close(total, f - fb, rtol=0.02, atol=0.02 * float((f - fb).abs().max()))


# ---------------------------------------------------------------------------------------------- smoothgrad
def _noisy_inputs(x: torch.Tensor, n: int, spread: float, seed: int) -> list[torch.Tensor]:
    """The noisy copies spixel uses: its noise helpers, with a CPU generator seeded like ``make_generator``."""
    eps = draw_noise(x, n, torch.Generator().manual_seed(seed))
    sigma = noise_sigma(x, spread)
    return [x + sigma * eps[k] for k in range(n)]


@pytest.mark.parametrize("squared", [False, True])
def test_smoothgrad_equals_mean_captum_saliency(resnet18, rx, squared):
    n, spread, seed = 5, 0.2, 123
    e = spixel.explain(
        resnet18, rx, "smoothgrad", TARGETS, seed=seed, n_samples=n, stdev_spread=spread, squared=squared, batch_size=3
    )
    sal = Saliency(resnet18.module)
    grads = [sal.attribute(xn, target=TARGETS, abs=False) for xn in _noisy_inputs(rx, n, spread, seed)]
    ref = torch.stack([g * g if squared else g for g in grads]).mean(0)
    close(e.raw, ref)
    close(e.attribution, ref.abs().amax(1))
    assert e.meta["seed"] == seed
    if squared:
        assert (e.raw >= 0).all()


def test_noise_sigma_is_spread_times_range():
    x = torch.zeros(2, 3, 4, 4)
    x[0, 0, 0, 0], x[0, 1, 1, 1] = -1.0, 3.0
    x[1, 2, 3, 3] = 0.5
    torch.testing.assert_close(noise_sigma(x, 0.1).view(-1), torch.tensor([0.4, 0.05]))


def test_draw_noise_is_standard_normal_and_seeded():
    x = torch.zeros(1, 3, 32, 32)
    a = draw_noise(x, 64, torch.Generator().manual_seed(0))
    b = draw_noise(x, 64, torch.Generator().manual_seed(0))
    assert a.shape == (64, 3, 32, 32) and torch.equal(a, b)
    assert abs(float(a.mean())) < 0.02 and abs(float(a.std()) - 1) < 0.02


# ---------------------------------------------------------------------------------------------- sparsified smoothgrad
def _sparsify_ref(h: np.ndarray, tau: float, flatten: float) -> np.ndarray:
    """Levine et al. / spec §1.4, written with a full sort (float64 numpy)."""
    d = h.size
    order = np.argsort(-h, kind="stable")
    srt = h[order]
    t1 = srt[max(1, int(flatten * d)) - 1]
    out = np.zeros_like(h)
    keep = order[: max(1, int(tau * d))]
    if t1 > 0:
        out[keep] = np.minimum(h[keep], t1) / t1
    return out


def test_sparsify_hand_checked():
    # D = 20 entries; flatten 0.1 → clip at the 2nd largest (8); tau 0.25 → keep the 5 largest
    h = torch.tensor([0, 1, 9, 2, 3, 8, 0, 0, 4, 0.5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], dtype=torch.float32)
    out = sparsify(h.view(1, 1, 4, 5), tau=0.25, flatten=0.1).view(-1)
    want = torch.zeros(20)
    want[2], want[5], want[8], want[4], want[3] = 1.0, 1.0, 4 / 8, 3 / 8, 2 / 8
    torch.testing.assert_close(out, want)
    # an all-zero gradient gives an all-zero map (no division by zero)
    z = sparsify(torch.zeros(2, 3, 4, 4), tau=0.1, flatten=0.01)
    assert torch.equal(z, torch.zeros(2, 3, 4, 4))


def test_sparsify_matches_sort_reference():
    h = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    out = sparsify(h, tau=0.1, flatten=0.01)
    for b in range(3):
        ref = _sparsify_ref(h[b].reshape(-1).numpy(), 0.1, 0.01).reshape(3, 16, 16)
        np.testing.assert_allclose(out[b].numpy(), ref, rtol=1e-12, atol=0)


def test_sparsified_smoothgrad_matches_reference(tiny, tiny_x):
    n, spread, tau, flat, seed = 6, 0.1, 0.1, 0.01, 9
    targets = [2, 0, 7]
    e = spixel.explain(
        tiny,
        tiny_x,
        "sparsified_smoothgrad",
        targets,
        seed=seed,
        n_samples=n,
        stdev_spread=spread,
        tau=tau,
        flatten=flat,
        batch_size=4,
    )
    acc = np.zeros(tiny_x.shape, dtype=np.float64)
    for xn in _noisy_inputs(tiny_x, n, spread, seed):
        xn = xn.clone().requires_grad_(True)
        out = tiny.module(xn)
        (g,) = torch.autograd.grad(out[torch.arange(3), torch.tensor(targets)].sum(), xn)
        for b in range(3):
            acc[b] += _sparsify_ref(g[b].abs().reshape(-1).double().numpy(), tau, flat).reshape(g.shape[1:])
    ref = torch.from_numpy(acc / n).float()
    close(e.raw, ref, rtol=1e-5, atol_frac=1e-5)
    close(e.attribution, ref.sum(1), rtol=1e-5, atol_frac=1e-5)
    # each sample contributes at most int(tau·D) non-zeros with values in (0, 1]
    assert float(e.raw.max()) <= 1.0 + 1e-6 and (e.raw >= 0).all()


# ---------------------------------------------------------------------------------------------- real model
@pytest.fixture(scope="module")
def photos(lite0) -> torch.Tensor:
    from skimage import data

    return lite0.preprocess([data.chelsea(), data.coffee()])


@pytest.mark.slow
def test_lite0_classifies_the_photos(lite0, photos):
    e = spixel.explain(lite0, photos, "saliency")
    pred = e.meta["predicted"]
    assert 281 <= pred[0] <= 285, e.meta["predicted_label"]  # chelsea: a cat class
    assert pred[1] == 967, e.meta["predicted_label"]  # coffee: espresso
    ref = Saliency(lite0.module).attribute(photos, target=pred, abs=False)
    close(e.raw, ref, rtol=1e-5, atol_frac=1e-6)


@pytest.mark.slow
def test_lite0_integrated_gradients_equals_captum(lite0, photos):
    targets = [282, 967]
    # same chunking on both sides: on one CPU thread, Lite0 gradients depend (~1e-3 of the max) on the
    # batch a row is computed in — Captum's own results differ as much between internal batch sizes 8 and 16
    e = spixel.explain(lite0, photos, "integrated_gradients", targets, n_steps=8, batch_size=8)
    ref = IntegratedGradients(lite0.module).attribute(photos, target=targets, n_steps=8, internal_batch_size=8)
    close(e.raw, ref)


def test_ig_rows_keep_the_inputs_memory_layout():
    """A broadcast tensor baseline must not turn channels-last rows into NCHW copies (1.5× slower convs on CPU)."""
    seen: list[bool] = []

    class Probe(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(x.is_contiguous(memory_format=torch.channels_last))
            return self.conv(x).mean((2, 3))

    x = torch.randn(2, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    model = spixel.ModelAdapter(Probe(), input_size=8)
    for baseline in (0.0, torch.zeros(1, 3, 1, 1)):
        seen.clear()
        spixel.explain(model, x, "integrated_gradients", target=0, baseline=baseline, n_steps=4)
        assert seen and all(seen), (baseline, seen)

"""GAD (paper 003, spec §4.2): the fused map against a hand computation on linear classifiers, where the base
method's raw map is known in closed form (input×gradient = x ⊙ W_t exactly; integrated gradients from a zero
baseline gives the same), supports read from a folder of ``spixel.train`` checkpoints, the CLI, and bad input."""

from __future__ import annotations

import copy
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import spixel
from spixel import cli
from spixel.errors import BadParameterError
from spixel.train import fit, save_checkpoint
from spixel.train.recipes import train_gad_supports

TARGETS = [0, 2, 1]


def linear(seed: int, base: nn.Sequential | None = None, noise: float = 0.3) -> nn.Sequential:
    """A linear 3-class classifier of 8×8 images; with ``base``, its weights plus ``noise`` × N(0, 1)."""
    g = torch.Generator().manual_seed(seed)
    m = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 3))
    with torch.no_grad():
        w = torch.randn(3, 3 * 8 * 8, generator=g)
        m[1].weight.copy_(w if base is None else base[1].weight + noise * w)
        m[1].bias.copy_(torch.randn(3, generator=g))
    return m.eval()


def adapter(m: nn.Module, name: str = "lin") -> spixel.ModelAdapter:
    return spixel.ModelAdapter(m, mean=(0, 0, 0), std=(1, 1, 1), input_size=8, labels=["a", "b", "c"], name=name)


@pytest.fixture
def models() -> tuple[spixel.ModelAdapter, list[spixel.ModelAdapter]]:
    base = linear(0)
    return adapter(base), [adapter(linear(s, base), f"sup{s}") for s in (1, 2)]


@pytest.fixture
def x() -> torch.Tensor:
    return torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(5))


def hand_map(m: spixel.ModelAdapter, x: torch.Tensor, targets: list[int]) -> torch.Tensor:
    """Σ_c x ⊙ W_t: the signed input×gradient map of a linear model, per image."""
    w = m.module[1].weight.detach().view(3, 3, 8, 8)
    return torch.stack([(x[i] * w[t]).sum(0) for i, t in enumerate(targets)])


def hand_mask(m: torch.Tensor, threshold: float, mode: str) -> torch.Tensor:
    out = []
    for img in m:
        pos = img[img > 0]
        assert pos.numel() > 0
        if mode == "max":
            out.append(img >= threshold * float(img.max()))
        else:
            k = math.ceil(threshold * pos.numel())
            kth = float(pos.sort(descending=True).values[k - 1])
            out.append(img >= kth)
    return torch.stack(out)


@pytest.mark.parametrize("mode,threshold", [("max", 0.1), ("max", 0.4), ("top", 0.5), ("top", 0.3)])
@pytest.mark.parametrize("combine", ["original", "mean"])
def test_gad_by_hand_on_linear_models(models, x, mode, threshold, combine):
    model, sups = models
    e = spixel.explain(
        model,
        x,
        "gad",
        TARGETS,
        supports=sups,
        base_method="input_x_gradient",
        threshold=threshold,
        threshold_mode=mode,
        combine=combine,
    )
    maps = [hand_map(m, x, TARGETS) for m in (model, *sups)]
    b = hand_mask(maps[0], threshold, mode)
    for m in maps[1:]:
        b &= hand_mask(m, threshold, mode)
    # a meaningful case: the intersection is smaller than each mask, and not empty on any image
    assert bool((b.flatten(1).sum(1) > 0).all())
    assert int(b.sum()) < min(int(hand_mask(m, threshold, mode).sum()) for m in maps)
    value = maps[0] if combine == "original" else sum(maps) / 3
    want = torch.where(b, value, torch.zeros(()))
    assert e.attribution.shape == (3, 8, 8) and e.raw is None
    assert torch.equal(e.attribution != 0, b)
    torch.testing.assert_close(e.attribution, want, rtol=1e-6, atol=1e-6)
    m = e.meta
    assert m["method"] == "gad" and m["base_method"] == "input_x_gradient" and m["target"] == TARGETS
    assert m["label"] == ["a", "c", "b"]
    assert m["supports"] == [{"name": "sup1", "alpha": None}, {"name": "sup2", "alpha": None}]
    assert (m["threshold"], m["threshold_mode"], m["combine"]) == (threshold, mode, combine)
    assert m["kept_fraction"] == pytest.approx(b.flatten(1).float().mean(1).tolist())
    json.dumps(m)  # the CLI writes meta as JSON


def test_identical_supports_give_the_thresholded_original(models, x):
    model, _ = models
    same = [copy.deepcopy(model.module) for _ in range(2)]
    for mode, thr in (("max", 0.1), ("top", 0.5)):
        e = spixel.explain(
            model, x, "gad", TARGETS, supports=same, base_method="input_x_gradient", threshold=thr, threshold_mode=mode
        )
        orig = spixel.explain(model, x, "input_x_gradient", TARGETS).attribution
        torch.testing.assert_close(e.attribution, torch.where(hand_mask(orig, thr, mode), orig, torch.zeros(())))


def test_integrated_gradients_base_on_linear_models(models, x):
    """IG of a linear model from a zero baseline is x ⊙ W_t (completeness): GAD over IG = GAD over input×gradient."""
    model, sups = models
    ig = spixel.explain(model, x, "gad", TARGETS, supports=sups, method_params={"n_steps": 3})
    ixg = spixel.explain(model, x, "gad", TARGETS, supports=sups, base_method="input_x_gradient")
    assert ig.meta["base_method"] == "integrated_gradients" and ig.meta["params"]["method_params"] == {"n_steps": 3}
    torch.testing.assert_close(ig.attribution, ixg.attribution, rtol=1e-5, atol=1e-5)


def test_default_target_is_resolved_once_on_the_original(models, x):
    model, sups = models
    e = spixel.explain(model, x, "gad", supports=sups, base_method="input_x_gradient")
    pred = model.predict(x).argmax(1).tolist()
    assert e.meta["target"] == pred
    torch.testing.assert_close(
        e.attribution, spixel.explain(model, x, "gad", pred, supports=sups, base_method="input_x_gradient").attribution
    )


def test_image_without_positive_evidence_gives_a_zero_map_and_a_warning(models, x):
    model, sups = models
    x = x.clone()
    x[1] = 0  # x ⊙ W_t = 0 everywhere: no positive pixel
    with pytest.warns(RuntimeWarning, match=r"no positive pixel"):
        e = spixel.explain(
            model, x, "gad", TARGETS, supports=sups, base_method="input_x_gradient", threshold_mode="top"
        )
    assert torch.isfinite(e.attribution).all()
    assert not e.attribution[1].any() and e.attribution[0].any() and e.meta["kept_fraction"][1] == 0.0


def test_supports_are_left_untouched(models, x):
    model, sups = models
    sups[0].module.train()
    sups[0].module[1].bias.requires_grad_(False)
    before = [({k: v.clone() for k, v in s.module.state_dict().items()}, s.module.training) for s in sups]
    spixel.explain(model, x, "gad", TARGETS, supports=sups, method_params={"n_steps": 3})
    for s, (sd, mode) in zip(sups, before, strict=True):
        assert s.module.training == mode
        assert all(torch.equal(v, sd[k]) for k, v in s.module.state_dict().items())
        assert all(p.grad is None for p in s.module.parameters())
        assert not s.module[1]._forward_hooks
    assert not sups[0].module[1].bias.requires_grad and sups[0].module[1].weight.requires_grad


# ---------------------------------------------------------------------------------------------- checkpoints, CLI
@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny trained base (``base.pt``) and its GAD supports for α ∈ {0, 2, 4} in one folder."""
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("gad")
    rng = np.random.default_rng(0)
    data = (rng.integers(0, 256, (12, 16, 16, 3), dtype=np.uint8), np.arange(12) % 3)
    base = fit(data, widths=[4, 8], epochs=1, batch_size=4, progress=False, name="base")
    save_checkpoint(d / "base.pt", base, recipe={"name": "one", "params": {}})
    train_gad_supports(base, data, data, d, pair=(0, 1), alphas=(0.0, 2.0, 4.0), epochs=1, batch_size=4, progress=False)
    return d, d / "base.pt"


def test_supports_from_a_folder_skip_alpha_zero(folder):
    d, base_path = folder
    base = spixel.load_model(str(base_path))
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    e = spixel.explain(base, x, "gad", supports=str(d), base_method="input_x_gradient")
    assert [s["alpha"] for s in e.meta["supports"]] == [2.0, 4.0]
    paths = sorted(d.glob("*alpha[24].pt"))
    assert len(paths) == 2
    listed = spixel.explain(base, x, "gad", supports=[str(p) for p in paths], base_method="input_x_gradient")
    torch.testing.assert_close(e.attribution, listed.attribution)
    assert e.meta["params"]["supports"] == listed.meta["params"]["supports"] == [p.stem for p in paths]
    with_zero = spixel.explain(base, x, "gad", supports=str(d), base_method="input_x_gradient", include_zero=True)
    assert [s["alpha"] for s in with_zero.meta["supports"]] == [0.0, 2.0, 4.0]
    json.dumps(with_zero.meta)


def test_cli_explain_with_a_support_folder(folder, tmp_path, capsys):
    d, base_path = folder
    img = tmp_path / "img.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(img)
    out = tmp_path / "out"
    args = ["explain", str(img), "--model", str(base_path), "--method", "gad", "--device", "cpu", "--out", str(out)]
    code = cli.main([*args, "--param", f"supports={d}", "--param", "base_method=input_x_gradient"])
    assert code == 0, capsys.readouterr().err
    base = spixel.load_model(str(base_path))
    ref = spixel.explain(base, base.preprocess(str(img)), "gad", supports=str(d), base_method="input_x_gradient")
    np.testing.assert_allclose(np.load(out / "img" / "gad.npy"), ref.attribution[0].numpy(), rtol=1e-5, atol=1e-6)
    info = json.loads((out / "img" / "explanation.json").read_text())
    assert info["methods"]["gad"]["params"]["supports"] == ref.meta["params"]["supports"]
    assert info["methods"]["gad"]["params"]["base_method"] == "input_x_gradient"


# ---------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "kw,match",
    [
        ({"supports": None}, "supports"),
        ({"supports": []}, "supports"),
        ({"supports": "no/such/folder"}, "neither a checkpoint"),
        ({"threshold": 0}, "threshold"),
        ({"threshold": 1.5}, "threshold"),
        ({"threshold": -0.1}, "threshold"),
        ({"threshold": "half"}, "threshold"),
        ({"threshold_mode": "median"}, "threshold_mode"),
        ({"combine": "max"}, "combine"),
        ({"base_method": "no_such_method"}, "base_method"),
        ({"base_method": "gad"}, "base_method"),
        ({"method_params": 3}, "method_params"),
        ({"method_params": {"not_a_parameter": 1}}, "no parameter"),
        ({"base_method": "input_x_gradient", "method_params": {"seed": 1}}, "deterministic"),
    ],
)
def test_bad_parameters(models, x, kw, match):
    model, sups = models
    with pytest.raises(BadParameterError, match=match):
        spixel.explain(model, x, "gad", TARGETS, **{"supports": sups, **kw})


def test_incompatible_supports(models, x, tmp_path):
    model, _ = models
    four = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
    with pytest.raises(BadParameterError, match="classes"):
        spixel.explain(model, x, "gad", TARGETS, supports=[four])
    other_size = spixel.ModelAdapter(linear(1), mean=(0, 0, 0), std=(1, 1, 1), input_size=16)
    with pytest.raises(BadParameterError, match="input size"):
        spixel.explain(model, x, "gad", TARGETS, supports=[other_size])
    with pytest.raises(BadParameterError, match="no GAD support"):
        spixel.explain(model, x, "gad", TARGETS, supports=str(tmp_path))  # an empty folder


def test_no_warnings_on_ordinary_input(models, x):
    model, sups = models
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        spixel.explain(model, x, "gad", TARGETS, supports=sups, base_method="input_x_gradient")

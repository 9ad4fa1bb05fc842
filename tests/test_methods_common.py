"""Cross-cutting contract of every registered attribution method (ARCHITECTURE.md "Conventions"): shapes,
metadata, per-image targets, batching, seeding, leaving the model untouched, and refusing bad input.

Parametrised over :data:`spixel.registry.METHODS`, so a newly registered method is covered at once; methods
without an entry in ``CHEAP`` run with their defaults, except sample counts (``_COUNT_PARAMS``)."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn

import spixel
from conftest import make_tiny
from spixel.errors import BadInputError, BadParameterError, SpixelError, UnknownNameError
from spixel.registry import METHODS

NAMES = METHODS.names()
TARGETS = [0, 3, 7]


def _gad_supports() -> list[nn.Module]:
    """Two stand-ins for GAD support models: the tiny CNN with slightly perturbed weights, as plain modules (which
    take the explained model's preprocessing, so they also serve the plain-module test)."""
    out = []
    for s in (1, 2):
        m = make_tiny(0).module
        g = torch.Generator().manual_seed(s)
        with torch.no_grad():
            for p in m.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=g))
        out.append(m)
    return out


#: cheap settings per method (small sample counts); other methods get ``_COUNT_PARAMS`` where they have them
CHEAP: dict[str, dict[str, Any]] = {
    "integrated_gradients": {"n_steps": 4},
    "smoothgrad": {"n_samples": 4},
    "sparsified_smoothgrad": {"n_samples": 4},
    # 4 samples over quickshift's 1–2 regions of a 32-px image: two seeds can draw the same rows in another
    # order, which the (order-free) surrogate cannot tell apart
    "lime": {"n_samples": 16},
    "xrai": {"n_steps": 4, "scales": (250,)},  # one Felzenszwalb scale instead of six
    "gad": {"supports": _gad_supports(), "method_params": {"n_steps": 4}},  # supports are a required input
}
_COUNT_PARAMS = {"n_steps": 4, "n_samples": 16, "n_masks": 16, "n_iter": 4, "n_iterations": 4}

EXPECTED = {
    "saliency",
    "input_x_gradient",
    "integrated_gradients",
    "smoothgrad",
    "sparsified_smoothgrad",
    "guided_backprop",
    "deconvolution",
    "gradcam",
    "gradcam_pp",
    "scorecam",
}


def defaults(name: str) -> dict[str, Any]:
    return dict(METHODS.get(name).info.get("params", {}))


def stochastic(name: str) -> bool:
    return bool(METHODS.get(name).info.get("stochastic"))


def cheap(name: str) -> dict[str, Any]:
    if name in CHEAP:
        return dict(CHEAP[name])
    return {k: v for k, v in _COUNT_PARAMS.items() if k in defaults(name)}


def run(model: Any, x: Any, name: str, target: Any = None, seed: int | None = 0, **kw: Any) -> spixel.Explanation:
    return spixel.explain(model, x, name, target, seed=seed, **{**cheap(name), **kw})


def close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-4, atol_frac: float = 1e-5) -> None:
    atol = atol_frac * float(b.abs().max()) + 1e-12
    assert torch.allclose(a, b, rtol=rtol, atol=atol), f"max abs error {float((a - b).abs().max()):.3g}"


def test_list_methods_has_the_expected_names():
    names = spixel.list_methods()
    assert names == sorted(names) == NAMES
    assert set(names) >= EXPECTED, EXPECTED - set(names)


def test_unknown_method_name():
    with pytest.raises(UnknownNameError, match="saliency"):
        spixel.explain(nn.Linear(2, 2), torch.zeros(1, 3, 8, 8), "salency")


# ---------------------------------------------------------------------------------------------- output contract
@pytest.mark.parametrize("name", NAMES)
def test_shapes_values_and_meta(tiny, tiny_x, name):
    e = run(tiny, tiny_x, name, TARGETS)
    assert e.attribution.shape == (3, 32, 32) and e.attribution.dtype == torch.float32
    assert torch.isfinite(e.attribution).all()
    if e.raw is not None:
        assert e.raw.shape == (3, 3, 32, 32) and torch.isfinite(e.raw).all()
    assert len(e) == 3
    m = e.meta
    for key in ("method", "params", "seed", "target", "label", "probability", "seconds"):
        assert key in m, key
    assert m["method"] == name == e.method
    assert isinstance(m["params"], dict)
    assert m["target"] == TARGETS
    assert m["label"] == [f"c{t}" for t in TARGETS]
    probs = tiny.predict(tiny_x)[torch.arange(3), torch.tensor(TARGETS)]
    assert all(
        math.isclose(p, float(q), rel_tol=1e-4, abs_tol=1e-6) for p, q in zip(m["probability"], probs, strict=True)
    )
    assert isinstance(m["seconds"], float) and m["seconds"] >= 0
    if stochastic(name):
        assert m["seed"] == 0
    else:
        assert m["seed"] is None


@pytest.mark.parametrize("name", NAMES)
def test_default_target_is_the_predicted_class(tiny, tiny_x, name):
    e = run(tiny, tiny_x, name)
    assert e.meta["target"] == tiny.predict(tiny_x).argmax(1).tolist()


@pytest.mark.parametrize("name", NAMES)
def test_per_image_targets_and_batching(tiny, tiny_x, name):
    """Explaining a batch == explaining each image alone; each image's own target is used."""
    batch = run(tiny, tiny_x, name, TARGETS)
    for i, t in enumerate(TARGETS):
        one = run(tiny, tiny_x[i : i + 1], name, [t])
        assert one.meta["target"] == [t]
        close(batch.attribution[i : i + 1], one.attribution)
        if batch.raw is not None:
            close(batch.raw[i : i + 1], one.raw)
    # a (N,) tensor target and a single int broadcast to the batch
    same = run(tiny, tiny_x, name, torch.tensor(TARGETS))
    close(same.attribution, batch.attribution)
    other = run(tiny, tiny_x, name, 3)
    assert other.meta["target"] == [3, 3, 3]
    close(other.attribution[1], batch.attribution[1])  # image 1 had target 3 in both
    if not METHODS.get(name).info.get("class_agnostic"):  # the paper-001 reference maps ignore the target
        assert not torch.allclose(other.attribution[0], batch.attribution[0]), "target ignored"


@pytest.mark.parametrize("name", NAMES)
def test_single_chw_image(tiny, tiny_x, name):
    e = run(tiny, tiny_x[1], name, 3)
    assert e.attribution.shape == (1, 32, 32)
    close(e.attribution, run(tiny, tiny_x[1:2], name, 3).attribution)


@pytest.mark.parametrize("name", NAMES)
def test_plain_module_equals_adapter(tiny, tiny_x, name):
    a = run(tiny, tiny_x, name, TARGETS)
    kw = {}
    if "layer" in defaults(name):  # a plain module has no "cam" role: name the same layer explicitly
        kw["layer"] = tiny.layers["cam"]
    b = run(tiny.module, tiny_x, name, TARGETS, **kw)
    close(b.attribution, a.attribution)


# ---------------------------------------------------------------------------------------------- randomness
@pytest.mark.parametrize("name", NAMES)
def test_seeding(tiny, tiny_x, name):
    a = run(tiny, tiny_x, name, TARGETS, seed=11)
    b = run(tiny, tiny_x, name, TARGETS, seed=11)
    assert torch.equal(a.attribution, b.attribution)
    if a.raw is not None:
        assert torch.equal(a.raw, b.raw)
    if stochastic(name):
        c = run(tiny, tiny_x, name, TARGETS, seed=12)
        assert not torch.equal(a.attribution, c.attribution), "the seed is ignored"
        # without a seed one is drawn, recorded, and reproduces the map
        d = run(tiny, tiny_x, name, TARGETS, seed=None)
        assert isinstance(d.meta["seed"], int)
        assert torch.equal(run(tiny, tiny_x, name, TARGETS, seed=d.meta["seed"]).attribution, d.attribution)


# ---------------------------------------------------------------------------------------------- model untouched
_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_load_state_dict_pre_hooks",
)
_GLOBAL_HOOKS = (
    "_global_forward_hooks",
    "_global_forward_pre_hooks",
    "_global_backward_hooks",
    "_global_backward_pre_hooks",
)


def _snapshot(module: nn.Module) -> dict[str, Any]:
    return {
        "state": {k: v.detach().clone() for k, v in module.state_dict().items()},
        "flags": {k: p.requires_grad for k, p in module.named_parameters()},
        "modes": {k: m.training for k, m in module.named_modules()},
        "modules": [(k, id(m), type(m)) for k, m in module.named_modules()],
        "forward": {k: m.forward for k, m in module.named_modules()},
    }


def _assert_untouched(module: nn.Module, before: dict[str, Any]) -> None:
    after = _snapshot(module)
    assert after["state"].keys() == before["state"].keys()
    for k, v in before["state"].items():
        assert torch.equal(after["state"][k], v), f"{k} changed"
    assert after["flags"] == before["flags"]
    assert after["modes"] == before["modes"]
    assert after["modules"] == before["modules"]
    assert after["forward"] == before["forward"], "a forward method was patched and not restored"
    for k, m in module.named_modules():
        for d in _HOOK_DICTS:
            assert not getattr(m, d, {}), f"hook left in {k or 'model'}.{d}"
    for p in module.parameters():
        assert p.grad is None, "gradients accumulated on parameters"
    import torch.nn.modules.module as mm

    for d in _GLOBAL_HOOKS:
        assert not getattr(mm, d, {}), f"global hook left: {d}"


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("setup", ["eval", "train_partly_frozen"])
def test_model_left_untouched(tiny, tiny_x, name, setup):
    reference = run(tiny, tiny_x, name, TARGETS).attribution  # eval mode, all parameters trainable
    if setup == "train_partly_frozen":
        tiny.module.train()
        tiny.module.features[0].requires_grad_(False)
        tiny.module.fc.bias.requires_grad_(False)
    before = _snapshot(tiny.module)
    e = run(tiny, tiny_x, name, TARGETS)
    _assert_untouched(tiny.module, before)
    # the explanation is computed in eval mode whatever mode the model was in
    close(e.attribution, reference, rtol=1e-5, atol_frac=1e-6)
    # a failing call leaves the model untouched too
    with pytest.raises(SpixelError):
        run(tiny, tiny_x, name, 5000)
    _assert_untouched(tiny.module, before)


# ---------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("name", NAMES)
def test_bad_parameters(tiny, tiny_x, name):
    d = defaults(name)
    with pytest.raises(BadParameterError, match="no parameter"):
        run(tiny, tiny_x, name, TARGETS, not_a_parameter=1)
    if "n_steps" in d:
        with pytest.raises(BadParameterError, match="n_steps"):
            run(tiny, tiny_x, name, TARGETS, n_steps=0)
    if "n_samples" in d:
        with pytest.raises(BadParameterError, match="n_samples"):
            run(tiny, tiny_x, name, TARGETS, n_samples=-3)
    if "batch_size" in d:
        with pytest.raises(BadParameterError, match="batch_size"):
            run(tiny, tiny_x, name, TARGETS, batch_size=0)
        with pytest.raises(BadParameterError, match="batch_size"):
            run(tiny, tiny_x, name, TARGETS, batch_size=2.5)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    "target",
    [[0, 1], [0, 1, 2, 3], 5000, 10, -1, 1.5, [0.0, 1.0, 2.0], True, torch.tensor([[0, 1], [2, 3]])],
    ids=["too_few", "too_many", "5000", "num_classes", "negative", "float", "floats", "bool", "2x2"],
)
def test_bad_targets(tiny, tiny_x, name, target):
    with pytest.raises(BadParameterError, match="target"):
        run(tiny, tiny_x, name, target)


@pytest.mark.parametrize("name", NAMES)
def test_bad_inputs(tiny, tiny_x, name):
    nan = tiny_x.clone()
    nan[1, 2, 3, 4] = float("nan")
    inf = tiny_x.clone()
    inf[0, 0, 0, 0] = float("inf")
    for bad in (nan, inf, tiny_x[0, 0], tiny_x[:, :1], tiny_x.unsqueeze(0), tiny_x.long(), tiny_x[:0]):
        with pytest.raises(BadInputError):
            run(tiny, bad, name)

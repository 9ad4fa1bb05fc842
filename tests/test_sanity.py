"""Cascading parameter randomisation: model untouched, top layer first, numbers recomputed independently."""

from __future__ import annotations

import copy

import pytest
import torch
from scipy.stats import spearmanr

import spixel
from spixel.errors import BadParameterError
from spixel.metrics import randomization
from spixel.metrics.sanity import parameter_layers
from spixel.registry import METRICS


def test_randomization_leaves_model_unchanged_and_starts_at_the_top(tiny, tiny_x):
    before = {k: v.clone() for k, v in tiny.module.state_dict().items()}
    flags = [p.requires_grad for p in tiny.module.parameters()]
    r = randomization(tiny, tiny_x, "saliency", target=2)
    assert r.meta["layers"][0] == "fc" and r.meta["layers"][-1] == "features.0"
    assert r.meta["layers"] == parameter_layers(tiny.module)
    assert len(r.meta["layers"]) == 6  # fc, 3 convs, 2 BatchNorms
    for k, v in tiny.module.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert [p.requires_grad for p in tiny.module.parameters()] == flags
    assert r.curves.shape == (3, 6) and r.meta["spearman"].shape == (3, 6)
    assert torch.isfinite(r.curves).all()
    # fully randomised: the map no longer looks like the original one
    assert r.scores.mean() < 0.9 and torch.equal(r.scores, r.curves[:, -1])


def test_randomization_first_step_matches_a_manual_copy(tiny, tiny_x):
    t = 2
    r = randomization(tiny, tiny_x, "saliency", target=t, layers=["fc"], seed=5)
    manual = copy.deepcopy(tiny)
    torch.manual_seed(5)
    manual.module.fc.reset_parameters()
    a = spixel.explain(tiny, tiny_x, "saliency", target=t).attribution
    b = spixel.explain(manual, tiny_x, "saliency", target=t).attribution
    for i in range(3):
        rho = spearmanr(a[i].flatten().numpy(), b[i].flatten().numpy())[0]
        assert r.meta["spearman"][i, 0].item() == pytest.approx(rho, abs=1e-5)
    assert not torch.equal(a, b)


def test_randomization_errors_and_registry(tiny, tiny_x):
    with pytest.raises(BadParameterError):
        randomization(tiny, tiny_x, "saliency", layers=["nope"])
    with pytest.raises(BadParameterError):
        randomization(tiny, tiny_x, "saliency", layers=[])
    e = METRICS.get("randomization")
    assert e.info["category"] == "sanity" and e.info["scores_explanation"] is False

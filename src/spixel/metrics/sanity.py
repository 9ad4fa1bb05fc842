"""Sanity check: cascading model-parameter randomisation (Adebayo et al., "Sanity Checks for Saliency Maps",
NeurIPS 2018). Regenerates explanations, so it is a plain function (listed in :data:`spixel.registry.METRICS`)."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..errors import BadParameterError
from ..models.adapter import ModelAdapter, as_adapter
from ..models.state import frozen
from ..registry import METRICS
from ..types import MetricResult, TargetLike, resolve_targets
from .stability import spearman_rows, ssim


def parameter_layers(module: nn.Module) -> list[str]:
    """Names of the sub-modules that own parameters directly, top (output side) first — the reverse of
    ``named_modules()`` registration order, which follows the forward pass for ordinary networks."""
    names = [n for n, m in module.named_modules() if n and any(True for _ in m.parameters(recurse=False))]
    return names[::-1]


def _randomise(mod: nn.Module, seed: int) -> None:
    """Re-initialise one layer in place: its own ``reset_parameters`` (default PyTorch init; BatchNorm also resets
    its running statistics), else N(0, 0.01²) for every direct parameter."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with torch.no_grad():
            if hasattr(mod, "reset_parameters"):
                mod.reset_parameters()
            else:
                for p in mod.parameters(recurse=False):
                    p.normal_(0.0, 0.01)


def randomization(
    model: ModelAdapter | nn.Module,
    x: Any,
    method: str,
    target: TargetLike = None,
    *,
    layers: Sequence[str] | None = None,
    seed: int = 0,
    protocol: str = "B",
    **params: Any,
) -> MetricResult:
    """Cascading parameter randomisation: re-initialise ``layers`` one after the other (top layer first, each step
    keeping the previous ones randomised), explain again, and compare with the original map.

    Works on a deep copy: the user's model is never modified. ``layers``: module names in the order to randomise
    (default: every module owning parameters, output side first). ``target``: ``None`` = the original model's
    predicted class, kept fixed for every randomised model. ``seed`` seeds the re-initialisation and stochastic
    methods; ``params`` go to :func:`spixel.explain`. Returns ``curves`` = SSIM (``protocol``, see
    :func:`~spixel.metrics.ssim`) per image and step ``(N, L)``, ``meta["spearman"]`` the Spearman rank
    correlation of the 2-D maps ``(N, L)``, ``meta["layers"]`` the step names, and ``scores`` = SSIM after the
    last step (lower = the explanation depends on the parameters, as it should).
    """
    from ..api import explain
    from ..attribution._core import prepare_input

    adapter = as_adapter(model)
    xb = prepare_input(adapter, x)
    work = copy.copy(adapter)
    work.module = copy.deepcopy(adapter.module)
    work.layers = dict(adapter.layers)
    names = list(layers) if layers is not None else parameter_layers(work.module)
    if not names:
        raise BadParameterError("no layer to randomise: the model has no parameters, or layers=[] was given")
    mods = dict(work.module.named_modules())
    unknown = [n for n in names if n not in mods]
    if unknown:
        raise BadParameterError(f"unknown layers {unknown}; use names from model.module.named_modules()")
    with torch.no_grad(), frozen(work.module):
        logits = work.module(xb)
    t = resolve_targets(target, xb.shape[0], logits.shape[1], predicted=logits.argmax(1)).to(xb.device)
    orig = explain(work, xb, method, t, seed=seed, **params)
    a0 = orig.attribution.detach().double().flatten(1).cpu().numpy()
    sims, rhos = [], []
    degenerate = 0
    for i, name in enumerate(names):
        _randomise(mods[name], seed + i)
        e = explain(work, xb, method, t, seed=seed, **params)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            sims.append(ssim(orig, e, protocol=protocol).scores)
        degenerate += len(caught)
        rho = torch.from_numpy(spearman_rows(a0, e.attribution.detach().double().flatten(1).cpu().numpy()))
        degenerate += int(rho.isnan().sum())
        rhos.append(torch.nan_to_num(rho, nan=0.0).float())
    meta: dict[str, Any] = {
        "metric": "randomization",
        "method": method,
        "layers": names,
        "x": names,
        "spearman": torch.stack(rhos, 1),
        "protocol": protocol,
        "seed": seed,
        "higher_is_better": False,
        "category": "sanity",
    }
    if degenerate:
        meta["degenerate_maps"] = degenerate
        warnings.warn(
            f"randomization: {degenerate} comparisons involved constant maps; their SSIM used a fallback "
            "normalisation and their Spearman correlation is set to 0",
            stacklevel=2,
        )
    curves = torch.stack(sims, 1)
    return MetricResult(scores=curves[:, -1].clone(), curves=curves, meta=meta)


METRICS.register(
    "randomization",
    higher_is_better=False,
    category="sanity",
    reference="Adebayo et al. 2018 (Sanity Checks for Saliency Maps), cascading randomisation",
    scores_explanation=False,
    params={"layers": None, "seed": 0, "protocol": "B"},
)(randomization)

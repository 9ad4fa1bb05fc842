"""GAD — Gradient Artificial Distancing (Mazini Rodrigues, Boutry, Najman, arXiv 2401.14434; paper 003, spec §4.2).

GAD explains the original model with a gradient-based base method (integrated gradients by default) and does the
same with *support* models, copies of the model fine-tuned to α-shifted logits (spec §4.1,
:func:`spixel.train.recipes.fit_gad_support` / ``train_gad_supports``). It keeps only the pixels that carry
positive evidence in *every* map ("features present in all attribution maps", paper 003 Fig. 3):

    m_j = base raw summed over channels (its 2-D attribution when it has no raw), signed, for j = original, supports
    B_j = m_j ≥ threshold · max(m_j)                    (threshold_mode="max", paper: 10 % of the max)
       or the ⌈threshold · P_j⌉ largest of the P_j positive pixels, ties at the cut kept   (threshold_mode="top")
    B   = AND_j B_j
    GAD = B ⊙ m_original   (combine="original")   or   B ⊙ mean_j m_j over all maps   (combine="mean")

[RECON] the fusion rule is reconstructed from the paper's text (no public code); the two thresholds are the
paper's. Every map is computed for the *same* targets, resolved once on the original model.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import BadParameterError, SpixelError
from ..models.adapter import ModelAdapter
from ..models.state import frozen
from ..types import Explanation, TargetLike
from ._core import check_float, explainer, finish, logits_and_targets, make_generator

THRESHOLD_MODES = ("max", "top")
COMBINE = ("original", "mean")


def gad_alpha(model: ModelAdapter) -> float | None:
    """The α of a GAD support read from a ``spixel.train`` checkpoint (its recipe), else ``None``."""
    recipe = (getattr(model.module, "checkpoint", None) or {}).get("recipe") or {}
    if recipe.get("name") != "gad":
        return None
    alpha = (recipe.get("params") or {}).get("alpha")
    return float(alpha) if alpha is not None else None


def load_supports(
    folder: str | os.PathLike[str], device: torch.device | str | None = None, include_zero: bool = False
) -> list[ModelAdapter]:
    """The GAD supports of a folder (``*.pt`` checkpoints whose recipe is ``gad``, e.g. written by
    ``train_gad_supports``), sorted by α; other checkpoints are ignored, the α = 0 sanity reference too unless
    ``include_zero``."""
    from ..models.zoo import load_model

    out: list[tuple[float, str, ModelAdapter]] = []
    for p in sorted(Path(folder).glob("*.pt")):
        try:
            m = load_model(str(p), device=device)
        except SpixelError:
            continue  # not a spixel.train checkpoint
        alpha = gad_alpha(m)
        if alpha is None or (alpha == 0 and not include_zero):
            continue
        out.append((alpha, p.name, m))
    if not out:
        raise BadParameterError(
            f"supports={str(folder)!r}: no GAD support checkpoint"
            + ("" if include_zero else " with α ≠ 0")
            + " in this folder; write them with `spixel train gad` or train_gad_supports"
        )
    return [m for _, _, m in sorted(out, key=lambda r: (r[0], r[1]))]


def _as_supports(supports: Any, model: ModelAdapter, include_zero: bool) -> list[ModelAdapter]:
    """Resolve ``supports`` (folder, checkpoint paths, adapters or modules) to adapters on ``model``'s device."""
    from ..models.zoo import load_model

    if supports is None:
        raise BadParameterError("gad needs supports=: a folder of GAD support checkpoints, or a list of models/paths")
    if isinstance(supports, (str, os.PathLike)):
        if Path(supports).is_dir():
            return load_supports(supports, model.device, include_zero)
        supports = [supports]
    if isinstance(supports, (ModelAdapter, nn.Module)):
        supports = [supports]
    if not isinstance(supports, (list, tuple)) or not supports:
        raise BadParameterError(
            f"supports must be a folder, or a non-empty list of models or checkpoint paths, got {supports!r}"
        )
    out = []
    for j, s in enumerate(supports):
        if isinstance(s, (str, os.PathLike)):
            if not Path(s).is_file():
                raise BadParameterError(f"support {str(s)!r} is neither a checkpoint file nor a folder")
            s = load_model(str(s), device=model.device)
        elif isinstance(s, nn.Module) and not isinstance(s, ModelAdapter):  # a copy of the model: its preprocessing
            s = ModelAdapter(
                s,
                mean=model.mean,
                std=model.std,
                input_size=model.input_size,
                resize=model.resize,
                labels=model.labels,
                name=f"support{j}",
            )
        elif not isinstance(s, ModelAdapter):
            raise BadParameterError(f"support {j} must be a ModelAdapter, nn.Module or a path, got {type(s).__name__}")
        out.append(s)
    return out


def _check_support(s: ModelAdapter, model: ModelAdapter, x: Tensor, k: int) -> None:
    if (s.input_size, s.mean, s.std) != (model.input_size, model.mean, model.std):
        raise BadParameterError(
            f"support {s.name} takes other inputs than {model.name} (input size, mean, std "
            f"{(s.input_size, s.mean, s.std)} vs {(model.input_size, model.mean, model.std)})"
        )
    if s.device != model.device:
        raise BadParameterError(f"support {s.name} is on {s.device}, the model on {model.device}: move it there")
    with frozen(s.module), torch.no_grad():
        z = s.module(x[:1])
    if z.ndim != 2 or z.shape[1] != k:
        raise BadParameterError(f"support {s.name} gives logits {tuple(z.shape)}, the model {k} classes")


def gad_mask(m: Tensor, threshold: float, mode: str = "max") -> tuple[Tensor, Tensor]:
    """``B`` of spec §4.2 for signed maps ``(N, H, W)`` and whether each image has a positive pixel ``(N,)``.

    ``"max"``: ``m ≥ threshold · max(m)`` (and ``m > 0``); ``"top"``: the ``⌈threshold · P⌉`` largest of the ``P``
    positive pixels (ties at the cut kept). An image without a positive pixel gets an empty mask."""
    flat = m.flatten(1)
    pos = flat > 0
    has = pos.any(1)
    if mode == "max":
        cut = threshold * flat.amax(1, keepdim=True)
    else:
        k = torch.ceil(threshold * pos.sum(1).double() - 1e-9).long().clamp(min=1)
        desc = flat.masked_fill(~pos, float("-inf")).sort(1, descending=True).values
        cut = desc.gather(1, (k - 1).view(-1, 1))
    b = (flat >= cut) & pos & has.view(-1, 1)
    return b.view_as(m), has


def _summary(v: Any) -> Any:
    return f"tensor{tuple(v.shape)}" if isinstance(v, Tensor) else v


@explainer("gad", family="gradient", reduction="AND of thresholded base maps ⊙ the original's signed map")
def gad(
    model: ModelAdapter,
    x: Tensor,
    target: TargetLike = None,
    *,
    supports: Any = None,
    base_method: str = "integrated_gradients",
    method_params: dict[str, Any] | None = None,
    threshold: float = 0.1,
    threshold_mode: str = "max",
    combine: str = "original",
    include_zero: bool = False,
) -> Explanation:
    """GAD (paper 003, spec §4.2 [RECON]): the ``base_method`` on the model and on each of ``supports``, each map
    thresholded (``threshold_mode`` ``"max"``: ≥ ``threshold`` · max; ``"top"``: the top ``threshold`` fraction of
    positive pixels), the masks intersected, and the model's own signed map (``combine="original"``) or the mean of
    all maps (``"mean"``) kept inside the intersection.

    ``supports``: a folder of ``spixel.train`` GAD checkpoints (α = 0 skipped unless ``include_zero``), or a list
    of checkpoint paths, :class:`ModelAdapter` or ``nn.Module`` (a plain module takes the model's preprocessing).
    ``base_method`` is not called ``method``, which :func:`spixel.explain` takes itself. ``method_params`` go to
    the base method (its ``seed`` too: one seed serves every model). ``meta`` adds
    ``base_method``, ``supports`` (name, α), ``threshold``, ``threshold_mode``, ``combine`` and ``kept_fraction``.
    """
    from ..api import explain
    from ..registry import METHODS

    t0 = time.perf_counter()
    threshold = check_float("threshold", threshold, lo=0.0, hi=1.0, lo_open=True)
    if threshold_mode not in THRESHOLD_MODES:
        raise BadParameterError(f"threshold_mode must be one of {', '.join(THRESHOLD_MODES)}, got {threshold_mode!r}")
    if combine not in COMBINE:
        raise BadParameterError(f"combine must be one of {', '.join(COMBINE)}, got {combine!r}")
    method = base_method
    if not isinstance(method, str) or method == "gad" or method not in METHODS:
        names = ", ".join(n for n in METHODS.names() if n != "gad")
        raise BadParameterError(f"base_method must be a method name ({names}), got {method!r}")
    if method_params is not None and not isinstance(method_params, dict):
        raise BadParameterError(f"method_params must be a dict of the base method's parameters, got {method_params!r}")
    mp = dict(method_params or {})
    base_seed = None
    if METHODS.get(method).info.get("stochastic"):
        _, base_seed = make_generator(mp.pop("seed", None))
    elif "seed" in mp:
        raise BadParameterError(f"{method} is deterministic: drop seed from method_params")

    logits, t = logits_and_targets(model, x, target)
    sups = _as_supports(supports, model, bool(include_zero))
    for s in sups:
        _check_support(s, model, x, logits.shape[1])

    maps = []
    for m in [model, *sups]:
        e = explain(m, x, method, t, seed=base_seed, **mp)
        maps.append((e.raw.sum(1) if e.raw is not None else e.attribution).float())
    b = torch.ones_like(maps[0], dtype=torch.bool)
    has = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    for m in maps:
        bj, hj = gad_mask(m, threshold, threshold_mode)
        b &= bj
        has &= hj
    if not bool(has.all()):
        bad = (~has).nonzero().view(-1).tolist()
        warnings.warn(
            f"gad: a map of image(s) {bad} has no positive pixel: their GAD map is all zero", RuntimeWarning, 2
        )
    value = maps[0] if combine == "original" else torch.stack(maps).mean(0)
    attribution = torch.where(b, value, torch.zeros_like(value))

    params = {
        "supports": [s.name for s in sups],
        "base_method": method,
        "method_params": {k: _summary(v) for k, v in mp.items()},
        "threshold": threshold,
        "threshold_mode": threshold_mode,
        "combine": combine,
        "include_zero": bool(include_zero),
    }
    ex = finish(model, "gad", attribution, None, logits, t, params, None, t0)
    kept = b.flatten(1).float().mean(1)
    ex.meta.update(
        {
            "base_method": method,
            "base_seed": base_seed,
            "supports": [{"name": s.name, "alpha": gad_alpha(s)} for s in sups],
            "threshold": threshold,
            "threshold_mode": threshold_mode,
            "combine": combine,
            "kept_fraction": [float(v) for v in kept.tolist()],
        }
    )
    return ex

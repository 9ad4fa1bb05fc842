"""Class-agnostic reference maps of paper 001 (Hartley et al. 2021, Table 1 "Centre" and "Random"): how well does
a map that knows nothing about the image do? A method should beat both.

* ``centre_map``: ``1 − d / d_max`` with ``d`` the Euclidean distance of each pixel to the image centre — objects
  in photographs sit near the centre, so this is a strong prior, not a straw man;
* ``random_point_map``: the same around a uniformly random point (seeded; one point per call, so a batch equals
  its images explained alone — the experiments engine seeds each item separately).

Both ignore the model and the target; they carry the usual ``meta`` (the model's prediction is recorded).
"""

from __future__ import annotations

import time

import torch
from torch import Tensor

from ..models.adapter import ModelAdapter
from ..types import Explanation, TargetLike
from ._core import explainer, finish, logits_and_targets, make_generator


def distance_map(h: int, w: int, cy: float, cx: float, device: torch.device) -> Tensor:
    """``1 − d / max(d)`` over an ``h × w`` grid, ``d`` the distance of each pixel centre to ``(cy, cx)``."""
    ys = torch.arange(h, device=device, dtype=torch.float32).view(-1, 1) + 0.5
    xs = torch.arange(w, device=device, dtype=torch.float32).view(1, -1) + 0.5
    d = torch.sqrt((ys - cy) ** 2 + (xs - cx) ** 2)
    return 1.0 - d / d.max().clamp_min(1e-12)


@explainer(
    "centre_map",
    family="baseline",
    reduction="1 − distance to the image centre (class-agnostic)",
    class_agnostic=True,
    groupable=True,
)
def centre_map(model: ModelAdapter, x: Tensor, target: TargetLike = None) -> Explanation:
    """Paper 001's "Centre" baseline: ``1 − d / d_max``, ``d`` the distance to the image centre."""
    t0 = time.perf_counter()
    logits, t = logits_and_targets(model, x, target)
    n, _, h, w = x.shape
    a = distance_map(h, w, h / 2, w / 2, x.device).expand(n, h, w).clone()
    return finish(model, "centre_map", a, None, logits, t, {}, None, t0)


@explainer(
    "random_point_map",
    family="baseline",
    reduction="1 − distance to a random point (class-agnostic)",
    stochastic=True,
    class_agnostic=True,
    groupable=True,
)
def random_point_map(model: ModelAdapter, x: Tensor, target: TargetLike = None, *, seed: int | None = 0) -> Explanation:
    """Paper 001's "Random" baseline: ``1 − d / d_max`` around a point drawn uniformly in the image (from a CPU
    generator seeded with ``seed``; the same point for every image of the call)."""
    t0 = time.perf_counter()
    gen, seed = make_generator(seed)
    logits, t = logits_and_targets(model, x, target)
    n, _, h, w = x.shape
    u = torch.rand(2, generator=gen)
    a = distance_map(h, w, float(u[0]) * h, float(u[1]) * w, x.device).expand(n, h, w).clone()
    return finish(model, "random_point_map", a, None, logits, t, {"seed": seed}, seed, t0)

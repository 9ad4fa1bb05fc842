"""Protocols: the papers' tables as experiment files shipped in the package (``experiments/protocols/*.toml``).

A protocol is an ordinary experiment with a ``[protocol]`` table: the paper and table it rebuilds, the data it
runs on by default (``photos`` / ``synthetic`` need no download; the paper's own dataset when the user has it),
the published numbers it sets beside ours and the claims the report gives a verdict on::

    [protocol]
    name = "p001-deletion"
    paper = "001"
    table = "Table 1"
    description = "deletion AUC of SWAG and the region baselines"
    data = "photos"
    datasets = ["imagenet:DIR (the paper's: ImageNet val)", "photos", "synthetic"]
    runtime = "≈ 60 s per image on 2 CPU cores (LIME, XRAI dominate)"
    published = [{ method = "swag", metric = "deletion", value = 0.119, note = "ImageNet, ResNet-50" }]
    claims = [{ text = "SWAG deletes faster than Grad-CAM", metric = "deletion", better = "swag", worse = "gradcam" }]
    [protocol.fast]                        # smoke-test settings (spixel run NAME --fast): per method label
    lime = { n_samples = 64 }
    [protocol.fast_metrics]                # … and per metric label
    deletion = { n_steps = 8 }

``spixel run NAME --fast`` applies the ``fast`` overrides (a different experiment, so a different run): the
whole table in seconds per image, for trying a protocol — never for the paper's numbers.
"""

from __future__ import annotations

import tomllib
from dataclasses import replace
from functools import cache
from importlib import resources
from typing import Any

from ..errors import BadParameterError
from ..registry import PROTOCOLS
from .config import Experiment, MethodSpec, MetricSpec, from_dict, validate


@cache
def _files() -> dict[str, str]:
    root = resources.files(__package__).joinpath("protocols")
    return {
        p.name.removesuffix(".toml"): p.read_text(encoding="utf-8") for p in root.iterdir() if p.name.endswith(".toml")
    }


def protocol_dict(name: str) -> dict[str, Any]:
    """The parsed TOML of a shipped protocol."""
    return tomllib.loads(_files()[name])


def fast(exp: Experiment) -> Experiment:
    """``exp`` with its protocol's ``fast`` / ``fast_metrics`` parameter overrides (smoke-test settings)."""
    p = exp.protocol or {}
    over_m: dict[str, dict[str, Any]] = p.get("fast", {})
    over_t: dict[str, dict[str, Any]] = p.get("fast_metrics", {})
    unknown = sorted(set(over_m) - {m.key for m in exp.methods}) + sorted(set(over_t) - {m.key for m in exp.metrics})
    if unknown:
        raise BadParameterError(f"{exp.name}: [protocol.fast] names {unknown[0]!r}, which is not in the experiment")
    methods = tuple(
        MethodSpec(m.name, {**m.params, **over_m.get(m.key, {})}, m.regions, m.channels, m.label) for m in exp.methods
    )
    metrics = tuple(MetricSpec(m.name, {**m.params, **over_t.get(m.key, {})}, m.label) for m in exp.metrics)
    return validate(replace(exp, name=exp.name + "-fast", methods=methods, metrics=metrics))


def _loader(name: str) -> Any:
    def load() -> Experiment:
        return from_dict(protocol_dict(name), f"protocol {name}")

    return load


def register_all() -> None:
    """Register every shipped protocol in :data:`~spixel.registry.PROTOCOLS` (idempotent)."""
    for name in sorted(_files()):
        if name in PROTOCOLS:
            continue
        p = protocol_dict(name).get("protocol", {})
        PROTOCOLS.register(
            name,
            description=p.get("description", ""),
            source=f"paper {p.get('paper', '?')} {p.get('table', '')}".strip(),
            data=p.get("data", ""),
            datasets=tuple(p.get("datasets", ())),
            runtime=p.get("runtime", ""),
        )(_loader(name))


register_all()

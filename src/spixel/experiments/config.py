"""Experiments as data: a TOML file (or a dict) → a validated, resolved :class:`Experiment` with a stable hash.

::

    [experiment]
    name = "my-eval"
    model = "efficientnet_lite0"          # or a checkpoint path / torchvision arch (+ weights = "FILE")
    seed = 0
    target = "label"                      # "label" (the annotation, else the prediction), "predicted", or a class
    [[method]]
    name = "integrated_gradients"
    params = { n_steps = 16 }
    [[method]]
    name = "saliency"
    regions = "slic:n_segments=100"       # the grouping axis, as on the command line
    [[metric]]
    name = "deletion"
    params = { n_steps = 28 }

The hash covers what decides an item's rows (model, weights, seed, target rule, methods, metrics) and nothing
that does not (batch size, workers, device, the dataset): a re-run with the same hash continues the same run.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import BadParameterError, UnknownNameError

TARGET_RULES = ("label", "predicted")

_EXPERIMENT_KEYS = {"name", "model", "weights", "seed", "target", "description"}
_METHOD_KEYS = {"name", "label", "params", "regions", "channels"}
_METRIC_KEYS = {"name", "label", "params"}
_PROTOCOL_KEYS = {
    "name",
    "paper",
    "table",
    "description",
    "data",
    "datasets",
    "published",
    "claims",
    "runtime",
    "note",
    "fast",
    "fast_metrics",
    "model_set",
}


@dataclass(frozen=True)
class MethodSpec:
    """One explanation of the experiment: a registered method, its parameters, and optionally the regions it is
    explained over (``"slic:n_segments=100"``; a region method such as LIME takes them as its own). ``label``
    names it in the store (default: the method name); (label, regions) is unique within an experiment."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    regions: str | None = None
    channels: str = "joint"
    label: str = ""

    @property
    def key(self) -> str:
        return self.label or self.name

    @property
    def regions_key(self) -> str:
        """The ``regions`` column of the store: the segmenter spec, ``""`` for pixel maps."""
        return self.regions or ""


@dataclass(frozen=True)
class MetricSpec:
    """One metric and its parameters. A ``reference = "LABEL"`` parameter names another method of the
    experiment whose map is the reference (``convex_hull_ratio``, ``occlusion_sensitivity``). ``label`` names it
    in the store (default: the metric name), so one metric can appear with several parameter sets."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    @property
    def key(self) -> str:
        return self.label or self.name


@dataclass(frozen=True)
class Experiment:
    """A resolved experiment: what to explain with and how to score it (see the module docstring)."""

    name: str
    model: str
    methods: tuple[MethodSpec, ...]
    metrics: tuple[MetricSpec, ...] = ()
    weights: str | None = None
    seed: int = 0
    target: str | int = "label"
    description: str = ""
    source: str = ""
    #: a protocol's metadata (``[protocol]``: paper, table, published numbers, claims); not part of the hash
    protocol: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The resolved configuration, as stored in the ``runs`` table (JSON)."""
        return {
            "name": self.name,
            "model": self.model,
            "weights": self.weights,
            "seed": self.seed,
            "target": self.target,
            "methods": [
                {"name": m.name, "label": m.key, "params": m.params, "regions": m.regions, "channels": m.channels}
                for m in self.methods
            ],
            "metrics": [{"name": m.name, "label": m.key, "params": m.params} for m in self.metrics],
            "protocol": self.protocol,
        }

    @property
    def hash(self) -> str:
        """16 hex digits of the SHA-256 of the canonical JSON of everything that decides an item's rows."""
        d = self.to_dict()
        d.pop("name")
        d.pop("protocol")
        text = json.dumps(d, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def with_overrides(
        self, *, model: str | None = None, weights: str | None = None, seed: int | None = None
    ) -> Experiment:
        """The experiment with ``--model`` / ``--weights`` / ``--seed`` from the command line applied."""
        out = self
        if model is not None:
            out = replace(out, model=model, weights=weights)
        elif weights is not None:
            out = replace(out, weights=weights)
        if seed is not None:
            out = replace(out, seed=int(seed))
        return validate(out)

    def method(self, key: str) -> MethodSpec:
        for m in self.methods:
            if m.key == key:
                return m
        raise UnknownNameError(f"no method {key!r} in experiment {self.name}")


def _table(d: Any, where: str) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise BadParameterError(f"{where} must be a table (key = value pairs), got {type(d).__name__}")
    return d


def _unknown(d: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(d) - allowed)
    if extra:
        raise BadParameterError(f"{where}: unknown key {extra[0]!r}; allowed: {', '.join(sorted(allowed))}")


def from_dict(d: dict[str, Any], source: str = "") -> Experiment:
    """An experiment from the parsed TOML (``{"experiment": {...}, "method": [...], "metric": [...]}``)."""
    where = source or "the experiment"
    _unknown(d, {"experiment", "method", "metric", "protocol"}, where)
    protocol = d.get("protocol")
    if protocol is not None:
        protocol = _table(protocol, f"{where}: [protocol]")
        _unknown(protocol, _PROTOCOL_KEYS, f"{where}: [protocol]")
    head = _table(d.get("experiment", {}), f"{where}: [experiment]")
    _unknown(head, _EXPERIMENT_KEYS, f"{where}: [experiment]")
    methods = []
    raw_methods = d.get("method", [])
    if not isinstance(raw_methods, list):
        raise BadParameterError(f"{where}: write methods as [[method]] tables")
    for i, m in enumerate(raw_methods):
        m = _table(m, f"{where}: [[method]] #{i + 1}")
        _unknown(m, _METHOD_KEYS, f"{where}: [[method]] #{i + 1}")
        if "name" not in m:
            raise BadParameterError(f"{where}: [[method]] #{i + 1} needs a name (spixel list methods)")
        methods.append(
            MethodSpec(
                name=str(m["name"]),
                params=dict(_table(m.get("params", {}), f"{where}: [[method]] {m['name']} params")),
                regions=m.get("regions") or None,
                channels=str(m.get("channels", "joint")),
                label=str(m.get("label", "")),
            )
        )
    metrics = []
    raw_metrics = d.get("metric", [])
    if not isinstance(raw_metrics, list):
        raise BadParameterError(f"{where}: write metrics as [[metric]] tables")
    for i, m in enumerate(raw_metrics):
        m = _table(m, f"{where}: [[metric]] #{i + 1}")
        _unknown(m, _METRIC_KEYS, f"{where}: [[metric]] #{i + 1}")
        if "name" not in m:
            raise BadParameterError(f"{where}: [[metric]] #{i + 1} needs a name (spixel list metrics)")
        metrics.append(
            MetricSpec(
                str(m["name"]),
                dict(_table(m.get("params", {}), f"{where}: {m['name']} params")),
                label=str(m.get("label", "")),
            )
        )
    if "model" not in head:
        raise BadParameterError(f'{where}: [experiment] needs model = "NAME" (spixel list models) or --model')
    exp = Experiment(
        name=str(head.get("name") or (Path(source).stem if source else "experiment")),
        model=str(head["model"]),
        weights=head.get("weights"),
        seed=head.get("seed", 0),
        target=head.get("target", "label"),
        description=str(head.get("description", "")),
        methods=tuple(methods),
        metrics=tuple(metrics),
        source=source,
        protocol=protocol,
    )
    return validate(exp)


def load_experiment(spec: str | Path) -> Experiment:
    """A TOML experiment file, or the name of a built-in protocol (``spixel list protocols``)."""
    p = Path(spec)
    if p.suffix.lower() == ".toml" or p.exists():
        if not p.is_file():
            raise BadParameterError(f"experiment file {p} not found; give a .toml file or a protocol name")
        try:
            d = tomllib.loads(p.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise BadParameterError(f"{p} is not valid TOML: {e}") from None
        return from_dict(d, str(p))
    from ..registry import PROTOCOLS

    if str(spec) in PROTOCOLS:
        return PROTOCOLS.get(str(spec)).fn()
    names = PROTOCOLS.names()
    raise UnknownNameError(
        f"{spec!r} is neither an experiment file (.toml) nor a protocol"
        + (f"; protocols: {', '.join(names)}" if names else "")
    )


def validate(exp: Experiment) -> Experiment:
    """Check every name and parameter against the registries (one line on the first problem)."""
    from .. import attribution, metrics, segmentation  # noqa: F401  (registration)
    from ..params import parse_segmenter_spec
    from ..regions import check_channels, uses_regions
    from ..registry import METHODS, METRICS

    if not isinstance(exp.seed, int) or isinstance(exp.seed, bool) or exp.seed < 0:
        raise BadParameterError(f"{exp.name}: seed must be an integer >= 0, got {exp.seed!r}")
    fixed = isinstance(exp.target, int) and not isinstance(exp.target, bool) and exp.target >= 0
    if exp.target not in TARGET_RULES and not fixed:
        raise BadParameterError(
            f"{exp.name}: target must be one of {', '.join(TARGET_RULES)} or a class index, got {exp.target!r}"
        )
    if not exp.methods:
        raise BadParameterError(f"{exp.name}: add at least one [[method]] (spixel list methods)")
    seen: set[tuple[str, str]] = set()
    for m in exp.methods:
        entry = METHODS.get(m.name)
        accepted = entry.info.get("params", {})
        bad = sorted(set(m.params) - set(accepted))
        if "seed" in m.params:
            raise BadParameterError(f"{exp.name}: method {m.name}: set the seed once, in [experiment] seed = N")
        if bad:
            raise BadParameterError(
                f"{exp.name}: method {m.name} has no parameter {bad[0]!r}; it accepts: {', '.join(accepted) or 'none'}"
            )
        if m.regions is not None:
            parse_segmenter_spec(m.regions, f"{exp.name}: method {m.name} regions")
            check_channels(m.channels)
            if entry.info.get("groupable", True) is False and not uses_regions(m.name):
                raise BadParameterError(f"{exp.name}: {m.name} makes its own superpixels; drop its regions =")
        elif m.channels != "joint":
            raise BadParameterError(f"{exp.name}: method {m.name}: channels only applies with regions")
        k = (m.key, m.regions_key)
        if k in seen:
            raise BadParameterError(
                f"{exp.name}: method {m.key} with regions {m.regions_key or 'none'} is listed twice; "
                'give one of them label = "OTHER_NAME"'
            )
        seen.add(k)
    labels = {m.key for m in exp.methods}
    names_seen: set[str] = set()
    for mt in exp.metrics:
        entry = METRICS.get(mt.name)
        if not entry.info.get("scores_explanation"):
            raise BadParameterError(
                f"{exp.name}: metric {mt.name} compares or regenerates explanations; an experiment scores each "
                "explanation (use spixel.metrics." + mt.name + " or a protocol that runs it)"
            )
        accepted = entry.info.get("params", {})
        bad = sorted(set(mt.params) - set(accepted))
        if bad:
            raise BadParameterError(
                f"{exp.name}: metric {mt.name} has no parameter {bad[0]!r}; it accepts: {', '.join(accepted)}"
            )
        given = sorted(set(mt.params) & {"masks", "boxes", "mask"})
        if given:
            raise BadParameterError(f"{exp.name}: metric {mt.name}: {given[0]} comes from the dataset; drop it")
        if "seed" in mt.params:
            raise BadParameterError(f"{exp.name}: metric {mt.name}: set the seed once, in [experiment] seed = N")
        ref = mt.params.get("reference")
        if ref is not None and ref not in labels:
            raise BadParameterError(
                f"{exp.name}: metric {mt.name}: reference = {ref!r} must name a method of the experiment "
                f"({', '.join(sorted(labels))})"
            )
        if mt.name == "convex_hull_ratio" and ref is None:
            raise BadParameterError(f'{exp.name}: convex_hull_ratio needs params = {{ reference = "METHOD" }}')
        if mt.key in names_seen:
            raise BadParameterError(
                f'{exp.name}: metric {mt.key} is listed twice; give one of them label = "OTHER_NAME"'
            )
        names_seen.add(mt.key)
    return exp

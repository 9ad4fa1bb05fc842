"""Parameters written as text (command line, experiment files): ``KEY=VALUE`` items and ``NAME:K=V,...`` specs."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from .errors import BadParameterError


def parse_value(s: str) -> Any:
    """A ``--param`` value: int, float, bool (``true``/``false``), ``None`` (``none``/``null``) or the text."""
    low = s.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    if re.fullmatch(r"[+-]?\d+", s.strip()):
        return int(s)
    if re.fullmatch(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?", s.strip()):
        return float(s)
    return s


def parse_kv(items: Sequence[str], where: str, example: str) -> dict[str, Any]:
    """``["k=v", ...]`` → ``{k: parse_value(v)}``; ``where`` and ``example`` go into the error messages."""
    out: dict[str, Any] = {}
    for it in items:
        key, eq, val = it.partition("=")
        key = key.strip()
        if not eq or not key:
            raise BadParameterError(f"{where}{it!r} is malformed: write KEY=VALUE, e.g. {example}")
        if not key.isidentifier():
            raise BadParameterError(f"{where}{it!r}: {key!r} is not a parameter name")
        out[key] = parse_value(val.strip())
    return out


def parse_segmenter_spec(spec: str, where: str = "--regions") -> tuple[str, dict[str, Any]]:
    """``NAME[:KEY=VALUE,...]`` → ``(name, params)``, checked against the segmenter registry: unknown names and
    parameters, ``model=`` (the model is the explained one) and array parameters raise with what to do."""
    from . import segmentation  # noqa: F401  (registration)
    from .registry import SEGMENTERS

    name, colon, rest = spec.partition(":")
    name = name.strip()
    items = rest.split(",") if colon else []
    if not name or (colon and not rest.strip()) or any(not it.strip() for it in items):
        raise BadParameterError(
            f"{where} {spec!r} is malformed: write NAME or NAME:KEY=VALUE,KEY=VALUE, "
            "e.g. slic:n_segments=100,compactness=20"
        )
    params = parse_kv(items, f"{where} {spec!r}: ", "slic:n_segments=100")
    entry = SEGMENTERS.get(name)
    accepted = entry.info.get("params", {})
    unknown = [k for k in params if k not in accepted]
    if unknown:
        raise BadParameterError(
            f"{where}: segmenter {name} has no parameter {', '.join(map(repr, unknown))}; "
            f"it accepts: {', '.join(accepted) or 'none'}"
        )
    if "model" in params:
        raise BadParameterError(f"{where} {name}: the model is the one explained (--model); drop model=")
    missing = [k for k in entry.info.get("needs", ()) if k not in params]
    if missing:
        raise BadParameterError(
            f"{where} {name} needs {', '.join(missing)} (an array), which text cannot give; "
            "SWAG's methods use it (method swag_ig or swag_g)"
        )
    return name, params

"""The end-of-run table: method × metric mean ± 95 % confidence interval and n, from the store."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Cell:
    """Mean, half-width of the 95 % CI (Student t over items; 0 when n < 2) and n of one method × metric."""

    mean: float
    ci: float
    n: int


def t_quantile(df: int) -> float:
    """The 97.5 % quantile of Student's t with ``df`` degrees of freedom (scipy's, else the normal's 1.96)."""
    try:
        from scipy.stats import t

        return float(t.ppf(0.975, df))
    except ImportError:  # pragma: no cover - scipy comes with scikit-learn
        return 1.959964


def mean_ci(values: list[float]) -> Cell:
    n = len(values)
    if n == 0:
        return Cell(float("nan"), float("nan"), 0)
    m = sum(values) / n
    if n < 2:
        return Cell(m, 0.0, n)
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1))
    return Cell(m, t_quantile(n - 1) * sd / math.sqrt(n), n)


def summarise(rows: list[tuple[str, str, str, str, float | None]]) -> dict[tuple[str, str], dict[str, Cell]]:
    """``(item, method, regions, metric, value)`` rows → ``{(method, regions): {metric: Cell}}`` (NULLs skipped)."""
    acc: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for _item, method, regions, metric, value in rows:
        if value is not None:
            acc[(method, regions)][metric].append(float(value))
    return {k: {m: mean_ci(v) for m, v in d.items()} for k, d in acc.items()}


def format_table(
    table: dict[tuple[str, str], dict[str, Cell]], metrics: list[str], directions: dict[str, bool] | None = None
) -> str:
    """A plain-text table: one row per method (and regions), one column per metric (↑/↓ when known)."""
    directions = directions or {}
    heads = [f"{m} {'↑' if directions.get(m) else '↓'}" if m in directions else m for m in metrics]
    names = [f"{m}" + (f" [{r}]" if r else "") for m, r in table]
    wm = max([len("method"), *(len(n) for n in names)])
    cells: list[list[str]] = []
    for key in table:
        row = []
        for m in metrics:
            c = table[key].get(m)
            row.append("—" if c is None or c.n == 0 else f"{c.mean:.4f} ± {c.ci:.4f} (n={c.n})")
        cells.append(row)
    widths = [max(len(h), *(len(r[j]) for r in cells)) if cells else len(h) for j, h in enumerate(heads)]
    lines = [f"{'method':<{wm}}  " + "  ".join(f"{h:>{w}}" for h, w in zip(heads, widths, strict=True))]
    for name, row in zip(names, cells, strict=True):
        lines.append(f"{name:<{wm}}  " + "  ".join(f"{c:>{w}}" for c, w in zip(row, widths, strict=True)))
    return "\n".join(lines)


def directions_of(metrics: Any) -> dict[str, bool]:
    """``{metric: higher_is_better}`` for an experiment's metrics (keyed by their labels) or for a list of metric
    names (names that are not registered metrics are left out)."""
    from .. import metrics as _m  # noqa: F401  (registration)
    from ..registry import METRICS

    if hasattr(metrics, "metrics"):
        return {m.key: bool(METRICS.get(m.name).info["higher_is_better"]) for m in metrics.metrics}
    return {m: bool(METRICS.get(m).info["higher_is_better"]) for m in metrics if m in METRICS}


def bootstrap_ci(values: Any, *, confidence: float = 0.95, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """The percentile-bootstrap ``confidence`` interval ``(lo, hi)`` of the mean of ``values``: ``n_boot``
    resamples with replacement drawn by ``numpy.random.default_rng(seed)`` (the same values and seed give the
    same interval on every machine). One value: ``(v, v)``; none: ``(nan, nan)``."""
    import numpy as np

    v = np.asarray(values, dtype=np.float64).ravel()
    n = v.size
    if n == 0:
        return float("nan"), float("nan")
    if n == 1 or float(v.min()) == float(v.max()):
        return float(v[0]), float(v[0])
    rng = np.random.default_rng(seed)
    chunk = max(1, min(int(n_boot), 4_000_000 // n))  # bound the index matrix (~32 MB) for large n
    means = np.empty(int(n_boot))
    for start in range(0, int(n_boot), chunk):
        k = min(chunk, int(n_boot) - start)
        means[start : start + k] = v[rng.integers(0, n, size=(k, n))].mean(axis=1)
    a = (1.0 - float(confidence)) / 2.0
    lo, hi = np.quantile(means, [a, 1.0 - a])
    return float(lo), float(hi)

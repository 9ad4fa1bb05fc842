"""``spixel report STORE``: a results store as one self-contained HTML page (or Markdown tables).

Per run (a protocol or a plain experiment) the page holds:

* **the table**: rows = method (and regions), columns = metric (↑ higher / ↓ lower is better); a cell is the mean
  over the items, its 95 % percentile-bootstrap CI (:func:`~spixel.experiments.summary.bootstrap_ci`, seeded) and
  n. The best mean of each column is marked ★; a method whose difference from the best is not significant
  (two-sided Wilcoxon signed-rank test over the items both have, α = 0.05, p-value in the cell's title) is
  marked ≈ (tied). Where the protocol publishes a number for a cell, it stands in a *paper* column beside ours;
* **claims**: each claim of the protocol gets a verdict — *holds* / *does not hold* / *inconclusive* — from the
  paired test over the items both methods have (two-sided Wilcoxon signed-rank, α = 0.05; the direction is the
  sign of the larger signed-rank sum after orienting the differences by the metric's ``higher_is_better``);
* **metric agreement**: Kendall's τ-b between the method rankings of every two metrics (over the methods scored
  by both);
* **curves**: per metric that stores curves (deletion, insertion, MoRF …), each method's mean curve with its
  95 % CI band (Student t per x), inline SVG;
* **gallery**: the best and worst items of each method by one metric, the map over the model's crop with its
  region boundaries — only when the run kept its maps (``spixel run --cache-maps DIR``) and the report is given
  that folder (``--cache-maps DIR``). Maps are never recomputed here: a report is a read of the store, cheap and
  side-effect free; the model is loaded only to crop the photo the way the run did;
* **failed items** with their one-line reasons, and **provenance** (config, spixel version, model, dataset and
  fingerprint, seed, started / finished, engine).

Protocol metadata read from a run's ``config["protocol"]`` (the experiment's ``[protocol]`` TOML table; every
key optional)::

    [protocol]
    name = "p001-deletion"                 # shown in the heading (else the experiment's name)
    paper = "001"                          # "paper 001, Table 1" in the heading
    table = "Table 1"
    description = "…"                      # a line under the heading
    note = "…"                             # a note under the table
    data = "photos"                        # the default data (shown in provenance)
    published = [                          # numbers set beside ours
      { method = "swag", metric = "deletion", value = 0.119, note = "ImageNet, ResNet-50" },
      { method = "lime", regions = "quickshift", metric = "deletion", value = 0.125 },
    ]
    claims = [                             # verdicts
      { text = "SWAG deletes faster than Grad-CAM", metric = "deletion", better = "swag", worse = "gradcam" },
    ]

``method`` / ``better`` / ``worse`` are method *labels* (``[[method]] label``, default its name) and ``metric`` a
metric *label*; the direction comes from ``spixel.registry.METRICS.get(name).info["higher_is_better"]`` of the
metric's ``name`` in the run's metrics list. ``regions`` (published) and ``better_regions`` / ``worse_regions``
(claims) pick one row when a label appears with several regions; left out, the label's only row is meant (a label
with several rows and no regions is reported as ambiguous, never guessed). ``note`` (published) goes in the
cell's title. Entries that match no row are listed under the table, not dropped silently.

HTML markup that tests and tools may rely on: ``<section class="run" data-run=ID data-name=NAME>``; table cells
``<td class="cell" data-method data-regions data-metric data-mean data-lo data-hi data-n data-mark data-p>``
(``data-mark`` ``best`` / ``tied`` / ``""``; ``data-p`` the p-value against the best; values in full precision)
and ``<td class="paper" data-method data-regions data-metric data-published>``; claims ``<tr class="claim"
data-verdict data-p data-n data-better data-worse data-metric>``; agreement ``<td class="tau" data-a data-b
data-tau data-n>``; failures ``<tr class="failed" data-item>``; curve figures
``<figure class="curves" data-metric>``; gallery tiles ``<figure class="tile" data-method data-item data-kind>``.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import time
import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BadParameterError
from .store import RunInfo, Store
from .summary import bootstrap_ci

#: Significance level of every test in the report.
ALPHA = 0.05
#: Verdicts of a claim.
HOLDS, FAILS, INCONCLUSIVE = "holds", "does not hold", "inconclusive"

Key = tuple[str, str]  # (method label, regions)


# ------------------------------------------------------------------------------------------------- statistics
@dataclass(frozen=True)
class Paired:
    """A paired comparison of ``a`` against ``b`` over the items both have: n pairs, the two-sided Wilcoxon
    signed-rank p-value (1.0 when every difference is 0, NaN with no pair), the signed-rank sums of
    ``a - b`` (``r_plus``: a larger), and how many items a is larger / smaller / equal on."""

    n: int
    p: float
    r_plus: float
    r_minus: float
    larger: int
    smaller: int
    equal: int
    mean_diff: float


def paired_test(a: dict[str, float], b: dict[str, float]) -> Paired:
    """Wilcoxon signed-rank test (scipy, two-sided, zero differences dropped) of ``a[item] - b[item]``: the exact
    distribution for up to 50 untied differences, else the normal approximation with tie correction (scipy's
    permutation fallback for small tied samples costs seconds per test)."""
    from scipy.stats import rankdata, wilcoxon

    items = sorted(set(a) & set(b))
    d = np.array([a[i] - b[i] for i in items], dtype=np.float64)
    n = int(d.size)
    if n == 0:
        return Paired(0, float("nan"), 0.0, 0.0, 0, 0, 0, float("nan"))
    nz = d[d != 0]
    larger, smaller = int((d > 0).sum()), int((d < 0).sum())
    if nz.size == 0:
        return Paired(n, 1.0, 0.0, 0.0, 0, 0, n, 0.0)
    ranks = rankdata(np.abs(nz))
    r_plus, r_minus = float(ranks[nz > 0].sum()), float(ranks[nz < 0].sum())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small n / ties: scipy switches method and says so
        try:
            exact = nz.size <= 50 and np.unique(np.abs(nz)).size == nz.size
            p = float(wilcoxon(nz, alternative="two-sided", method="exact" if exact else "approx").pvalue)
        except ValueError:
            p = 1.0
    if not math.isfinite(p):
        p = 1.0
    return Paired(n, p, r_plus, r_minus, larger, smaller, n - larger - smaller, float(d.mean()))


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Kendall's τ-b between two score vectors (scipy) and its p-value; NaN with fewer than two entries or a
    constant vector."""
    from scipy.stats import kendalltau

    if len(x) < 2:
        return float("nan"), float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = kendalltau(np.asarray(x, float), np.asarray(y, float))
    return float(r.statistic), float(r.pvalue)


# ------------------------------------------------------------------------------------------------- the model
@dataclass
class CellStat:
    """One method × metric: mean, bootstrap CI, n, the per-item values, and its mark in the column."""

    mean: float
    lo: float
    hi: float
    n: int
    values: dict[str, float]
    mark: str = ""  # 'best' | 'tied' | ''
    vs_best: Paired | None = None


@dataclass
class Claim:
    text: str
    metric: str
    better: str
    worse: str
    verdict: str
    test: str
    p: float = float("nan")
    n: int = 0


@dataclass
class CurveSet:
    """Mean curve and its 95 % CI band per x, per method row, of one metric."""

    metric: str
    x: list[float]
    rows: dict[Key, tuple[np.ndarray, np.ndarray, np.ndarray, int]]  # mean, lo, hi, n


@dataclass
class GalleryTile:
    item: str
    kind: str  # 'best' | 'worst'
    value: float
    jpeg: bytes | None
    note: str = ""


@dataclass
class RunReport:
    """Everything the page shows about one run (built by :func:`build_run`, rendered by :func:`render_html` and
    :func:`render_markdown`)."""

    run: RunInfo
    spixel_version: str
    fingerprint: str | None
    rows: list[Key]
    metrics: list[str]
    directions: dict[str, bool]
    cells: dict[Key, dict[str, CellStat]]
    published: dict[tuple[Key, str], dict[str, Any]]
    unmatched: list[str]
    claims: list[Claim]
    agreement: dict[tuple[str, str], tuple[float, int]]
    curves: list[CurveSet]
    failures: list[tuple[str, str]]
    na: dict[str, int]
    gallery: dict[Key, list[GalleryTile]] = field(default_factory=dict)
    gallery_metric: str | None = None
    gallery_note: str = ""

    @property
    def protocol(self) -> dict[str, Any]:
        return self.run.config.get("protocol") or {}

    @property
    def title(self) -> str:
        return str(self.protocol.get("name") or self.run.name)


def _label(key: Key) -> str:
    return key[0] + (f" [{key[1]}]" if key[1] else "")


def _directions(config: dict[str, Any], metrics: Sequence[str]) -> dict[str, bool]:
    """``{metric label: higher_is_better}``: through the run's metrics list (label → name), else the label as a
    name; metrics the registry does not know have no direction."""
    from .. import metrics as _m  # noqa: F401  (registration)
    from ..registry import METRICS

    names = {m.get("label") or m["name"]: m["name"] for m in config.get("metrics", []) if "name" in m}
    out: dict[str, bool] = {}
    for label in metrics:
        name = names.get(label, label)
        if name in METRICS:
            out[label] = bool(METRICS.get(name).info["higher_is_better"])
    return out


def _resolve(label: str, regions: str | None, rows: Sequence[Key]) -> Key | str:
    """The row a protocol entry means, or a reason it matches none."""
    if regions is not None:
        k = (label, str(regions))
        return k if k in rows else f"{_label(k)} is not in this run"
    hits = [k for k in rows if k[0] == label]
    if len(hits) == 1:
        return hits[0]
    if not hits:
        return f"{label} is not in this run"
    return f"{label} is ambiguous ({', '.join(_label(k) for k in hits)}): give regions"


def _judge(
    c: dict[str, Any], rows: Sequence[Key], cells: dict[Key, dict[str, CellStat]], dirs: dict[str, bool]
) -> Claim:
    text = str(c.get("text", ""))
    metric, better, worse = str(c.get("metric", "")), str(c.get("better", "")), str(c.get("worse", ""))
    claim = Claim(text or f"{better} beats {worse} on {metric}", metric, better, worse, INCONCLUSIVE, "")
    kb, kw = _resolve(better, c.get("better_regions"), rows), _resolve(worse, c.get("worse_regions"), rows)
    for k in (kb, kw):
        if isinstance(k, str):
            claim.test = k
            return claim
    if metric not in dirs:
        claim.test = f"metric {metric or '?'} is not scored in this run or has no known direction"
        return claim
    a, b = cells.get(kb, {}).get(metric), cells.get(kw, {}).get(metric)  # type: ignore[arg-type]
    if a is None or b is None:
        claim.test = f"{metric} has no scores for {_label(kb if a is None else kw)}"  # type: ignore[arg-type]
        return claim
    sign = 1.0 if dirs[metric] else -1.0
    t = paired_test({i: sign * v for i, v in a.values.items()}, {i: sign * v for i, v in b.values.items()})
    claim.p, claim.n = t.p, t.n
    arrow = "higher" if dirs[metric] else "lower"
    head = f"Wilcoxon signed-rank, two-sided, over {t.n} paired item(s)"
    if t.n == 0:
        claim.test = "no item is scored by both methods"
        return claim
    detail = f"{head}: {_p(t.p)}; {better} {arrow} on {t.larger}, {worse} {arrow} on {t.smaller}, equal on {t.equal}"
    if t.p < ALPHA and t.r_plus > t.r_minus:
        claim.verdict = HOLDS
    elif t.p < ALPHA and t.r_minus > t.r_plus:
        claim.verdict = FAILS
    claim.test = detail + f" ({metric}: {arrow} is better; α = {ALPHA})"
    return claim


def _curve_band(curves: list[list[float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    arr = np.asarray(curves, dtype=np.float64)
    n = arr.shape[0]
    m = arr.mean(axis=0)
    if n < 2:
        return m, m.copy(), m.copy(), n
    from .summary import t_quantile

    half = t_quantile(n - 1) * arr.std(axis=0, ddof=1) / math.sqrt(n)
    return m, m - half, m + half, n


def build_run(store: Store, run: RunInfo, *, seed: int = 0, n_boot: int = 2000, alpha: float = ALPHA) -> RunReport:
    """The statistics of one run (no rendering, no gallery)."""
    cfg = run.config
    meta = store.db.execute(
        "SELECT spixel_version, dataset_fingerprint FROM runs WHERE run_id = ?", (run.run_id,)
    ).fetchone()
    values: dict[Key, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    for item, method, regions, metric, value in store.scores(run.run_id):
        if value is not None and math.isfinite(float(value)):
            values[(method, regions)][metric][item] = float(value)
    na: dict[str, int] = dict(
        store.db.execute(
            "SELECT metric, COUNT(*) FROM results WHERE run_id = ? AND status = 'na' GROUP BY metric", (run.run_id,)
        ).fetchall()
    )
    # rows and columns in the experiment's order, then anything else the store holds
    order = [(m.get("label") or m["name"], m.get("regions") or "") for m in cfg.get("methods", [])]
    rows = [k for k in order if k in values] + sorted(k for k in values if k not in order)
    mcfg = [m.get("label") or m["name"] for m in cfg.get("metrics", [])]
    present = {mt for d in values.values() for mt in d}
    metrics = [m for m in mcfg if m in present] + sorted(present - set(mcfg))
    dirs = _directions(cfg, metrics)

    cells: dict[Key, dict[str, CellStat]] = {}
    for k in rows:
        cells[k] = {}
        for j, mt in enumerate(metrics):
            v = values[k].get(mt)
            if not v:
                continue
            arr = list(v.values())
            lo, hi = bootstrap_ci(arr, n_boot=n_boot, seed=seed + 7919 * j + 104729 * rows.index(k))
            cells[k][mt] = CellStat(float(np.mean(arr)), lo, hi, len(arr), dict(v))
    for mt in metrics:  # best, and the methods tied with it
        col = {k: c[mt] for k, c in cells.items() if mt in c}
        if mt not in dirs or not col:
            continue
        sign = 1.0 if dirs[mt] else -1.0
        best = max(col, key=lambda k: (sign * col[k].mean, -rows.index(k)))
        col[best].mark = "best"
        for k, c in col.items():
            if k == best:
                continue
            t = paired_test(c.values, col[best].values)
            c.vs_best = t
            if t.n > 0 and not t.p < alpha:
                c.mark = "tied"

    proto = cfg.get("protocol") or {}
    published: dict[tuple[Key, str], dict[str, Any]] = {}
    unmatched: list[str] = []
    for e in proto.get("published", []) or []:
        if not isinstance(e, dict) or "method" not in e or "metric" not in e or "value" not in e:
            unmatched.append(f"published entry {e!r} needs method, metric and value")
            continue
        k = _resolve(str(e["method"]), e.get("regions"), rows)
        if isinstance(k, str):
            unmatched.append(f"published {e['metric']} {float(e['value']):g}: {k}")
        elif str(e["metric"]) not in metrics:
            unmatched.append(f"published {e['metric']} of {_label(k)}: the metric is not in this run")
        else:
            published[(k, str(e["metric"]))] = e
    claims = [_judge(c, rows, cells, dirs) for c in proto.get("claims", []) or [] if isinstance(c, dict)]

    agreement: dict[tuple[str, str], tuple[float, int]] = {}
    for i, a in enumerate(metrics):
        for b in metrics[i + 1 :]:
            ks = [k for k in rows if a in cells[k] and b in cells[k]]
            sa, sb = (1.0 if dirs.get(a, True) else -1.0), (1.0 if dirs.get(b, True) else -1.0)
            tau, _ = kendall_tau([sa * cells[k][a].mean for k in ks], [sb * cells[k][b].mean for k in ks])
            agreement[(a, b)] = (tau, len(ks))

    raw: dict[str, dict[Key, list[list[float]]]] = defaultdict(lambda: defaultdict(list))
    for method, regions, metric, curve in store.db.execute(
        "SELECT method, regions, metric, curve FROM results WHERE run_id = ? AND status = 'ok' AND curve IS NOT NULL "
        "ORDER BY item_id",
        (run.run_id,),
    ):
        c = json.loads(curve)
        if c:
            raw[metric][(method, regions)].append([float(v) for v in c])
    axes = store.axes(run.run_id)
    curves = []
    for mt in [m for m in metrics if m in raw] + sorted(set(raw) - set(metrics)):
        by_row = raw[mt]
        lengths = [len(c) for cs in by_row.values() for c in cs]
        length = max(set(lengths), key=lengths.count)  # one metric, one length; stray curves left out
        x = axes.get(mt) or list(np.linspace(0.0, 1.0, length))
        if len(x) != length:
            x = list(np.linspace(0.0, 1.0, length))
        sets = {
            k: _curve_band([c for c in by_row[k] if len(c) == length])
            for k in rows + sorted(set(by_row) - set(rows))
            if any(len(c) == length for c in by_row.get(k, []))
        }
        curves.append(CurveSet(mt, [float(v) for v in x], sets))

    return RunReport(
        run=run,
        spixel_version=meta[0] if meta else "?",
        fingerprint=meta[1] if meta else None,
        rows=rows,
        metrics=metrics,
        directions=dirs,
        cells=cells,
        published=published,
        unmatched=unmatched,
        claims=claims,
        agreement=agreement,
        curves=curves,
        failures=store.failures(run.run_id),
        na=na,
    )


# ------------------------------------------------------------------------------------------------- gallery
def experiment_of_config(config: dict[str, Any]) -> Any:
    """The run's :class:`~spixel.experiments.config.Experiment`, rebuilt from its stored configuration."""
    from .config import from_dict

    head = {k: config[k] for k in ("name", "model", "seed", "target", "weights") if config.get(k) is not None}
    methods = []
    for m in config.get("methods", []):
        d: dict[str, Any] = {"name": m["name"], "params": m.get("params") or {}, "label": m.get("label") or ""}
        if m.get("regions"):
            d["regions"] = m["regions"]
            d["channels"] = m.get("channels") or "joint"
        methods.append(d)
    metrics = [
        {"name": m["name"], "params": m.get("params") or {}, "label": m.get("label") or ""}
        for m in config.get("metrics", [])
    ]
    return from_dict({"experiment": head, "method": methods, "metric": metrics}, f"run {config.get('name', '')}")


def _jpeg(a: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="JPEG", quality=88)
    return buf.getvalue()


def add_gallery(
    store: Store,
    rep: RunReport,
    cache_maps: str | os.PathLike[str],
    *,
    model: Any = None,
    metric: str | None = None,
    k: int = 3,
    size: int = 150,
) -> None:
    """Fill ``rep.gallery``: per method row, its ``k`` best and ``k`` worst items by ``metric`` (default: the
    run's first metric with a direction), each map read from the run's map cache and drawn over the item's crop
    with its region boundaries. ``model``: the run's :class:`ModelAdapter` (default: loaded from the config, on the
    CPU) — needed only for the crop geometry and the dataset's class names. Whatever is missing (cache folder,
    dataset, model) becomes ``rep.gallery_note``; nothing is recomputed."""
    from ..errors import SpixelError
    from ..viz import overlay
    from .loop import MapCache, geometry_of, prepare

    choices = [m for m in rep.metrics if m in rep.directions]
    if metric is not None and metric not in rep.directions:
        rep.gallery_note = f"no gallery: metric {metric} is not scored in this run (or has no direction)"
        return
    metric = metric or (choices[0] if choices else None)
    if metric is None:
        rep.gallery_note = "no gallery: no metric with a direction to rank the items by"
        return
    rep.gallery_metric = metric
    root = Path(cache_maps)
    if not root.is_dir():
        rep.gallery_note = f"no gallery: the map cache {root} is not a folder (spixel run --cache-maps DIR keeps one)"
        return
    try:
        exp = experiment_of_config(rep.run.config)
        if model is None:
            from ..models import load_model

            model = load_model(exp.model, weights=exp.weights, device="cpu")
        from ..data import open_dataset

        ds = open_dataset(rep.run.dataset, labels=model.labels, num_classes=model.num_classes)
        ids = {i: n for n, i in enumerate(ds.ids())}
    except SpixelError as e:
        rep.gallery_note = f"no gallery: {' '.join(str(e).split())}"
        return
    cache = MapCache(root, exp)
    geometry = geometry_of(model)
    targets = dict(store.db.execute("SELECT item_id, target FROM items WHERE run_id = ?", (rep.run.run_id,)).fetchall())
    crops: dict[str, Any] = {}
    sign = 1.0 if rep.directions[metric] else -1.0
    found = 0
    for key in rep.rows:
        c = rep.cells[key].get(metric)
        spec = next((m for m in exp.methods if (m.key, m.regions_key) == key), None)
        if c is None or spec is None:
            continue
        ranked = sorted(c.values, key=lambda i: (-sign * c.values[i], i))
        best = ranked[:k]
        worst = [i for i in reversed(ranked[-k:]) if i not in best]
        tiles = []
        for kind, items in (("best", best), ("worst", worst)):
            for item in items:
                tile = GalleryTile(item, kind, c.values[item], None)
                target = targets.get(item)
                e = cache.get(spec, item, int(target)) if target is not None else None
                if e is None:
                    tile.note = "not in the map cache"
                elif item not in ids:
                    tile.note = "not in the dataset any more"
                else:
                    if item not in crops:
                        crops[item] = prepare(ds[ids[item]], geometry).crop
                    crop = crops[item]
                    attr = e.attribution[0].numpy()
                    if crop is None or crop.shape[:2] != attr.shape:
                        tile.note = "the crop does not match the map"
                    else:
                        labels = None if e.segmentation is None else e.segmentation.labels[0].numpy()
                        h = max(attr.shape)
                        img = overlay(
                            crop,
                            attr,
                            boundaries=labels,
                            colorbar=False,
                            scale=max(1.0, size / h),
                            max_side=size,
                            min_side=size,
                        )
                        tile.jpeg = _jpeg(img)
                        found += 1
                tiles.append(tile)
        rep.gallery[key] = tiles
    if not found:
        rep.gallery_note = f"no gallery: none of the maps is in {root} (was it the run's --cache-maps folder?)"
        rep.gallery = {}


# ------------------------------------------------------------------------------------------------- formatting
def _num(v: float) -> str:
    """A number for a table: 4 significant digits in [1, 10⁴), 3 decimals in [0.01, 1), 4 below, else ``.3g``."""
    if v is None or not math.isfinite(v):
        return "—"
    a = abs(v)
    if a == 0:
        return "0"
    if 1 <= a < 1e4:
        return f"{v:.{3 - math.floor(math.log10(a))}f}"
    if 0.01 <= a < 1:
        return f"{v:.3f}"
    if 1e-4 <= a < 0.01:
        return f"{v:.4f}"
    return f"{v:.3g}"


def _p(p: float) -> str:
    """``p = 0.003`` / ``p < 1e-4`` / ``p = —``."""
    if not math.isfinite(p):
        return "p = —"
    return f"p = {p:.2g}" if p >= 1e-4 else "p < 1e-4"


def _e(s: Any) -> str:
    return html.escape(str(s), quote=True)


def _arrow(rep: RunReport, m: str) -> str:
    return "" if m not in rep.directions else (" ↑" if rep.directions[m] else " ↓")


_PALETTE = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#393b79", "#ad494a", "#637939", "#843c39", "#7b4173", "#3182bd", "#e6550d", "#31a354", "#756bb1", "#636363",
]  # fmt: skip


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not hi > lo:
        hi = lo + 1.0
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(s * mag for s in (1, 2, 2.5, 5, 10) if s * mag >= raw)
    start = math.ceil(lo / step - 1e-9) * step
    out, v = [], start
    while v <= hi + 1e-9 * step:
        out.append(round(v, 10))
        v += step
    return out


def _tick(v: float) -> str:
    return "0" if abs(v) < 1e-12 else f"{v:.6g}"


def svg_curves(cs: CurveSet, colors: dict[Key, str], *, xlabel: str, ylabel: str, w: int = 520, h: int = 300) -> str:
    """One metric's mean curves with their CI bands as an inline SVG (no script, scales with its box)."""
    L, R, T, B = 56, 22, 14, 42
    pw, ph = w - L - R, h - T - B
    xs = np.asarray(cs.x, float)
    lows = [lo for _, lo, _, _ in cs.rows.values()]
    highs = [hi for _, _, hi, _ in cs.rows.values()]
    finite = [v for v in np.concatenate([*lows, *highs]).tolist() if math.isfinite(v)] if lows else []
    ymin = min(0.0, min(finite)) if finite else 0.0
    ymax = max(finite) if finite else 1.0
    if not ymax > ymin:
        ymax = ymin + 1.0
    yt = _ticks(ymin, ymax)
    ymin, ymax = min(ymin, yt[0]), max(ymax, yt[-1])
    x0, x1 = float(xs.min()), float(xs.max())
    if not x1 > x0:
        x1 = x0 + 1.0
    xt = _ticks(x0, x1)

    def X(v: float) -> float:
        return L + (v - x0) / (x1 - x0) * pw

    def Y(v: float) -> float:
        return T + (1.0 - (v - ymin) / (ymax - ymin)) * ph

    out = [
        f'<svg viewBox="0 0 {w} {h}" width="100%" role="img" xmlns="http://www.w3.org/2000/svg" '
        f'font-family="system-ui, sans-serif" font-size="11"><title>{_e(cs.metric)}: mean curve per method, '
        f"95 % CI band</title>",
        f'<rect x="{L}" y="{T}" width="{pw}" height="{ph}" fill="#fff" stroke="#c9ced6"/>',
    ]
    for v in yt:
        if ymin <= v <= ymax:
            out.append(f'<line x1="{L}" x2="{L + pw}" y1="{Y(v):.1f}" y2="{Y(v):.1f}" stroke="#eceff3"/>')
            out.append(f'<text x="{L - 6}" y="{Y(v) + 3.5:.1f}" text-anchor="end" fill="#555">{_tick(v)}</text>')
    for v in xt:
        if x0 <= v <= x1:
            out.append(f'<line y1="{T}" y2="{T + ph}" x1="{X(v):.1f}" x2="{X(v):.1f}" stroke="#eceff3"/>')
            out.append(f'<text x="{X(v):.1f}" y="{T + ph + 15}" text-anchor="middle" fill="#555">{_tick(v)}</text>')
    out.append(f'<text x="{L + pw / 2}" y="{h - 6}" text-anchor="middle" fill="#333">{_e(xlabel)}</text>')
    out.append(
        f'<text transform="translate(13 {T + ph / 2}) rotate(-90)" text-anchor="middle" fill="#333">{_e(ylabel)}</text>'
    )
    for key, (m, lo, hi, _n) in cs.rows.items():
        col = colors.get(key, "#444")
        k = min(len(xs), len(m))
        ok = [i for i in range(k) if math.isfinite(lo[i]) and math.isfinite(hi[i])]
        top = " ".join(f"{X(xs[i]):.1f},{Y(hi[i]):.1f}" for i in ok)
        bot = " ".join(f"{X(xs[i]):.1f},{Y(lo[i]):.1f}" for i in reversed(ok))
        out.append(f'<polygon points="{top} {bot}" fill="{col}" fill-opacity="0.14" stroke="none"/>')
    for key, (m, _lo, _hi, n) in cs.rows.items():
        col = colors.get(key, "#444")
        k = min(len(xs), len(m))
        pts = " ".join(f"{X(xs[i]):.1f},{Y(m[i]):.1f}" for i in range(k) if math.isfinite(m[i]))
        out.append(
            f'<polyline points="{pts}" fill="none" stroke="{col}" stroke-width="1.8" stroke-linejoin="round">'
            f"<title>{_e(_label(key))} (n = {n})</title></polyline>"
        )
    out.append("</svg>")
    return "".join(out)


_CSS = """
:root { --ink:#1c2230; --muted:#5d6878; --line:#dfe3ea; --soft:#f5f6f9; --accent:#2f4b9c; --best:#e3f1e5;
        --bestink:#1f6b31; --tied:#eef6ef; --ok:#2b8a3e; --bad:#c92a2a; --warn:#a86b00; }
* { box-sizing:border-box; }
html { -webkit-print-color-adjust:exact; print-color-adjust:exact; }
body { margin:0; color:var(--ink); background:#fff;
       font:14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
header.top { background:linear-gradient(135deg,#1f2a44,#34466e); color:#fff; padding:22px 32px 18px; }
header.top h1 { margin:0 0 4px; font-size:23px; font-weight:650; }
header.top p { margin:2px 0; color:#d5dcea; }
header.top code { background:rgba(255,255,255,.13); padding:1px 5px; border-radius:4px; }
nav.toc { padding:10px 32px; background:var(--soft); border-bottom:1px solid var(--line); font-size:13px; }
nav.toc a { color:var(--accent); text-decoration:none; margin-right:16px; white-space:nowrap; }
main { max-width:1240px; margin:0 auto; padding:8px 28px 48px; }
section.run { border-top:3px solid var(--accent); margin-top:28px; padding-top:6px; }
h2 { font-size:20px; margin:8px 0 2px; }
h2 .sub { font-size:14px; font-weight:400; color:var(--muted); margin-left:8px; }
h3 { font-size:15px; margin:22px 0 8px; color:#26314a; }
p.lead { margin:2px 0 10px; color:var(--muted); }
.note { color:var(--muted); font-size:12.5px; margin:6px 0; }
.chips span { display:inline-block; background:var(--soft); border:1px solid var(--line); border-radius:12px;
              padding:1px 9px; margin:2px 6px 2px 0; font-size:12.5px; }
.tablewrap { overflow-x:auto; }
table { border-collapse:collapse; font-size:13px; }
table.results th, table.results td { border-bottom:1px solid var(--line); padding:6px 10px; vertical-align:top; }
table.results thead th { background:var(--soft); text-align:center; font-weight:600; border-bottom:2px solid #c9ced6; }
table.results th.method { text-align:left; font-weight:600; white-space:nowrap; }
th.method .rg { display:block; font-weight:400; color:var(--muted); font-size:11.5px; }
td.cell { text-align:right; white-space:nowrap; min-width:118px; }
td.cell .m { font-variant-numeric:tabular-nums; font-size:14px; }
td.cell .ci { display:block; color:var(--muted); font-size:11.5px; font-variant-numeric:tabular-nums; }
td.cell.best { background:var(--best); } td.cell.best .m { font-weight:700; color:var(--bestink); }
td.cell.tied { background:var(--tied); }
td.cell .mk { font-size:11px; margin-left:4px; color:var(--bestink); }
td.paper { text-align:right; color:#4a3a8c; background:#f6f4fc; font-variant-numeric:tabular-nums; white-space:nowrap; }
th.paper { background:#efecf9 !important; color:#4a3a8c; font-weight:500 !important; font-size:12px; }
td.empty { color:#b0b6c0; text-align:center; }
.legend { font-size:12px; color:var(--muted); margin:6px 0 0; }
.legend b.best { background:var(--best); color:var(--bestink); padding:0 5px; border-radius:3px; }
.legend b.tied { background:var(--tied); color:var(--bestink); padding:0 5px; border-radius:3px; font-weight:500; }
table.plain th, table.plain td { border-bottom:1px solid var(--line); padding:5px 10px; text-align:left;
                                 vertical-align:top; }
table.plain thead th { background:var(--soft); font-weight:600; }
.verdict { display:inline-block; border-radius:10px; padding:1px 10px; font-size:12px; font-weight:650;
           color:#fff; white-space:nowrap; }
.verdict.holds { background:var(--ok); } .verdict.fails { background:var(--bad); }
.verdict.inconclusive { background:#8a94a6; }
td.test { color:var(--muted); font-size:12px; max-width:560px; }
td.tau { text-align:center; font-variant-numeric:tabular-nums; min-width:70px; }
.figs { display:grid; grid-template-columns:repeat(auto-fill, minmax(440px, 1fr)); gap:16px; }
figure { margin:0; }
figure.curves { border:1px solid var(--line); border-radius:8px; padding:8px 10px 4px; break-inside:avoid; }
figure.curves figcaption { font-weight:600; font-size:13px; margin-bottom:2px; }
.keys { display:flex; flex-wrap:wrap; gap:4px 14px; font-size:12px; margin:8px 0 0; }
.keys i { display:inline-block; width:18px; height:3px; vertical-align:middle; margin-right:5px; border-radius:2px; }
.gallery { display:flex; flex-direction:column; gap:8px; }
.grow { display:grid; grid-template-columns:170px 1fr; gap:10px; align-items:center; border:1px solid var(--line);
        border-radius:8px; padding:8px; break-inside:avoid; }
.grow .name { font-weight:600; overflow-wrap:anywhere; }
.grow .name small { display:block; color:var(--muted); font-weight:400; }
.tiles { display:flex; flex-wrap:wrap; gap:8px; align-items:flex-start; }
.tiles .sep { width:1px; align-self:stretch; background:var(--line); margin:0 4px; }
figure.tile { width:150px; } figure.tile img { width:150px; height:150px; display:block; border-radius:5px; }
figure.tile figcaption { font-size:11px; color:var(--muted); text-align:center; line-height:1.3; margin-top:2px;
                         overflow-wrap:anywhere; }
figure.tile.best figcaption b { color:var(--ok); } figure.tile.worst figcaption b { color:var(--bad); }
figure.tile .miss { width:150px; height:150px; display:flex; align-items:center; justify-content:center;
                    background:var(--soft); color:var(--muted); font-size:11px; border-radius:5px; text-align:center; }
pre.config { background:var(--soft); border:1px solid var(--line); border-radius:6px; padding:10px; font-size:11.5px;
             max-height:280px; overflow:auto; white-space:pre-wrap; }
dl.prov { display:grid; grid-template-columns:170px 1fr; gap:2px 12px; font-size:13px; margin:0; }
dl.prov dt { color:var(--muted); } dl.prov dd { margin:0; overflow-wrap:anywhere; }
code { font-family:ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size:12px; }
.ok { color:var(--ok); } .warn { color:var(--warn); }
footer { color:var(--muted); font-size:12px; text-align:center; padding:20px; border-top:1px solid var(--line); }
@media print {
  @page { size:A4 landscape; margin:12mm; }
  body { font-size:11px; }
  header.top { background:none; color:var(--ink); padding:0 0 6px; border-bottom:2px solid var(--ink); }
  header.top p { color:var(--muted); } header.top code { background:none; }
  nav.toc { display:none; }
  main { max-width:none; padding:0; }
  section.run { break-before:page; border-top:none; margin-top:0; }
  section.run:first-of-type { break-before:auto; }
  table, figure, .grow, tr { break-inside:avoid; }
  .tablewrap { overflow:visible; }
  pre.config { max-height:none; overflow:visible; font-size:7.5px; line-height:1.25; column-count:3; column-gap:14px; }
  figure.tile, figure.tile img, figure.tile .miss { width:104px; } figure.tile img, figure.tile .miss { height:104px; }
  .grow { grid-template-columns:130px 1fr; padding:4px; } .gallery { gap:4px; }
  .figs { grid-template-columns:1fr 1fr; }
  a { color:inherit; text-decoration:none; }
}
"""


def _cell_html(rep: RunReport, key: Key, mt: str) -> str:
    c = rep.cells[key].get(mt)
    attrs = f'data-method="{_e(key[0])}" data-regions="{_e(key[1])}" data-metric="{_e(mt)}"'
    if c is None:
        return f'<td class="cell empty" {attrs} data-n="0">—</td>'
    title = [f"mean {c.mean!r} over {c.n} item(s); 95 % bootstrap CI [{c.lo:.6g}, {c.hi:.6g}]"]
    if c.mark == "best":
        title.append("best of the column")
    elif c.vs_best is not None:
        t = c.vs_best
        rel = "tied with the best (not significant)" if c.mark == "tied" else "significantly different from the best"
        title.append(f"vs the best: Wilcoxon signed-rank {_p(t.p)} over {t.n} paired item(s), {rel}")
    mk = {"best": '<span class="mk">★</span>', "tied": '<span class="mk">≈</span>'}.get(c.mark, "")
    return (
        f'<td class="cell {c.mark}" {attrs} data-mean="{c.mean!r}" data-lo="{c.lo!r}" data-hi="{c.hi!r}" '
        f'data-n="{c.n}" data-mark="{c.mark}" data-p="{"" if c.vs_best is None else repr(c.vs_best.p)}" '
        f'title="{_e("; ".join(title))}"><span class="m">{_num(c.mean)}</span>{mk}'
        f'<span class="ci">[{_num(c.lo)}, {_num(c.hi)}] · n={c.n}</span></td>'
    )


def _table_html(rep: RunReport) -> list[str]:
    pub_metrics = {mt for (_k, mt) in rep.published}
    out = ['<div class="tablewrap"><table class="results"><thead><tr><th rowspan="2" class="method">method</th>']
    for mt in rep.metrics:
        span = 2 if mt in pub_metrics else 1
        out.append(f'<th colspan="{span}">{_e(mt)}{_arrow(rep, mt)}</th>')
    out.append("</tr><tr>")
    for mt in rep.metrics:
        out.append('<th class="ours">ours</th>' + ('<th class="paper">paper</th>' if mt in pub_metrics else ""))
    out.append("</tr></thead><tbody>")
    for key in rep.rows:
        rg = f'<span class="rg">{_e(key[1])}</span>' if key[1] else ""
        out.append(f'<tr><th class="method">{_e(key[0])}{rg}</th>')
        for mt in rep.metrics:
            out.append(_cell_html(rep, key, mt))
            if mt in pub_metrics:
                e = rep.published.get((key, mt))
                if e is None:
                    out.append('<td class="paper empty">·</td>')
                else:
                    note = f' title="{_e(e["note"])}"' if e.get("note") else ""
                    out.append(
                        f'<td class="paper" data-method="{_e(key[0])}" data-regions="{_e(key[1])}" '
                        f'data-metric="{_e(mt)}" data-published="{float(e["value"])!r}"{note}>'
                        f"{_num(float(e['value']))}</td>"
                    )
        out.append("</tr>")
    out.append("</tbody></table></div>")
    out.append(
        '<p class="legend">Cells: mean over items, <span>[95 % bootstrap CI]</span>, n items. '
        '<b class="best">★ best</b> of the column; <b class="tied">≈ tied</b>: not significantly different from the '
        f"best (two-sided Wilcoxon signed-rank over the items both have, α = {ALPHA}; hover a cell for p). "
        "↑ higher is better, ↓ lower is better."
        + (" <i>paper</i>: the published number." if pub_metrics else "")
        + "</p>"
    )
    return out


def _tally(claims: Sequence[Claim]) -> str:
    n = {v: sum(c.verdict == v for c in claims) for v in (HOLDS, FAILS, INCONCLUSIVE)}
    return f"{n[HOLDS]} hold, {n[FAILS]} do not hold, {n[INCONCLUSIVE]} inconclusive"


def _verdict_class(v: str) -> str:
    return {HOLDS: "holds", FAILS: "fails"}.get(v, "inconclusive")


def _run_html(rep: RunReport, idx: int) -> str:
    r, p = rep.run, rep.protocol
    where = ", ".join(x for x in (f"paper {p['paper']}" if p.get("paper") else "", str(p.get("table") or "")) if x)
    out = [f'<section class="run" id="run-{r.run_id}" data-run="{r.run_id}" data-name="{_e(r.name)}">']
    out.append(f'<h2>{_e(rep.title)}<span class="sub">{_e(where or "experiment")} · run {r.run_id}</span></h2>')
    if p.get("description"):
        out.append(f'<p class="lead">{_e(p["description"])}</p>')
    out.append(
        '<div class="chips">'
        f"<span>model <b>{_e(r.model)}</b></span><span>data <b>{_e(r.dataset)}</b></span>"
        f"<span>{r.done} done · {r.failed} failed</span><span>seed {_e(r.config.get('seed', '?'))}</span>"
        f"<span>status {_e(r.status)}</span>"
        + (f"<span>claims: {_e(_tally(rep.claims))}</span>" if rep.claims else "")
        + "</div>"
    )
    out.append("<h3>Results</h3>")
    if not rep.rows:
        out.append('<p class="note">No scored rows in this run yet.</p>')
    else:
        out.extend(_table_html(rep))
    if p.get("note"):
        out.append(f'<p class="note">{_e(p["note"])}</p>')
    if rep.na:
        out.append(
            '<p class="note">Not applicable (the item lacks the annotation the metric needs): '
            + ", ".join(f"{_e(m)} {n}" for m, n in sorted(rep.na.items()))
            + " row(s).</p>"
        )
    for u in rep.unmatched:
        out.append(f'<p class="note warn">⚠ {_e(u)}</p>')

    if rep.claims:
        out.append("<h3>Claims of the paper</h3>")
        out.append(
            '<table class="plain claims"><thead><tr><th>claim</th><th>metric</th><th>verdict</th>'
            "<th>test</th></tr></thead><tbody>"
        )
        for c in rep.claims:
            out.append(
                f'<tr class="claim" data-verdict="{_e(c.verdict)}" data-p="{c.p!r}" data-n="{c.n}" '
                f'data-better="{_e(c.better)}" data-worse="{_e(c.worse)}" data-metric="{_e(c.metric)}">'
                f'<td>{_e(c.text)}<br><small class="note">{_e(c.better)} better than {_e(c.worse)}</small></td>'
                f"<td>{_e(c.metric)}{_arrow(rep, c.metric)}</td>"
                f'<td><span class="verdict {_verdict_class(c.verdict)}">{_e(c.verdict)}</span></td>'
                f'<td class="test">{_e(c.test)}</td></tr>'
            )
        out.append("</tbody></table>")

    if len(rep.metrics) > 1:
        out.append("<h3>Metric agreement</h3>")
        out.append(
            '<p class="note">Kendall τ-b between the method rankings that two metrics give (each oriented so that '
            "better is higher; over the methods scored by both): 1 the same order, −1 the reverse, ≈ 0 unrelated.</p>"
        )
        out.append('<div class="tablewrap"><table class="plain agreement"><thead><tr><th></th>')
        out.extend(f"<th>{_e(m)}</th>" for m in rep.metrics)
        out.append("</tr></thead><tbody>")
        for a in rep.metrics:
            out.append(f"<tr><th>{_e(a)}</th>")
            for b in rep.metrics:
                if a == b:
                    out.append('<td class="tau empty">—</td>')
                    continue
                tau, n = rep.agreement.get((a, b)) or rep.agreement[(b, a)]
                shade = ""
                if math.isfinite(tau):
                    rgb = "47,140,70" if tau >= 0 else "200,50,50"
                    shade = f' style="background:rgba({rgb},{0.08 + 0.3 * abs(tau):.2f})"'
                out.append(
                    f'<td class="tau" data-a="{_e(a)}" data-b="{_e(b)}" data-tau="{tau!r}" data-n="{n}"{shade} '
                    f'title="{n} method(s)">{_num(tau) if math.isfinite(tau) else "—"}</td>'
                )
            out.append("</tr>")
        out.append("</tbody></table></div>")

    if rep.curves:
        colors = {k: _PALETTE[i % len(_PALETTE)] for i, k in enumerate(rep.rows)}
        out.append("<h3>Curves</h3>")
        out.append('<p class="note">Mean over items per method; the band is the 95 % CI of the mean at each x.</p>')
        out.append('<div class="figs">')
        for cs in rep.curves:
            removing = not cs.metric.lower().startswith(("insertion", "lerf_ins"))
            xl = "fraction of the image removed" if removing else "fraction of the image inserted"
            svg = svg_curves(cs, colors, xlabel=xl, ylabel="score of the explained class")
            out.append(
                f'<figure class="curves" data-metric="{_e(cs.metric)}"><figcaption>{_e(cs.metric)}'
                f"{_arrow(rep, cs.metric)}</figcaption>{svg}</figure>"
            )
        out.append("</div>")
        keys = [k for k in rep.rows if any(k in cs.rows for cs in rep.curves)]
        out.append(
            '<div class="keys">'
            + "".join(f'<span><i style="background:{colors.get(k, "#444")}"></i>{_e(_label(k))}</span>' for k in keys)
            + "</div>"
        )

    if rep.gallery or rep.gallery_note:
        out.append("<h3>Best and worst items</h3>")
    if rep.gallery:
        mt = rep.gallery_metric or ""
        out.append(
            f'<p class="note">Per method, the items it scores best and worst on {_e(mt)}{_arrow(rep, mt)}: its map '
            "over the model's crop, region boundaries in white (maps from the run's map cache).</p>"
        )
        out.append('<div class="gallery">')
        for key, tiles in rep.gallery.items():
            rg = f"<small>{_e(key[1])}</small>" if key[1] else ""
            out.append(f'<div class="grow"><div class="name">{_e(key[0])}{rg}</div><div class="tiles">')
            last = None
            for t in tiles:
                if last == "best" and t.kind == "worst":
                    out.append('<span class="sep"></span>')
                last = t.kind
                if t.jpeg is not None:
                    data = base64.b64encode(t.jpeg).decode()
                    img = f'<img alt="{_e(key[0])} on {_e(t.item)}" src="data:image/jpeg;base64,{data}">'
                else:
                    img = f'<div class="miss">{_e(t.note)}</div>'
                out.append(
                    f'<figure class="tile {t.kind}" data-method="{_e(key[0])}" data-regions="{_e(key[1])}" '
                    f'data-item="{_e(t.item)}" data-kind="{t.kind}">{img}<figcaption><b>{t.kind}</b> '
                    f"{_e(mt)} {_num(t.value)}<br>{_e(t.item)}</figcaption></figure>"
                )
            out.append("</div></div>")
        out.append("</div>")
    if rep.gallery_note:
        out.append(f'<p class="note">{_e(rep.gallery_note)}</p>')

    out.append("<h3>Failed items</h3>")
    if rep.failures:
        out.append(
            f'<p class="note">{len(rep.failures)} item(s) failed; each is recorded with its reason and left out of '
            "every number above (<code>spixel run … --retry-failed</code> computes them again).</p>"
        )
        out.append('<table class="plain failures"><thead><tr><th>item</th><th>reason</th></tr></thead><tbody>')
        out.extend(
            f'<tr class="failed" data-item="{_e(i)}"><td><code>{_e(i)}</code></td><td>{_e(err or "")}</td></tr>'
            for i, err in rep.failures
        )
        out.append("</tbody></table>")
    else:
        out.append('<p class="note ok">None: every item was scored.</p>')

    out.append("<h3>Provenance</h3>")
    cfg = r.config
    prov = [
        ("run", f"{r.run_id} · {r.name} · config hash {r.config_hash}"),
        ("spixel", rep.spixel_version),
        ("model", r.model + (f" (weights {cfg['weights']})" if cfg.get("weights") else "")),
        ("dataset", r.dataset),
        ("dataset fingerprint", rep.fingerprint or "—"),
        ("seed · target", f"{cfg.get('seed', '?')} · {cfg.get('target', '?')}"),
        ("started · finished", f"{r.started} · {r.finished or '(not finished)'} ({r.status})"),
        ("engine", f"{r.engine}" + (f", {r.workers} worker(s)" if r.workers else "")),
        ("items", f"{r.done} done, {r.failed} failed"),
    ]
    if p.get("data"):
        prov.append(("protocol's default data", str(p["data"])))
    out.append('<dl class="prov">' + "".join(f"<dt>{_e(a)}</dt><dd>{_e(b)}</dd>" for a, b in prov) + "</dl>")
    out.append(f'<pre class="config">{_e(json.dumps(cfg, indent=2, sort_keys=True, default=str))}</pre>')
    out.append("</section>")
    return "\n".join(out)


def render_html(reports: Sequence[RunReport], *, title: str) -> str:
    """One self-contained page (inline CSS and figures, no script, no network)."""
    from .. import __version__

    now = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    toc = "".join(
        f'<a href="#run-{r.run.run_id}">{_e(r.title)} <small>(run {r.run.run_id})</small></a>' for r in reports
    )
    head = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f'<header class="top"><h1>{_e(title)}</h1><p>{len(reports)} run(s) · made by spixel {_e(__version__)} on '
        f"{_e(now)} · <code>spixel report</code></p></header>",
        f'<nav class="toc">{toc}</nav>' if len(reports) > 1 else "",
        "<main>",
    ]
    body = [_run_html(r, i) for i, r in enumerate(reports)]
    if not reports:
        body = ['<p class="note">This store holds no run.</p>']
    tail = [
        "</main>",
        "<footer>Bootstrap CIs: 2000 percentile resamples of the items, seeded. Tests: Wilcoxon signed-rank, "
        f"two-sided, α = {ALPHA}, paired over items. Agreement: Kendall τ-b.</footer>",
        "</body></html>\n",
    ]
    return "\n".join(head + body + tail)


def _md_escape(s: Any) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def render_markdown(reports: Sequence[RunReport], *, title: str) -> str:
    """The same numbers as Markdown: per run its table, claims, agreement, failures and provenance."""
    out = [f"# {title}", ""]
    for rep in reports:
        r, p = rep.run, rep.protocol
        where = ", ".join(x for x in (f"paper {p['paper']}" if p.get("paper") else "", str(p.get("table") or "")) if x)
        out += [f"## {rep.title} ({where + ' · ' if where else ''}run {r.run_id})", ""]
        if p.get("description"):
            out += [str(p["description"]), ""]
        out += [f"model `{r.model}` · data `{r.dataset}` · {r.done} done, {r.failed} failed · seed "
                f"{r.config.get('seed', '?')}", ""]  # fmt: skip
        if rep.rows:
            pub_metrics = {mt for (_k, mt) in rep.published}
            heads = ["method"]
            for mt in rep.metrics:
                heads.append(f"{mt}{_arrow(rep, mt)}")
                if mt in pub_metrics:
                    heads.append(f"{mt} (paper)")
            out.append("| " + " | ".join(_md_escape(h) for h in heads) + " |")
            out.append("|" + "|".join(["---"] + ["---:"] * (len(heads) - 1)) + "|")
            for key in rep.rows:
                row = [_md_escape(_label(key))]
                for mt in rep.metrics:
                    c = rep.cells[key].get(mt)
                    if c is None:
                        row.append("—")
                    else:
                        m = _num(c.mean)
                        m = f"**{m}** ★" if c.mark == "best" else (f"{m} ≈" if c.mark == "tied" else m)
                        row.append(f"{m} [{_num(c.lo)}, {_num(c.hi)}] n={c.n}")
                    if mt in pub_metrics:
                        e = rep.published.get((key, mt))
                        row.append("" if e is None else _num(float(e["value"])))
                out.append("| " + " | ".join(row) + " |")
            out += [
                "",
                "Mean [95 % bootstrap CI] n; ★ best per column; ≈ tied with the best (Wilcoxon signed-rank over "
                f"paired items, α = {ALPHA}); ↑/↓ higher/lower is better.",
                "",
            ]
        else:
            out += ["No scored rows in this run yet.", ""]
        if p.get("note"):
            out += [f"> {p['note']}", ""]
        out += [f"- ⚠ {u}" for u in rep.unmatched] + ([""] if rep.unmatched else [])
        if rep.claims:
            out += [
                "### Claims",
                "",
                f"{_tally(rep.claims)}.",
                "",
                "| claim | metric | verdict | test |",
                "|---|---|---|---|",
            ]
            out += [
                f"| {_md_escape(c.text)} | {_md_escape(c.metric)} | **{c.verdict}** | {_md_escape(c.test)} |"
                for c in rep.claims
            ]
            out.append("")
        if len(rep.metrics) > 1:
            out += ["### Metric agreement (Kendall τ-b of the method rankings)", ""]
            out.append("| | " + " | ".join(_md_escape(m) for m in rep.metrics) + " |")
            out.append("|---|" + "|".join(["---:"] * len(rep.metrics)) + "|")
            for a in rep.metrics:
                cells = []
                for b in rep.metrics:
                    if a == b:
                        cells.append("—")
                    else:
                        tau, _n = rep.agreement.get((a, b)) or rep.agreement[(b, a)]
                        cells.append(_num(tau))
                out.append(f"| {_md_escape(a)} | " + " | ".join(cells) + " |")
            out.append("")
        out += ["### Failed items", ""]
        out += [f"- `{i}`: {_md_escape(err or '')}" for i, err in rep.failures] or ["None."]
        out += [
            "",
            "### Provenance",
            "",
            f"- run {r.run_id} `{r.name}`, config hash `{r.config_hash}`, spixel {rep.spixel_version}",
            f"- model `{r.model}`, dataset `{r.dataset}` (fingerprint `{rep.fingerprint or '—'}`), seed "
            f"{r.config.get('seed', '?')}, engine {r.engine}",
            f"- started {r.started}, finished {r.finished or '(not finished)'} ({r.status})",
            "",
        ]
    return "\n".join(out)


# ------------------------------------------------------------------------------------------------- entry point
def build_report(
    store: str | os.PathLike[str],
    *,
    runs: Sequence[int | str] | None = None,
    cache_maps: str | os.PathLike[str] | None = None,
    model: Any = None,
    gallery_metric: str | None = None,
    gallery_k: int = 3,
    seed: int = 0,
    n_boot: int = 2000,
) -> list[RunReport]:
    """The :class:`RunReport` of each run of ``store`` (``runs``: ids or names; default: every run)."""
    if n_boot < 1:
        raise BadParameterError(f"the number of bootstrap resamples must be >= 1, got {n_boot}")
    with Store(store) as st:
        chosen = st.runs() if not runs else [st.run(r) for r in runs]
        seen: set[int] = set()
        out = []
        for r in chosen:
            if r.run_id in seen:
                continue
            seen.add(r.run_id)
            rep = build_run(st, r, seed=seed, n_boot=n_boot)
            if cache_maps is not None:
                add_gallery(st, rep, cache_maps, model=model, metric=gallery_metric, k=gallery_k)
            out.append(rep)
    return out


def write_report(
    store: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    fmt: str = "html",
    runs: Sequence[int | str] | None = None,
    cache_maps: str | os.PathLike[str] | None = None,
    model: Any = None,
    gallery_metric: str | None = None,
    gallery_k: int = 3,
    seed: int = 0,
    n_boot: int = 2000,
    title: str | None = None,
) -> Path:
    """Write the report of ``store`` to ``out`` as ``fmt`` (``html``: one self-contained page; ``md``: tables)."""
    if fmt not in ("html", "md"):
        raise BadParameterError(f"--format must be html or md, got {fmt!r}")
    reps = build_report(
        store,
        runs=runs,
        cache_maps=cache_maps if fmt == "html" else None,
        model=model,
        gallery_metric=gallery_metric,
        gallery_k=gallery_k,
        seed=seed,
        n_boot=n_boot,
    )
    title = title or f"spixel report — {Path(store).name}"
    text = render_html(reps, title=title) if fmt == "html" else render_markdown(reps, title=title)
    path = Path(out)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as e:
        raise BadParameterError(f"cannot write the report to {path} ({e.strerror}); give another --out") from None
    return path

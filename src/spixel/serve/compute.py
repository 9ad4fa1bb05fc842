"""What the explorer computes, without Streamlit: model loading, predictions, maps, curves, SSIM, store tables.

The pages (:mod:`.explore`, :mod:`.browse`) wrap these in Streamlit's caches; the functions themselves are plain
and testable. Everything that can fail because of the user (a damaged upload, a missing path, a bad parameter)
raises a :class:`~spixel.errors.SpixelError` whose one-line message the page shows.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import BadImageError, BadParameterError
from ..models.adapter import ModelAdapter

#: Largest upload accepted (bytes); the server's own ``server.maxUploadSize`` is set to the same in MB.
MAX_UPLOAD_MB = 10
MAX_UPLOAD_BYTES = MAX_UPLOAD_MB * 1024 * 1024

#: Parameters the pages never offer as widgets: memory knobs, objects, seeds (the page has one seed).
HIDDEN_PARAMS = frozenset(
    {
        "batch_size",
        "progress",
        "seed",
        "layer",
        "regions",
        "region_params",
        "samples",
        "base_attribution",
        "segments",
        "supports",
        "method_params",
        "segmentation",
        "workers",
        "backend",
        "model",
        "layers",
        "out_size",
        "gradient",
        "scales",
    }
)

#: Metrics whose curves page 1 draws (both are AUCs of the explained class's probability).
CURVE_METRICS = ("deletion", "insertion")


def remote() -> bool:
    """Whether the server listens beyond this machine (``spixel serve --host`` not a loopback address): then the
    page reads no path the visitor types — no image paths, and the model, weights, store and map cache stay
    those the launcher was given."""
    return env("remote") == "1"


def env(name: str, default: str | None = None) -> str | None:
    """A launcher setting (``SPIXEL_SERVE_<NAME>``), ``None``/``default`` when unset or empty."""
    v = os.environ.get(f"SPIXEL_SERVE_{name.upper()}", "").strip()
    return v or default


# ------------------------------------------------------------------------------------------------- inputs
def decode_upload(data: bytes, name: str = "upload") -> np.ndarray:
    """An uploaded file's bytes → uint8 ``(H, W, 3)``: size-limited, decoded by :func:`spixel.io.load_image` (PIL
    with decompression-bomb, truncation and format checks); anything else is a :class:`BadImageError`."""
    from ..io import load_image

    if len(data) > MAX_UPLOAD_BYTES:
        raise BadImageError(f"{name}: {len(data) / 1e6:.1f} MB is larger than the {MAX_UPLOAD_MB} MB upload limit")
    if not data:
        raise BadImageError(f"{name}: the file is empty")
    with tempfile.TemporaryDirectory(prefix="spixel-upload-") as d:
        p = Path(d) / "image"
        p.write_bytes(data)
        try:
            return load_image(p)
        except BadImageError as e:  # the message names the temporary file: name the upload instead
            raise BadImageError(str(e).replace(str(p), name)) from None


def image_from_path(path: str) -> np.ndarray:
    """A local image file → uint8 RGB (``~`` expanded); a missing or non-image path is a :class:`BadImageError`."""
    from ..io import load_image

    p = path.strip()
    if not p:
        raise BadImageError("give the path of an image file")
    return load_image(os.path.expanduser(p))


def sample_image(name: str) -> np.ndarray:
    from ..data import sample

    return sample(name).image


# ------------------------------------------------------------------------------------------------- model
def load(model: str, weights: str | None = None, device: str | None = None) -> ModelAdapter:
    """``spixel.load_model`` (``weights_only=True`` for every file) on ``device`` (default: cuda when available)."""
    from ..models import load_model

    if not model.strip():
        raise BadParameterError("give a model: a name from spixel list models or a checkpoint path")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    w = os.path.expanduser(weights.strip()) if weights and weights.strip() else None
    m = os.path.expanduser(model.strip())
    return load_model(m if os.path.exists(m) else model.strip(), weights=w, device=device)


def to_input(model: ModelAdapter, crop: np.ndarray) -> torch.Tensor:
    """A uint8 crop (already the model's size) → the normalised ``(1, 3, S, S)`` tensor on the model's device."""
    x = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)[None].float().div_(255.0)
    return model.normalize(x.to(model.device))


def top_k(model: ModelAdapter, crop: np.ndarray, k: int = 5) -> list[tuple[int, str, float]]:
    """The ``k`` most probable classes of the crop: ``(index, label, probability)``."""
    from ..models.state import frozen

    x = to_input(model, crop)
    with torch.no_grad(), frozen(model.module):
        p = model.probabilities(model.module(x).float())[0].cpu()
    vals, idx = p.topk(min(k, p.numel()))
    return [(int(i), model.label(int(i)), float(v)) for v, i in zip(vals, idx, strict=True)]


# ------------------------------------------------------------------------------------------------- parameters
def editable_params(defaults: dict[str, Any]) -> dict[str, Any]:
    """The parameters a page offers as widgets: scalars (bool, int, float, str), memory knobs and objects left out."""
    return {k: v for k, v in defaults.items() if k not in HIDDEN_PARAMS and isinstance(v, (bool, int, float, str))}


def method_defaults(name: str) -> dict[str, Any]:
    """A method's defaults, with the demo's lighter settings (fewer IG steps / SmoothGrad samples)."""
    from ..cli.demo import DEMO_PARAMS
    from ..registry import METHODS

    d = dict(METHODS.get(name).info.get("params", {}))
    d.update({k: v for k, v in DEMO_PARAMS.get(name, {}).items() if k in d})
    return d


def segmenter_defaults(name: str) -> dict[str, Any]:
    from ..registry import SEGMENTERS

    return dict(SEGMENTERS.get(name).info.get("params", {}))


# ------------------------------------------------------------------------------------------------- maps
@dataclass(frozen=True)
class Map:
    """One explanation of one image: ``attribution`` float32 ``(H, W)``, ``labels`` int ``(H, W)`` of its regions
    (or ``None``), the seconds it took and whether it came from a map cache."""

    method: str
    attribution: np.ndarray
    labels: np.ndarray | None
    seconds: float
    cached: bool = False

    @property
    def num_regions(self) -> int | None:
        return None if self.labels is None else len(np.unique(self.labels))


def explain_crop(
    model: ModelAdapter,
    crop: np.ndarray,
    method: str,
    target: int,
    params: dict[str, Any] | None = None,
    regions: tuple[str, dict[str, Any]] | None = None,
    seed: int = 0,
) -> Map:
    """Explain ``target`` on one crop with ``method`` (``regions``: ``(segmenter, params)`` to explain over)."""
    from ..api import explain
    from ..regions import uses_regions
    from ..registry import SEGMENTERS

    kw: dict[str, Any] = dict(params or {})
    x = to_input(model, crop)
    t0 = time.perf_counter()
    if regions is not None:
        from ..segmentation import resolve_regions

        name, rp = regions
        rp = dict(rp)
        if "seed" in SEGMENTERS.get(name).info.get("params", {}) and "seed" not in rp:
            rp["seed"] = seed
        kw["regions"] = resolve_regions(name, model.to_rgb01(x), rp, model=model)
        if not uses_regions(method):
            kw["channels"] = "joint"
    e = explain(model, x, method, target, seed=seed, **kw)
    dt = time.perf_counter() - t0
    attr = e.attribution[0].detach().float().cpu().numpy()
    if not np.isfinite(attr).all():
        raise BadParameterError(f"{method}: the map contains NaN or infinite values")
    labels = None if e.segmentation is None else e.segmentation.labels[0].cpu().numpy()
    return Map(method, attr, labels, dt)


@dataclass(frozen=True)
class Curve:
    metric: str
    x: list[float]
    y: list[float]
    score: float


def curves_of(
    model: ModelAdapter,
    crop: np.ndarray,
    m: Map,
    target: int,
    metrics: Sequence[str] = CURVE_METRICS,
    n_steps: int = 32,
) -> dict[str, Curve]:
    """Deletion / insertion curves (RISE AUCs) of one map (region order when the map carries regions)."""
    from ..metrics import evaluate
    from ..types import Explanation, Segmentation

    x = to_input(model, crop)
    seg = None if m.labels is None else Segmentation(torch.from_numpy(m.labels.astype(np.int64))[None])
    e = Explanation(attribution=torch.from_numpy(m.attribution)[None].to(x.device), segmentation=seg)
    out = {}
    for name in metrics:
        r = evaluate(model, x, e, name, target=target, n_steps=int(n_steps))
        y = [] if r.curves is None else r.curves[0].double().cpu().tolist()
        xs = r.meta.get("x") or list(np.linspace(0, 1, len(y)))
        out[name] = Curve(name, [float(v) for v in xs], y, float(r.scores[0]))
    return out


def ssim_matrix(maps: dict[str, np.ndarray]) -> Any:
    """SSIM (PAIR protocol B, :func:`spixel.metrics.ssim`) between every two maps, as a pandas DataFrame."""
    import pandas as pd

    from ..metrics import ssim

    names = list(maps)
    mat = np.ones((len(names), len(names)))
    for i, a in enumerate(names):
        for j in range(i + 1, len(names)):
            b = names[j]
            ta = torch.from_numpy(np.asarray(maps[a], np.float32))[None]
            tb = torch.from_numpy(np.asarray(maps[b], np.float32))[None]
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # constant maps: a defined value and a warning we need not show
                v = float(ssim(ta, tb).scores[0])
            mat[i, j] = mat[j, i] = v
    return pd.DataFrame(mat, index=names, columns=names)


def render(
    crop: np.ndarray,
    m: Map,
    *,
    mode: str = "auto",
    boundaries: bool = True,
    title: str | None = None,
    size: int = 448,
) -> np.ndarray:
    """The overlay of one map (:func:`spixel.viz.overlay`): ``mode`` ``auto`` / ``signed`` / ``absolute``; region
    boundaries drawn when the map has regions and ``boundaries``; about ``size`` pixels wide."""
    from ..viz import overlay

    a = m.attribution
    signed: bool | None = None
    if mode == "absolute":
        a, signed = np.abs(a), False
    elif mode == "signed":
        signed = True
    h = max(a.shape)
    return overlay(
        crop,
        a,
        signed=signed,
        title=title,
        boundaries=m.labels if boundaries and m.labels is not None else None,
        scale=max(1.0, size / h),
        max_side=size,
        min_side=size,
    )


def curves_figure(
    curves: dict[str, dict[str, Curve]], *, title_suffix: str = "", panel: tuple[float, float] = (5.0, 3.0)
) -> Any:
    """One row of panels (``panel``: inches each), one per metric, one line per method (a colour per method, named
    in one legend below the panels; each panel's own legend gives the AUCs), matplotlib Figure API."""
    from matplotlib.figure import Figure

    from ..registry import METRICS

    metrics = list(dict.fromkeys(k for c in curves.values() for k in c))
    methods = list(curves)
    colours = {m: f"C{i % 10}" for i, m in enumerate(methods)}
    ncol = min(len(methods), 4 if panel[0] * len(metrics) >= 9 else 2)
    legend_h = 0.22 * math.ceil(len(methods) / max(ncol, 1)) + 0.1
    fig = Figure(figsize=(panel[0] * max(1, len(metrics)), panel[1] + legend_h), dpi=120)
    axes = fig.subplots(1, max(1, len(metrics)), squeeze=False)[0]
    for ax, name in zip(axes, metrics, strict=False):
        for method in methods:
            c = curves[method].get(name)
            if c is None or not c.y:
                continue
            ax.plot(c.x[: len(c.y)], c.y, lw=1.6, color=colours[method], label=f"AUC {c.score:.3f}")
        hib = METRICS.get(name).info.get("higher_is_better") if name in METRICS else None
        better = "" if hib is None else (" (higher is better)" if hib else " (lower is better)")
        ax.set_title(f"{name}{better}{title_suffix}", fontsize=9.5)
        ax.set_xlabel("fraction of pixels inserted" if name.startswith("insertion") else "fraction of pixels removed")
        ax.set_ylabel("probability of the class")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
        ax.legend(fontsize=7.5, frameon=False, handlelength=1.2)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colours[m], lw=2) for m in methods]
    fig.legend(handles, methods, loc="lower center", ncol=max(ncol, 1), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, legend_h / (panel[1] + legend_h), 1, 1))
    return fig


# ------------------------------------------------------------------------------------------------- the store
def run_label(r: Any) -> str:
    return f"{r.run_id} · {r.name} · {r.model} on {r.dataset} ({r.status}, {r.done} done, {r.failed} failed)"


def metric_heading(metric: str, directions: dict[str, bool]) -> str:
    if metric not in directions:
        return metric
    return f"{metric} {'↑' if directions[metric] else '↓'}"


def method_label(method: str, regions: str) -> str:
    return method + (f" [{regions}]" if regions else "")


def directions(run: Any, metrics: Sequence[str]) -> dict[str, bool]:
    """``{metric column: higher_is_better}`` of a run's metrics (from its experiment, else from the names)."""
    from ..experiments.summary import directions_of

    out = directions_of(list(metrics))
    try:
        from ..registry import METRICS

        for m in experiment_of(run).metrics:
            out.setdefault(getattr(m, "key", m.name), bool(METRICS.get(m.name).info["higher_is_better"]))
    except Exception:  # an older or foreign configuration: the names are enough
        pass
    return out


def summary_table(rows: list[tuple], dirs: dict[str, bool] | None = None) -> tuple[Any, list[str]]:
    """The method × metric table of a run, as the end-of-run table (:func:`spixel.experiments.summarise`): one row
    per method (and regions), one column per metric, cells ``mean ± 95 % CI (n=…)``. Returns (DataFrame, metrics)."""
    import pandas as pd

    from ..experiments.summary import directions_of, summarise

    table = summarise(rows)
    metrics = sorted({r[3] for r in rows})
    directions = directions_of(metrics) if dirs is None else dirs
    data = {}
    for (method, regions), cells in table.items():
        row = {}
        for mt in metrics:
            c = cells.get(mt)
            row[metric_heading(mt, directions)] = (
                "—" if c is None or c.n == 0 else f"{c.mean:.4f} ± {c.ci:.4f} (n={c.n})"
            )
        data[method_label(method, regions)] = row
    df = pd.DataFrame.from_dict(data, orient="index")
    df.index.name = "method"
    return df, metrics


def report_of(store: Any, run: Any) -> Any:
    """The run's statistics exactly as ``spixel report`` computes them (:func:`spixel.experiments.report.build_run`:
    bootstrap CIs with the report's seeds, best and tied marks, published numbers, claims)."""
    from ..experiments.report import build_run

    return build_run(store, run)


def report_table(rep: Any) -> Any:
    """``spixel report``'s method × metric table as a DataFrame: cells ``mean ★|≈ [lo, hi] n=N`` (its Markdown
    cells, without the bold), a ``METRIC (paper)`` column beside a metric the protocol publishes numbers for."""
    import pandas as pd

    from ..experiments.report import _num  # the report's number format, so the page reads the same

    pub_metrics = {mt for (_k, mt) in rep.published}
    data: dict[str, dict[str, str]] = {}
    for key in rep.rows:
        row: dict[str, str] = {}
        for mt in rep.metrics:
            head = metric_heading(mt, rep.directions)
            c = rep.cells[key].get(mt)
            if c is None:
                row[head] = "—"
            else:
                mark = " ★" if c.mark == "best" else (" ≈" if c.mark == "tied" else "")
                row[head] = f"{_num(c.mean)}{mark} [{_num(c.lo)}, {_num(c.hi)}] n={c.n}"
            if mt in pub_metrics:
                e = rep.published.get((key, mt))
                row[f"{mt} (paper)"] = "" if e is None else _num(float(e["value"]))
        data[method_label(*key)] = row
    df = pd.DataFrame.from_dict(data, orient="index")
    df.index.name = "method"
    return df


def item_table(rows: list[tuple]) -> Any:
    """Scores of a run, one row per item, one column per ``method [regions] · metric``."""
    import pandas as pd

    if not rows:
        return pd.DataFrame()
    df = pd.DataFrame(rows, columns=["item", "method", "regions", "metric", "value"])
    df["column"] = [f"{method_label(m, r)} · {mt}" for m, r, mt in zip(df.method, df.regions, df.metric, strict=True)]
    wide = df.pivot_table(index="item", columns="column", values="value", aggfunc="first")
    wide.columns.name = None
    return wide


def item_rows(store: Any, run_id: int, item: str) -> list[tuple[str, str, str, float | None, str, list[float] | None]]:
    """One item's results rows: ``(method, regions, metric, value, status, curve)`` (the documented schema)."""
    rows = store.db.execute(
        "SELECT method, regions, metric, value, status, curve FROM results WHERE run_id = ? AND item_id = ? "
        "ORDER BY method, regions, metric",
        (run_id, item),
    ).fetchall()
    return [(m, r, mt, v, s, None if c is None else json.loads(c)) for m, r, mt, v, s, c in rows]


def item_info(store: Any, run_id: int, item: str) -> dict[str, Any] | None:
    row = store.db.execute(
        "SELECT labels, target, predicted, probability, status, error, seconds FROM items "
        "WHERE run_id = ? AND item_id = ?",
        (run_id, item),
    ).fetchone()
    if row is None:
        return None
    keys = ("labels", "target", "predicted", "probability", "status", "error", "seconds")
    d = dict(zip(keys, row, strict=True))
    d["labels"] = json.loads(d["labels"] or "[]")
    return d


def experiment_of(run: Any) -> Any:
    """The run's resolved experiment, rebuilt from the configuration the store keeps."""
    from ..experiments.config import from_dict

    c = run.config
    head = {k: c[k] for k in ("name", "model", "seed", "target") if c.get(k) is not None}
    if c.get("weights"):
        head["weights"] = c["weights"]
    methods = []
    for m in c.get("methods", []):
        d = {"name": m["name"], "params": m.get("params") or {}}
        if m.get("label") and m["label"] != m["name"]:
            d["label"] = m["label"]
        if m.get("regions"):
            d["regions"] = m["regions"]
            d["channels"] = m.get("channels") or "joint"
        methods.append(d)
    metrics = []
    for m in c.get("metrics", []):
        d = {"name": m["name"], "params": m.get("params") or {}}
        if m.get("label") and m["label"] != m["name"]:  # stores whose metrics carry labels
            d["label"] = m["label"]
        metrics.append(d)
    d: dict[str, Any] = {"experiment": head, "method": methods, "metric": metrics}
    if c.get("protocol"):
        d["protocol"] = c["protocol"]
    return from_dict(d, f"run {run.run_id}")


def item_crop(model: ModelAdapter, dataset_spec: str, item_id: str) -> Any:
    """The item's crop as the run saw it (``Prepared``: crop, boxes, mask), from the run's dataset spec."""
    from ..data import open_dataset
    from ..errors import SpixelError
    from ..experiments.loop import geometry_of, prepare

    ds = open_dataset(dataset_spec, labels=model.labels, num_classes=model.num_classes)
    ids = list(ds.ids())
    if item_id not in ids:
        raise SpixelError(f"item {item_id!r} is not in the dataset {dataset_spec} any more")
    p = prepare(ds[ids.index(item_id)], geometry_of(model))
    if p.error is not None:
        raise BadImageError(f"{item_id}: {p.error}")
    return p


def item_maps(
    model: ModelAdapter, exp: Any, prepared: Any, target: int, cache_dir: str | None, *, compute: bool
) -> dict[str, Map | None]:
    """Each method's map of one item: from the map cache when the run kept one (``cache_dir``), else recomputed
    exactly as the run computed it (same seeds, regions and parameters) when ``compute``, else ``None``."""
    from ..experiments.loop import BatchStep, MapCache, item_seed

    cache = MapCache(cache_dir, exp) if cache_dir else None
    step = BatchStep(model, exp, cache=cache)
    x = to_input(model, prepared.crop)
    out: dict[str, Map | None] = {}
    for m in exp.methods:
        hit = cache.get(m, prepared.item_id, target) if cache is not None else None
        if hit is not None:
            e, secs, cached = hit, 0.0, True
        elif compute:
            t0 = time.perf_counter()
            seeds = [item_seed(exp.seed, prepared.item_id)] if step.per_item_method[m.key] else None
            e = step._explain(m, x, torch.tensor([target]), seeds)
            secs, cached = time.perf_counter() - t0, False
        else:
            out[m.key] = None
            continue
        labels = None if e.segmentation is None else e.segmentation.labels[0].cpu().numpy()
        out[m.key] = Map(m.key, e.attribution[0].detach().float().cpu().numpy(), labels, secs, cached)
    return out


def store_curves(rows: list[tuple], axes: dict[str, list[float]]) -> dict[str, dict[str, Curve]]:
    """``item_rows`` → ``{method label: {metric: Curve}}`` for the rows that carry a curve."""
    out: dict[str, dict[str, Curve]] = {}
    for method, regions, metric, value, _status, curve in rows:
        if not curve:
            continue
        xs = axes.get(metric) or list(np.linspace(0.0, 1.0, len(curve)))
        out.setdefault(method_label(method, regions), {})[metric] = Curve(
            metric, list(xs), list(curve), float("nan") if value is None else float(value)
        )
    return out

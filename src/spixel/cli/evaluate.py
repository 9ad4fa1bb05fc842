"""``spixel evaluate``: explain, then score every (method, metric); ``scores.csv``, ``summary.json`` and the
averaged curves as PNG."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import BadImageError, BadParameterError, SpixelError
from .common import (
    assign_params,
    bad_images_exit,
    expand_images,
    get_model,
    load_item,
    one_line,
    parse_kv,
    parse_methods,
    parse_params,
    parse_regions,
    prepare_out,
    print_error,
    resolve_device,
    resolve_target,
)
from .explain import batch_classes, region_roles, run_methods, segment_batch

#: Metrics whose score is an area under their curve (the legend of ``curves_<metric>.png`` says "AUC").
AUC_METRICS = frozenset({"deletion", "insertion", "morf_auc", "lerf_auc"})


#: y-axis of the curve plots where it is not the softmax probability of the explained class.
CURVE_YLABELS = {
    "morf_auc": "target logit, scaled 1 → 0",
    "lerf_auc": "target logit, scaled 1 → 0",
    "insertion_blur": "top-1 correct (fraction of images)",
}


#: Metric parameters the command line cannot give (arrays): ground truth comes from ``sample:`` / ``--box``.
_ARRAY_METRIC_PARAMS = frozenset({"masks", "boxes", "mask"})


def parse_metrics(spec: str) -> list[Any]:
    """``"deletion,insertion"`` → metric registry entries; unknown names and metrics that do not score one
    explanation (they compare or regenerate explanations) raise with what to do instead."""
    from .. import metrics  # noqa: F401  (registration)
    from ..registry import METRICS

    names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise BadParameterError("--metric needs at least one metric name (spixel list metrics)")
    entries = [METRICS.get(n) for n in dict.fromkeys(names)]
    other = [e.name for e in entries if not e.info.get("scores_explanation")]
    if other:
        raise BadParameterError(
            f"{', '.join(other)}: not scoring one explanation (these metrics compare or regenerate explanations), "
            f"the command line cannot run them; use the Python API, spixel.metrics.{other[0]}(...)"
        )
    return entries


def parse_box(spec: str) -> tuple[int, int, int, int]:
    """``--box x0,y0,x1,y1`` → four ints with ``x1 > x0`` and ``y1 > y0``."""
    parts = [p.strip() for p in spec.split(",")]
    if len(parts) != 4 or not all(re.fullmatch(r"[+-]?\d+", p) for p in parts):
        raise BadParameterError(
            f"--box {spec!r} is malformed: write four integers x0,y0,x1,y1, e.g. --box 10,20,200,180"
        )
    x0, y0, x1, y1 = (int(p) for p in parts)
    if x1 <= x0 or y1 <= y0 or min(x0, y0) < 0:
        raise BadParameterError(f"--box {spec!r}: need 0 <= x0 < x1 and 0 <= y0 < y1 (original pixels)")
    return x0, y0, x1, y1


def metric_params(
    entries: Sequence[Any], items: Sequence[str], methods: Sequence[str], seed: int
) -> dict[str, dict[str, Any]]:
    """``--metric-param`` items → ``{metric: params}`` (each to the metrics that accept it); stochastic metrics get
    ``seed`` unless given; ``reference=METHOD`` must name a listed method (its map is the reference)."""
    raw = parse_kv(items, "--metric-param ", "--metric-param n_steps=16")
    bad = sorted(set(raw) & _ARRAY_METRIC_PARAMS)
    if bad:
        raise BadParameterError(
            f"--metric-param {bad[0]}= cannot be given on the command line: localisation ground truth comes from "
            "sample:NAME photos or --box x0,y0,x1,y1"
        )
    per = assign_params(entries, raw, kind="metric")
    for e in entries:
        accepted = e.info.get("params", {})
        if "seed" in accepted and "seed" not in per[e.name]:
            per[e.name]["seed"] = seed
        ref = per[e.name].get("reference")
        if ref is not None and ref not in methods:
            raise BadParameterError(
                f"{e.name}: --metric-param reference={ref} must name one of the listed methods ({', '.join(methods)})"
            )
        if e.name == "convex_hull_ratio" and ref is None:
            raise BadParameterError(
                "convex_hull_ratio needs a reference map: add --metric-param reference=METHOD naming another "
                f"listed method (one of {', '.join(methods)})"
            )
    return per


def plot_curves(
    path: Path,
    metric: str,
    xs: Any,
    curves: dict[str, Any],
    scores: dict[str, float],
    higher_is_better: bool,
    n_images: int,
) -> None:
    """One PNG: each method's curve averaged over the images, its mean AUC / score in the legend (Figure API)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.6, 3.8), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    what = "AUC" if metric in AUC_METRICS else "mean"
    for name, c in curves.items():
        ax.plot(xs, c, lw=1.6, label=f"{name} ({what} {scores[name]:.3f})")
    ax.set_xlabel("fraction of pixels inserted" if metric.startswith("insertion") else "fraction of pixels removed")
    ax.set_ylabel(CURVE_YLABELS.get(metric, "probability of the explained class"))
    ax.set_title(
        f"{metric} ({'higher' if higher_is_better else 'lower'} is better), mean of {n_images} image(s)", fontsize=10
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path)


def _fmt_score(v: float) -> str:
    return "nan" if v != v else f"{v:.4f}"


def cmd_evaluate(args: argparse.Namespace) -> int:
    import csv
    import warnings

    import numpy as np
    import torch
    from tqdm import tqdm

    from .. import __version__
    from ..io import save_json
    from ..metrics import evaluate

    entries = parse_methods(args.method)
    per = assign_params(entries, parse_params(args.param))
    mentries = parse_metrics(args.metric)
    mper = metric_params(mentries, args.metric_param, [e.name for e in entries], args.seed)
    regions = parse_regions(args.regions, args.seed) if args.regions is not None else None
    if regions is None and args.channels is not None:
        raise BadParameterError("--channels only applies with --regions (e.g. --regions slic)")
    channels = region_roles(entries, args.channels) if regions is not None else None
    box = parse_box(args.box) if args.box is not None else None
    items = expand_images(args.images)
    if box is not None and len(items) != 1:
        raise BadParameterError(f"--box applies to a single IMAGE, got {len(items)}; use sample:NAME photos instead")
    loc = [e.name for e in mentries if e.info.get("category") == "localisation"]
    no_gt = [it.source for it in items if it.sample is None and box is None]
    if loc and no_gt:
        raise BadParameterError(
            f"{', '.join(loc)} need{'s' if len(loc) == 1 else ''} ground truth, which {no_gt[0]} lacks: give bundled "
            "photos as sample:NAME (they carry a box) or one image with --box x0,y0,x1,y1"
        )
    device = resolve_device(args.device)
    out = prepare_out(args.out)
    model = get_model(args.model, args.weights, device)
    target = resolve_target(args.target, model)

    names = [e.name for e in entries]
    rows: list[dict[str, Any]] = []
    scores: dict[str, dict[str, list[float]]] = {m: {e.name: [] for e in mentries} for m in names}
    curve_sum: dict[str, dict[str, Any]] = {}
    curve_x: dict[str, Any] = {}
    curve_n: dict[str, int] = {}
    warned: set[str] = set()
    n_bad = 0
    n_batches = (len(items) + args.batch_size - 1) // args.batch_size
    bar = tqdm(total=n_batches, disable=n_batches <= 1, file=sys.stderr, unit="batch", desc="spixel evaluate")
    for s in range(0, len(items), args.batch_size):
        good = []
        for it in items[s : s + args.batch_size]:
            try:
                rgb, gt = load_item(it)
                good.append((it, rgb, box if box is not None else gt))
            except BadImageError as err:
                print_error(one_line(err))
                n_bad += 1
        if good:
            x = model.preprocess([rgb for _, rgb, _ in good])
            seg, _ = segment_batch(model, x, regions)
            results = run_methods(model, x, entries, per, target, args.seed, seg, channels)
            meta = batch_classes(model, x, results, target)
            boxes = [model.map_boxes([b], rgb.shape) if b is not None else [] for _, rgb, b in good]
            batch_names = "images " + ", ".join(f"[{i}] {it.source}" for i, (it, _, _) in enumerate(good))
            batch_scores: dict[tuple[str, str], list[float]] = {}
            for me in mentries:
                for name, (ex, _) in results.items():
                    kw = dict(mper[me.name])
                    if kw.get("reference") is not None:
                        kw["reference"] = results[kw["reference"]][0]
                    if me.info.get("category") == "localisation":
                        kw["boxes"] = boxes
                    try:
                        with warnings.catch_warnings(record=True) as caught:
                            warnings.simplefilter("always")
                            res = evaluate(model, x, ex, me.name, **kw)
                    except SpixelError as err:
                        raise BadParameterError(f"{me.name} on {name}: {one_line(err)}") from None
                    for wmsg in caught:
                        text = f"{me.name} on {name} ({batch_names}): {one_line(wmsg.message)}"
                        if text not in warned:
                            warned.add(text)
                            tqdm.write(f"spixel: warning: {text}", file=sys.stderr)
                    vals = res.scores.detach().double().cpu().reshape(-1).tolist()
                    batch_scores[(name, me.name)] = vals
                    scores[name][me.name].extend(vals)
                    xs = res.meta.get("x")
                    if res.curves is not None and xs is not None and len(xs) == res.curves.shape[1]:
                        c = res.curves.detach().double().cpu().sum(0).numpy()
                        if me.name in curve_x and len(curve_x[me.name]) != len(xs):
                            continue  # a differently sized curve (cannot happen at one input size)
                        curve_x[me.name] = xs
                        acc = curve_sum.setdefault(me.name, {})
                        acc[name] = acc.get(name, 0.0) + c
                        if name == names[0]:
                            curve_n[me.name] = curve_n.get(me.name, 0) + res.curves.shape[0]
            for i, (it, _, _) in enumerate(good):
                for name in names:
                    row: dict[str, Any] = {
                        "image": it.source,
                        "method": name,
                        "predicted": int(meta["predicted"][i]),
                        "predicted_label": model.label(int(meta["predicted"][i])),
                        "explained": int(meta["target"][i]),
                        "explained_label": model.label(int(meta["target"][i])),
                        "probability": float(meta["probability"][i]),
                    }
                    for me in mentries:
                        row[me.name] = batch_scores[(name, me.name)][i]
                    rows.append(row)
            del x, results
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
        bar.update(1)
    bar.close()

    if rows:
        with open(out / "scores.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            for r in rows:
                w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
        means = {m: {me.name: float(np.mean(scores[m][me.name])) for me in mentries} for m in names}
        for me in mentries:
            if me.name in curve_sum:
                mean_curves = {m: c / curve_n[me.name] for m, c in curve_sum[me.name].items()}
                plot_curves(
                    out / f"curves_{me.name}.png",
                    me.name,
                    curve_x[me.name],
                    mean_curves,
                    {m: means[m][me.name] for m in names},
                    bool(me.info["higher_is_better"]),
                    curve_n[me.name],
                )
        save_json(
            out / "summary.json",
            {
                "spixel_version": __version__,
                "model": model.name,
                "weights": args.weights,
                "device": device,
                "images": len(rows) // len(names),
                "target_given": args.target,
                "seed": args.seed,
                "regions": None if regions is None else {"segmenter": regions[0], "params": regions[1]},
                "methods": {e.name: per[e.name] for e in entries},
                "metrics": {
                    me.name: {
                        "higher_is_better": bool(me.info["higher_is_better"]),
                        "category": me.info["category"],
                        "reference": me.info["reference"],
                        "params": {
                            **me.info.get("params", {}),
                            **{k: v for k, v in mper[me.name].items() if k not in _ARRAY_METRIC_PARAMS},
                        },
                        "curves": f"curves_{me.name}.png" if me.name in curve_sum else None,
                    }
                    for me in mentries
                },
                "mean": means,
            },
        )
        heads = [f"{me.name} {'↑' if me.info['higher_is_better'] else '↓'}" for me in mentries]
        wm = max(len("method"), *(len(m) for m in names))
        widths = [max(len(h), 8) for h in heads]
        print(f"{'method':<{wm}}  " + "  ".join(f"{h:>{wd}}" for h, wd in zip(heads, widths, strict=True)))
        for m in names:
            cells = [_fmt_score(means[m][me.name]) for me in mentries]
            print(f"{m:<{wm}}  " + "  ".join(f"{c:>{wd}}" for c, wd in zip(cells, widths, strict=True)))
        print(
            f"spixel: scored {len(rows) // len(names)} image(s) × {len(names)} method(s) × {len(mentries)} "
            f"metric(s); wrote {out}/scores.csv and summary.json"
        )
    return bad_images_exit(n_bad, len(items), "scored")

"""``spixel evaluate``: explain, then score every (method, metric); ``scores.csv``, ``summary.json`` and the
averaged curves as PNG."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import BadParameterError
from .common import (
    assign_params,
    bad_images_exit,
    expand_images,
    get_model,
    parse_kv,
    parse_methods,
    parse_params,
    parse_regions,
    prepare_out,
    print_error,
    resolve_device,
    resolve_target,
)
from .explain import region_roles

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


def _experiment(args: argparse.Namespace, model: Any, target: int | None) -> tuple[Any, list[Any], list[Any]]:
    """The command line as an :class:`~spixel.experiments.Experiment` (and the method / metric entries)."""
    from ..experiments import Experiment, MethodSpec, MetricSpec
    from ..experiments.config import validate

    entries = parse_methods(args.method)
    per = assign_params(entries, parse_params(args.param))
    mentries = parse_metrics(args.metric)
    mper = metric_params(mentries, args.metric_param, [e.name for e in entries], args.seed)
    if args.regions is not None:
        parse_regions(args.regions, args.seed)  # checked here, seeded per item by the engine
    elif args.channels is not None:
        raise BadParameterError("--channels only applies with --regions (e.g. --regions slic)")
    channels = region_roles(entries, args.channels) if args.regions is not None else {}
    rule: str | int = target if target is not None else ("label" if args.data else "predicted")
    exp = Experiment(
        name="evaluate",
        model=model.name if args.model is None else args.model,
        weights=args.weights,
        seed=args.seed,
        target=rule,
        methods=tuple(
            MethodSpec(e.name, per[e.name], regions=args.regions, channels=channels.get(e.name, "joint"))
            for e in entries
        ),
        metrics=tuple(MetricSpec(me.name, {k: v for k, v in mper[me.name].items() if k != "seed"}) for me in mentries),
    )
    return validate(exp), entries, mentries


def _dataset(args: argparse.Namespace, mentries: Sequence[Any], model: Any) -> Any:
    """``--data`` opened for the model, or the IMAGE arguments as a :class:`~spixel.data.listed.SourcesDataset`."""
    if args.data is not None:
        if args.images:
            raise BadParameterError("give IMAGE arguments or --data DATASET, not both")
        if args.box is not None:
            raise BadParameterError("--box applies to a single IMAGE; a --data dataset brings its own boxes")
        from ..data import open_dataset

        return open_dataset(args.data, labels=model.labels, num_classes=model.num_classes)
    if not args.images:
        raise BadParameterError("give at least one IMAGE (file, folder or sample:NAME) or --data DATASET")
    if args.limit is not None:
        raise BadParameterError("--limit applies to --data datasets")
    from ..data.listed import SourcesDataset

    box = parse_box(args.box) if args.box is not None else None
    items = expand_images(args.images)
    if box is not None and len(items) != 1:
        raise BadParameterError(f"--box applies to a single IMAGE, got {len(items)}; use sample:NAME photos instead")
    loc = [e.name for e in mentries if e.info.get("category") == "localisation"]
    no_gt = [it.source for it in items if it.sample is None and box is None]
    if loc and no_gt:
        raise BadParameterError(
            f"{', '.join(loc)} need{'s' if len(loc) == 1 else ''} ground truth, which {no_gt[0]} lacks: give bundled "
            "photos as sample:NAME (they carry a box), one image with --box x0,y0,x1,y1, or --data with annotations"
        )
    return SourcesDataset([it.source for it in items], box, {it.source: it.error for it in items if it.error})


def cmd_evaluate(args: argparse.Namespace) -> int:
    """A thin front of the experiments engine: the command line becomes an experiment, runs into a temporary (or
    ``--store``) SQLite store, and ``scores.csv``, ``summary.json`` and the curve plots are exports of it."""
    import tempfile

    from .. import __version__
    from ..experiments import Store, run_local
    from ..io import save_json
    from ..progress import write

    parse_methods(args.method)  # name errors before the model loads
    mentries = parse_metrics(args.metric)
    device = resolve_device(args.device)
    model = get_model(args.model, args.weights, device)
    target = resolve_target(args.target, model)
    exp, entries, mentries = _experiment(args, model, target)
    dataset = _dataset(args, mentries, model)
    out = prepare_out(args.out)
    names = [e.name for e in entries]

    with tempfile.TemporaryDirectory(prefix="spixel-eval-") as tmp:
        store_path = Path(args.store) if args.store else Path(tmp) / "store.db"
        res = run_local(
            exp,
            dataset,
            store_path,
            model=model,
            batch_size=args.batch_size,
            limit=args.limit,
            on_warning=lambda text: write(f"spixel: warning: {text}"),
        )
        with Store(store_path) as st:
            items = st.db.execute(
                "SELECT item_id, status, error, target, predicted, probability FROM items WHERE run_id = ?",
                (res.run_id,),
            ).fetchall()
            results = st.db.execute(
                "SELECT item_id, method, metric, value, curve FROM results WHERE run_id = ?", (res.run_id,)
            ).fetchall()
            axes = st.axes(res.run_id)
    order = {k: i for i, k in enumerate(dataset.ids())}
    items.sort(key=lambda r: order.get(r[0], len(order)))
    n_bad = 0
    for item_id, status, error, *_ in items:
        if status == "failed":
            reason = " ".join(str(error or "unreadable").split())
            print_error(reason if item_id in reason else f"{item_id}: {reason}")
            n_bad += 1
    value: dict[tuple[str, str, str], float | None] = {}
    curves: dict[tuple[str, str], list[Any]] = {}
    for item_id, method, metric, v, curve in results:
        value[(item_id, method, metric)] = v
        if curve is not None:
            curves.setdefault((metric, method), []).append(json.loads(curve))
    done = [r for r in items if r[1] == "done"]
    rows: list[dict[str, Any]] = []
    for item_id, _, _, tgt, pred, prob in done:
        for name in names:
            row: dict[str, Any] = {
                "image": item_id,
                "method": name,
                "predicted": int(pred),
                "predicted_label": model.label(int(pred)),
                "explained": int(tgt),
                "explained_label": model.label(int(tgt)),
                "probability": float(prob),
            }
            for me in mentries:
                v = value.get((item_id, name, me.name))
                row[me.name] = float("nan") if v is None else v
            rows.append(row)
    if not rows:
        return bad_images_exit(n_bad, len(items), "scored")

    import csv

    import numpy as np

    with open(out / "scores.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    means = {
        m: {me.name: float(np.nanmean([r[me.name] for r in rows if r["method"] == m])) for me in mentries}
        for m in names
    }
    for me in mentries:
        per_method = {m: curves.get((me.name, m)) for m in names}
        if me.name in axes and all(per_method.values()):
            mean_curves = {m: np.mean(np.asarray(c, dtype=float), axis=0) for m, c in per_method.items()}
            plot_curves(
                out / f"curves_{me.name}.png",
                me.name,
                axes[me.name],
                mean_curves,
                {m: means[m][me.name] for m in names},
                bool(me.info["higher_is_better"]),
                len(done),
            )
    save_json(
        out / "summary.json",
        {
            "spixel_version": __version__,
            "model": model.name,
            "weights": args.weights,
            "device": device,
            "images": len(done),
            "target_given": args.target,
            "seed": args.seed,
            "data": getattr(dataset, "spec", None) if args.data else None,
            "store": str(args.store) if args.store else None,
            "regions": None
            if args.regions is None
            else dict(zip(("segmenter", "params"), parse_regions(args.regions, args.seed), strict=True)),
            "methods": {m.key: m.params for m in exp.methods},
            "metrics": {
                me.name: {
                    "higher_is_better": bool(me.info["higher_is_better"]),
                    "category": me.info["category"],
                    "reference": me.info["reference"],
                    "params": {
                        **{k: v for k, v in me.info.get("params", {}).items() if k not in _ARRAY_METRIC_PARAMS},
                        **exp.metrics[i].params,
                    },
                    "curves": f"curves_{me.name}.png" if (out / f"curves_{me.name}.png").exists() else None,
                }
                for i, me in enumerate(mentries)
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
        f"spixel: scored {len(done)} image(s) × {len(names)} method(s) × {len(mentries)} "
        f"metric(s); wrote {out}/scores.csv and summary.json" + (f"; store {args.store}" if args.store else "")
    )
    return bad_images_exit(n_bad, len(items), "scored")

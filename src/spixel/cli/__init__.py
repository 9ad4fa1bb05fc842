"""The ``spixel`` command line (also ``python -m spixel``). Thin: it parses, calls the library, writes files.

Commands
--------
``spixel explain IMAGE... --model NAME --method NAME[,NAME...] [options]``
    Explain the model's decision on each image with each method. For every image it writes, under
    ``<out>/<image-stem>/``:

    * ``<method>.png`` — the map over the model's input crop, with a colour bar and a title giving the method,
      the explained class and its probability (non-negative maps in ``inferno``, signed maps in ``RdBu_r``
      centred at 0, clipped at the 99th percentile of ``|map|``);
    * ``<method>.npy`` — the raw map, float32 ``H × W`` at the model's input resolution;
    * ``explanation.json`` — model, image, predicted and explained class (index, label, probability) and,
      per method, the parameters used, the seed and the seconds per image.

    Options:

    * ``--model NAME`` (``spixel list models``) and ``--weights FILE`` (a local state_dict where needed);
    * ``--method a,b`` — one or more methods (``spixel list methods``);
    * ``--target CLASS`` — an ImageNet class index (``281``) or an exact label (``"tabby"``, any case);
      default: each image's predicted class;
    * ``--param key=value`` (repeatable) — a method parameter, parsed as int, float, ``true``/``false``,
      ``none`` or text (``n_steps=20``, ``rule=riemann_trapezoid``, ``squared=true``). It applies to every
      listed method that accepts it; a name no listed method accepts is an error;
    * ``--seed N`` — seed of the stochastic methods (default 0, so runs are reproducible; recorded);
    * ``--regions NAME[:KEY=VALUE,...]`` — explain over regions (paper 000, spec §1.2–1.5): the images are
      segmented once per batch by a segmenter (``spixel list segmenters``; ``--regions slic:n_segments=100,
      compactness=20``, ``--regions quickshift:max_dist=3``, values parsed like ``--param``; a stochastic
      segmenter is seeded by ``--seed`` unless the spec sets ``seed=``). Methods that use regions themselves
      (LIME, occlusion, XRAI) take them as given; every other method is grouped: its map averaged over each
      region. SWAG makes its own superpixels and refuses ``--regions``;
    * ``--channels joint|per_channel`` — how grouped methods pool their channels (default ``joint``; only
      with ``--regions``);
    * ``--out DIR`` (default ``spixel_out``), ``--device cpu|cuda`` (default: cuda when available),
      ``--batch-size N`` — images per batch (default 8; a method's own memory knob is
      ``--param batch_size=N``).

    When an explanation carries its regions (``--regions``, SWAG, LIME) its overlay is drawn twice as large with
    the regions' boundaries in thin white lines (one output pixel), the title gives the number of regions, and
    ``explanation.json`` records, under ``regions``, the segmenter, its parameters (defaults included), the
    number of segments of the image and the segmentation's seconds per image (``null`` without ``--regions``);
    under each method, its ``num_segments`` and, for grouped methods, ``channels``.

    Images may be files, folders (their image files are taken) or bundled photos, ``sample:chelsea``
    (``spixel.data.sample_names()``). Images whose names collide
    (``a/cat.png``, ``b/cat.jpg``) get distinct folders (``cat``, ``cat-2``). A file that cannot be read is
    reported on one line and skipped; the others are still written and the exit code is 2.

``spixel evaluate IMAGE... --model NAME --method A,B --metric M1,M2 [options]``
    Explain each image with each method (as ``explain`` does: ``--weights``, ``--param``, ``--target``,
    ``--seed``, ``--regions``, ``--channels``, ``--device``, ``--batch-size``) and score every (method, metric)
    with :func:`spixel.evaluate`. ``--metric-param key=value`` (repeatable) goes to every listed metric that
    accepts it (``n_steps=16``); stochastic metrics are seeded by ``--seed``. It writes, under ``--out`` (default
    ``spixel_eval``):

    * ``scores.csv`` — one row per image × method: image, method, predicted and explained class, one column per
      metric;
    * ``curves_<metric>.png`` — for the metrics with a curve (deletion, insertion, MoRF/LeRF, ROAD …): the
      curve averaged over the images, one line per method, its mean AUC (or score) in the legend;
    * ``summary.json`` — per method × metric the mean, with ``higher_is_better``, the metric's parameters and
      its reference;

    and prints the table of means (↑ higher is better, ↓ lower is better). Localisation metrics (pointing game,
    MaxBoxAccV2 …) need ground truth: give bundled photos as ``sample:NAME`` (they carry an annotated box,
    mapped into the model's crop) or one image with ``--box x0,y0,x1,y1`` (original pixels). Metrics that compare
    or regenerate explanations (ssim, topk_intersection, mege, randomization) are Python-only.
    ``convex_hull_ratio`` needs ``--metric-param reference=METHOD``: another listed method's map. Bad files behave
    as in ``explain``.

``spixel segment IMAGE... --segmenter NAME[,NAME...] [--param KEY=VALUE]... [options]``
    Split each image into regions. For every image and segmenter it writes, under ``<out>/<image-stem>/``:
    ``<segmenter>.png`` (the boundaries drawn on the image), ``<segmenter>.npy`` (int64 ``H × W`` labels,
    contiguous ids ``0..K-1``) and ``<segmenter>.json`` (image, segmenter, parameters with their defaults,
    number of segments, seconds). The images are first cropped like ``--model``'s preprocessing (default
    ``efficientnet_lite0``, ``--weights FILE`` where it needs one), so the labels line up with the maps of
    ``spixel explain``; ``--no-crop`` segments the full photo instead. Boundaries are yellow and one output pixel
    wide; images up to 512 px (the crops) are drawn twice as large. ``--fill none|colors|mean`` paints each
    region with a distinct colour or its mean colour under the boundaries. ``--seed`` seeds stochastic
    segmenters; ``--out``, ``--device``, ``--batch-size`` and bad files behave as in ``explain``.

``spixel list [methods|models|segmenters|metrics]``
    The registered methods (family, default parameters, description), models and segmenters (backend,
    default parameters, description); all by default.

``spixel demo [--out DIR] [--model NAME] [--methods a,b] [--device cpu|cuda]``
    Every bundled photo (``spixel.data.samples()``) × saliency, integrated gradients, SmoothGrad, guided
    backprop and Grad-CAM (those registered), with fewer IG steps / SmoothGrad samples than the defaults to
    stay fast; writes the overlays and an ``index.html`` gallery to ``--out`` (default ``demo_out``).

``spixel train {one,tiny,halves,folds,roar,gad,benchmark} --out DIR [options]``
    Train the small ResNet-style (``--arch resnet``, default) or VGG-style (``--arch vgg``) nets of
    :mod:`spixel.train` on ``SyntheticDataset(--n, --size, seed=--data-seed)`` and score them on the held-out
    ``SyntheticDataset(--n-test, --size, seed=--data-seed + 1)``; every model is a checkpoint ``DIR/<name>.pt``
    that ``spixel.load_model(path)`` (and ``--model path``) reads. ``one``: one model; ``tiny``: a 32×32 VGG-style
    model without distractors in about 30 s (:func:`spixel.train.train_tiny`); ``halves``: two models on
    disjoint halves (paper 000); ``folds``: ``--k`` models, each without one fold (MeGe); ``roar``: retraining with
    the top ``--levels`` fractions of ``--method``'s pixels replaced by the mean colour, plus the reference
    retrained with nothing removed; ``gad``: GAD support regressions for ``--pair a,b`` and ``--alphas`` (spec
    §4.1). ``roar`` and ``gad`` start from ``--base CKPT``
    or train one first. ``benchmark`` trains every model the benchmarks need and writes ``manifest.json``
    (:func:`spixel.train.recipes.train_benchmark_set`). ``--epochs``, ``--batch-size``, ``--lr``, ``--seed`` set the
    training recipe; ``--threads`` torch's CPU threads; ``--no-progress`` hides the progress bars.

``spixel bench stability --models DIR --out DIR [--n-test N] [--n-mege N] [--quick]``
    Paper 000's stability table on the synthetic ground truth (:mod:`spixel.bench.stability`), from the models
    of ``spixel train benchmark``: ``stability.html`` (the page to open), ``stability.md`` (tables),
    ``stability.json`` (everything), ``stability.png``.

``spixel run EXPERIMENT [--data DATASET] --store S.db [options]``
    Run an experiment (a TOML file, or a protocol: ``spixel list protocols``) over a dataset (``spixel list
    datasets``) into a resumable SQLite store (:mod:`spixel.experiments`): ``--limit``, ``--batch-size``,
    ``--workers``, ``--device``, ``--seed``, ``--model``/``--weights`` (override the file's), ``--cache-maps DIR``,
    ``--retry-failed``, ``--fast`` (a protocol's smoke settings), ``--engine local|ray`` with ``--address``,
    ``--cpus-per-worker``, ``--gpus-per-worker``. Prints the method × metric table (mean ± 95 % CI, n) and the counts
    of done / failed / skipped items. Exit 0 all done, 3 some items failed, 130 interrupted, 2 usage error.

``spixel runs S.db``
    The runs of a store with their status, progress, engine and workers.

``spixel report S.db --out report.html [--format md] [--run ID|NAME]``
    One self-contained HTML page (or Markdown) per store: the tables with bootstrap CIs, best and tied methods, the
    papers' published numbers, a verdict per claim, metric agreement, curves, failed items and provenance.

``spixel serve [--store S.db] [--model M] [--host 127.0.0.1] [--port 8501]``
    The explorer in the browser (Streamlit): one photo live, and a results store browsed.

``spixel --version``, ``spixel COMMAND --help``.

Layout: one module per command (:mod:`~spixel.cli.explain`, :mod:`~spixel.cli.evaluate`,
:mod:`~spixel.cli.segment`, :mod:`~spixel.cli.listing`, :mod:`~spixel.cli.demo`, :mod:`~spixel.cli.train`), the
argument parser in :mod:`~spixel.cli.parser` and the shared helpers in :mod:`~spixel.cli.common`.

Exit codes: 0 success; 2 a usage or input error (one line ``spixel: error: <message>`` on stderr); 1 a bug
in spixel (with its traceback).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from ..errors import SpixelError
from ..params import parse_value
from .common import get_model, one_line, parse_params, parse_regions, resolve_target
from .demo import DEMO_PARAMS, cmd_demo
from .evaluate import cmd_evaluate
from .explain import cmd_explain
from .listing import cmd_list
from .parser import build_parser
from .report import cmd_report
from .run import cmd_run, cmd_runs
from .segment import cmd_segment
from .serve import cmd_serve
from .train import cmd_bench, cmd_train


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 2 user error). Bugs raise (exit 1, traceback)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 0
        commands = {
            "explain": cmd_explain,
            "evaluate": cmd_evaluate,
            "segment": cmd_segment,
            "list": cmd_list,
            "demo": cmd_demo,
            "train": cmd_train,
            "bench": cmd_bench,
            "run": cmd_run,
            "runs": cmd_runs,
            "serve": cmd_serve,
            "report": cmd_report,
        }
        return commands[args.command](args)
    except SpixelError as e:
        print(f"spixel: error: {one_line(e)}", file=sys.stderr)
        return 2
    except SystemExit as e:  # --help / --version
        return e.code if isinstance(e.code, int) else 0


__all__ = [
    "DEMO_PARAMS",
    "build_parser",
    "get_model",
    "main",
    "parse_params",
    "parse_regions",
    "parse_value",
    "resolve_target",
]

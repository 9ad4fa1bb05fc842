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

``spixel train {one,halves,folds,roar,gad,benchmark} --out DIR [options]``
    Train the small ResNet-style (``--arch resnet``, default) or VGG-style (``--arch vgg``) nets of
    :mod:`spixel.train` on ``SyntheticDataset(--n, --size, seed=--data-seed)`` and score them on the held-out
    ``SyntheticDataset(--n-test, --size, seed=--data-seed + 1)``; every model is a checkpoint ``DIR/<name>.pt``
    that ``spixel.load_model(path)`` (and ``--model path``) reads. ``one``: one model; ``halves``: two models on
    disjoint halves (paper 000); ``folds``: ``--k`` models, each without one fold (MeGe); ``roar``: retraining with
    the top ``--levels`` fractions of ``--method``'s pixels replaced by the mean colour; ``gad``: GAD support
    regressions for ``--pair a,b`` and ``--alphas`` (spec §4.1). ``roar`` and ``gad`` start from ``--base CKPT``
    or train one first. ``benchmark`` trains every model the benchmarks need and writes ``manifest.json``
    (:func:`spixel.train.recipes.train_benchmark_set`). ``--epochs``, ``--batch-size``, ``--lr``, ``--seed`` set the
    training recipe; ``--threads`` torch's CPU threads; ``--no-progress`` hides the progress bars.

``spixel bench stability --models DIR --out DIR [--n-test N] [--n-mege N] [--quick]``
    Paper 000's stability table on the synthetic ground truth (:mod:`spixel.bench.stability`), from the models
    of ``spixel train benchmark``: ``stability.md`` (tables), ``stability.json`` (everything), ``stability.png``.

``spixel --version``, ``spixel COMMAND --help``.

Exit codes: 0 success; 2 a usage or input error (one line ``spixel: error: <message>`` on stderr); 1 a bug
in spixel (with its traceback).
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from .errors import BadImageError, BadParameterError, SpixelError

#: Image file extensions taken from a folder given as IMAGE.
IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})

#: The demo's methods (those registered are used) and its cheaper-than-default settings.
DEMO_METHODS = ("saliency", "integrated_gradients", "smoothgrad", "gradcam", "swag_ig")
DEMO_PARAMS: dict[str, dict[str, Any]] = {
    "integrated_gradients": {"n_steps": 16},
    "smoothgrad": {"n_samples": 16},
    "sparsified_smoothgrad": {"n_samples": 32},
}

#: Plain-language explanations for the gallery (others fall back to the method's docstring).
METHOD_BLURBS = {
    "saliency": "How strongly would the class score react if this pixel changed a little? The magnitude of "
    "the gradient of the class score with respect to each pixel (Simonyan et al. 2014). Sharp but speckled.",
    "input_x_gradient": "The gradient multiplied by the pixel values (Shrikumar et al. 2016): a first-order "
    "estimate of each pixel's contribution. Red pushes towards the class, blue away from it.",
    "integrated_gradients": "Gradients accumulated along a straight path from a plain mean-colour image to the photo "
    "(Sundararajan et al. 2017). The pixel contributions add up to the change of the class score; red "
    "pixels push towards the class, blue ones away from it.",
    "smoothgrad": "The gradient averaged over many noisy copies of the photo (Smilkov et al. 2017): much of the "
    "speckle of plain saliency averages out, leaving the object's shape.",
    "sparsified_smoothgrad": "SmoothGrad where every noisy gradient keeps only its strongest 10% of entries "
    "(Levine et al. 2019): sparse, stable maps.",
    "guided_backprop": "The gradient with every negative signal stopped at each ReLU on the way back "
    "(Springenberg et al. 2015): crisp, edge-like pictures. Beautiful, but known to depend little on what "
    "the model learned (Adebayo et al. 2018).",
    "deconvolution": "Zeiler & Fergus's DeconvNet: like guided backprop, but only the backward signal's sign "
    "gates each ReLU. Shows image structure more than the class.",
    "gradcam": "The last convolutional feature maps weighted by their average gradient (Selvaraju et al. "
    "2017): a coarse map of where the evidence for the class lies, upsampled from the network's grid.",
    "gradcam_pp": "Grad-CAM with per-location weights from higher-order gradients (Chattopadhay et al. 2018): "
    "better when the class appears several times.",
    "scorecam": "Each feature map is used as a mask on the photo and weighted by how much the masked photo "
    "raises the class score (Wang et al. 2020): gradient-free.",
    "swag": "SWAG (Hartley et al. 2021): guided-backprop scores averaged over SLIC superpixels of the photo — "
    "one value per region, so the map reads as a set of parts.",
    "swag_ig": "SWAG with gradient-aware superpixels (Hartley et al. 2021): SLIC steered by the image colours "
    "and the guided-backprop map, so region borders follow what the model reacts to; each region shows its "
    "average score (white lines: region borders).",
    "swag_g": "SWAG with superpixels built from the guided-backprop map alone (Hartley et al. 2021).",
    "lime": "LIME (Ribeiro et al. 2016): regions switched off at random, a weighted linear model fitted to the "
    "class probability; each region shows its coefficient.",
    "rise": "RISE (Petsiuk et al. 2018): thousands of random smooth masks, each weighted by the class "
    "probability of the masked photo.",
    "occlusion": "Occlusion (Zeiler & Fergus 2014): how much the class score drops when a patch is greyed out.",
    "xrai": "XRAI (Kapishnikov et al. 2019): integrated gradients summed over multi-scale superpixels, regions "
    "ranked greedily by attribution density.",
}

_MODEL_CACHE: dict[tuple[str, str | None, str], Any] = {}


# ---------------------------------------------------------------------------------------------- parsing
class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: they become :class:`SpixelError` and exit 2 like every user mistake."""

    def error(self, message: str) -> NoReturn:
        raise BadParameterError(f"{message} (see '{self.prog} --help')")


def _positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}")
    return v


def _seed(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {s!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {s!r}")
    return v


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    p = _Parser(prog="spixel", description="Saliency maps for image classifiers: explain, segment, list, demo.")
    p.add_argument("--version", action="version", version=f"spixel {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    e = sub.add_parser(
        "explain",
        help="explain a model's decisions on images",
        description="Write an overlay PNG, the map (.npy) and explanation.json per image.",
    )
    e.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders of images")
    e.add_argument("--model", required=True, help="model name (spixel list models)")
    e.add_argument("--weights", default=None, help="local weights file (state_dict) for the model")
    e.add_argument("--method", required=True, help="method name(s), comma-separated (spixel list methods)")
    e.add_argument(
        "--target",
        default=None,
        help="class to explain: an index or an exact label name (default: the predicted class)",
    )
    e.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="method parameter, repeatable (e.g. n_steps=20, squared=true)",
    )
    e.add_argument("--out", default="spixel_out", help="output folder (default: spixel_out)")
    e.add_argument("--seed", type=_seed, default=0, help="seed of the stochastic methods (default: 0)")
    e.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    e.add_argument("--batch-size", type=_positive_int, default=8, help="images per batch (default: 8)")
    e.add_argument(
        "--regions",
        default=None,
        metavar="NAME[:KEY=VALUE,...]",
        help="group the maps over regions of a segmenter (spixel list segmenters), "
        "e.g. slic:n_segments=100,compactness=20 or quickshift:max_dist=3",
    )
    e.add_argument(
        "--channels",
        default=None,
        choices=["joint", "per_channel"],
        help="with --regions: pool a region over all channels together (joint, default) or each "
        "channel separately (per_channel)",
    )

    ev = sub.add_parser(
        "evaluate",
        help="score the explanations of images with metrics (deletion, insertion, ...)",
        description="Explain each image with each method, score every (method, metric) and write "
        "scores.csv, summary.json and the averaged curves (curves_<metric>.png).",
    )
    ev.add_argument(
        "images",
        nargs="+",
        metavar="IMAGE",
        help="image files, folders of images, or bundled photos as sample:NAME (they carry a box)",
    )
    ev.add_argument("--model", required=True, help="model name (spixel list models)")
    ev.add_argument("--weights", default=None, help="local weights file (state_dict) for the model")
    ev.add_argument("--method", required=True, help="method name(s), comma-separated (spixel list methods)")
    ev.add_argument("--metric", required=True, help="metric name(s), comma-separated (spixel list metrics)")
    ev.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="method parameter, repeatable (e.g. n_steps=20)",
    )
    ev.add_argument(
        "--metric-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="metric parameter, repeatable; goes to every listed metric that accepts it "
        "(e.g. n_steps=16, substrate=blur, tolerance=0)",
    )
    ev.add_argument(
        "--target",
        default=None,
        help="class to explain and score: an index or an exact label (default: the predicted class)",
    )
    ev.add_argument(
        "--box",
        default=None,
        metavar="X0,Y0,X1,Y1",
        help="ground-truth box of the single IMAGE in its original pixels (exclusive ends), for the "
        "localisation metrics; sample:NAME photos carry their own",
    )
    ev.add_argument("--out", default="spixel_eval", help="output folder (default: spixel_eval)")
    ev.add_argument("--seed", type=_seed, default=0, help="seed of the stochastic methods and metrics (default: 0)")
    ev.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    ev.add_argument("--batch-size", type=_positive_int, default=8, help="images per batch (default: 8)")
    ev.add_argument(
        "--regions",
        default=None,
        metavar="NAME[:KEY=VALUE,...]",
        help="explain over the regions of a segmenter (as in explain); the fidelity metrics then "
        "perturb in region order",
    )
    ev.add_argument(
        "--channels",
        default=None,
        choices=["joint", "per_channel"],
        help="with --regions: how grouped methods pool their channels (default: joint)",
    )

    sg = sub.add_parser(
        "segment",
        help="split images into regions (superpixels) and draw them",
        description="Write a boundary overlay PNG, the labels (.npy, int64) and a JSON per image and segmenter.",
    )
    sg.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders of images")
    sg.add_argument("--segmenter", required=True, help="segmenter name(s), comma-separated (spixel list segmenters)")
    sg.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="segmenter parameter, repeatable (e.g. n_segments=200, compactness=20)",
    )
    crop = sg.add_mutually_exclusive_group()
    crop.add_argument(
        "--model", default=None, help="crop each image as this model's preprocessing does (default: efficientnet_lite0)"
    )
    crop.add_argument("--no-crop", action="store_true", help="segment the full photo instead of the model's crop")
    sg.add_argument("--weights", default=None, help="local weights file, for a --model that needs one")
    sg.add_argument(
        "--fill",
        default="none",
        choices=["none", "colors", "mean"],
        help="paint the regions under the boundaries: none (the photo, default), colors (a distinct "
        "colour each) or mean (each region's mean colour)",
    )
    sg.add_argument("--out", default="spixel_out", help="output folder (default: spixel_out)")
    sg.add_argument("--seed", type=_seed, default=0, help="seed of stochastic segmenters (default: 0)")
    sg.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    sg.add_argument("--batch-size", type=_positive_int, default=8, help="images per batch (default: 8)")

    ls = sub.add_parser("list", help="list the registered methods, models, segmenters and metrics")
    ls.add_argument(
        "what",
        nargs="?",
        choices=["methods", "models", "segmenters", "metrics"],
        help="only methods, models, segmenters or metrics",
    )

    d = sub.add_parser("demo", help="explain the bundled photos and write an HTML gallery")
    d.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    d.add_argument("--model", default="efficientnet_lite0", help="model name (default: efficientnet_lite0)")
    d.add_argument(
        "--methods",
        default=None,
        help=f"comma-separated methods (default: the registered ones of {','.join(DEMO_METHODS)})",
    )
    d.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    d.add_argument("--batch-size", type=_positive_int, default=4, help="photos per batch (default: 4)")

    tr = sub.add_parser(
        "train",
        help="train models on the synthetic ground-truth data (checkpoints for spixel.load_model)",
        description="Train on SyntheticDataset(N, SIZE, seed=DATA_SEED), score on SyntheticDataset(N_TEST, SIZE, "
        "seed=DATA_SEED+1) and write checkpoints (.pt, loadable by spixel.load_model(path)) to --out. Recipes: "
        "one model; tiny (a 32×32 VGG-style model without distractors in ~30 s, to try methods on); halves (two "
        "models on disjoint halves); folds (K models, MeGe); roar (retraining with the "
        "top-p% pixels of an explanation removed); gad (GAD support regressions for a class pair); benchmark "
        "(all of them, with manifest.json).",
    )
    tr.add_argument(
        "recipe", choices=["one", "tiny", "halves", "folds", "roar", "gad", "benchmark"], help="what to train"
    )
    tr.add_argument("--out", required=True, help="output folder for the checkpoints")
    tr.add_argument("--arch", default=None, choices=["resnet", "vgg"], help="architecture (default: resnet; tiny: vgg)")
    tr.add_argument("--n", type=_positive_int, default=None, help="training images (default: 8000)")
    tr.add_argument("--n-test", type=_positive_int, default=1000, help="held-out images (default: 1000)")
    tr.add_argument("--size", type=_positive_int, default=None, help="image size in pixels (default: 64; tiny: 32)")
    tr.add_argument(
        "--epochs",
        type=_positive_int,
        default=None,
        help="training epochs (default: 40 (resnet) / 24 (vgg); benchmark: every model's, default per model)",
    )
    tr.add_argument("--batch-size", type=_positive_int, default=None, help="training batch size (default: 64)")
    tr.add_argument("--lr", type=float, default=None, help="learning rate (default: the optimizer's)")
    tr.add_argument("--seed", type=_seed, default=0, help="seed of initialisation and shuffling (default: 0)")
    tr.add_argument("--data-seed", type=_seed, default=0, help="seed of the training images (default: 0)")
    tr.add_argument("--k", type=_positive_int, default=4, help="folds: number of folds (default: 4)")
    tr.add_argument(
        "--base", default=None, help="roar, gad: checkpoint of the model to start from (default: train one first)"
    )
    tr.add_argument("--method", default="saliency", help="roar: the explanation that ranks pixels (default: saliency)")
    tr.add_argument("--levels", default="0.1,0.5,0.9", help="roar: removal fractions (default: 0.1,0.5,0.9)")
    tr.add_argument("--pair", default="0,1", help="gad: class pair a,b (default: 0,1)")
    tr.add_argument("--alphas", default="0,2,4,6,8", help="gad: logit shifts (default: 0,2,4,6,8)")
    tr.add_argument("--threads", type=_positive_int, default=None, help="torch CPU threads (default: torch's)")
    tr.add_argument("--no-progress", action="store_true", help="no progress bars")

    b = sub.add_parser(
        "bench",
        help="reproduce a paper's table on the synthetic ground truth (stability: paper 000)",
        description="stability: SSIM between the maps of the two disjoint-half models, pixel versus grouped (SLIC, "
        "Quickshift, square, random) for Simple Gradient, IG, SmoothGrad and Sparsified SmoothGrad; MeGe/ReCo over "
        "the fold models; pointing game and MaxBoxAccV2 against the exact evidence; the evidence-occlusion check. "
        "Reads the models of 'spixel train benchmark --out DIR'; writes stability.md, stability.json, stability.png.",
    )
    b.add_argument("protocol", choices=["stability"], help="which protocol")
    b.add_argument("--models", required=True, help="folder written by spixel train benchmark (with manifest.json)")
    b.add_argument("--out", required=True, help="output folder for the report")
    b.add_argument("--n-test", type=_positive_int, default=256, help="held-out images (default: 256)")
    b.add_argument("--n-mege", type=_positive_int, default=256, help="training images for MeGe (default: 256)")
    b.add_argument("--methods", default=None, help="comma-separated subset of the four base methods (default: all)")
    b.add_argument("--quick", action="store_true", help="SmoothGrad 50 / SSG 64 noise samples instead of 100 / 256")
    b.add_argument("--seed", type=_seed, default=0, help="seed of the noise and the random partition (default: 0)")
    b.add_argument("--threads", type=_positive_int, default=None, help="torch CPU threads (default: torch's)")
    return p


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


def _parse_kv(items: Sequence[str], where: str, example: str) -> dict[str, Any]:
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


def parse_params(items: Sequence[str]) -> dict[str, Any]:
    """``["n_steps=20", ...]`` → ``{"n_steps": 20, ...}``; malformed items raise :class:`BadParameterError`."""
    out = _parse_kv(items, "--param ", "--param n_steps=20")
    if "seed" in out:
        raise BadParameterError("set the seed with --seed N, not --param seed=N")
    return out


def _segmenters() -> Any:
    """The segmenter registry, with the segmenters imported (registered)."""
    from . import segmentation  # noqa: F401  (registration)
    from .registry import SEGMENTERS

    return SEGMENTERS


def parse_regions(spec: str, seed: int | None = None) -> tuple[str, dict[str, Any]]:
    """``--regions NAME[:KEY=VALUE,...]`` → ``(name, params)``, checked against the segmenter registry (unknown
    names and parameters raise with the valid ones). A segmenter with a ``seed`` parameter gets ``seed`` unless
    the spec sets it."""
    name, colon, rest = spec.partition(":")
    name = name.strip()
    items = rest.split(",") if colon else []
    if not name or (colon and not rest.strip()) or any(not it.strip() for it in items):
        raise BadParameterError(
            f"--regions {spec!r} is malformed: write NAME or NAME:KEY=VALUE,KEY=VALUE, "
            "e.g. --regions slic:n_segments=100,compactness=20"
        )
    params = _parse_kv(items, f"--regions {spec!r}: ", "slic:n_segments=100")
    entry = _segmenters().get(name)
    accepted = entry.info.get("params", {})
    unknown = [k for k in params if k not in accepted]
    if unknown:
        raise BadParameterError(
            f"--regions: segmenter {name} has no parameter {', '.join(map(repr, unknown))}; "
            f"it accepts: {', '.join(accepted) or 'none'}"
        )
    missing = [k for k in entry.info.get("needs", ()) if k not in params]
    if missing:
        raise BadParameterError(
            f"--regions {name} needs {', '.join(missing)} (an array), which the command line cannot give; "
            "SWAG's methods use it (--method swag_ig or swag_g)"
        )
    if seed is not None and "seed" in accepted and "seed" not in params:
        params["seed"] = seed
    return name, params


def parse_methods(spec: str) -> list[Any]:
    """``"a,b"`` → registry entries (unknown names raise with the valid list), duplicates dropped."""
    from .registry import METHODS

    names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise BadParameterError("--method needs at least one method name (spixel list methods)")
    return [METHODS.get(n) for n in dict.fromkeys(names)]


def assign_params(entries: Sequence[Any], params: dict[str, Any], kind: str = "method") -> dict[str, dict[str, Any]]:
    """Give each method (or segmenter: ``kind``) the parameters it accepts; a parameter none accepts is an error."""
    per: dict[str, dict[str, Any]] = {e.name: {} for e in entries}
    for k, v in params.items():
        takers = [e.name for e in entries if k in e.info.get("params", {})]
        if not takers:
            acc = sorted({p for e in entries for p in e.info.get("params", {}) if p != "seed"})
            names = ", ".join(e.name for e in entries)
            raise BadParameterError(
                f"no listed {kind} ({names}) has a parameter {k!r}; they accept: {', '.join(acc) or 'none'}"
            )
        for n in takers:
            per[n][k] = v
    return per


def resolve_device(spec: str | None) -> str:
    """``None`` → ``"cuda"`` when available else ``"cpu"``; an unavailable or unknown device is an error."""
    import torch

    if spec is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    s = spec.strip().lower()
    try:
        dev = torch.device(s)
    except (RuntimeError, ValueError):
        raise BadParameterError(f"--device {spec!r} is not a device: use cpu or cuda") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BadParameterError("--device cuda: CUDA is not available on this machine; use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise BadParameterError(f"--device {s}: there are only {torch.cuda.device_count()} CUDA devices")
    if dev.type not in ("cpu", "cuda"):
        raise BadParameterError(f"--device {spec!r} is not supported: use cpu or cuda")
    return s


def get_model(name: str, weights: str | None, device: str) -> Any:
    """Load a model once per (name, weights, device) in this process (the CLI is also used in-process)."""
    from .models import load_model

    key = (name, str(Path(weights).resolve()) if weights else None, device)
    if key not in _MODEL_CACHE:
        _MODEL_CACHE[key] = load_model(name, weights=weights, device=device)
    return _MODEL_CACHE[key]


def resolve_target(spec: str | None, model: Any) -> int | None:
    """``--target``: ``None``, a class index (range-checked) or an exact label name (any case)."""
    if spec is None:
        return None
    s = spec.strip()
    n = model.num_classes
    if re.fullmatch(r"[+-]?\d+", s):
        k = int(s)
        if n is not None and not 0 <= k < n:
            raise BadParameterError(f"--target {k} is out of range: {model.name} has {n} classes (0..{n - 1})")
        return k
    labels = model.labels
    if not labels:
        raise BadParameterError(f"--target {s!r}: {model.name} has no class names; give a class index")
    exact = [i for i, lab in enumerate(labels) if lab == s]
    if len(exact) == 1:
        return exact[0]
    folded = [i for i, lab in enumerate(labels) if lab.lower() == s.lower()]
    if len(folded) == 1:
        return folded[0]
    if folded:
        opts = ", ".join(f"{i} ({labels[i]})" for i in folded)
        raise BadParameterError(f"--target {s!r} names several classes: {opts}; give the index")
    close = difflib.get_close_matches(s.lower(), [lab.lower() for lab in labels], n=3, cutoff=0.6)
    hint = f" Close: {', '.join(repr(c) for c in close)}." if close else ""
    raise BadParameterError(
        f"--target {s!r} is not a class of {model.name}.{hint} Give an index 0..{n - 1} or an exact label"
    )


# ---------------------------------------------------------------------------------------------- explain
#: An IMAGE argument ``sample:NAME`` names a bundled photo (``spixel.data.sample_names()``).
SAMPLE_PREFIX = "sample:"


@dataclass
class _Item:
    path: Path
    name: str = ""
    error: str | None = None
    sample: str | None = None

    @property
    def source(self) -> str:
        """What the user wrote: the file's path or ``sample:NAME``."""
        return str(self.path) if self.sample is None else SAMPLE_PREFIX + self.sample


def expand_images(args: Sequence[str]) -> list[_Item]:
    """Files as given, folders as their image files (sorted); the same file twice is taken once.
    Output names are the stems, made unique (``cat``, ``cat-2`` …, case-insensitively)."""
    items: list[_Item] = []
    seen_paths: set[Path] = set()
    seen_samples: set[str] = set()
    for a in args:
        if a.startswith(SAMPLE_PREFIX):
            name = a[len(SAMPLE_PREFIX) :].strip()
            if name not in seen_samples:
                seen_samples.add(name)
                items.append(_Item(Path(name or "sample"), sample=name))
            continue
        p = Path(a)
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTS)
            if not files:
                items.append(_Item(p, error=f"{p}: no image files in this folder"))
            for f in files:
                if f.resolve() not in seen_paths:
                    seen_paths.add(f.resolve())
                    items.append(_Item(f))
        elif p.resolve() not in seen_paths:
            seen_paths.add(p.resolve())
            items.append(_Item(p))
    used: set[str] = set()
    for it in items:
        stem = it.path.stem.strip() or "image"
        name, i = stem, 2
        while name.lower() in used:
            name, i = f"{stem}-{i}", i + 1
        used.add(name.lower())
        it.name = name
    return items


def load_item(it: _Item) -> tuple[Any, tuple[int, int, int, int] | None]:
    """The photo of an IMAGE argument (uint8 ``H × W × 3``) and its annotated box in original pixels (bundled
    ``sample:NAME`` photos) or ``None``; an unreadable file or an unknown sample raises :class:`BadImageError`."""
    from .io import load_image

    if it.error:
        raise BadImageError(it.error)
    if it.sample is None:
        return load_image(it.path), None
    try:
        from .data import sample, sample_names
    except ImportError:
        raise BadImageError("the bundled photos (spixel.data) are not available in this installation") from None
    if it.sample not in sample_names():
        close = difflib.get_close_matches(it.sample, sample_names(), n=1)
        hint = f" Did you mean {SAMPLE_PREFIX}{close[0]}?" if close else ""
        raise BadImageError(
            f"{SAMPLE_PREFIX}{it.sample}: no such bundled photo.{hint} Choose one of: {', '.join(sample_names())}"
        )
    smp = sample(it.sample)
    return smp.image, tuple(int(v) for v in smp.box)  # type: ignore[return-value]


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _err(msg: str) -> None:
    from tqdm import tqdm

    tqdm.write(f"spixel: error: {msg}", file=sys.stderr)


def run_methods(
    model: Any,
    x: Any,
    entries: Sequence[Any],
    per: dict[str, dict[str, Any]],
    target: Any,
    seed: int,
    regions: Any = None,
    channels: dict[str, str] | None = None,
) -> dict[str, tuple[Any, float]]:
    """Every method on the batch ``x``: ``{name: (Explanation, wall seconds for the batch)}``. ``regions`` (a
    ``Segmentation`` of the batch) goes to every method; ``channels`` to the methods named in it (the grouped
    ones, see :func:`region_roles`)."""
    from .api import explain

    out = {}
    for e in entries:
        kw: dict[str, Any] = {}
        if regions is not None:
            kw["regions"] = regions
            if channels and e.name in channels:
                kw["channels"] = channels[e.name]
        t0 = time.perf_counter()
        try:
            ex = explain(model, x, e.name, target, seed=seed, **kw, **per[e.name])
        except SpixelError as err:
            raise BadParameterError(f"{e.name}: {_one_line(err)}") from None
        out[e.name] = (ex, time.perf_counter() - t0)
    return out


def region_roles(entries: Sequence[Any], channels: str | None) -> dict[str, str]:
    """Check that ``--regions`` applies to every listed method and return ``{grouped method: channels}``.

    Methods with a ``regions`` parameter (LIME, occlusion, XRAI) use the regions themselves; methods that make
    their own superpixels (SWAG, ``groupable=False``) refuse them; every other method is grouped (spec §1.2) and
    pools its channels as ``channels`` says (a ``--channels`` no listed method can use is an error)."""
    from .regions import uses_regions

    own = [e.name for e in entries if e.info.get("groupable", True) is False and not uses_regions(e.name)]
    if own:
        raise BadParameterError(
            f"{', '.join(own)} make{'s' if len(own) == 1 else ''} {'its' if len(own) == 1 else 'their'} own "
            "superpixels: --regions does not apply; run without --regions (or list the other methods separately)"
        )
    grouped = [e.name for e in entries if not uses_regions(e.name)]
    if channels is not None and not grouped:
        names = ", ".join(e.name for e in entries)
        verb = "uses its" if len(entries) == 1 else "use their"
        raise BadParameterError(f"--channels applies to grouped methods; {names} {verb} regions themselves")
    return {n: channels or "joint" for n in grouped}


def batch_classes(model: Any, x: Any, results: dict[str, tuple[Any, float]], target: Any) -> dict[str, list]:
    """Predicted / explained class and probability per image: from the explanations' ``meta`` (every method
    saw the same forward pass), or from one extra forward when a method does not record them."""
    keys = ("predicted", "predicted_probability", "target", "probability")
    meta = next(iter(results.values()))[0].meta
    if all(isinstance(meta.get(k), list) and len(meta[k]) == x.shape[0] for k in keys):
        return {k: meta[k] for k in keys}
    from .types import resolve_targets

    probs = model.predict(x).cpu()
    pred = probs.argmax(1)
    t = resolve_targets(target, x.shape[0], probs.shape[1], predicted=pred)
    return {
        "predicted": pred.tolist(),
        "predicted_probability": probs.max(1).values.tolist(),
        "target": t.tolist(),
        "probability": probs.gather(1, t.view(-1, 1)).view(-1).tolist(),
    }


#: Overlays with region boundaries are drawn this many times larger, their boundaries one output pixel wide.
REGION_OVERLAY_SCALE = 2.0


#: Overlays of small inputs (e.g. the 64×64 synthetic images) are enlarged to at least this many pixels a side so
#: that the title and colour bar fit.
MIN_OVERLAY_SIDE = 256


def region_overlay(rgb01: Any, amap: Any, title: str | None, labels: Any = None) -> Any:
    """The overlay of one map; with region ``labels`` (``H × W`` ints) enlarged ``REGION_OVERLAY_SCALE`` times
    with the regions' boundaries drawn in thin white lines; small inputs enlarged to ``MIN_OVERLAY_SIDE``."""
    from .viz.overlay import overlay

    if labels is None:
        return overlay(rgb01, amap, title=title, min_side=MIN_OVERLAY_SIDE)
    return overlay(rgb01, amap, title=title, boundaries=labels, scale=REGION_OVERLAY_SCALE, min_side=MIN_OVERLAY_SIDE)


def segment_batch(model: Any, x: Any, regions: tuple[str, dict[str, Any]] | None) -> tuple[Any, dict[str, Any]]:
    """``--regions``: the batch's :class:`~spixel.types.Segmentation` (once for all methods; segmenters see
    ``model.to_rgb01(x)``) and what ``explanation.json`` records of it (segmenter, parameters with their defaults,
    seconds for the batch); ``(None, {})`` without regions."""
    if regions is None:
        return None, {}
    from .segmentation import segment

    name, params = regions
    t0 = time.perf_counter()
    try:
        seg = segment(model.to_rgb01(x), name, **params)
    except SpixelError as err:
        raise BadParameterError(f"--regions {name}: {_one_line(err)}") from None
    return seg, {"segmenter": name, "params": seg.meta.get("params", params), "seconds": time.perf_counter() - t0}


def _prepare_out(out: str | Path) -> Path:
    p = Path(out)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BadParameterError(f"cannot create the output folder {str(p)!r}: {e.strerror or e}") from None
    return p


def _class_info(model: Any, k: int, prob: float) -> dict[str, Any]:
    return {"class": int(k), "label": model.label(int(k)), "probability": float(prob)}


def cmd_explain(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from . import __version__
    from .io import save_json, save_map, save_png
    from .viz.overlay import is_signed

    entries = parse_methods(args.method)
    per = assign_params(entries, parse_params(args.param))
    regions = parse_regions(args.regions, args.seed) if args.regions is not None else None
    if regions is None and args.channels is not None:
        raise BadParameterError("--channels only applies with --regions (e.g. --regions slic)")
    channels = region_roles(entries, args.channels) if regions is not None else None
    device = resolve_device(args.device)
    items = expand_images(args.images)
    out = _prepare_out(args.out)
    model = get_model(args.model, args.weights, device)
    target = resolve_target(args.target, model)

    n_bad = n_done = 0
    bar = tqdm(total=len(items), disable=len(items) <= 1, file=sys.stderr, unit="img", desc="spixel explain")
    for s in range(0, len(items), args.batch_size):
        chunk, good = items[s : s + args.batch_size], []
        for it in chunk:
            try:
                good.append((it, load_item(it)[0]))
            except BadImageError as err:
                _err(_one_line(err))
                n_bad += 1
        if good:
            x = model.preprocess([rgb for _, rgb in good])
            seg, seg_info = segment_batch(model, x, regions)
            results = run_methods(model, x, entries, per, target, args.seed, seg, channels)
            rgb01 = model.to_rgb01(x).permute(0, 2, 3, 1).float().cpu().numpy()
            meta = batch_classes(model, x, results, target)
            region_labels = {
                name: ex.segmentation.labels.cpu().numpy()
                for name, (ex, _) in results.items()
                if ex.segmentation is not None
            }
            for i, (it, rgb) in enumerate(good):
                d = out / it.name
                info: dict[str, Any] = {
                    "spixel_version": __version__,
                    "model": model.name,
                    "weights": args.weights,
                    "device": device,
                    "image": it.source,
                    "image_size": [int(rgb.shape[1]), int(rgb.shape[0])],
                    "input_size": int(x.shape[-1]),
                    "predicted": _class_info(model, meta["predicted"][i], meta["predicted_probability"][i]),
                    "explained": _class_info(model, meta["target"][i], meta["probability"][i]),
                    "target_given": args.target,
                    "regions": None
                    if seg is None
                    else {
                        **seg_info,
                        "num_segments": int(seg.num_segments[i]),
                        "seconds": seg_info["seconds"] / len(good),
                    },
                    "methods": {},
                }
                for name, (ex, secs) in results.items():
                    amap = ex.attribution[i].detach().float().cpu().numpy()
                    save_map(d / f"{name}.npy", amap)
                    lab = info["explained"]
                    title = f"{name}\n{lab['label']} (p = {lab['probability']:.2f})"
                    k_i = int(ex.segmentation.num_segments[i]) if ex.segmentation is not None else None
                    if k_i is not None:
                        src = seg_info["segmenter"] if seg is not None else ex.segmentation.meta.get("segmenter")
                        title += f"\n{k_i} regions" + (f" ({src})" if src else "")
                    save_png(
                        d / f"{name}.png",
                        region_overlay(
                            rgb01[i], amap, title, region_labels[name][i] if name in region_labels else None
                        ),
                    )
                    info["methods"][name] = {
                        "params": ex.meta.get("params", {}),
                        "seed": ex.meta.get("seed"),
                        "seconds": secs / len(good),
                        "batch_images": len(good),
                        "signed": is_signed(amap),
                        "overlay": f"{name}.png",
                        "map": f"{name}.npy",
                    }
                    if k_i is not None:
                        info["methods"][name]["num_segments"] = k_i
                    if channels and name in channels:
                        info["methods"][name]["channels"] = channels[name]
                save_json(d / "explanation.json", info)
                n_done += 1
            del x, results
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
        bar.update(len(chunk))
    bar.close()
    if n_done:
        print(f"spixel: wrote {n_done} image(s) × {len(entries)} method(s) to {out}/")
    if n_bad:
        if len(items) > 1:
            _err(f"{n_bad} of {len(items)} image(s) could not be read; the others were written")
        return 2
    return 0


# ---------------------------------------------------------------------------------------------- evaluate
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
    from . import metrics  # noqa: F401  (registration)
    from .registry import METRICS

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
    raw = _parse_kv(items, "--metric-param ", "--metric-param n_steps=16")
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

    from . import __version__
    from .io import save_json
    from .metrics import evaluate

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
    out = _prepare_out(args.out)
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
                _err(_one_line(err))
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
                        raise BadParameterError(f"{me.name} on {name}: {_one_line(err)}") from None
                    for wmsg in caught:
                        text = f"{me.name} on {name} ({batch_names}): {_one_line(wmsg.message)}"
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
    if n_bad:
        if len(items) > 1:
            _err(f"{n_bad} of {len(items)} image(s) could not be read; the others were scored")
        return 2
    return 0


# ---------------------------------------------------------------------------------------------- list
def _fmt_default(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _entry_lines(entry: Any, kind: str, params: str, width: int) -> list[str]:
    """``spixel list`` rows of one method or segmenter: name, kind and wrapped parameters, then its summary."""
    import textwrap

    head = f"  {entry.name:<23} {kind:<13} "
    rows = textwrap.wrap(
        params or "-", width=width, initial_indent=head, subsequent_indent=" " * len(head), break_on_hyphens=False
    )
    return rows + textwrap.wrap(method_summary(entry), width=width, initial_indent=" " * 6, subsequent_indent=" " * 6)


def cmd_list(args: argparse.Namespace) -> int:
    import shutil
    import textwrap

    from .registry import METHODS, MODELS

    width = max(60, min(shutil.get_terminal_size((100, 20)).columns, 120))
    lines: list[str] = []
    if args.what in (None, "methods"):
        lines.append("METHODS  (spixel explain --method NAME --param KEY=VALUE; [stochastic]: seeded by --seed)")
        lines.append(f"  {'name':<23} {'family':<13} default parameters")
        for e in METHODS:
            ps = " ".join(f"{k}={_fmt_default(v)}" for k, v in e.info.get("params", {}).items() if k != "seed")
            if e.info.get("stochastic"):
                ps = (ps + "  [stochastic]").strip()
            lines.extend(_entry_lines(e, e.info.get("family", ""), ps, width))
        lines.append("")
    if args.what in (None, "models"):
        lines.append("MODELS  (spixel explain --model NAME [--weights FILE])")
        lines.append(f"  {'name':<23} {'family':<19} {'input':<7} weights")
        for e in MODELS:
            size = e.info.get("input_size", "")
            lines.append(f"  {e.name:<23} {e.info.get('family', ''):<19} {size!s:<7} {e.info.get('weights', '')}")
        lines.append("")
    if args.what in (None, "segmenters"):
        lines.append(
            "SEGMENTERS  (spixel segment --segmenter NAME --param KEY=VALUE; "
            "spixel explain --regions NAME:KEY=VALUE,...; [stochastic]: seeded by --seed)"
        )
        lines.append(f"  {'name':<23} {'backend':<13} default parameters")
        for e in _segmenters():
            ps = " ".join(
                f"{k}={_fmt_default(v)}"
                for k, v in e.info.get("params", {}).items()
                if k != "seed" and k not in e.info.get("needs", ())
            )
            if "seed" in e.info.get("params", {}):
                ps = (ps + "  [stochastic]").strip()
            if e.info.get("needs"):
                ps = (ps + f"  [needs: {', '.join(e.info['needs'])}; used by methods, not the CLI]").strip()
            lines.extend(_entry_lines(e, e.info.get("backend", ""), ps, width))
        lines.append("")
    if args.what in (None, "metrics"):
        from . import metrics  # noqa: F401  (registration)
        from .registry import METRICS

        lines.append(
            "METRICS  (spixel evaluate --metric NAME; spixel.evaluate(model, x, explanation, NAME) or "
            "spixel.metrics.NAME; ↑ higher is better, ↓ lower is better; [python only]: not in the CLI)"
        )
        lines.append(f"  {'name':<27} {'category':<13} reference")
        for e in METRICS:
            arrow = "↑" if e.info.get("higher_is_better") else "↓"
            head = f"  {e.name + ' ' + arrow:<27} {e.info.get('category', ''):<13} "
            ref = str(e.info.get("reference", "")) or "-"
            if not e.info.get("scores_explanation"):
                ref = "[python only] " + ref
            lines.extend(textwrap.wrap(ref, width=width, initial_indent=head, subsequent_indent=" " * len(head)))
        lines.append("")
    print("\n".join(lines).rstrip())
    return 0


# ---------------------------------------------------------------------------------------------- segment
#: ``spixel segment`` draws images up to this size (the model crops) this many times larger, with 1-px boundaries.
SEGMENT_PICTURE_SCALE = 2.0
SEGMENT_ENLARGE_BELOW = 512


def _segment_groups(images: list[Any]) -> list[list[int]]:
    """Indices of ``images`` grouped by size (a group is segmented as one batch), in first-seen order."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for j, im in enumerate(images):
        groups.setdefault(im.shape, []).append(j)
    return list(groups.values())


def cmd_segment(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from tqdm import tqdm

    from . import __version__
    from .io import save_json, save_png
    from .segmentation import segment
    from .viz.regions import draw_regions

    registry = _segmenters()
    names = [n.strip() for n in args.segmenter.split(",") if n.strip()]
    if not names:
        raise BadParameterError("--segmenter needs at least one segmenter name (spixel list segmenters)")
    entries = [registry.get(n) for n in dict.fromkeys(names)]
    per = assign_params(entries, parse_params(args.param), kind="segmenter")
    for e in entries:
        if "seed" in e.info.get("params", {}):
            per[e.name]["seed"] = args.seed
        missing = [k for k in e.info.get("needs", ()) if k not in per[e.name]]
        if missing:
            raise BadParameterError(
                f"segmenter {e.name} needs {', '.join(missing)} (an array), which the command line cannot give; "
                "it is used by methods (e.g. swag_ig)"
            )
    device = resolve_device(args.device)
    items = expand_images(args.images)
    out = _prepare_out(args.out)
    model = None if args.no_crop else get_model(args.model or "efficientnet_lite0", args.weights, "cpu")

    n_bad = n_done = 0
    bar = tqdm(total=len(items), disable=len(items) <= 1, file=sys.stderr, unit="img", desc="spixel segment")
    for s in range(0, len(items), args.batch_size):
        chunk, good = items[s : s + args.batch_size], []
        for it in chunk:
            try:
                rgb = load_item(it)[0]
                good.append((it, rgb, rgb if model is None else model.crop(rgb)))
            except BadImageError as err:
                _err(_one_line(err))
                n_bad += 1
        for group in _segment_groups([im for _, _, im in good]):
            batch = np.stack([good[j][2] for j in group])
            rgb01 = torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(255.0).to(device)
            for e in entries:
                t0 = time.perf_counter()
                try:
                    seg = segment(rgb01, e.name, **per[e.name])
                except SpixelError as err:
                    raise BadParameterError(f"{e.name}: {_one_line(err)}") from None
                secs = (time.perf_counter() - t0) / len(group)
                labels = seg.labels.cpu().numpy()
                for b, j in enumerate(group):
                    it, rgb, im = good[j]
                    d = out / it.name
                    d.mkdir(parents=True, exist_ok=True)
                    np.save(d / f"{e.name}.npy", labels[b], allow_pickle=False)
                    scale = SEGMENT_PICTURE_SCALE if max(im.shape[:2]) <= SEGMENT_ENLARGE_BELOW else 1.0
                    save_png(d / f"{e.name}.png", draw_regions(im, labels[b], fill=args.fill, scale=scale))
                    save_json(
                        d / f"{e.name}.json",
                        {
                            "spixel_version": __version__,
                            "image": it.source,
                            "image_size": [int(rgb.shape[1]), int(rgb.shape[0])],
                            "crop": None
                            if model is None
                            else {"model": model.name, "input_size": model.input_size, "resize": model.resize},
                            "size": [int(im.shape[1]), int(im.shape[0])],
                            "segmenter": e.name,
                            "backend": e.info.get("backend"),
                            "params": seg.meta.get("params", per[e.name]),
                            "num_segments": int(seg.num_segments[b]),
                            "seconds": secs,
                            "device": device,
                            "overlay": f"{e.name}.png",
                            "overlay_scale": scale,
                            "labels": f"{e.name}.npy",
                        },
                    )
        n_done += len(good)
        bar.update(len(chunk))
    bar.close()
    if n_done:
        print(f"spixel: wrote {n_done} image(s) × {len(entries)} segmenter(s) to {out}/")
    if n_bad:
        if len(items) > 1:
            _err(f"{n_bad} of {len(items)} image(s) could not be read; the others were written")
        return 2
    return 0


# ---------------------------------------------------------------------------------------------- demo
def _load_samples() -> list[Any]:
    """The bundled photos (imported lazily: ``spixel.data`` is optional at import time)."""
    try:
        from .data import samples
    except ImportError:
        raise SpixelError("the bundled demo photos (spixel.data) are not available in this installation") from None
    return list(samples())


def method_summary(entry: Any, limit: int = 240) -> str:
    """The registered description or the docstring's first paragraph, shortened to whole sentences."""
    text = entry.info.get("description") or (entry.fn.__doc__ or "").strip().split("\n\n")[0]
    text = " ".join(text.replace("``", "").split())
    if len(text) <= limit:
        return text
    cut = text.rfind(". ", 0, limit)
    return text[: cut + 1] if cut > 40 else text[: limit - 1].rstrip() + "…"


def method_blurb(entry: Any) -> str:
    """A plain-language description: :data:`METHOD_BLURBS` or the first paragraph of the docstring."""
    return METHOD_BLURBS.get(entry.name) or method_summary(entry)


def _demo_note(entry: Any, params: dict[str, Any]) -> str:
    defaults = entry.info.get("params", {})
    parts = [f"{k}={v} (default {defaults.get(k)})" for k, v in params.items() if k != "batch_size"]
    return ("Demo setting, for speed: " + ", ".join(parts) + ".") if parts else ""


def cmd_demo(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from . import __version__
    from .io import save_json, save_png
    from .registry import METHODS
    from .viz.gallery import GalleryColumn, GalleryRow, GalleryTile, write_gallery
    from .viz.overlay import draw_boxes, overlay

    default = ",".join(n for n in DEMO_METHODS if n in METHODS)
    entries = parse_methods(args.methods or default)
    per = {
        e.name: {k: v for k, v in DEMO_PARAMS.get(e.name, {}).items() if k in e.info.get("params", {})} for e in entries
    }
    device = resolve_device(args.device)
    out = _prepare_out(args.out)
    samples = _load_samples()
    if not samples:
        raise SpixelError("spixel.data.samples() returned no photos")
    model = get_model(args.model, None, device)

    t_start = time.perf_counter()
    rows: list[GalleryRow] = []
    summary: list[dict[str, Any]] = []
    bar = tqdm(total=len(samples), file=sys.stderr, unit="photo", desc="spixel demo")
    for s in range(0, len(samples), args.batch_size):
        chunk = samples[s : s + args.batch_size]
        x = model.preprocess([smp.image for smp in chunk])
        results = run_methods(model, x, entries, per, None, 0)
        meta = batch_classes(model, x, results, None)
        rgb01 = model.to_rgb01(x).permute(0, 2, 3, 1).float().cpu().numpy()
        for i, smp in enumerate(chunk):
            d = out / smp.name
            k, p = int(meta["predicted"][i]), float(meta["predicted_probability"][i])
            boxes = model.map_boxes([smp.box], smp.image.shape) if getattr(smp, "box", None) is not None else []
            save_png(d / "photo.png", draw_boxes(rgb01[i], boxes, width=2))
            classes = [int(c) for c in getattr(smp, "classes", [])]
            expected = ", ".join(model.label(c) for c in classes) or "—"
            tiles, secs = {}, {}
            for name, (ex, t) in results.items():
                amap = ex.attribution[i].detach().float().cpu().numpy()
                save_png(d / f"{name}.png", overlay(rgb01[i], amap, title=None))
                secs[name] = t / len(chunk)
                tiles[name] = GalleryTile(
                    f"{smp.name}/{name}.png", caption=f"{secs[name]:.2f} s per image", alt=f"{name} map for {smp.name}"
                )
            rows.append(
                GalleryRow(
                    title=smp.name.replace("_", " "),
                    photo=GalleryTile(f"{smp.name}/photo.png", alt=f"{smp.name} photo"),
                    lines=[
                        f"predicted: {model.label(k)} ({p:.0%})",
                        f"annotated: {expected}",
                        f"source: {getattr(smp, 'source', '')}",
                    ],
                    correct=(k in classes) if classes else None,
                    tiles=tiles,
                )
            )
            summary.append(
                {"name": smp.name, "predicted": _class_info(model, k, p), "classes": classes, "seconds": secs}
            )
        bar.update(len(chunk))
    bar.close()
    total = time.perf_counter() - t_start

    columns = [
        GalleryColumn(
            e.name, e.name.replace("_", " "), method_blurb(e), e.info.get("family", ""), _demo_note(e, per[e.name])
        )
        for e in entries
    ]
    cheap = [c.note for c in columns if c.note]
    intro = [
        f"{len(samples)} bundled photos explained by {model.name} with {len(entries)} attribution methods. "
        f"Each row shows the {model.input_size}×{model.input_size} crop the model sees (the annotated object "
        "box in green), its top prediction, and one map per method for that predicted class.",
        f"Generated by 'spixel demo' in {total:.0f} s on {device}."
        + (" For speed some methods run with fewer steps/samples than their defaults (see below)." if cheap else ""),
    ]
    notes = [
        "Non-negative maps (saliency, SmoothGrad, guided backprop, CAMs) use the 'inferno' colour scale: dark "
        "purple → orange → pale yellow for increasing importance; the more important a pixel, the more opaque "
        "its colour, so unimportant areas show the photo.",
        "Signed maps (integrated gradients, input × gradient) use a red–blue scale centred at zero: red "
        "pixels raise the class score, blue ones lower it.",
        "Every colour scale ends at the 99th percentile of the map's magnitude, so a handful of extreme pixels "
        "does not wash out the rest. The numbers on the colour bars are in the method's own units; the time "
        "under each tile is seconds per image.",
    ]
    page = write_gallery(
        out / "index.html",
        title="spixel demo: what is the model looking at?",
        intro=intro,
        columns=columns,
        rows=rows,
        notes=notes,
        footer=f"spixel {__version__} · model {model.name} · device {device}",
    )
    save_json(
        out / "demo.json",
        {
            "model": model.name,
            "device": device,
            "seconds": total,
            "methods": {e.name: per[e.name] for e in entries},
            "photos": summary,
        },
    )
    print(f"spixel: wrote {len(samples)} photo(s) × {len(entries)} method(s); open {page}")
    return 0


# ---------------------------------------------------------------------------------------------- train
def _floats(spec: str, what: str) -> list[float]:
    try:
        vals = [float(v) for v in spec.split(",") if v.strip()]
    except ValueError:
        raise BadParameterError(f"{what} {spec!r}: give comma-separated numbers, e.g. 0.1,0.5,0.9") from None
    if not vals or any(v != v for v in vals):
        raise BadParameterError(f"{what} {spec!r}: give comma-separated numbers, e.g. 0.1,0.5,0.9")
    return vals


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from .data import SyntheticDataset
    from .train import recipes
    from .train.checkpoint import load_checkpoint

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.lr is not None and not args.lr > 0:
        raise BadParameterError(f"--lr must be > 0, got {args.lr}")
    levels = _floats(args.levels, "--levels")
    alphas = _floats(args.alphas, "--alphas")
    pair = _floats(args.pair, "--pair")
    if len(pair) != 2 or any(v != int(v) for v in pair):
        raise BadParameterError(f"--pair {args.pair!r}: give two class indices a,b, e.g. 0,1")
    tiny_size = recipes.TINY_DATA["size"]
    if args.recipe == "tiny" and args.size not in (None, tiny_size):
        raise BadParameterError(f"the tiny recipe trains on {tiny_size}×{tiny_size} images; drop --size")
    if args.recipe == "benchmark" and args.base is not None:
        raise BadParameterError("--base applies to roar and gad only")
    out = _prepare_out(args.out)
    fit: dict[str, Any] = {"seed": args.seed}
    for k in ("epochs", "batch_size", "lr"):
        if getattr(args, k) is not None:
            fit[k] = getattr(args, k)
    progress = not args.no_progress
    n = args.n or 8000
    t0 = time.perf_counter()
    if args.recipe == "benchmark":
        e = fit.pop("epochs", None)
        epochs = {} if e is None else {"epochs": e, "vgg_epochs": e, "split_epochs": e, "roar_epochs": e}
        man = recipes.train_benchmark_set(
            out, n=args.n or 8000, n_test=args.n_test, size=args.size or 64, data_seed=args.data_seed, k=args.k,
            roar_levels=levels, gad_pair=(int(pair[0]), int(pair[1])), gad_alphas=alphas, progress=progress,
            **epochs, **fit,
        )  # fmt: skip
        for row in man["models"]:
            print(f"  {row['path']}: held-out accuracy {row['accuracy']:.1%}")
        print(f"spixel: wrote {len(man['models'])} checkpoints and manifest.json to {out}/ in {man['seconds']:.0f} s")
        return 0
    if args.recipe == "tiny":
        tiny = {**fit, **({"arch": args.arch} if args.arch else {})}
        rows = [recipes.train_tiny(out, n=n, n_test=args.n_test, data_seed=args.data_seed, progress=progress, **tiny)]
        return _report_trained(rows, out, t0)
    arch = args.arch or "resnet"
    one = {**fit, "epochs": fit.get("epochs", 40 if arch == "resnet" else 24)}  # ~95 % at n=8000 (measured)
    size = args.size or 64
    train = SyntheticDataset(n, size, args.data_seed)
    test = SyntheticDataset(args.n_test, size, args.data_seed + 1)
    if args.recipe == "one":
        rows = [recipes.train_one(train, test, out, arch=arch, progress=progress, **one)]
    elif args.recipe == "halves":
        rows = recipes.train_halves(train, test, out, arch=arch, progress=progress, **one)
    elif args.recipe == "folds":
        if args.k < 2:
            raise BadParameterError(f"--k must be at least 2, got {args.k}")
        rows = recipes.train_folds(train, test, out, k=args.k, arch=arch, progress=progress, **one)
    else:
        if args.recipe == "roar":
            from .registry import METHODS

            METHODS.get(args.method)  # an unknown name fails here, before any work
        if args.base is not None:
            base = load_checkpoint(args.base)
        else:
            first = recipes.train_one(train, test, out, arch=arch, progress=progress, **one)
            print(f"  {first.path}: held-out accuracy {first.accuracy:.1%} (base model)")
            base = first.model
        if args.recipe == "roar":
            rows = recipes.train_roar(base, train, test, out, args.method, levels=levels, progress=progress,
                                      **{k: v for k, v in fit.items() if k != "seed"})  # fmt: skip
        else:
            rows = recipes.train_gad_supports(base, train, test, out, pair=(int(pair[0]), int(pair[1])),
                                              alphas=alphas, seed=args.seed, progress=progress)  # fmt: skip
    return _report_trained(rows, out, t0)


def _report_trained(rows: list[Any], out: Path, t0: float) -> int:
    for r in rows:
        print(f"  {r.path}: held-out accuracy {r.accuracy:.1%}")
    print(f"spixel: wrote {len(rows)} checkpoint(s) to {out}/ in {time.perf_counter() - t0:.0f} s")
    return 0


# ---------------------------------------------------------------------------------------------- main
# ---------------------------------------------------------------------------------------------- bench
def cmd_bench(args: argparse.Namespace) -> int:
    import torch

    from .bench.report import write_stability_report
    from .bench.stability import METHODS as STABILITY_METHODS
    from .bench.stability import run_stability

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    methods = tuple(STABILITY_METHODS)
    if args.methods:
        methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    models = Path(args.models)
    if not models.is_dir():
        raise SpixelError(f"{models}: no such folder; train the models first: spixel train benchmark --out {models}")
    out = _prepare_out(args.out)
    res = run_stability(
        models, n_test=args.n_test, n_mege=args.n_mege, seed=args.seed, methods=methods, quick=args.quick
    )
    paths = write_stability_report(res, out)
    print(f"spixel: wrote {', '.join(p.name for p in paths.values())} to {out}/ in {res['seconds']:.0f} s")
    return 0


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
        }
        return commands[args.command](args)
    except SpixelError as e:
        print(f"spixel: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except SystemExit as e:  # --help / --version
        return e.code if isinstance(e.code, int) else 0

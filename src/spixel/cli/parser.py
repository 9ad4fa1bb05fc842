"""The ``spixel`` argument parser: one sub-parser per command (documented in :mod:`spixel.cli`)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from .common import Parser, positive_int, seed_arg
from .demo import DEMO_METHODS

_non_negative = seed_arg  # an integer >= 0


def _float_above(lo: float, strict: bool, expected: str) -> Callable[[str], float]:
    """An argparse type: a finite number ``> lo`` (``strict``) or ``>= lo``; otherwise an error naming it."""

    def parse(s: str) -> float:
        try:
            v = float(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {s!r}") from None
        if not math.isfinite(v) or v < lo or (strict and v == lo):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {s!r}")
        return v

    return parse


_positive_float = _float_above(0.0, True, "a number > 0")
_non_negative_float = _float_above(0.0, False, "a number >= 0")


def _add_run_args(p: argparse.ArgumentParser, out: str, seeded: str) -> None:
    """``--out``, ``--seed``, ``--device``, ``--batch-size``: the options explain, evaluate and segment share."""
    p.add_argument("--out", default=out, help=f"output folder (default: {out})")
    p.add_argument("--seed", type=seed_arg, default=0, help=f"seed of {seeded} (default: 0)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--batch-size", type=positive_int, default=8, help="images per batch (default: 8)")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    p = Parser(prog="spixel", description="Saliency maps for image classifiers: explain, segment, list, demo.")
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
    _add_run_args(e, "spixel_out", "the stochastic methods")
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
        nargs="*",
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
    _add_run_args(ev, "spixel_eval", "the stochastic methods and metrics")
    ev.add_argument(
        "--data",
        default=None,
        metavar="DATASET",
        help="evaluate a dataset instead of IMAGE arguments (folder:DIR, voc:DIR, csv:FILE, …, as spixel run): "
        "its boxes and masks feed the localisation metrics",
    )
    ev.add_argument("--limit", type=positive_int, default=None, help="with --data: only the first N items")
    ev.add_argument("--store", default=None, help="also keep the results store (SQLite) at this path")
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
    _add_run_args(sg, "spixel_out", "stochastic segmenters")

    ls = sub.add_parser(
        "list", help="list the registered methods, models, segmenters, metrics, dataset forms and protocols"
    )
    ls.add_argument(
        "what",
        nargs="?",
        choices=["methods", "models", "segmenters", "metrics", "datasets", "protocols"],
        help="only methods, models, segmenters, metrics, datasets or protocols",
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
    d.add_argument("--batch-size", type=positive_int, default=4, help="photos per batch (default: 4)")

    tr = sub.add_parser(
        "train",
        help="train models on the synthetic ground-truth data (checkpoints for spixel.load_model)",
        description="Train on SyntheticDataset(N, SIZE, seed=DATA_SEED), score on SyntheticDataset(N_TEST, SIZE, "
        "seed=DATA_SEED+1) and write checkpoints (.pt, loadable by spixel.load_model(path)) to --out. Recipes: "
        "one model; tiny (a 32×32 VGG-style model without distractors in ~30 s, to try methods on); halves (two "
        "models on disjoint halves); folds (K models, MeGe); roar (retraining with the top-p% pixels of an "
        "explanation removed, plus the same retraining with nothing removed); gad (GAD support regressions for a "
        "class pair); benchmark (all of them, with manifest.json). finetune: fine-tune a pretrained backbone "
        "(--arch torchvision:NAME / timm:NAME --weights FILE, or a spixel.train checkpoint) on --data (an ImageFolder "
        "or another --data form) with a held-out split, a checkpoint each epoch (re-run to resume) and "
        "--out/model.pt loadable as --model.",
    )
    tr.add_argument(
        "recipe",
        choices=["one", "tiny", "halves", "folds", "roar", "gad", "benchmark", "finetune"],
        help="what to train",
    )
    tr.add_argument("--out", required=True, help="output folder for the checkpoints")
    tr.add_argument(
        "--arch",
        default=None,
        help="resnet or vgg (default: resnet; tiny: vgg); finetune: torchvision:NAME, timm:NAME or a checkpoint",
    )
    tr.add_argument("--weights", default=None, help="finetune: the backbone's pretrained weights (state_dict file)")
    tr.add_argument("--data", default=None, help="finetune: training data, a folder (ImageFolder) or FORM:ARG")
    tr.add_argument("--test", default=None, help="finetune: held-out data (default: --holdout of --data)")
    tr.add_argument("--holdout", type=float, default=0.2, help="finetune: held-out fraction per class (default: 0.2)")
    tr.add_argument("--optimizer", default="sgd", choices=["sgd", "adam"], help="finetune: optimizer (default: sgd)")
    tr.add_argument(
        "--schedule",
        default="constant",
        choices=["constant", "cosine"],
        help="finetune: lr schedule (default: constant)",
    )
    tr.add_argument("--input-size", type=positive_int, default=None, help="finetune: crop size (default: the arch's)")
    tr.add_argument("--workers", type=seed_arg, default=0, help="finetune: DataLoader processes (default: 0)")
    tr.add_argument("--device", default=None, help="finetune: cpu or cuda (default: cuda when available)")
    tr.add_argument("--no-augment", action="store_true", help="finetune: centre crops only, no random crop / flip")
    tr.add_argument("--no-resume", action="store_true", help="finetune: start over even if --out holds a run")
    tr.add_argument("--n", type=positive_int, default=None, help="training images (default: 8000)")
    tr.add_argument("--n-test", type=positive_int, default=1000, help="held-out images (default: 1000)")
    tr.add_argument("--size", type=positive_int, default=None, help="image size in pixels (default: 64; tiny: 32)")
    tr.add_argument(
        "--epochs",
        type=positive_int,
        default=None,
        help="training epochs (default: 40 (resnet) / 24 (vgg); benchmark: every model's, default per model)",
    )
    tr.add_argument("--batch-size", type=positive_int, default=None, help="training batch size (default: 64)")
    tr.add_argument("--lr", type=float, default=None, help="learning rate (default: the optimizer's)")
    tr.add_argument("--seed", type=seed_arg, default=0, help="seed of initialisation and shuffling (default: 0)")
    tr.add_argument("--data-seed", type=seed_arg, default=0, help="seed of the training images (default: 0)")
    tr.add_argument("--k", type=positive_int, default=4, help="folds: number of folds (default: 4)")
    tr.add_argument(
        "--base", default=None, help="roar, gad: checkpoint of the model to start from (default: train one first)"
    )
    tr.add_argument("--method", default="saliency", help="roar: the explanation that ranks pixels (default: saliency)")
    tr.add_argument("--levels", default="0.1,0.5,0.9", help="roar: removal fractions (default: 0.1,0.5,0.9)")
    tr.add_argument("--pair", default="0,1", help="gad: class pair a,b (default: 0,1)")
    tr.add_argument("--alphas", default="0,2,4,6,8", help="gad: logit shifts (default: 0,2,4,6,8)")
    tr.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's)")
    tr.add_argument("--no-progress", action="store_true", help="no progress bars")

    r = sub.add_parser(
        "run",
        help="run an experiment over a dataset into a resumable SQLite store",
        description="Explain every item of --data with the experiment's methods, score it with its metrics and "
        "write each batch to --store in one transaction. Re-running the same command resumes: items already "
        "recorded are skipped. Exit 0 when every item is done, 3 when some failed (recorded with their reason), "
        "130 when interrupted (the store keeps every committed batch), 2 on a usage error.",
    )
    r.add_argument("experiment", help="an experiment file (.toml) or a protocol name (spixel list protocols)")
    r.add_argument(
        "--data",
        default=None,
        help="dataset: folder:DIR, voc:DIR, imagenet:DIR, csv:FILE, masks:DIR, photos, synthetic[:N] "
        "(options as FORM:ARG?key=value&key=value; spixel list datasets); default: a protocol's own data",
    )
    r.add_argument(
        "--fast",
        action="store_true",
        help="a protocol's smoke-test settings (few samples and steps): a separate run, not the paper's numbers",
    )
    r.add_argument("--store", required=True, help="SQLite results file (created if missing)")
    r.add_argument("--model", default=None, help="model name or checkpoint (overrides the experiment's)")
    r.add_argument("--weights", default=None, help="local weights file for --model")
    r.add_argument("--seed", type=seed_arg, default=None, help="seed (overrides the experiment's; default: its own)")
    r.add_argument("--limit", type=positive_int, default=None, help="only the first N items (in id order)")
    r.add_argument("--batch-size", type=positive_int, default=8, help="items per batch and transaction (default: 8)")
    r.add_argument(
        "--workers",
        type=_non_negative,
        default=0,
        help="local: DataLoader processes decoding images (default: 0); ray: actors in the pool, each loading the "
        "model once (default: 0 = as many as the cluster's CPUs / GPUs hold)",
    )
    r.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local: this process (default); ray: actors of a Ray cluster (pip install 'spixel[ray]'), same rows",
    )
    r.add_argument(
        "--address",
        default=None,
        help="ray: the cluster to join, auto or HOST:PORT (default: start a local Ray instance on this machine)",
    )
    r.add_argument(
        "--cpus-per-worker",
        type=_positive_float,
        default=None,
        help="ray: CPUs each actor reserves, also its torch threads (default: 1)",
    )
    r.add_argument(
        "--gpus-per-worker",
        type=_non_negative_float,
        default=None,
        help="ray: GPUs each actor reserves; a fraction shares a GPU, e.g. 0.25 (default: 0, CPU actors)",
    )
    r.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    r.add_argument("--cache-maps", default=None, metavar="DIR", help="keep the explanations here and re-use them")
    r.add_argument("--retry-failed", action="store_true", help="compute the items recorded as failed again")

    rs = sub.add_parser("runs", help="list the runs in a results store with their progress")
    rs.add_argument("store", help="SQLite results file written by spixel run")

    b = sub.add_parser(
        "bench",
        help="reproduce a paper's table on the synthetic ground truth (stability: paper 000)",
        description="stability: SSIM between the maps of the two disjoint-half models, pixel versus grouped (SLIC, "
        "Quickshift, square, random) for Simple Gradient, IG, SmoothGrad and Sparsified SmoothGrad; MeGe/ReCo over "
        "the fold models; pointing game and MaxBoxAccV2 against the exact evidence; the evidence-occlusion check. "
        "Reads the models of 'spixel train benchmark --out DIR'; writes stability.html (figure and tables), "
        "stability.md, stability.json, stability.png.",
    )
    b.add_argument("protocol", choices=["stability"], help="which protocol")
    b.add_argument("--models", required=True, help="folder written by spixel train benchmark (with manifest.json)")
    b.add_argument("--out", required=True, help="output folder for the report")
    b.add_argument("--n-test", type=positive_int, default=256, help="held-out images (default: 256)")
    b.add_argument("--n-mege", type=positive_int, default=256, help="training images for MeGe (default: 256)")
    b.add_argument("--methods", default=None, help="comma-separated subset of the four base methods (default: all)")
    b.add_argument("--quick", action="store_true", help="SmoothGrad 50 / SSG 64 noise samples instead of 100 / 256")
    b.add_argument("--seed", type=seed_arg, default=0, help="seed of the noise and the random partition (default: 0)")
    b.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's)")

    sv = sub.add_parser(
        "serve",
        help="the explorer in the browser: one photo live, and a results store browsed",
        description="Start the browser explorer (Streamlit; pip install 'spixel[serve]'). Page 1 explains one photo "
        "(bundled, uploaded or a path) with several methods over optional regions, with overlays, deletion / "
        "insertion curves and SSIM; page 2 browses a results store of spixel run: the method x metric table with "
        "95 %% CIs, items sorted and filtered by any score, an item's image, maps and curves, the failed items.",
    )
    sv.add_argument("--store", default=None, help="a results store (SQLite) of spixel run to browse")
    sv.add_argument("--model", default=None, help="model of page 1 (default: efficientnet_lite0); name or checkpoint")
    sv.add_argument("--weights", default=None, help="local weights file for a torchvision:/timm: --model")
    sv.add_argument("--cache-maps", default=None, metavar="DIR", help="the map cache the run kept (--cache-maps)")
    sv.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    sv.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    sv.add_argument("--port", type=positive_int, default=8501, help="port (default: 8501)")
    rp = sub.add_parser(
        "report",
        help="a results store as one self-contained HTML page (or Markdown): tables with CIs, claims, curves",
        description="Per run: method x metric table (mean, 95 % bootstrap CI, n; best and tied marked; the "
        "paper's numbers beside ours), a verdict per claim of a protocol (Wilcoxon signed-rank over items), Kendall "
        "tau between the metrics' rankings, mean curves with bands, best/worst items (with --cache-maps), failed "
        "items and provenance.",
    )
    rp.add_argument("store", help="SQLite results file written by spixel run")
    rp.add_argument("--out", default=None, help="file to write (default: report.html, or report.md with --format md)")
    rp.add_argument("--format", choices=("html", "md"), default=None, help="html (default; md when --out ends .md)")
    rp.add_argument(
        "--run",
        action="append",
        default=None,
        metavar="ID|NAME",
        help="only these runs, by id or name (repeatable, or comma-separated; default: all)",
    )
    rp.add_argument("--cache-maps", default=None, metavar="DIR", help="the run's map cache: adds the gallery")
    rp.add_argument(
        "--gallery-metric", default=None, metavar="LABEL", help="rank the gallery's items by it (default: the first)"
    )
    rp.add_argument("--gallery-k", type=positive_int, default=3, help="best and worst items per method (default: 3)")
    rp.add_argument("--bootstrap", type=positive_int, default=2000, help="bootstrap resamples (default: 2000)")
    rp.add_argument("--seed", type=seed_arg, default=0, help="seed of the bootstrap (default: 0)")
    return p

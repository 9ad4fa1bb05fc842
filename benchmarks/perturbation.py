"""Time spixel's LIME, RISE and occlusion against Captum and the lime package on the same photos and targets.

Every method runs on the same preprocessed photos, targets and (for LIME) the same quickshift segmentation
(lime's settings, computed once). Peers: Captum ``Lime`` (same ``n_samples`` and feature mask, its
``perturbations_per_eval`` tuned), the lime package's ``LimeImageExplainer`` (its ``batch_size`` tuned, our
model behind ``classifier_fn``) and Captum ``Occlusion`` (same window, stride and baseline,
``perturbations_per_eval`` tuned). RISE has no installed peer (eclique/RISE is a notebook repository); it is
compared with its forward-pass bound only. Peers and spixel alternate (the order flips every repeat); the
median of ``--repeats`` runs is printed with the ratios and each method's forward lower bound: the number of
forward passes it needs (perturbed images + the clean one per image) × the per-image no-grad forward time at
the best of ``--batch-sizes`` and spixel's batch size, on rows gathered from the photos as the engine gathers
them (so in their memory format: channels-last from ``preprocess``; a ``.contiguous()`` NCHW copy ran Lite0
~1.5× slower on the CPU and put the bound above the methods' times), re-measured between the repeats (each
the fastest of 3 timings of ≥ 64 images; the median is used).

``--sweep`` times spixel's LIME at each of ``--batch-sizes`` (how ``perturbation.BATCH_SIZE`` was chosen).

    python benchmarks/perturbation.py                                   # 2 photos, 5 repeats, 1000 samples
    python benchmarks/perturbation.py --images 1 --repeats 1 --samples 200 --rise-masks 400   # quick
    python benchmarks/perturbation.py --device cuda --images 8
    python benchmarks/perturbation.py --sweep --samples 256 --repeats 3
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

import spixel
from _common import photos as _photos
from _common import timed
from spixel.attribution.perturbation import LIME_QUICKSHIFT, resolve_batch_size, segmentation_of
from spixel.regions import pool

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "immunohistochemistry", "colorwheel")


def photos(model: spixel.ModelAdapter, n: int) -> Tensor:
    return _photos(model, n, PHOTOS)


@torch.no_grad()
def forward_per_image(module: torch.nn.Module, x: Tensor, batch: int, repeats: int = 5) -> float:
    """Seconds per image of no-grad forwards of ``batch`` images, fed as the engine feeds them: rows gathered from
    ``x`` by indexing, which keeps ``x``'s memory format (channels-last for ``ModelAdapter.preprocess`` output;
    the engine's ``where`` / ``addcmul`` keep it too). Each timing covers at least 64 images, after two warm-up
    forwards; the fastest of ``repeats`` timings is kept (other load on the machine only slows a timing down).
    """
    xb = x[torch.arange(batch) % x.shape[0]]
    loops = max(1, -(-64 // batch))

    def run() -> None:
        for _ in range(loops):
            module(xb)

    module(xb)
    module(xb)
    return min(timed(run, x.device)[0] for _ in range(repeats)) / (batch * loops)


def tune(label: str, candidates: dict[int, Callable[[], Any]], device: torch.device) -> int:
    """One warm-up-free timed run per candidate knob value (on a reduced problem); returns the fastest."""
    times = {k: timed(fn, device)[0] for k, fn in candidates.items()}
    best = min(times, key=times.get)
    print(f"  tuned {label}: " + ", ".join(f"{k}: {v:.2f}s" for k, v in times.items()) + f" -> {best}", file=sys.stderr)
    return best


@dataclass
class Case:
    name: str
    settings: str
    forwards: int  # model forwards (images) the method needs for the whole batch, the clean one included
    ours: Callable[[], Any]
    peers: dict[str, Callable[[], Any]] = field(default_factory=dict)
    agree: Callable[[dict[str, Any]], str] | None = None


def lime_package(
    model: spixel.ModelAdapter, x: Tensor, targets: list[int], seg: spixel.Segmentation, n_samples: int, batch_size: int
) -> list[np.ndarray]:
    """The lime package on each image (same segmentation, ``hide_color=None``); returns its coefficients."""
    import lime.lime_image
    from lime.lime_image import LimeImageExplainer

    lime.lime_image.tqdm = lambda rows, **_kw: rows  # its per-sample progress bar, not part of the work
    dev = x.device

    @torch.no_grad()
    def classifier_fn(images: np.ndarray) -> np.ndarray:
        xb = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().to(dev)
        return model.module(model.normalize(xb)).softmax(-1).cpu().numpy()

    rgb = model.to_rgb01(x).permute(0, 2, 3, 1).cpu().double().numpy()
    out = []
    for i, t in enumerate(targets):
        labels = seg.labels[i].cpu().numpy()
        ex = LimeImageExplainer(random_state=i + 1).explain_instance(
            rgb[i],
            classifier_fn,
            labels=(t,),
            top_labels=None,
            hide_color=None,
            num_samples=n_samples,
            batch_size=batch_size,
            segmentation_fn=lambda _img, labels=labels: labels,
            random_seed=0,
        )
        coef = np.zeros(int(labels.max()) + 1)
        for f, w in ex.local_exp[t]:
            coef[f] = w
        out.append(coef)
    return out


def build_cases(
    args: argparse.Namespace, model: spixel.ModelAdapter, x: Tensor, targets: list[int], sizes: list[int]
) -> list[Case]:
    import warnings

    from captum.attr import Lime, Occlusion

    warnings.filterwarnings("ignore", message="You are providing multiple inputs for Lime")
    dev, n = x.device, x.shape[0]
    t = torch.tensor(targets, device=dev)
    bs = {} if args.batch_size is None else {"batch_size": args.batch_size}
    wanted = [s.strip() for s in args.methods.split(",") if s.strip()]
    cases = []
    tune_samples = min(args.samples, 4 * max(sizes))
    if "lime" in wanted:
        seg = segmentation_of(model, x, "quickshift", dict(LIME_QUICKSHIFT))
        print(f"  quickshift regions per photo: {seg.num_segments.tolist()}", file=sys.stderr)
        k = args.samples
        feature_mask = seg.labels.unsqueeze(1).expand(-1, 3, -1, -1)

        def softmax_model(z: Tensor) -> Tensor:
            return model.module(z).softmax(-1)

        def captum_lime(ppe: int, k: int = k) -> Tensor:
            return Lime(softmax_model).attribute(
                x, target=t, feature_mask=feature_mask, n_samples=k, perturbations_per_eval=ppe, baselines=0.0
            )

        def ours_lime(k: int = k, **kw: Any) -> spixel.Explanation:
            return spixel.explain(
                model, x, "lime", targets, seed=0, regions=seg, n_samples=k, progress=False, **{**bs, **kw}
            )

        cl = tune(
            "Captum Lime perturbations_per_eval", {b: (lambda b=b: captum_lime(b, tune_samples)) for b in sizes}, dev
        )
        lb = tune(
            "lime batch_size",
            {b: (lambda b=b: lime_package(model, x, targets, seg, tune_samples, b)) for b in sizes},
            dev,
        )

        def agree(outs: dict[str, Any], seg: spixel.Segmentation = seg) -> str:
            mine = pool(outs["spixel"].attribution, seg, "mean").cpu().numpy()
            overlaps = []
            for i, theirs in enumerate(outs["lime"]):
                kk = len(theirs)
                a, b = set(np.argsort(-mine[i, :kk])[:5]), set(np.argsort(-theirs)[:5])
                overlaps.append(len(a & b))
            return f"top-5 regions shared with lime: {overlaps}"

        cases.append(
            Case(
                "lime",
                f"n_samples={k}, quickshift (lime's), captum ppe={cl}, lime batch_size={lb}",
                k * n + n,
                ours_lime,
                {"captum": lambda: captum_lime(cl), "lime": lambda: lime_package(model, x, targets, seg, k, lb)},
                agree,
            )
        )
    if "rise" in wanted:
        m = args.rise_masks
        cases.append(
            Case(
                "rise",
                f"n_masks={m}, grid_size=7, p1=0.5",
                m * n + n,
                lambda: spixel.explain(model, x, "rise", targets, seed=0, n_masks=m, progress=False, **bs),
            )
        )
    if "occlusion" in wanted:
        w, s = args.window, args.stride
        h, wd = x.shape[-2:]
        n_win = (-(-(h - w) // s) + 1) * (-(-(wd - w) // s) + 1)

        def captum_occ(ppe: int) -> Tensor:
            return Occlusion(model.module).attribute(
                x,
                sliding_window_shapes=(3, w, w),
                strides=(3, s, s),
                baselines=0.0,
                target=t,
                perturbations_per_eval=ppe,
            )

        # Captum puts ppe × N images in one forward; tuned with stride = window (fewer windows, same forwards)
        co = tune(
            "Captum Occlusion perturbations_per_eval",
            {
                max(1, b // n): (
                    lambda b=b: Occlusion(model.module).attribute(
                        x,
                        sliding_window_shapes=(3, w, w),
                        strides=(3, w, w),
                        baselines=0.0,
                        target=t,
                        perturbations_per_eval=max(1, b // n),
                    )
                )
                for b in sizes
            },
            dev,
        )

        def agree_occ(outs: dict[str, Any]) -> str:
            ref = outs["captum"][:, 0]
            err = float((outs["spixel"].attribution - ref).abs().max()) / float(ref.abs().max())
            return f"max |Δ| / max |captum| = {err:.1e}"

        cases.append(
            Case(
                "occlusion",
                f"window={w}, stride={s}, fill 0, target logit, captum ppe={co}",
                n_win * n + n,
                lambda: spixel.explain(model, x, "occlusion", targets, window=w, stride=s, progress=False, **bs),
                {"captum": lambda: captum_occ(co)},
                agree_occ,
            )
        )
    return cases


def run_compare(args: argparse.Namespace, model: spixel.ModelAdapter, x: Tensor) -> None:
    dev = x.device
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    with torch.no_grad():
        targets = model.module(x).argmax(1).tolist()
    print(f"  targets: {[model.label(k) for k in targets]}", file=sys.stderr)
    ours_b = args.batch_size or resolve_batch_size(None, dev)
    bound_sizes = sorted({*sizes, ours_b})
    forward_per_image(model.module, x, max(bound_sizes), 1)  # warm the allocator at the largest batch first
    per_image = {b: forward_per_image(model.module, x, b) for b in bound_sizes}
    best_b = min(per_image, key=per_image.get)
    print(
        "  forward s/image by batch size: " + ", ".join(f"{b}: {v * 1e3:.1f} ms" for b, v in per_image.items()),
        file=sys.stderr,
    )
    cases = build_cases(args, model, x, targets, sizes)
    times: dict[str, dict[str, list[float]]] = {c.name: {k: [] for k in ["spixel", *c.peers]} for c in cases}
    agreement: dict[str, str] = {}
    bound_runs: list[float] = []
    for r in range(args.repeats):
        for c in cases:
            runs = {"spixel": c.ours, **c.peers}
            order = list(runs) if r % 2 == 0 else list(runs)[::-1]
            outs = {}
            for who in order:
                dt, outs[who] = timed(runs[who], dev)
                times[c.name][who].append(dt)
            if r == 0 and c.agree is not None:
                agreement[c.name] = c.agree(outs)
        # the machine's speed drifts (other load): re-measure the bound at its best batch size between repeats
        bound_runs.append(forward_per_image(model.module, x, best_b, 3))
    print()
    print(
        f"model {args.model}, {x.shape[0]} photos {tuple(x.shape[1:])}, device {dev}, {torch.get_num_threads()} "
        f"threads, torch {torch.__version__}, {platform.processor() or platform.machine()}, median of "
        f"{args.repeats} run(s), seconds for the whole batch"
    )
    per_fwd = statistics.median(bound_runs)
    print(
        f"forward lower bound: {per_fwd * 1e3:.1f} ms/image (median of {len(bound_runs)} measurements between the "
        f"repeats, each the fastest of 3) at batch {best_b} (fastest of {bound_sizes}; spixel's batch_size "
        f"{ours_b}) × forwards needed (perturbed images + one clean forward per image)"
    )
    print()
    print(
        "| method | settings | forwards | bound | spixel | spixel/bound | Captum | spixel/Captum | lime | spixel/lime |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for c in cases:
        med = {k: statistics.median(v) for k, v in times[c.name].items()}
        bound = per_fwd * c.forwards
        cells = []
        for peer in ("captum", "lime"):
            cells += [f"{med[peer]:.2f}", f"{med['spixel'] / med[peer]:.2f}"] if peer in med else ["–", "–"]
        print(
            f"| {c.name} | {c.settings} | {c.forwards} | {bound:.2f} | {med['spixel']:.2f} "
            f"| {med['spixel'] / bound:.2f} | " + " | ".join(cells) + " |"
        )
    for name, a in agreement.items():
        print(f"\n{name}: {a}")


def run_sweep(args: argparse.Namespace, model: spixel.ModelAdapter, x: Tensor) -> None:
    """spixel's LIME at every batch size (interleaved), to choose the default."""
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    seg = segmentation_of(model, x, "quickshift", dict(LIME_QUICKSHIFT))
    fns = {
        b: (
            lambda b=b: spixel.explain(
                model, x, "lime", None, seed=0, regions=seg, n_samples=args.samples, batch_size=b, progress=False
            )
        )
        for b in sizes
    }
    times: dict[int, list[float]] = {b: [] for b in sizes}
    for r in range(args.repeats):
        for b in sizes if r % 2 == 0 else sizes[::-1]:
            times[b].append(timed(fns[b], x.device)[0])
    print(
        f"\nspixel lime, n_samples={args.samples}, {x.shape[0]} photos, {args.model}, device {x.device}, "
        f"{torch.get_num_threads()} threads, median of {args.repeats}"
    )
    print("\n| batch_size | seconds | ms per forward image |\n|---:|---:|---:|")
    for b in sizes:
        med = statistics.median(times[b])
        print(f"| {b} | {med:.2f} | {med / (args.samples * x.shape[0]) * 1e3:.1f} |")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=2, help="number of photos (default 2)")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per method and library (default 5)")
    ap.add_argument("--samples", type=int, default=1000, help="LIME samples (default 1000)")
    ap.add_argument("--rise-masks", type=int, default=4000, help="RISE masks (default 4000)")
    ap.add_argument("--window", type=int, default=16, help="occlusion window (default 16)")
    ap.add_argument("--stride", type=int, default=8, help="occlusion stride (default 8)")
    ap.add_argument("--methods", default="lime,rise,occlusion")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--batch-size", type=int, default=None, help="spixel batch_size (default: its own)")
    ap.add_argument(
        "--batch-sizes",
        default="8,16,32,64",
        help="candidates for the peers' knobs, the forward bound and --sweep (default 8,16,32,64)",
    )
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    ap.add_argument("--sweep", action="store_true", help="time spixel LIME at each of --batch-sizes and exit")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = spixel.load_model(args.model, device=args.device)
    x = photos(model, args.images)
    t0 = time.perf_counter()
    (run_sweep if args.sweep else run_compare)(args, model, x)
    print(f"\n(total {time.perf_counter() - t0:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()

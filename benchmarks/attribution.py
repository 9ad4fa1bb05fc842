"""Time spixel's gradient and CAM methods against Captum on the same real photos and targets.

For every method both libraries share, the peer (Captum) and spixel are run alternately (the order flips
each repeat), and the median of ``--repeats`` runs is reported with the ratio spixel/peer, a forward+backward
lower bound (the per-image cost of one fwd+bwd at the best batch size × the number of image passes the method
needs) and the agreement of the two outputs (``max |Δ| / max |peer|``; n/a for SmoothGrad, whose noise
differs). Captum gets its best memory knob (``internal_batch_size`` / ``nt_samples_batch_size``), tuned
once per run from ``--batch-sizes``; spixel runs with its defaults unless ``--batch-size`` is given.

``--sweep`` instead times spixel's integrated gradients at every batch size of ``--batch-sizes`` (how the
defaults in ``spixel.attribution.gradients`` were chosen).

    python benchmarks/attribution.py                       # 2 photos, 5 repeats, Lite0 on the CPU
    python benchmarks/attribution.py --images 8 --device cuda --methods saliency,integrated_gradients
    python benchmarks/attribution.py --sweep --repeats 3
    python benchmarks/attribution.py --threads 1 --clock cpu    # on a machine busy with other jobs
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

import spixel
from _common import photos
from _common import timed as _timed
from spixel.attribution.gradients import noise_sigma
from spixel.registry import METHODS

SHARED = (
    "saliency",
    "input_x_gradient",
    "integrated_gradients",
    "smoothgrad",
    "guided_backprop",
    "deconvolution",
    "gradcam",
)


#: the clock of :func:`timed`: wall time, or this process's CPU time (``--clock cpu``; with ``--threads 1`` it
#: measures the work itself, not the waiting, on a machine shared with other jobs)
CLOCK: Callable[[], float] = time.perf_counter


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    return _timed(fn, device, CLOCK)


def fwd_bwd_per_image(module: torch.nn.Module, x: Tensor, batch: int, repeats: int, warm_up: bool = True) -> float:
    """Median seconds per image of one forward + input-gradient backward of ``batch`` images."""
    xb = x[torch.arange(batch) % x.shape[0]]
    flags = {p: p.requires_grad for p in module.parameters()}
    for p in flags:
        p.requires_grad_(False)

    def once() -> None:
        xi = xb.detach().requires_grad_(True)
        torch.autograd.grad(module(xi)[:, 0].sum(), xi)

    try:
        if warm_up:
            once()
        ts = [timed(once, x.device)[0] for _ in range(repeats)]
    finally:
        for p, f in flags.items():
            p.requires_grad_(f)
    return statistics.median(ts) / batch


@dataclass
class Case:
    name: str
    params: str
    passes: int  # images through fwd+bwd
    peer: Callable[[], Tensor]
    ours: Callable[[], spixel.Explanation]
    compare: str | None  # "raw", "attribution" or None


def tune(label: str, candidates: dict[str, Callable[[], Any]], device: torch.device) -> str:
    """One timed run per candidate setting (after one warm-up run); returns the fastest."""
    next(iter(candidates.values()))()
    times = {k: timed(fn, device)[0] for k, fn in candidates.items()}
    best = min(times, key=times.get)
    print(f"  tuned {label}: " + ", ".join(f"{k} {v:.2f}s" for k, v in times.items()) + f" -> {best}", file=sys.stderr)
    return best


def build_cases(
    args: argparse.Namespace, model: spixel.ModelAdapter, x: Tensor, targets: list[int], sizes: list[int]
) -> list[Case]:
    from captum.attr import (
        Deconvolution,
        GuidedBackprop,
        InputXGradient,
        IntegratedGradients,
        LayerAttribution,
        LayerGradCam,
        NoiseTunnel,
        Saliency,
    )

    m, n, dev = model.module, x.shape[0], x.device
    t = torch.tensor(targets, device=dev)
    bs = {} if args.batch_size is None else {"batch_size": args.batch_size}
    wanted = [s.strip() for s in args.methods.split(",") if s.strip()]
    cases = []
    for name in wanted:
        if name not in SHARED:
            raise SystemExit(f"--methods: {name!r} is not shared with Captum; choose from {', '.join(SHARED)}")
        if name not in METHODS:
            print(f"  skipping {name}: not registered in spixel", file=sys.stderr)
            continue
        if name == "saliency":
            cases.append(
                Case(
                    name,
                    "",
                    n,
                    lambda: Saliency(m).attribute(x, target=t, abs=False),
                    lambda: spixel.explain(model, x, "saliency", targets, **bs),
                    "raw",
                )
            )
        elif name == "input_x_gradient":
            cases.append(
                Case(
                    name,
                    "",
                    n,
                    lambda: InputXGradient(m).attribute(x, target=t),
                    lambda: spixel.explain(model, x, "input_x_gradient", targets, **bs),
                    "raw",
                )
            )
        elif name == "integrated_gradients":
            steps, rule = args.n_steps, args.rule
            ig = IntegratedGradients(m)

            def ig_run(ibs: int | None, steps: int = steps, rule: str = rule, ig: Any = ig) -> Tensor:
                return ig.attribute(x, baselines=0.0, target=t, n_steps=steps, method=rule, internal_batch_size=ibs)

            cand = {"all": lambda: ig_run(None)} | {str(b): (lambda b=b: ig_run(max(b, n))) for b in sizes}
            best = tune("Captum IG internal_batch_size", cand, dev) if not args.no_tune else "all"
            ibs = None if best == "all" else max(int(best), n)
            cases.append(
                Case(
                    name,
                    f"n_steps={steps}, {rule}, captum internal_batch_size={ibs}",
                    steps * n,
                    lambda ibs=ibs: ig_run(ibs),
                    lambda steps=steps, rule=rule: spixel.explain(
                        model, x, "integrated_gradients", targets, n_steps=steps, rule=rule, **bs
                    ),
                    "raw",
                )
            )
        elif name == "smoothgrad":
            k = args.n_samples
            sigma = float(noise_sigma(x, 0.15).mean())  # Captum takes one absolute σ per input tensor
            nt = NoiseTunnel(Saliency(m))

            def nt_run(nbs: int | None, k: int = k, nt: Any = nt, sigma: float = sigma) -> Tensor:
                return nt.attribute(
                    x, nt_type="smoothgrad", nt_samples=k, nt_samples_batch_size=nbs, stdevs=sigma, target=t, abs=False
                )

            cand = {"all": lambda: nt_run(None)} | {
                str(max(1, b // n)): (lambda b=b: nt_run(max(1, b // n))) for b in sizes
            }
            best = tune("Captum NoiseTunnel nt_samples_batch_size", cand, dev) if not args.no_tune else "all"
            nbs = None if best == "all" else int(best)
            cases.append(
                Case(
                    name,
                    f"n_samples={k}, captum nt_samples_batch_size={nbs}",
                    k * n,
                    lambda nbs=nbs: nt_run(nbs),
                    lambda k=k: spixel.explain(model, x, "smoothgrad", targets, seed=0, n_samples=k, **bs),
                    None,
                )
            )
        elif name in ("guided_backprop", "deconvolution"):
            cls = GuidedBackprop if name == "guided_backprop" else Deconvolution
            cases.append(
                Case(
                    name,
                    "",
                    n,
                    lambda cls=cls: cls(m).attribute(x, target=t),
                    lambda name=name: spixel.explain(model, x, name, targets, **bs),
                    "raw",
                )
            )
        elif name == "gradcam":
            layer = model.layer("cam")
            lname = model.layers.get("cam", "cam")

            def gc_run(layer: Any = layer) -> Tensor:
                a = LayerGradCam(m, layer).attribute(x, target=t)
                return LayerAttribution.interpolate(a, tuple(x.shape[-2:]), "bilinear")[:, 0]

            cases.append(
                Case(
                    name,
                    f"layer={lname}",
                    n,
                    gc_run,
                    lambda: spixel.explain(model, x, "gradcam", targets, **bs),
                    "attribution",
                )
            )
    return cases


def agreement(case: Case, peer: Tensor, ours: spixel.Explanation) -> str:
    if case.compare is None:
        return "n/a (different noise)"
    mine = ours.raw if case.compare == "raw" else ours.attribution
    ref = peer.detach().float()
    return f"{float((mine - ref).abs().max()) / max(float(ref.abs().max()), 1e-30):.1e}"


def run_compare(args: argparse.Namespace, model: spixel.ModelAdapter, x: Tensor) -> None:
    dev = x.device
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    with torch.no_grad():
        targets = model.module(x).argmax(1).tolist()
    print(f"  targets: {[model.label(k) for k in targets]}", file=sys.stderr)
    per_image = {b: fwd_bwd_per_image(model.module, x, b, 3) for b in sizes}
    best_b = min(per_image, key=per_image.get)
    print(
        "  fwd+bwd s/image by batch size: " + ", ".join(f"{b}: {v * 1e3:.1f} ms" for b, v in per_image.items()),
        file=sys.stderr,
    )
    cases = build_cases(args, model, x, targets, sizes)
    times: dict[str, tuple[list[float], list[float]]] = {c.name: ([], []) for c in cases}
    agree: dict[str, str] = {}
    for c in cases:  # warm-up, and the agreement check
        agree[c.name] = agreement(c, c.peer(), c.ours())
    bound_runs: list[float] = []  # the fwd+bwd probe is re-timed in every repeat: same conditions as the rest
    for r in range(args.repeats):
        bound_runs.append(fwd_bwd_per_image(model.module, x, best_b, 1, warm_up=False))
        for c in cases:
            order = ("peer", "ours") if r % 2 == 0 else ("ours", "peer")
            for who in order:
                dt, _ = timed(c.peer if who == "peer" else c.ours, dev)
                times[c.name][0 if who == "peer" else 1].append(dt)
    per_b = statistics.median(bound_runs)
    print()
    cpu = platform.processor() or platform.machine()
    print(
        f"model {args.model}, {x.shape[0]} photos {tuple(x.shape[1:])}, device {dev}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}, {cpu}, {args.clock} clock, "
        f"median of {args.repeats} runs (s)"
    )
    print(
        f"fwd+bwd lower bound: {per_b * 1e3:.1f} ms/image (one fwd+bwd of {best_b} images, the fastest batch "
        f"of {args.batch_sizes}) × the image passes of the method"
    )
    print()
    print("| method | settings | Captum | spixel | spixel/Captum | fwd+bwd bound | agreement |")
    print("|---|---|---:|---:|---:|---:|---|")
    for c in cases:
        peer, ours = statistics.median(times[c.name][0]), statistics.median(times[c.name][1])
        bound = per_b * c.passes
        print(
            f"| {c.name} | {c.params} | {peer:.3f} | {ours:.3f} | {ours / peer:.2f} | {bound:.3f} | {agree[c.name]} |"
        )


def run_sweep(args: argparse.Namespace, model: spixel.ModelAdapter, x: Tensor) -> None:
    """spixel's integrated gradients at every batch size (interleaved), to choose the default."""
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    fns = {
        b: (
            lambda b=b: spixel.explain(
                model, x, "integrated_gradients", None, n_steps=args.n_steps, rule=args.rule, batch_size=b
            )
        )
        for b in sizes
    }
    for fn in fns.values():
        fn()
    times: dict[int, list[float]] = {b: [] for b in sizes}
    for r in range(args.repeats):
        for b in sizes if r % 2 == 0 else sizes[::-1]:
            times[b].append(timed(fns[b], x.device)[0])
    print(
        f"\nspixel integrated_gradients, n_steps={args.n_steps}, {x.shape[0]} photos, {args.model}, "
        f"device {x.device}, {torch.get_num_threads()} threads, {args.clock} clock, median of {args.repeats}"
    )
    print("\n| batch_size | seconds | ms per image pass |\n|---:|---:|---:|")
    for b in sizes:
        med = statistics.median(times[b])
        print(f"| {b} | {med:.3f} | {med / (args.n_steps * x.shape[0]) * 1e3:.1f} |")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=2, help="number of photos (default 2)")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per method and library (default 5)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--methods", default=",".join(SHARED), help="comma-separated (default: all shared)")
    ap.add_argument("--n-steps", type=int, default=50, help="integrated gradients steps (default 50)")
    ap.add_argument("--rule", default="gausslegendre", help="integrated gradients rule (default gausslegendre)")
    ap.add_argument("--n-samples", type=int, default=50, help="SmoothGrad samples (default 50)")
    ap.add_argument("--batch-size", type=int, default=None, help="spixel batch_size (default: its own defaults)")
    ap.add_argument(
        "--batch-sizes",
        default="8,16,32,64",
        help="candidates for Captum's memory knobs, the fwd+bwd bound and --sweep",
    )
    ap.add_argument("--no-tune", action="store_true", help="give Captum everything in one batch, no tuning")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    ap.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall time (default) or process CPU time (use with --threads 1 on a busy machine)",
    )
    ap.add_argument("--sweep", action="store_true", help="time spixel IG at each of --batch-sizes and exit")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore", module="captum")  # "input did not require gradients", "hooks on ReLU" …
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.clock == "cpu":
        if args.device != "cpu":
            raise SystemExit("--clock cpu times CPU work only: use it with --device cpu")
        global CLOCK
        CLOCK = time.process_time
    model = spixel.load_model(args.model, device=args.device)
    x = photos(model, args.images)
    t0 = time.perf_counter()
    (run_sweep if args.sweep else run_compare)(args, model, x)
    print(f"\n(total {time.perf_counter() - t0:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()

"""Time spixel's deletion and insertion against Quantus 0.6 ``PixelFlipping`` / ``RegionPerturbation`` on the same
photos, maps and targets, and against the forward-pass lower bound (issue 4's benchmark).

Setting (one run, same inputs, medians of ``--repeats``; spixel, Quantus and the bound interleaved, the order
flipping every repeat; wall-clock and process CPU time both recorded — with ``--threads 1`` the CPU time is the
work done even while other jobs load the machine):

* **Photos**: ``--images`` bundled photos (``spixel.data.samples()``, default 8), EfficientNet-Lite0, each
  image's predicted class; maps of saliency, Grad-CAM and integrated gradients (``--ig-steps``, default 8),
  made once and not timed.
* **spixel**: ``spixel.evaluate(..., "deletion", n_steps=T)`` + ``spixel.evaluate(..., "insertion", n_steps=T)``
  (zero / blur substrate, softmax), ``batch_size=--batch-size`` images per forward (default: the engine's own,
  sized by the image area — ``spixel.metrics.fidelity.resolve_batch_size``).
* **Quantus**: ``PixelFlipping`` — the deletion curve — with ``features_in_step = 3·H·W / T`` (Quantus flattens the
  map broadcast over the 3 channels, so this moves ``H·W / T`` pixels per step, ``T`` steps, like spixel's
  ``n_steps=T``), ``perturb_baseline=0.0`` (spixel's zero substrate), ``normalise=False``, softmax. Quantus asserts
  that ``features_in_step`` divides ``H·W``, which no value giving 28 or 224 steps at 224×224 does; the assert is
  skipped (``custom_preprocess`` overridden), nothing else changes. Its deletion curve is compared with spixel's
  (``curve Δ`` column: mean |difference| — same order, same substrate, so ≈ 0). ``RegionPerturbation`` (MoRF
  patches; Quantus has no insertion) — ``regions_evaluation = T`` patches of ``round(√(HW / T))`` pixels, baseline
  0.0 — stands in for the second curve: the same number of forwards (``T + 1`` per image). Both get the whole
  batch (``batch_size = N``): one forward of N images per step (Quantus feeds NCHW arrays).
* **Lower bound**: the forwards the two curves need, ``2·N·(T + 1)``, run as plain ``no_grad`` forwards at the
  best batch size — the fastest per image of ``--bound-batch-sizes`` and spixel's batch size, each the fastest of
  3 timings of ≥ 64 images (≥ 1024 at pixel level) — on rows gathered from the photos, so in the layout the engine
  feeds (channels-last from ``preprocess``; a ``.contiguous()`` NCHW copy runs Lite0 ~1.5× slower on the CPU). The
  bound is timed right after spixel in every repeat: on a shared, loaded machine a bound measured once is
  meaningless.

Pixel level (``--pixel-images``, default 8): a 64×64 net with seeded random weights (timing does not depend on the
weights) — ``--pixel-model resnet``: the ground-truth issue's ResNet-style net (``spixel.train.nets``, widths
16/32/64, 6 classes); ``tiny``: a 3-conv CNN — saliency maps (replaced by their ranks, so that ties cannot
order the pixels differently in the two libraries), deletion at ``n_steps = 64·64 = 4096`` (one pixel
per step) against ``PixelFlipping(features_in_step=3)``, where Quantus's sequential per-step numpy loop dominates.

    python benchmarks/metrics.py --threads 1     # 8 photos, T = 28 and 224, 3 repeats; CPU time is meaningful
    python benchmarks/metrics.py --quick         # 2 photos, T = 28, 1 repeat, 2 pixel-level images
    python benchmarks/metrics.py --device cuda --repeats 5
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

import spixel
from _common import timed_cpu
from spixel.data import samples
from spixel.metrics.fidelity import ranking, resolve_batch_size

METHODS = ("saliency", "gradcam", "integrated_gradients")


def rows_like(x: Tensor, batch: int) -> Tensor:
    """``batch`` rows gathered from ``x`` by indexing — which keeps ``x``'s memory format, as the engine's rows do."""
    return x[torch.arange(batch, device=x.device) % x.shape[0]]


def forward_time(module: nn.Module, x: Tensor, sizes: list[int], min_images: int) -> tuple[float, int]:
    """Seconds per image (CPU time with one thread, else wall) of plain ``no_grad`` forwards at the best batch size
    of ``sizes`` (each the fastest of 3 timings of ≥ ``min_images`` images), and that size."""
    best = (math.inf, sizes[0])
    cpu = torch.get_num_threads() == 1 and x.device.type == "cpu"
    with torch.no_grad():
        module(rows_like(x, max(sizes)))  # warm the allocator at the largest batch first
        for b in sizes:
            xb = rows_like(x, b)
            loops = max(1, -(-min_images // b))

            def run(xb: Tensor = xb, loops: int = loops) -> None:
                for _ in range(loops):
                    module(xb)

            module(xb)
            t = min(timed_cpu(run, x.device)[1 if cpu else 0] for _ in range(3))
            best = min(best, (t / (b * loops), b))
    return best


def forwards(module: nn.Module, x: Tensor, count: int, batch: int) -> None:
    """``count`` plain ``no_grad`` forwards in batches of ``batch`` rows gathered from ``x`` (the lower bound)."""
    xb = rows_like(x, batch)
    with torch.no_grad():
        for start in range(0, count, batch):
            module(xb[: min(batch, count - start)])


# ------------------------------------------------------------------------------------------------ Quantus
def quantus_metrics(t_steps: int, hw: int, h: int) -> tuple[Any, Any]:
    """``PixelFlipping`` with ``T`` steps (the divisibility assert skipped) and ``RegionPerturbation`` with ``T``
    patches of about ``HW / T`` pixels; zero baseline, no normalisation, quiet."""
    import quantus

    class PixelFlippingT(quantus.PixelFlipping):
        def custom_preprocess(self, *args: Any, **kwargs: Any) -> None:  # skip only the HW % features assert
            return None

    fis = 3 * hw // t_steps
    if fis * t_steps != 3 * hw:
        raise SystemExit(f"3·H·W = {3 * hw} is not a multiple of {t_steps} steps")
    common = dict(perturb_baseline=0.0, normalise=False, abs=False, disable_warnings=True, display_progressbar=False)
    pf = PixelFlippingT(features_in_step=fis, **common)
    patch = max(1, min(h, round(math.sqrt(hw / t_steps))))
    rp = quantus.RegionPerturbation(patch_size=patch, regions_evaluation=t_steps, order="morf", **common)
    return pf, rp


def run_quantus(metric: Any, module: nn.Module, x: np.ndarray, y: np.ndarray, a: np.ndarray, device: str) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return metric(
            model=module,
            x_batch=x,
            y_batch=y,
            a_batch=a,
            softmax=True,
            device=device,
            batch_size=x.shape[0],
            channel_first=True,
        )


# ------------------------------------------------------------------------------------------------ the runs
def compare(
    ours: Callable[[], Any], theirs: Callable[[], Any], bound: Callable[[], Any], repeats: int, device: torch.device
) -> tuple[dict[str, float], Any, Any]:
    """Run spixel (then its bound) and Quantus ``repeats`` times, the order flipping every repeat; medians of the
    wall-clock (``ours`` …) and CPU (``ours_cpu`` …) seconds, and the last outputs of both."""
    times: dict[str, list[float]] = {k: [] for k in ("ours", "quantus", "bound")}
    cpu: dict[str, list[float]] = {k: [] for k in times}
    out_ours = out_theirs = None
    for r in range(repeats):
        for who in ("ours", "quantus") if r % 2 == 0 else ("quantus", "ours"):
            if who == "ours":
                w, c, out_ours = timed_cpu(ours, device)
                wb, cb, _ = timed_cpu(bound, device)
                times["bound"].append(wb)
                cpu["bound"].append(cb)
            else:
                w, c, out_theirs = timed_cpu(theirs, device)
            times[who].append(w)
            cpu[who].append(c)
    med = {k: statistics.median(v) for k, v in times.items()}
    med.update({f"{k}_cpu": statistics.median(v) for k, v in cpu.items()})
    med.update({f"{k}_cpu_all": v for k, v in cpu.items()})
    return med, out_ours, out_theirs


def photo_rows(args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    model = spixel.load_model("efficientnet_lite0", device=str(device))
    photos = samples()[: args.images]
    x = model.preprocess([s.image for s in photos]).to(device)
    target = model.predict(x).argmax(1)
    n, _, h, w = x.shape
    hw = h * w
    expl = {}
    for m in args.methods:
        kw = {"n_steps": args.ig_steps} if m == "integrated_gradients" else {}
        expl[m] = spixel.explain(model, x, m, target, **kw)
    ours_b = resolve_batch_size(args.batch_size, x)
    sizes = sorted({*(b for b in args.bound_batch_sizes if b <= 256), ours_b})
    per_img, best_b = forward_time(model.module, x, sizes, 64)
    print(f"  photos: spixel batch {ours_b}, bound batch {best_b} ({per_img * 1e3:.1f} ms/image)", flush=True)
    xn, yn = x.detach().cpu().numpy(), target.cpu().numpy()
    rows = []
    for t_steps in args.steps:
        pf, rp = quantus_metrics(t_steps, hw, h)
        for m in args.methods:
            ex = expl[m]
            a = ex.attribution.detach().cpu().numpy()[:, None]

            def ours(ex: spixel.Explanation = ex, t_steps: int = t_steps) -> Tensor:
                d = spixel.evaluate(model, x, ex, "deletion", target, n_steps=t_steps, batch_size=args.batch_size)
                spixel.evaluate(model, x, ex, "insertion", target, n_steps=t_steps, batch_size=args.batch_size)
                return d.curves

            def theirs(a: np.ndarray = a, pf: Any = pf, rp: Any = rp) -> np.ndarray:
                curves = np.asarray(run_quantus(pf, model.module, xn, yn, a, str(device)))
                run_quantus(rp, model.module, xn, yn, a, str(device))
                return curves

            n_fwd = 2 * n * (t_steps + 1)
            med, c_ours, c_theirs = compare(
                ours, theirs, lambda k=n_fwd: forwards(model.module, x, k, best_b), args.repeats, device
            )
            delta = float(np.abs(c_ours[:, 1:].cpu().numpy() - c_theirs).mean())
            row = {"case": f"photos T={t_steps}", "method": m, "n": n, "delta": delta, "batch": ours_b}
            rows.append({**row, **med, "bound_batch": best_b})
            print_rows(rows[-1:], args.clock, header=len(rows) == 1)
    return rows


class TinyCNN(nn.Module):
    """A small random CNN for 64×64 inputs (``--pixel-model tiny``)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.head = nn.Linear(64, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x).mean((2, 3)))


def pixel_model(kind: str, device: torch.device) -> spixel.ModelAdapter:
    """The 64×64 net of the pixel-level case, seeded random weights."""
    torch.manual_seed(0)
    if kind == "resnet":
        from spixel.train.nets import build_net, cam_layer, net_config

        cfg = net_config("resnet", num_classes=6)
        net, layer = build_net(cfg), cam_layer(cfg)
    else:
        net, layer = TinyCNN(), "features.4"
    net = net.eval().to(device)
    return spixel.ModelAdapter(net, input_size=64, resize=73, layers={"cam": layer}, name=f"{kind}64-random")


def pixel_rows(args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    model = pixel_model(args.pixel_model, device)
    net = model.module
    photos = [samples()[i % 8] for i in range(args.pixel_images)]
    x = model.preprocess([s.image for s in photos]).to(device)
    target = model.predict(x).argmax(1)
    n, _, h, w = x.shape
    hw = h * w
    sal = spixel.explain(model, x, "saliency", target).attribution
    # the saliency map's ranks (ties by raster index): distinct values, so Quantus's unstable argsort and spixel's
    # stable one agree on the order (a max-pooled net's saliency has many exactly tied zeros)
    ex = spixel.Explanation(attribution=(hw - ranking(sal).argsort(1)).float().view_as(sal))
    ours_b = resolve_batch_size(args.pixel_batch_size, x)
    sizes = sorted({*args.bound_batch_sizes, 256, 512, ours_b})
    per_img, best_b = forward_time(net, x, sizes, 1024)
    print(f"  pixel level: spixel batch {ours_b}, bound batch {best_b} ({per_img * 1e6:.0f} µs/image)", flush=True)
    pf, _ = quantus_metrics(hw, hw, h)
    xn, yn, a = x.detach().cpu().numpy(), target.cpu().numpy(), ex.attribution.detach().cpu().numpy()[:, None]

    def ours() -> Tensor:
        return spixel.evaluate(model, x, ex, "deletion", target, n_steps=hw, batch_size=args.pixel_batch_size).curves

    def theirs() -> np.ndarray:
        return np.asarray(run_quantus(pf, net, xn, yn, a, str(device)))

    med, c_ours, c_theirs = compare(ours, theirs, lambda: forwards(net, x, n * (hw + 1), best_b), args.repeats, device)
    delta = float(np.abs(c_ours[:, 1:].cpu().numpy() - c_theirs).mean())
    case = f"pixel 64² {args.pixel_model} T={hw} (del.)"
    row = {"case": case, "method": "saliency", "n": n, "delta": delta, "batch": ours_b, "bound_batch": best_b}
    return [{**row, **med}]


def print_rows(rows: list[dict[str, Any]], clock: str, header: bool = True) -> None:
    """One line per case: seconds (``clock``: ``cpu`` or ``wall``) of spixel, Quantus and the bound, the ratios."""
    sfx = "_cpu" if clock == "cpu" else ""
    if header:
        head = (
            f"{'case':<30} {'method':<21} {'N':>2} {'B':>4} {'spixel s':>9} {'quantus s':>10} {'quantus/spixel':>15} "
            f"{'bound s':>8} {'spixel/bound':>13} {'curve Δ':>8}  ({clock} time; spixel/bound per repeat)"
        )
        print(head)
        print("-" * len(head))
    for r in rows:
        ours, theirs, bound = r[f"ours{sfx}"], r[f"quantus{sfx}"], r[f"bound{sfx}"]
        per = ""
        if clock == "cpu":
            per = " " + "/".join(f"{o / b:.2f}" for o, b in zip(r["ours_cpu_all"], r["bound_cpu_all"], strict=True))
        print(
            f"{r['case']:<30} {r['method']:<21} {r['n']:>2} {r['batch']:>4} {ours:>9.2f} {theirs:>10.2f} "
            f"{theirs / ours:>14.1f}× {bound:>8.2f} {ours / bound:>12.2f}× {r['delta']:>8.1e}{per}",
            flush=True,
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch threads (1: CPU time measures the work)")
    p.add_argument("--clock", choices=("wall", "cpu"), default=None, help="default: cpu with --threads 1, else wall")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--images", type=int, default=8, help="bundled photos (at most 8)")
    p.add_argument("--steps", type=lambda s: [int(v) for v in s.split(",")], default=[28, 224])
    p.add_argument("--methods", type=lambda s: s.split(","), default=list(METHODS))
    p.add_argument("--ig-steps", type=int, default=8, help="integrated gradients steps of the maps (not timed)")
    p.add_argument(
        "--batch-size", type=int, default=None, help="spixel's images per forward (photos; default: its own)"
    )
    p.add_argument("--pixel-images", type=int, default=8)
    p.add_argument("--pixel-model", choices=("resnet", "tiny"), default="resnet")
    p.add_argument("--pixel-batch-size", type=int, default=None, help="spixel's images per forward (pixel level)")
    p.add_argument(
        "--bound-batch-sizes", type=lambda s: [int(v) for v in s.split(",")], default=[2, 4, 8, 16, 32, 64, 128]
    )
    p.add_argument("--skip-photos", action="store_true")
    p.add_argument("--skip-pixel", action="store_true")
    p.add_argument("--quick", action="store_true", help="2 photos, T = 28 only, 1 repeat, 2 pixel-level images")
    args = p.parse_args()
    if args.quick:
        args.images, args.repeats, args.pixel_images, args.steps = 2, 1, 2, [28]
        args.bound_batch_sizes = [4, 16, 64]
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.clock is None:
        args.clock = "cpu" if torch.get_num_threads() == 1 and args.device == "cpu" else "wall"
    device = torch.device(args.device)
    import quantus

    load = " · load average " + " ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else ""
    print(
        f"spixel {spixel.__version__} · quantus {quantus.__version__} · torch {torch.__version__} · "
        f"{platform.processor() or platform.machine()} · {torch.get_num_threads()} threads · device {device}"
        + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
        + load
    )
    print(f"repeats {args.repeats} (medians), interleaved; B: spixel's images per forward")
    rows: list[dict[str, Any]] = []
    if not args.skip_photos:
        rows += photo_rows(args, device)
    if not args.skip_pixel:
        rows += pixel_rows(args, device)
    print()
    for clock in dict.fromkeys((args.clock, "wall")):
        print_rows(rows, clock)
        print()
    print(
        "bound: the curves' forwards (2·N·(T+1) for deletion + insertion; N·(T+1) at pixel level), plain forwards "
        "at the best batch size ("
        + ", ".join(sorted({f"{r['case'].split()[0]}: {r['bound_batch']}" for r in rows}))
        + ") on rows in the engine's layout."
    )
    print("curve Δ: mean |spixel deletion curve − Quantus PixelFlipping curve| (same order and substrate).")
    if hasattr(os, "getloadavg"):
        print("load average at the end: " + " ".join(f"{v:.2f}" for v in os.getloadavg()))


if __name__ == "__main__":
    main()

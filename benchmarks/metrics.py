"""Time spixel's deletion and insertion against Quantus 0.6 ``PixelFlipping`` / ``RegionPerturbation`` on the same
photos, maps and targets, and against the forward-pass lower bound (issue 4's benchmark).

Setting (one run, same inputs, medians of ``--repeats``):

* **Photos**: ``--images`` bundled photos (``spixel.data.samples()``, default all 8), EfficientNet-Lite0, each
  image's predicted class; maps of saliency, Grad-CAM and integrated gradients (``--ig-steps``, default 8),
  made once and not timed.
* **spixel**: ``spixel.evaluate(..., "deletion", n_steps=T)`` + ``spixel.evaluate(..., "insertion", n_steps=T)``
  (zero / blur substrate, softmax), ``batch_size=--batch-size`` images per forward.
* **Quantus**: ``PixelFlipping`` — the deletion curve — with ``features_in_step = 3·H·W / T`` (Quantus flattens the
  map broadcast over the 3 channels, so this moves ``H·W / T`` pixels per step, ``T`` steps, like spixel's
  ``n_steps=T``), ``perturb_baseline=0.0`` (spixel's zero substrate), ``normalise=False``, softmax. Quantus asserts
  that ``features_in_step`` divides ``H·W``, which no value giving 28 or 224 steps at 224×224 does; the assert is
  skipped (``custom_preprocess`` overridden), nothing else changes. Its deletion curve is compared with spixel's
  (``curve Δ`` column: mean |difference| — same order, same substrate, so ≈ 0). ``RegionPerturbation`` (MoRF
  patches; Quantus has no insertion) — ``regions_evaluation = T`` patches of ``round(√(HW / T))`` pixels, baseline
  0.0 — stands in for the second curve: the same number of forwards (``T + 1`` per image). Both get the whole
  batch (``batch_size = N``): one forward of N images per step.
* **Lower bound**: the forwards the two curves need, ``2·N·(T + 1)``, run as plain ``no_grad`` forwards of random
  inputs at the best batch size of ``--bound-batch-sizes`` (the fastest per image of 5 timings each), timed right
  after spixel in every repeat — on a shared, loaded machine a bound measured once is meaningless.

Pixel level (``--pixel-images``, default 8): a tiny random CNN (seeded; 64×64 input; stand-in until the
ground-truth issue's model exists), saliency maps, deletion at ``n_steps = 64·64 = 4096`` (one pixel per step)
against ``PixelFlipping(features_in_step=3)`` — where Quantus's sequential per-step numpy loop dominates.

    python benchmarks/metrics.py                 # 8 photos, T = 28 and 224, 3 repeats
    python benchmarks/metrics.py --quick         # 2 photos, T = 28, 1 repeat, 2 pixel-level images
    python benchmarks/metrics.py --device cuda --repeats 5
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import warnings
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

import spixel
from _common import timed
from spixel.data import samples

METHODS = ("saliency", "gradcam", "integrated_gradients")


def forward_time(
    module: nn.Module, shape: tuple[int, ...], sizes: list[int], device: torch.device
) -> tuple[float, int]:
    """Seconds per image of a plain ``no_grad`` forward at the best batch size of ``sizes`` (fastest of 5), and
    that size."""
    best = (math.inf, sizes[0])
    with torch.no_grad():
        for b in sizes:
            xb = torch.randn(b, *shape, device=device)
            module(xb)  # warm-up
            t = min(timed(lambda xb=xb: module(xb), device)[0] for _ in range(5))
            best = min(best, (t / b, b))
    return best


def forwards(module: nn.Module, shape: tuple[int, ...], count: int, batch: int, device: torch.device) -> None:
    """``count`` plain ``no_grad`` forwards in batches of ``batch`` (the lower bound, run next to spixel)."""
    xb = torch.randn(batch, *shape, device=device)
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
def photo_rows(args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    model = spixel.load_model("efficientnet_lite0", device=str(device))
    photos = samples()[: args.images]
    x = model.preprocess([s.image for s in photos])
    target = model.predict(x).argmax(1)
    n, _, h, w = x.shape
    hw = h * w
    shape = tuple(x.shape[1:])
    expl = {}
    for m in args.methods:
        kw = {"n_steps": args.ig_steps} if m == "integrated_gradients" else {}
        expl[m] = spixel.explain(model, x, m, target, **kw)
    sizes = [b for b in args.bound_batch_sizes if b <= 256]
    _, best_b = forward_time(model.module, tuple(x.shape[1:]), sizes, device)
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

            t_ours, t_theirs, t_bound = [], [], []
            curves_ours = curves_theirs = None
            n_fwd = 2 * n * (t_steps + 1)
            for r in range(args.repeats):
                for who in ("ours", "theirs") if r % 2 == 0 else ("theirs", "ours"):
                    if who == "ours":
                        t, curves_ours = timed(ours, device)
                        t_ours.append(t)
                        t_b, _ = timed(lambda k=n_fwd: forwards(model.module, shape, k, best_b, device), device)
                        t_bound.append(t_b)
                    else:
                        t, curves_theirs = timed(theirs, device)
                        t_theirs.append(t)
            assert curves_ours is not None and curves_theirs is not None
            delta = float(np.abs(curves_ours[:, 1:].cpu().numpy() - curves_theirs).mean())
            bound = statistics.median(t_bound)
            rows.append(
                {
                    "case": f"photos T={t_steps}",
                    "method": m,
                    "n": n,
                    "ours": statistics.median(t_ours),
                    "quantus": statistics.median(t_theirs),
                    "bound": bound,
                    "delta": delta,
                    "bound_batch": best_b,
                }
            )
    return rows


class TinyCNN(nn.Module):
    """A small random CNN for 64×64 inputs (stand-in for the ground-truth issue's model)."""

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


def pixel_rows(args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    torch.manual_seed(0)
    net = TinyCNN().eval().to(device)
    model = spixel.ModelAdapter(net, input_size=64, resize=73, layers={"cam": "features.4"}, name="tiny64-random")
    photos = [samples()[i % 8] for i in range(args.pixel_images)]
    x = model.preprocess([s.image for s in photos])
    target = model.predict(x).argmax(1)
    n, _, h, w = x.shape
    hw = h * w
    ex = spixel.explain(model, x, "saliency", target)
    sizes = sorted({*args.bound_batch_sizes, 512, 1024})
    _, best_b = forward_time(net, tuple(x.shape[1:]), sizes, device)
    pf, _ = quantus_metrics(hw, hw, h)
    xn, yn, a = x.detach().cpu().numpy(), target.cpu().numpy(), ex.attribution.detach().cpu().numpy()[:, None]
    t_ours, t_theirs, t_bound = [], [], []
    for r in range(args.repeats):
        for who in ("ours", "theirs") if r % 2 == 0 else ("theirs", "ours"):
            if who == "ours":
                t, res = timed(
                    lambda: spixel.evaluate(
                        model, x, ex, "deletion", target, n_steps=hw, batch_size=args.pixel_batch_size
                    ),
                    device,
                )
                t_ours.append(t)
                c_ours = res.curves
                t_bound.append(
                    timed(lambda: forwards(net, tuple(x.shape[1:]), n * (hw + 1), best_b, device), device)[0]
                )
            else:
                t, c_theirs = timed(lambda: np.asarray(run_quantus(pf, net, xn, yn, a, str(device))), device)
                t_theirs.append(t)
    delta = float(np.abs(c_ours[:, 1:].cpu().numpy() - c_theirs).mean())
    return [
        {
            "case": f"pixel 64² T={hw} (deletion only)",
            "method": "saliency",
            "n": n,
            "ours": statistics.median(t_ours),
            "quantus": statistics.median(t_theirs),
            "bound": statistics.median(t_bound),
            "delta": delta,
            "bound_batch": best_b,
        }
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--images", type=int, default=8, help="bundled photos (at most 8)")
    p.add_argument("--steps", type=lambda s: [int(v) for v in s.split(",")], default=[28, 224])
    p.add_argument("--methods", type=lambda s: s.split(","), default=list(METHODS))
    p.add_argument("--ig-steps", type=int, default=8, help="integrated gradients steps of the maps (not timed)")
    p.add_argument("--batch-size", type=int, default=64, help="spixel's images per forward (photos)")
    p.add_argument("--pixel-images", type=int, default=8)
    p.add_argument("--pixel-batch-size", type=int, default=1024, help="spixel's images per forward (pixel level)")
    p.add_argument("--bound-batch-sizes", type=lambda s: [int(v) for v in s.split(",")], default=[8, 16, 32, 64, 128])
    p.add_argument("--skip-photos", action="store_true")
    p.add_argument("--skip-pixel", action="store_true")
    p.add_argument("--quick", action="store_true", help="2 photos, T = 28 only, 1 repeat, 2 pixel-level images")
    args = p.parse_args()
    if args.quick:
        args.images, args.repeats, args.pixel_images, args.steps = 2, 1, 2, [28]
        args.bound_batch_sizes = [16, 64]
    device = torch.device(args.device)
    import quantus

    print(
        f"spixel {spixel.__version__} · quantus {quantus.__version__} · torch {torch.__version__} · "
        f"{platform.processor() or platform.machine()} · {torch.get_num_threads()} threads · device {device}"
        + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
    )
    print(
        f"repeats {args.repeats} (medians), spixel batch_size {args.batch_size} (photos) / "
        f"{args.pixel_batch_size} (pixel level)"
    )
    rows: list[dict[str, Any]] = []
    if not args.skip_photos:
        rows += photo_rows(args, device)
    if not args.skip_pixel:
        rows += pixel_rows(args, device)
    head = (
        f"{'case':<34} {'method':<21} {'N':>2} {'spixel s':>9} {'quantus s':>10} {'quantus/spixel':>15} "
        f"{'bound s':>8} {'spixel/bound':>13} {'curve Δ':>8}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['case']:<34} {r['method']:<21} {r['n']:>2} {r['ours']:>9.2f} {r['quantus']:>10.2f} "
            f"{r['quantus'] / r['ours']:>14.1f}× {r['bound']:>8.2f} {r['ours'] / r['bound']:>12.2f}× "
            f"{r['delta']:>8.1e}"
        )
    print(
        "bound: the curves' forwards (2·N·(T+1) for deletion + insertion; N·(T+1) at pixel level), plain forwards "
        "at the best batch size ("
        + ", ".join(sorted({f"{r['case'].split()[0]}: {r['bound_batch']}" for r in rows}))
        + ")."
    )
    print("curve Δ: mean |spixel deletion curve − Quantus PixelFlipping curve| (same order and substrate).")


if __name__ == "__main__":
    main()

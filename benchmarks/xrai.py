"""Time spixel's XRAI against PAIR saliency's ``XRAI`` on the same photos, model and targets.

PAIR runs image by image (its API takes one image) with a torch ``call_model_function`` (numpy HWC in,
input gradients of the target logit out) and its ``batch_size`` tuned once per run from ``--batch-sizes`` on
its IG (the only part ``batch_size`` affects); spixel runs the whole batch with its defaults unless
``--batch-size`` is given. Both compute everything themselves: IG from the min/max baselines (``--n-steps``
each), multi-scale Felzenszwalb segments, the greedy selection. The runs alternate (the order flips each
repeat); the median of ``--repeats`` runs is reported with the ratio spixel/PAIR, the lower bound (one
fwd+bwd per image at the best batch size × 2·n_steps passes) and the agreement of the two maps
(``max |Δ| / max |PAIR|``, and the fraction of pixels in the same ranked region). ``--breakdown`` also times
spixel's stages (IG, segments, selection) once.

    python benchmarks/xrai.py                                  # 2 photos, 3 repeats, Lite0, CPU, full
    python benchmarks/xrai.py --algorithms full,fast --images 4 --device cuda --breakdown
"""

from __future__ import annotations

import argparse
import importlib
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

import spixel
from _common import photos, timed

XR = importlib.import_module("spixel.attribution.xrai")  # the package attribute ``xrai`` is the function


def fwd_bwd_per_image(module: torch.nn.Module, x: Tensor, batch: int, repeats: int) -> float:
    """Median seconds per image of one forward + input-gradient backward of ``batch`` images."""
    xb = x[torch.arange(batch) % x.shape[0]]
    flags = {p: p.requires_grad for p in module.parameters()}
    for p in flags:
        p.requires_grad_(False)

    def once() -> None:
        xi = xb.detach().requires_grad_(True)
        torch.autograd.grad(module(xi)[:, 0].sum(), xi)

    try:
        once()
        ts = [timed(once, x.device)[0] for _ in range(repeats)]
    finally:
        for p, f in flags.items():
            p.requires_grad_(f)
    return statistics.median(ts) / batch


def pair_cmf(
    module: torch.nn.Module, device: torch.device, channels_last: bool = False
) -> Callable[..., dict[str, np.ndarray]]:
    """PAIR's ``call_model_function``: HWC numpy batch → gradient of the target logit w.r.t. the input.

    As in PAIR's PyTorch example, the batch is copied into a contiguous NCHW tensor; ``channels_last=True``
    hands the model the bare ``permute`` instead (channels-last, which runs Lite0 faster on the CPU). spixel's
    IG keeps the layout of its input: channels-last for ``ModelAdapter.preprocess`` output.
    """
    from saliency.core.base import INPUT_OUTPUT_GRADIENTS

    def cmf(
        xb: np.ndarray, call_model_args: dict[str, Any] | None = None, expected_keys: Any = None
    ) -> dict[str, np.ndarray]:
        target = call_model_args["target"]
        xt = torch.from_numpy(np.asarray(xb, dtype=np.float32)).permute(0, 3, 1, 2)
        xt = (xt if channels_last else xt.contiguous()).to(device)
        xt.requires_grad_(True)
        score = module(xt)[:, target].sum()
        (g,) = torch.autograd.grad(score, xt)
        return {INPUT_OUTPUT_GRADIENTS: g.permute(0, 2, 3, 1).cpu().numpy()}

    return cmf


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=2, help="number of photos (default 2)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per library (default 3)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--algorithms", default="full", help="comma-separated: full, fast (default full)")
    ap.add_argument("--n-steps", type=int, default=100, help="IG steps per baseline (default 100, PAIR's)")
    ap.add_argument("--batch-size", type=int, default=None, help="spixel batch_size (default: its own)")
    ap.add_argument(
        "--batch-sizes", default="8,16,32,64", help="candidates for PAIR's batch_size and the fwd+bwd bound"
    )
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    ap.add_argument("--breakdown", action="store_true", help="also time spixel's stages once")
    ap.add_argument(
        "--pair-channels-last", action="store_true", help="PAIR's call_model_function feeds channels-last tensors"
    )
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from saliency.core import xrai as pair_xrai
    from saliency.core.integrated_gradients import IntegratedGradients

    t_start = time.perf_counter()
    model = spixel.load_model(args.model, device=args.device)
    x = photos(model, args.images)
    dev, n, steps = x.device, x.shape[0], args.n_steps
    m = model.module
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    with torch.no_grad():
        targets = m(x).argmax(1).tolist()
    print(f"  targets: {[model.label(k) for k in targets]}", file=sys.stderr)
    per_image = {b: fwd_bwd_per_image(m, x, b, 3) for b in sizes}
    best_b = min(per_image, key=per_image.get)
    print(
        "  fwd+bwd per image by batch size: " + ", ".join(f"{b}: {v * 1e3:.1f} ms" for b, v in per_image.items()),
        file=sys.stderr,
    )
    xs = [x[i].permute(1, 2, 0).cpu().numpy() for i in range(n)]
    cmf = pair_cmf(m, dev, args.pair_channels_last)

    # PAIR's batch_size only affects its IG: tune it there, one image, both baselines
    def pair_ig(bs: int) -> None:
        ig = IntegratedGradients()
        for v in (xs[0].min(), xs[0].max()):
            ig.GetMask(
                xs[0], cmf, {"target": targets[0]}, x_baseline=np.full_like(xs[0], v), x_steps=steps, batch_size=bs
            )

    ig_times = {}
    for b in sizes:
        pair_ig(b)
        ig_times[b] = timed(lambda b=b: pair_ig(b), dev)[0]
    pair_bs = min(ig_times, key=ig_times.get)
    print(
        "  tuned PAIR batch_size (its IG, 1 image): "
        + ", ".join(f"{b}: {v:.2f}s" for b, v in ig_times.items())
        + f" -> {pair_bs}",
        file=sys.stderr,
    )

    bs = {} if args.batch_size is None else {"batch_size": args.batch_size}
    algos = [a.strip() for a in args.algorithms.split(",") if a.strip()]
    rows = []
    bounds = [per_image[best_b]]
    for algo in algos:
        params = pair_xrai.XRAIParameters(steps=steps, algorithm=algo, return_xrai_segments=True)

        def peer(params: Any = params) -> list[Any]:
            return [
                pair_xrai.XRAI().GetMaskWithDetails(
                    xs[i], cmf, {"target": targets[i]}, batch_size=pair_bs, extra_parameters=params
                )
                for i in range(n)
            ]

        def ours(algo: str = algo) -> spixel.Explanation:
            return spixel.explain(model, x, "xrai", targets, n_steps=steps, algorithm=algo, **bs)

        p_out, o_out = peer(), ours()  # warm-up and agreement
        ref = torch.from_numpy(np.stack([o.attribution_mask for o in p_out])).float()
        err = float((o_out.attribution.cpu() - ref).abs().max()) / max(float(ref.abs().max()), 1e-30)
        ranks = torch.from_numpy(np.stack([o.segments for o in p_out]))
        same = float((o_out.segmentation.labels.cpu() + 1 == ranks).float().mean())
        tp, to = [], []
        for r in range(args.repeats):
            for who in ("peer", "ours") if r % 2 == 0 else ("ours", "peer"):
                dt, _ = timed(peer if who == "peer" else ours, dev)
                (tp if who == "peer" else to).append(dt)
            bounds.append(fwd_bwd_per_image(m, x, best_b, 3))  # the machine's speed drifts: re-measure
        rows.append((algo, statistics.median(tp), statistics.median(to), err, same))
        print(f"  {algo}: PAIR {tp}, spixel {to}", file=sys.stderr)

    per_pass = statistics.median(bounds)
    bound = per_pass * 2 * steps * n
    print()
    print(
        f"model {args.model}, {n} photos {tuple(x.shape[1:])}, device {dev}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, median of {args.repeats} runs (s)"
    )
    print(
        f"fwd+bwd lower bound: {per_pass * 1e3:.1f} ms/image (median of {len(bounds)} measurements between the "
        f"runs) at batch {best_b} × {2 * steps} passes × {n}"
    )
    print(
        f"PAIR batch_size={pair_bs} (tuned), {'channels-last' if args.pair_channels_last else 'NCHW'} input; "
        f"spixel batch_size={args.batch_size or 'default'}"
    )
    print()
    print(
        "| algorithm | PAIR | spixel | spixel/PAIR | fwd+bwd bound | spixel/bound | PAIR/bound | map agreement "
        "| same region |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---|---:|")
    for algo, tp_, to_, err, same in rows:
        print(
            f"| {algo} | {tp_:.2f} | {to_:.2f} | {to_ / tp_:.2f} | {bound:.2f} | {to_ / bound:.2f} "
            f"| {tp_ / bound:.2f} | {err:.1e} | {same:.3f} |"
        )

    if args.breakdown:
        t = torch.tensor(targets, device=dev)
        kw = {"batch_size": args.batch_size} if args.batch_size else {}
        t_ig, attr = timed(lambda: XR.ig_min_max(model, x, t, steps, **kw), dev)
        t_seg, masks = timed(lambda: XR.xrai_segments(model.to_rgb01(x)), dev)
        print(
            "\nspixel stages (one run, s): " + f"IG {t_ig:.2f}, segments {t_seg:.2f} "
            f"({sum(int(k.shape[0]) for k in masks)} masks)",
            end="",
        )
        for algo in algos:
            t_sel, _ = timed(lambda algo=algo: XR.xrai_select(attr, masks, algo), dev)
            print(f", select[{algo}] {t_sel:.3f}", end="")
        print()
    print(f"\n(total {time.perf_counter() - t_start:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()

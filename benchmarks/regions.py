"""Region methods against their forward(-backward) bound: SWAG end to end, per image.

Issue 3's target: ``swag`` ≤ 1.5 × one forward+backward of the model per image (batch 8–16, CPU), ``swag_ig``
and ``swag_g`` ≤ 2 ×. Times each SWAG variant end to end (guided backprop, superpixels, pooling) on the
bundled photos and the bound (one forward+backward at the same batch size), median of ``--repeats`` runs,
interleaved. The perturbation methods and XRAI have their own scripts, which time the peers too:
``benchmarks/perturbation.py`` (LIME, RISE, occlusion vs Captum and lime), ``benchmarks/xrai.py`` (vs PAIR),
``benchmarks/segmentation.py`` (segmenter throughput).

    python benchmarks/regions.py                  # 8 photos, batch 8, 5 repeats
    python benchmarks/regions.py --device cuda --batch-size 16
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import spixel
from spixel.data import samples


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--methods", default="swag,swag_ig,swag_g")
    args = ap.parse_args()

    model = spixel.load_model(args.model, device=args.device)
    photos = samples()
    x = model.preprocess([s.image for s in photos][: args.batch_size])
    n = x.shape[0]
    sync = torch.cuda.synchronize if x.device.type == "cuda" else (lambda: None)

    def fwd_bwd() -> None:
        xi = x.detach().requires_grad_(True)
        model.module(xi).max(1).values.sum().backward()

    def timed(fn) -> float:  # type: ignore[no-untyped-def]
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - t0

    methods = args.methods.split(",")
    for m in methods:  # warm-up
        spixel.explain(model, x, m)
    times: dict[str, list[float]] = {m: [] for m in ["fwd+bwd", *methods]}
    for _ in range(args.repeats):
        times["fwd+bwd"].append(timed(fwd_bwd))
        for m in methods:
            times[m].append(timed(lambda m=m: spixel.explain(model, x, m)))
    bound = statistics.median(times["fwd+bwd"]) / n
    print(
        f"model {args.model}, {n} photos per batch, device {x.device}, {torch.get_num_threads()} threads, "
        f"median of {args.repeats}"
    )
    print("\n| method | s/image | × fwd+bwd | target |\n|---|---:|---:|---:|")
    print(f"| fwd+bwd (bound) | {bound:.4f} | 1.00 | |")
    for m in methods:
        t = statistics.median(times[m]) / n
        print(f"| {m} | {t:.4f} | {t / bound:.2f} | {'1.5' if m == 'swag' else '2.0'} |")


if __name__ == "__main__":
    main()

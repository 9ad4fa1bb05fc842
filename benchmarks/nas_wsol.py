"""Paper 002's WSOL claim on exact ground truth: does superpixelifying a map with NAS (segment mean over
Neuro-Activated Superpixels, spec §3.2) raise *high-threshold* localisation (BoxAcc at IoU 70)?

A model trained by ``spixel train`` (``--model``, e.g. ``spixel train one --arch vgg --out M`` → ``M/vgg.pt``)
explains the first ``--n`` images of ``SyntheticDataset(n, seed=1)`` (held out) for their label; each map is
scored as it is and after replacing every pixel by its region's mean (:func:`spixel.regions.group`) over SLIC
(100 segments) and NAS (k-means with K = 5 and 10, Ward with K = 10; automatic layers). Metrics: BoxAcc at
IoU 30 / 50 / 70 and MaxBoxAccV2 (spec §6.6) against the exact evidence boxes, pointing game against the exact
masks (15 px at 224, scaled). Results in docs/ground_truth.md. An experiment, not a timing::

    python benchmarks/nas_wsol.py --model M/vgg.pt --n 300 --threads 2
"""

from __future__ import annotations

import argparse
import time

import torch

import spixel
from _common import held_out
from spixel.data.synthetic import box_of
from spixel.regions import group
from spixel.segmentation import segment

METHODS = (("gradcam", {}), ("saliency", {}), ("integrated_gradients", {"n_steps": 16}))
PARTITIONS = {
    "slic 100": ("slic", {"n_segments": 100}),
    "nas k-means K=5": ("nas", {"n_segments": 5}),
    "nas k-means K=10": ("nas", {"n_segments": 10}),
    "nas Ward K=10": ("nas", {"n_segments": 10, "method": "ward"}),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="a checkpoint written by spixel train")
    ap.add_argument("--n", type=int, default=300, help="held-out images (default: 300)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: 2)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = spixel.load_model(args.model)
    _, _, masks, x, y = held_out(model, args.n)
    boxes = [[box_of(m)] for m in masks]
    rgb = model.to_rgb01(x)
    t0 = time.perf_counter()
    segs = {
        name: segment(rgb, seg, model=model, **p) if seg == "nas" else segment(rgb, seg, **p)
        for name, (seg, p) in PARTITIONS.items()
    }
    nas = segs["nas k-means K=10"].meta
    print(
        f"{args.n} images, partitions in {time.perf_counter() - t0:.1f} s; NAS layers {nas['layers']}, "
        f"features at {nas['out_size']}"
    )
    print("| map | partition | BoxAcc@30 | BoxAcc@50 | BoxAcc@70 | MaxBoxAccV2 | pointing game |")
    print("|---|---|---:|---:|---:|---:|---:|")
    tol = 15.0 * model.input_size / 224
    for method, params in METHODS:
        base = spixel.explain(model, x, method, target=y, **params)
        for name, seg in {"pixels": None, **segs}.items():
            e = base if seg is None else spixel.Explanation(attribution=group(base.attribution, seg), segmentation=seg)
            mba = spixel.evaluate(model, x, e, "max_box_acc_v2", target=y, boxes=boxes)
            pg = spixel.evaluate(model, x, e, "pointing_game", target=y, masks=torch.as_tensor(masks), tolerance=tol)
            accs = " | ".join(f"{v:.3f}" for v in mba.meta["box_acc"].values())
            print(f"| {method} | {name} | {accs} | {mba.meta['max_box_acc_v2']:.3f} | {pg.mean:.3f} |", flush=True)


if __name__ == "__main__":
    main()

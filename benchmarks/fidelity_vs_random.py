"""Are the maps better than random? Deletion / insertion AUC of Grad-CAM, SLIC-averaged saliency, grouped IG and
SWAG against random maps, both i.i.d. pixels and at each map's own granularity (issue 4's fidelity criterion).

EfficientNet-Lite0 on chelsea, coffee, rocket and stereo_motorcycle[0] (confidently classified), the predicted
class, RISE protocol with ``--n-steps`` steps. Substrates: ``rise`` = the RISE defaults (deletion towards zero,
insertion from the blurred image), ``zero`` or ``blur`` for both curves. Random maps come from
:func:`spixel.metrics.random_map` with seeds ``0..--seeds-1`` (mean over seeds): ``pixels`` (i.i.d.), ``7×7``
(upsampled like Lite0's 7×7 Grad-CAM) and ``regions`` (random scores on the explanation's own partition, removed
region by region). Results in docs/ground_truth.md. An experiment, not a timing::

    python benchmarks/fidelity_vs_random.py --substrate rise,zero,blur --seeds 10 --threads 2
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from skimage import data

import spixel
from spixel.metrics import evaluate, random_map

METRICS = ("deletion", "insertion")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--substrate", default="rise", help="comma-separated: rise, zero, blur (default: %(default)s)")
    ap.add_argument("--seeds", type=int, default=10, help="random maps per kind (default: 10)")
    ap.add_argument("--n-steps", type=int, default=28, help="deletion / insertion steps (default: 28)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: 2)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = spixel.load_model("efficientnet_lite0")
    x = model.preprocess([data.chelsea(), data.coffee(), data.rocket(), data.stereo_motorcycle()[0]])
    gradcam = spixel.explain(model, x, "gradcam")
    target = gradcam.meta["target"]
    slic = {"regions": "slic", "region_params": {"n_segments": 100}}
    maps = {
        "Grad-CAM": (gradcam, 7),
        "SLIC-averaged saliency": (spixel.explain(model, x, "saliency", target=target, **slic), None),
        "SLIC-averaged IG": (spixel.explain(model, x, "integrated_gradients", target=target, **slic), None),
        "SWAG": (spixel.explain(model, x, "swag", target=target), None),
    }
    seeds = range(args.seeds)

    def auc(e: spixel.Explanation, metric: str, substrate: str) -> float:
        kw = {} if substrate == "rise" else {"substrate": substrate}
        return evaluate(model, x, e, metric, target=target, n_steps=args.n_steps, batch_size=32, **kw).mean

    for substrate in args.substrate.split(","):
        iid = {m: np.mean([auc(random_map(gradcam, seed=s), m, substrate) for s in seeds]) for m in METRICS}
        print(
            f"\nsubstrate: {substrate}; random i.i.d. pixels: deletion {iid['deletion']:.3f}, "
            f"insertion {iid['insertion']:.3f}"
        )
        print("| map | random at its granularity | deletion | random | ratio | insertion | random | ratio |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for name, (e, grid) in maps.items():
            ours = {m: auc(e, m, substrate) for m in METRICS}
            rnd = {m: np.mean([auc(random_map(e, seed=s, grid=grid), m, substrate) for s in seeds]) for m in METRICS}
            kind = f"{grid}×{grid} upsampled" if grid else "same regions"
            print(
                f"| {name} | {kind} | "
                + " | ".join(f"{ours[m]:.3f} | {rnd[m]:.3f} | {ours[m] / rnd[m]:.2f}" for m in METRICS)
                + " |",
                flush=True,
            )


if __name__ == "__main__":
    main()

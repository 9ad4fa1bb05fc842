"""Paper 004's evaluation of Attribution Equilibrium on exact ground truth: insertion with smoothed seams (top 1…20 %
of the pixels into a blank image, top-1 accuracy), the pointing game and the outside–inside relevance ratio, for
AE at three ratios r against the gradient, CAM and propagation baselines on the same model and images.

``--model`` is a ``spixel train`` checkpoint (AE runs on VGG-style nets and ResNets, e.g.
``spixel train one --arch vgg --out M`` → ``M/vgg.pt``); the first ``--n`` images of ``SyntheticDataset(n, seed=1)``
(held out) are explained for their label. Insertion: ``spixel.evaluate(..., "insertion_blur")`` (σ = 2 px at 224,
scaled), relative to the accuracy on the unperturbed images. Pointing game: 15 px at 224, scaled, against the exact
mask; outside–inside ratio against the exact mask (lower is better). Results in docs/ground_truth.md. An
experiment, not a timing::

    python benchmarks/ae_eval.py --model M/vgg.pt --n 500 --threads 2
"""

from __future__ import annotations

import argparse
import time

import torch

import spixel
from _common import held_out

METHODS: tuple[tuple[str, str, dict], ...] = (
    ("AE r = 2", "attribution_equilibrium", {"ratio": 2.0}),
    ("AE r = 1.5", "attribution_equilibrium", {"ratio": 1.5}),
    ("AE r = 1", "attribution_equilibrium", {"ratio": 1.0}),
    ("Grad-CAM", "gradcam", {}),
    ("guided backprop", "guided_backprop", {}),
    ("integrated gradients", "integrated_gradients", {"n_steps": 32}),
    ("saliency", "saliency", {}),
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="a checkpoint written by spixel train (VGG- or ResNet-style)")
    ap.add_argument("--n", type=int, default=500, help="held-out images (default: 500)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: 2)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = spixel.load_model(args.model)
    _, _, masks, x, y = held_out(model, args.n)
    m = torch.as_tensor(masks)
    scale = model.input_size / 224
    print(f"{args.n} held-out images of {model.input_size}×{model.input_size}, {model.name}")
    print("| method | insertion, mean 1…20 % | at 5 % | pointing game | outside–inside (median) | s |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, method, params in METHODS:
        t0 = time.perf_counter()
        e = spixel.explain(model, x, method, target=y, **params)
        seconds = time.perf_counter() - t0
        ins = spixel.evaluate(model, x, e, "insertion_blur", target=y, sigma=2.0 * scale)
        rel = ins.meta["relative_accuracy"]
        pg = spixel.evaluate(model, x, e, "pointing_game", target=y, masks=m, tolerance=15.0 * scale)
        oir = spixel.evaluate(model, x, e, "outside_inside_ratio", target=y, masks=m)
        print(
            f"| {name} | {sum(rel) / len(rel):.3f} | {rel[4]:.3f} | {pg.mean:.3f} | {oir.scores.median():.3f} "
            f"| {seconds:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()

"""Paper 000's stability table for several half-model recipes: does grouping's effect depend on the architecture
or on the accuracy of the two disjoint-half models?

For each ``ARCH:EPOCHS`` it trains two models on the disjoint halves of ``SyntheticDataset(8000, seed=0)``
(:func:`spixel.train.halves_indices`, seed 0), scores them on ``SyntheticDataset(1000, seed=1)`` and prints SSIM
(protocol B) between their maps on the first ``--n-test`` held-out images, pixel versus SLIC / Quickshift / square /
random partitions — exactly :func:`spixel.bench.stability.stability_rows` with the ``--quick`` settings of
``spixel bench stability``. Results in docs/ground_truth.md. An experiment, not a timing::

    python benchmarks/stability_halves.py --recipes resnet:20,resnet:60,vgg:5,vgg:20 --threads 2
"""

from __future__ import annotations

import argparse
import time

import torch

from spixel.bench import stability as B
from spixel.bench.report import GROUPINGS
from spixel.data import SyntheticDataset
from spixel.train import accuracy, fit, halves_indices


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipes", default="resnet:60,vgg:5", help="comma-separated ARCH:EPOCHS (default: %(default)s)")
    ap.add_argument("--n-test", type=int, default=200, help="held-out images for SSIM (default: 200)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: 2)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    train, test = SyntheticDataset(8000, seed=0), SyntheticDataset(1000, seed=1)
    tr_img, tr_lab, _ = train.arrays()
    te_img, te_lab, _ = test.arrays()
    img, lab, _ = SyntheticDataset(args.n_test, seed=1).arrays()
    print("| halves | held-out accuracy | method | " + " | ".join(GROUPINGS) + " |")
    print("|---" * (len(GROUPINGS) + 3) + "|")
    for spec in args.recipes.split(","):
        arch, epochs = spec.split(":")
        t0 = time.perf_counter()
        models = [
            fit((tr_img, tr_lab), indices=idx, labels=train.classes, arch=arch, epochs=int(epochs), progress=False)
            for idx in halves_indices(len(train))
        ]
        acc = " / ".join(f"{100 * accuracy(m, te_img, te_lab):.1f} %" for m in models)
        x, y = models[0].preprocess(list(img)), torch.as_tensor(lab)
        parts = B.make_partitions(models[0], x, 0)
        rows = B.stability_rows(models[0], models[1], x, y, parts, tuple(B.METHODS), 0, None, B.QUICK)
        by = {(r["method"], r["grouping"]): r["ssim"] for r in rows}
        for m in B.METHODS:
            cells = " | ".join(f"{by[m, g]:.3f}" for g in GROUPINGS)
            print(f"| {arch} × {epochs} epochs | {acc} | {m} | {cells} |", flush=True)
        print(f"<!-- {spec}: {time.perf_counter() - t0:.0f} s -->", flush=True)


if __name__ == "__main__":
    main()

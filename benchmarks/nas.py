"""NAS clustering: spixel's batched torch k-means against scikit-learn's ``KMeans`` on the same activations.

NAS (paper 002) has no public implementation; the spec's recipe is ``sklearn.cluster.KMeans(K, n_init=10,
random_state=0)`` on the per-pixel multi-depth features, image by image. This times, on the same inputs
(``--images`` photos from ``skimage.data``, EfficientNet-Lite0, automatic layers, features at 112×112 — the NAS
default for Lite0), one run each, interleaved:

* **sklearn, plain features**: ``KMeans(K, n_init=10, random_state=0)`` per image on ``nas_features(...)``
  (2432 dimensions for Lite0) — what the recipe does;
* **sklearn, compressed features**: the same on ``nas_features(..., compress=True)`` (an orthonormal basis of each
  low-resolution layer's span: the same pairwise distances in 725 dimensions), so that the clustering itself is
  compared;
* **spixel**: ``spixel.segmentation.nas.kmeans`` (k-means++, ``n_init=10`` restarts, all images in one batched
  call) on the compressed features — what ``segment(..., "nas")`` runs.

Each row also reports the inertia (sum of squared distances to the centres, on the compressed features; the same
number on the plain ones) relative to sklearn's: k-means finds local optima, so a ratio near 1 means equally good
clusters. The feature extraction (one forward with hooks, then the resizing) is timed separately, plain and
compressed (which resizes only the basis coordinates).

    python benchmarks/nas.py --images 4 --threads 2
    python benchmarks/nas.py --device cuda --images 16
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import spixel
from _common import photos, sync
from spixel.segmentation.nas import kmeans, nas_features


def _inertia(f: np.ndarray, labels: np.ndarray) -> float:
    """Sum of squared distances of ``f`` (P, D) to the means of their clusters."""
    tot = 0.0
    for k in np.unique(labels):
        pts = f[labels == k]
        tot += float(((pts - pts.mean(0)) ** 2).sum())
    return tot


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=4, help="photos (default: 4)")
    ap.add_argument("--k", type=int, default=10, help="clusters (default: 10, the paper's)")
    ap.add_argument("--threads", type=int, default=2, help="torch and BLAS threads (default: 2)")
    ap.add_argument("--device", default="cpu", help="torch device for spixel (default: cpu)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    dev = torch.device(args.device)
    model = spixel.load_model("efficientnet_lite0").to(dev)
    x = photos(model, args.images).to(dev)
    sync(dev)
    t0 = time.perf_counter()
    plain, hw, names = nas_features(model, x)
    sync(dev)
    t_feat = time.perf_counter() - t0
    t0 = time.perf_counter()
    comp, _, _ = nas_features(model, x, compress=True)
    sync(dev)
    t_comp = time.perf_counter() - t0
    print(
        f"{args.images} photos, Lite0 layers {names}, features at {hw[0]}×{hw[1]}: {plain.shape[-1]} dims "
        f"({comp.shape[-1]} compressed); feature extraction {t_feat:.2f} s plain, {t_comp:.2f} s compressed; "
        f"K = {args.k}, n_init = 10"
    )
    fc = comp.cpu().double().numpy()
    rows = []
    with threadpool_limits(args.threads):
        for name, feats in (("sklearn, plain features", plain), ("sklearn, compressed features", comp)):
            f = feats.cpu().numpy()
            t0 = time.perf_counter()
            labs = [KMeans(args.k, n_init=10, random_state=0).fit_predict(fi) for fi in f]
            rows.append((name, time.perf_counter() - t0, [_inertia(fc[i], lab) for i, lab in enumerate(labs)]))
    sync(dev)
    t0 = time.perf_counter()
    lab, _, _ = kmeans(comp, args.k, n_init=10, seed=0)
    sync(dev)
    t_ours = time.perf_counter() - t0
    lab = lab.cpu().numpy()
    rows.append(("spixel kmeans (batched)", t_ours, [_inertia(fc[i], lab[i]) for i in range(len(lab))]))
    ref_t, ref_in = rows[0][1], rows[0][2]
    print("| clustering | s | vs sklearn plain | inertia / sklearn plain (mean, min–max) |")
    print("|---|---:|---:|---|")
    for name, t, inert in rows:
        r = np.array(inert) / np.array(ref_in)
        print(f"| {name} | {t:.2f} | {t / ref_t:.3f} | {r.mean():.4f} ({r.min():.4f}–{r.max():.4f}) |")


if __name__ == "__main__":
    main()

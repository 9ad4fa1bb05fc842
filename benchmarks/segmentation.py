"""Segmentation throughput per segmenter and backend: serial vs parallel threads over the batch.

64 distinct 224×224 crops of real photos from ``skimage.data`` (random positions and scales, resized), segmented with
each registered segmenter at its defaults (``guided_slic`` gets a Sobel-magnitude map as its gradient: the timing
does not depend on where the map comes from). Numpy backends run with ``workers=1`` (serial) and with the default
``workers`` (one thread per core, at most one per image); torch backends (grid, random) have a single row. Each
cell is the median of ``--repeats`` runs over the whole batch. A ``raw skimage`` column times the bare skimage call
in a Python loop (what users write today), so our wrapping cost (conversion, relabelling) is visible. A second table
checks, independently of the machine's load, that each numpy backend releases the GIL (:func:`gil_stalls`).

The machine's core count and load average are printed: on a shared machine the parallel speed-up is bounded by the
idle cores, not by the GIL (every backend here releases it in its heavy loop; see ``spixel.segmentation.image``).

    python benchmarks/segmentation.py                          # 64 images, 3 repeats, all segmenters
    python benchmarks/segmentation.py --images 16 --segmenters slic,watershed --repeats 5
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from spixel.registry import SEGMENTERS
from spixel.segmentation import segment
from spixel.segmentation.image import fast_slic_available

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field", "colorwheel")


def crops(n: int, size: int = 224, seed: int = 0) -> Tensor:
    """``n`` distinct ``size``×``size`` crops (random square windows of 40–100 % of the short side) of real photos,
    float RGB ``(n, 3, size, size)`` in [0, 1]."""
    from skimage import data
    from skimage.transform import resize

    rng = np.random.default_rng(seed)
    photos = [getattr(data, name)() for name in PHOTOS]
    out = []
    for i in range(n):
        im = photos[i % len(photos)]
        h, w = im.shape[:2]
        side = int(min(h, w) * rng.uniform(0.4, 1.0))
        y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        out.append(resize(im[y : y + side, x : x + side], (size, size), anti_aliasing=True))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float().clamp(0, 1)


def sobel_maps(x: Tensor) -> Tensor:
    from skimage.color import rgb2gray
    from skimage.filters import sobel

    return torch.from_numpy(np.stack([sobel(rgb2gray(im)) for im in x.permute(0, 2, 3, 1).double().numpy()]))


def median_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    fn()  # warm-up (imports, caches)
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def raw_skimage(name: str, params: dict[str, Any]) -> Callable[[np.ndarray], Any] | None:
    """The bare skimage call a user would loop over (None where there is none)."""
    from skimage import segmentation as sks

    if name == "slic" and params.get("backend", "auto") != "fast_slic":
        return lambda im: sks.slic(im, n_segments=100, compactness=10, sigma=0, start_label=0, channel_axis=-1)
    if name == "quickshift":
        return lambda im: sks.quickshift(im, kernel_size=4, max_dist=200, ratio=0.2, rng=0)
    if name == "felzenszwalb":
        return lambda im: sks.felzenszwalb(im, scale=100, sigma=0.8, min_size=50)
    if name == "watershed":
        from skimage.color import rgb2gray
        from skimage.filters import sobel

        return lambda im: sks.watershed(sobel(rgb2gray(im)), markers=250, compactness=0.001)
    return None


def gil_stalls(x: Tensor, wanted: set[str] | None, calls: int = 3) -> None:
    """Does a segmenter release the GIL? Segment one image ``calls`` times in a worker thread while the main thread
    spins in Python: a call that held the GIL would stall the main thread for the whole call; the longest stall is
    printed next to the call's duration. Unlike a speed-up, this does not depend on idle cores."""
    import threading

    img = x[:1]
    grad = sobel_maps(img)
    print("\n| segmenter | backend | one call (ms) | longest main-thread stall (ms) | GIL released |")
    print("|---|---|---:|---:|---|")
    for name, backend, params in cases(img, wanted):
        if "workers" not in SEGMENTERS.get(name).info["params"]:
            continue
        p = {**params, "workers": 1, **({"gradient": grad} if "gradient" in params else {})}
        segment(img, name, **p)
        t0 = time.perf_counter()
        segment(img, name, **p)
        call = time.perf_counter() - t0
        worker = threading.Thread(target=lambda n=name, q=p: [segment(img, n, **q) for _ in range(calls)])
        stalls, last = [], time.perf_counter()
        worker.start()
        while worker.is_alive():
            now = time.perf_counter()
            stalls.append(now - last)
            last = now
            time.sleep(0)
        longest = max(stalls)
        verdict = "yes" if longest < 0.5 * call else "no / unclear"
        print(f"| {name} | {backend} | {call * 1e3:.1f} | {longest * 1e3:.1f} | {verdict} |", flush=True)


def cases(x: Tensor, wanted: set[str] | None) -> list[tuple[str, str, dict[str, Any]]]:
    grad = sobel_maps(x)
    out: list[tuple[str, str, dict[str, Any]]] = []
    for entry in SEGMENTERS:
        if wanted and entry.name not in wanted:
            continue
        if entry.name == "slic":
            out.append(("slic", "skimage", {"backend": "skimage"}))
            if fast_slic_available():
                out.append(("slic", "fast_slic", {"backend": "fast_slic"}))
        elif "model" in entry.info.get("params", {}):
            continue  # NAS clusters a model's activations: timed against scikit-learn in benchmarks/nas.py
        elif entry.name == "guided_slic":
            for variant in ("image+gradient", "gradient"):
                out.append(("guided_slic", f"skimage ({variant})", {"gradient": grad, "variant": variant}))
        else:
            out.append((entry.name, entry.info.get("backend", "?"), {}))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=64, help="number of 224×224 crops (default 64)")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per cell; the median is reported (default 3)")
    ap.add_argument("--segmenters", default="", help="comma-separated names (default: all registered)")
    ap.add_argument("--no-raw", action="store_true", help="skip the bare-skimage column")
    ap.add_argument("--no-gil", action="store_true", help="skip the GIL-release check")
    args = ap.parse_args(argv)

    x = crops(args.images, args.size)
    wanted = {s for s in args.segmenters.split(",") if s} or None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load0 = os.getloadavg()
    print(f"# Segmentation throughput: {args.images} images of {args.size}×{args.size}, median of {args.repeats}")
    print(
        f"{platform.processor() or platform.machine()}, {cores} cores, torch {torch.__version__}, "
        f"load average at start {load0[0]:.1f}\n"
    )
    print(
        "| segmenter | backend | regions/img | raw skimage loop (img/s) | serial (img/s) | threads (img/s) | speed-up |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, backend, params in cases(x, wanted):
        has_workers = "workers" in SEGMENTERS.get(name).info["params"]
        serial = {**params, "workers": 1} if has_workers else params
        t_ser, seg = median_time(lambda n=name, p=serial: segment(x, n, **p), args.repeats)
        regions = f"{seg.num_segments.float().mean().item():.0f}"
        raw = raw_skimage(name, params) if not args.no_raw else None
        raw_s = "–"
        if raw is not None:
            imgs = list(x.permute(0, 2, 3, 1).double().numpy())
            t_raw, _ = median_time(lambda f=raw, ims=imgs: [f(im) for im in ims], args.repeats)
            raw_s = f"{len(x) / t_raw:.1f}"
        if has_workers:
            t_par, seg_par = median_time(lambda n=name, p=params: segment(x, n, **p), args.repeats)
            assert torch.equal(seg_par.labels, seg.labels), f"{name}: threads changed the result"
            par_s, speed = f"{len(x) / t_par:.1f}", f"{t_ser / t_par:.2f}×"
        else:
            par_s, speed = "– (torch, one call)", "–"
        print(f"| {name} | {backend} | {regions} | {raw_s} | {len(x) / t_ser:.1f} | {par_s} | {speed} |", flush=True)
    if not args.no_gil:
        gil_stalls(x, wanted)
    load1 = os.getloadavg()
    print(
        f"\nload average at end {load1[0]:.1f} (a load above the core count means other processes shared the "
        "cores: the speed-up is then a lower bound)"
    )


if __name__ == "__main__":
    main()

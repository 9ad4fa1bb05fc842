"""The Ray engine's scaling: items/s of the local engine and of Ray with 1 and 2 workers on the same items, same run.

* **local**: ``run_local`` in this process (workers 0: decoding in the main process), ``--threads`` torch threads;
* **ray ×1, ray ×2**: ``run_ray`` on a local Ray instance started once (``--cpus`` CPUs, no dashboard) with one and
  two actors, each reserving ``--cpus-per-worker`` CPUs and running that many torch threads (one by default).

Each engine writes a fresh store, in ``--repeat`` interleaved rounds (medians reported); the rows are checked to
be the local engine's. *wall* is the whole call (Ray: starting the actor pool, each actor importing torch and
loading the model, and the run); *start* the time to the first committed batch; *steady* the rate after it
((items − first batch) / (last − first commit)), which is what a long run sees. Per-worker overhead =
1 − steady(ray ×k) / (k × steady(local)) with ``--threads 1`` locally.

Images: ``--n`` JPEGs from the ``skimage.data`` photos (cycled) in a temporary folder, read as ``folder:DIR``;
EfficientNet-Lite0; Grad-CAM and SmoothGrad (``--samples``); deletion (``--steps``) and sparseness.

    python benchmarks/ray_scaling.py --n 48 --threads 1 --cpus 2
    python benchmarks/ray_scaling.py --n 512 --device cuda --gpus-per-worker 0.5   # GPU workers sharing one GPU
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from _common import PHOTOS


def write_folder(root: Path, n: int) -> None:
    from skimage import data

    for i in range(n):
        img = getattr(data, PHOTOS[i % len(PHOTOS)])()
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=-1)
        Image.fromarray(np.ascontiguousarray(img[..., :3])).save(root / f"img{i:04d}.jpg", quality=92)


def experiment(samples: int, steps: int) -> Any:
    from spixel.experiments import from_dict

    return from_dict(
        {
            "experiment": {"name": "ray-scaling", "model": "efficientnet_lite0", "target": "predicted", "seed": 0},
            "method": [{"name": "gradcam"}, {"name": "smoothgrad", "params": {"n_samples": samples}}],
            "metric": [{"name": "deletion", "params": {"n_steps": steps}}, {"name": "sparseness"}],
        }
    )


def rows(store: Path) -> list[tuple]:
    con = sqlite3.connect(store)
    try:
        return con.execute(
            "SELECT item_id, method, metric, value FROM results ORDER BY item_id, method, metric"
        ).fetchall()
    finally:
        con.close()


def timed_run(fn: Callable[[Callable[[int], None]], Any], n: int) -> dict[str, float]:
    """Run ``fn(on_batch)``; wall time, time to the first commit and the steady rate after it."""
    commits: list[tuple[float, int]] = []
    t0 = time.perf_counter()
    fn(lambda k: commits.append((time.perf_counter(), k)))
    wall = time.perf_counter() - t0
    first, k0 = commits[0]
    last = commits[-1][0]
    steady = (n - k0) / (last - first) if last > first else float("nan")
    return {"wall": wall, "start": first - t0, "rate": n / wall, "steady": steady}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=48, help="images (default: 48)")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--samples", type=int, default=8, help="SmoothGrad samples (default: 8)")
    ap.add_argument("--steps", type=int, default=16, help="deletion steps (default: 16)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the local engine (default: 1)")
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray instance (default: 2)")
    ap.add_argument("--cpus-per-worker", type=float, default=1.0)
    ap.add_argument("--gpus-per-worker", type=float, default=0.0)
    ap.add_argument("--device", default="cpu", help="device of the local engine and of the workers")
    ap.add_argument("--repeat", type=int, default=3, help="rounds of local, ray ×1, ray ×2 (medians; default: 3)")
    a = ap.parse_args()

    import ray

    import spixel
    from spixel.experiments import run_local
    from spixel.experiments.engines.ray import run_ray

    torch.set_num_threads(a.threads)
    exp = experiment(a.samples, a.steps)
    model = spixel.load_model("efficientnet_lite0", device=a.device)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder = root / "imgs"
        folder.mkdir()
        write_folder(folder, a.n)
        data = f"folder:{folder}"
        run_local(exp, data, root / "warm.db", model=model, batch_size=a.batch_size, limit=a.batch_size, progress=False)
        t0 = time.perf_counter()
        ray.init(num_cpus=a.cpus, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        t_init = time.perf_counter() - t0
        runs: dict[str, list[dict[str, float]]] = {"local": [], "ray ×1": [], "ray ×2": []}
        try:
            for rep in range(a.repeat):  # interleaved, so that a change in the machine's load hits every engine
                runs["local"].append(
                    timed_run(
                        lambda cb, rep=rep: run_local(
                            exp,
                            data,
                            root / f"local{rep}.db",
                            model=model,
                            batch_size=a.batch_size,
                            progress=False,
                            on_batch=cb,
                        ),
                        a.n,
                    )
                )
                for k in (1, 2):
                    store = root / f"ray{k}-{rep}.db"
                    runs[f"ray ×{k}"].append(
                        timed_run(
                            lambda cb, k=k, store=store: run_ray(
                                exp,
                                data,
                                store,
                                device=a.device,
                                batch_size=a.batch_size,
                                workers=k,
                                cpus_per_worker=a.cpus_per_worker,
                                gpus_per_worker=a.gpus_per_worker,
                                progress=False,
                                on_batch=cb,
                            ),
                            a.n,
                        )
                    )
                    ref, got = rows(root / f"local{rep}.db"), rows(store)
                    assert [r[:3] for r in ref] == [r[:3] for r in got], f"ray ×{k}: other rows"
                    worst = max(abs(x[3] - y[3]) for x, y in zip(ref, got, strict=True) if x[3] is not None)
                    assert worst < 1e-4, f"ray ×{k}: values differ by {worst}"
        finally:
            ray.shutdown()
    results = {name: {key: float(np.median([r[key] for r in rs])) for key in rs[0]} for name, rs in runs.items()}
    print(
        f"{a.n} images, Lite0 on {a.device}, batch {a.batch_size}, Grad-CAM + SmoothGrad-{a.samples}, "
        f"deletion-{a.steps} + sparseness; local threads {a.threads}; Ray: {a.cpus} CPUs, "
        f"{a.cpus_per_worker:g} CPU / {a.gpus_per_worker:g} GPU per worker; ray.init {t_init:.1f} s; "
        f"medians of {a.repeat} interleaved rounds"
    )
    base = results["local"]["steady"]
    print(f"  {'engine':<8} {'wall s':>7} {'img/s':>6} {'start s':>8} {'steady img/s':>13} {'× local':>8}")
    for name, r in results.items():
        print(
            f"  {name:<8} {r['wall']:7.1f} {r['rate']:6.2f} {r['start']:8.1f} {r['steady']:13.2f} "
            f"{r['steady'] / base:8.2f}"
        )
    for k in (1, 2):
        s = results[f"ray ×{k}"]["steady"]
        print(f"  per-worker overhead, ray ×{k}: {1 - s / (k * base):+.1%} (steady rate vs {k} × local)")


if __name__ == "__main__":
    main()

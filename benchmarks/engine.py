"""The experiments engine's overhead: the same methods and metrics on the same images, three ways, same run.

* **direct**: a plain loop of library calls — decode, ``preprocess``, ``spixel.explain``, ``spixel.evaluate``
  — on batches of ``--batch-size`` images, results kept in a Python list (what a user's script does);
* **engine, workers 0**: ``spixel.experiments.run_local`` into a fresh SQLite store, decoding in the main process;
* **engine, workers 2**: the same with two DataLoader processes decoding and cropping ahead of the model.

One warm-up of each, then ``--repeat`` interleaved rounds; medians. Each engine run writes a fresh store.

Images: ``--n`` JPEG files written from the ``skimage.data`` photos (cycled) into a temporary folder, read back as
``folder:DIR``; model EfficientNet-Lite0; methods Grad-CAM and Saliency; metrics deletion (``--steps``) and
sparseness. Engine overhead = (engine − direct) / engine. Then the store's write rate on its own: ``--rows``
synthetic result rows written in transactions of one batch (8 items × 24 rows).

    python benchmarks/engine.py --n 64 --threads 2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import spixel
from _common import PHOTOS

METHODS = ("gradcam", "saliency")


def write_folder(root: Path, n: int) -> list[Path]:
    from skimage import data

    paths = []
    for i in range(n):
        img = getattr(data, PHOTOS[i % len(PHOTOS)])()
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=-1)
        p = root / f"img{i:04d}.jpg"
        Image.fromarray(np.ascontiguousarray(img[..., :3])).save(p, quality=92)
        paths.append(p)
    return paths


def direct(model: spixel.ModelAdapter, paths: list[Path], batch: int, steps: int) -> list[float]:
    out: list[float] = []
    for s in range(0, len(paths), batch):
        x = model.preprocess([str(p) for p in paths[s : s + batch]])
        for m in METHODS:
            e = spixel.explain(model, x, m, seed=0)
            out += spixel.evaluate(model, x, e, "deletion", n_steps=steps).scores.tolist()
            out += spixel.evaluate(model, x, e, "sparseness").scores.tolist()
    return out


def engine(model: spixel.ModelAdapter, folder: Path, batch: int, steps: int, workers: int, store: Path) -> int:
    from spixel.experiments import from_dict, run_local

    exp = from_dict(
        {
            "experiment": {"name": "bench", "model": "efficientnet_lite0", "target": "predicted"},
            "method": [{"name": m} for m in METHODS],
            "metric": [{"name": "deletion", "params": {"n_steps": steps}}, {"name": "sparseness"}],
        }
    )
    r = run_local(exp, f"folder:{folder}", store, model=model, batch_size=batch, workers=workers, progress=False)
    return r.rows


def store_rate(rows: int) -> float:
    from spixel.experiments.store import ItemRecord, Store

    per_item = 24
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "s.db", writer=True) as st:
        run, _ = st.open_run(name="w", config_hash="h", config={}, model="m", dataset="d", fingerprint=None)
        curve = list(np.linspace(1, 0, 29))
        t0 = time.perf_counter()
        n = k = 0
        while n < rows:
            batch = [
                ItemRecord(
                    f"item{k + j:06d}",
                    "done",
                    results=[(f"m{r % 4}", "", f"metric{r // 4}", 0.5, "ok", curve, 0.01) for r in range(per_item)],
                )
                for j in range(8)
            ]
            k += 8
            n += st.write(run, batch)
        return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64, help="images (default: 64)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--steps", type=int, default=16, help="deletion steps (default: 16)")
    ap.add_argument("--rows", type=int, default=20000, help="rows for the store's write rate")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=3, help="interleaved repeats; medians are reported (default: 3)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    model = spixel.load_model("efficientnet_lite0", device=a.device)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder = root / "imgs"
        folder.mkdir()
        paths = write_folder(folder, a.n)
        direct(model, paths[: a.batch_size], a.batch_size, a.steps)  # warm-up (imports, allocator)
        engine(model, folder, a.batch_size, a.steps, 0, root / "warm.db")
        t_d: list[float] = []
        times: dict[int, list[float]] = {0: [], 2: []}
        for k in range(a.repeat):  # interleaved, so that drifting load hits every variant alike
            t0 = time.perf_counter()
            ref = direct(model, paths, a.batch_size, a.steps)
            t_d.append(time.perf_counter() - t0)
            for w in (0, 2):
                t0 = time.perf_counter()
                rows = engine(model, folder, a.batch_size, a.steps, w, root / f"w{w}-{k}.db")
                times[w].append(time.perf_counter() - t0)
                assert rows == len(ref), (rows, len(ref))
    t_direct = float(np.median(t_d))
    med = {w: float(np.median(v)) for w, v in times.items()}
    print(
        f"{a.n} images, Lite0 on {a.device}, threads {torch.get_num_threads()}, batch {a.batch_size}, "
        f"median of {a.repeat}"
    )
    print(f"  direct loop           {t_direct:7.1f} s  {a.n / t_direct:6.2f} img/s")
    for w, t in med.items():
        print(f"  engine, workers {w}     {t:7.1f} s  {a.n / t:6.2f} img/s  overhead {(t - t_direct) / t:+.1%}")
    print(f"  store write rate      {store_rate(a.rows):,.0f} rows/s (transactions of 8 items × 24 rows)")


if __name__ == "__main__":
    main()

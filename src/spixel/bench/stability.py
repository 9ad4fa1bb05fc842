"""Paper 000's headline on data with known evidence (issue 5): are grouped (superpixel) maps more stable than pixel
maps across models trained on disjoint data, and where do the maps point?

Protocols (spec §1.6, §1.3):

* **SSIM, two disjoint halves.** Models A and B share a recipe and see disjoint halves of the training set; each
  explains the held-out images for their *label* (spec §1.7); SSIM protocol B between A's and B's maps, pixel maps
  versus the same maps grouped (``P_G``, mean) over SLIC, Quickshift, square and random partitions.
* **MeGe / ReCo** over k fold models (xplique's representativity), pixel versus grouped.
* **Localisation**: pointing game and MaxBoxAccV2 against the exact evidence masks / boxes.
* **Evidence check**: occluding the evidence mask drops the true-class probability far more than occluding an
  equal area of background.

Grouping is linear for Simple Gradient, IG and SmoothGrad, so their maps are computed once and grouped per
partition; Sparsified SmoothGrad groups each noisy gradient *before* sparsifying (spec §1.2), so it is recomputed
per partition.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..api import explain
from ..errors import BadParameterError, SpixelError
from ..metrics.base import evaluate
from ..metrics.stability import mege_from_maps, ssim, topk_intersection
from ..models.adapter import ModelAdapter
from ..regions import group_explanation
from ..registry import METHODS as METHOD_REGISTRY
from ..segmentation.base import segment
from ..types import Explanation, Segmentation

#: The four base methods of paper 000 with the group's defaults (spec §1.4), at our names.
METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "simple_gradient": ("saliency", {}),
    "integrated_gradients": ("integrated_gradients", {"n_steps": 20, "rule": "mean"}),
    "smoothgrad": ("smoothgrad", {"n_samples": 100, "stdev_spread": 0.15}),
    "sparsified_smoothgrad": ("sparsified_smoothgrad", {"n_samples": 256, "stdev_spread": 0.1}),
}
#: Fewer noise samples for a run on 2 CPU cores (``spixel bench stability --quick``): SmoothGrad 50, SSG 64.
QUICK: dict[str, dict[str, Any]] = {
    "smoothgrad": {"n_samples": 50},
    "sparsified_smoothgrad": {"n_samples": 64},
}
#: Methods whose grouping happens inside the method (non-linear).
GROUP_INSIDE = {"sparsified_smoothgrad"}


def partitions(size: int, mean_segments: int) -> dict[str, tuple[str, dict[str, Any]]]:
    """The partitions of spec §1.3 at image ``size``: SLIC (100 segments), Quickshift (LIME's kernel 4 / ratio 0.2
    with the paper's ``max_dist=3``), square blocks and i.i.d. random groups both matched to ``mean_segments``."""
    side = max(1, round(size / np.sqrt(mean_segments)))
    return {
        "slic": ("slic", {"n_segments": 100}),
        "quickshift": ("quickshift", {"kernel_size": 4, "max_dist": 3, "ratio": 0.2}),
        "square": ("grid", {"size": side}),
        "random": ("random", {"n_segments": int(mean_segments)}),
    }


@dataclass
class Partitions:
    """The segmentations of one set of images, by partition name, and their segment counts."""

    segs: dict[str, Segmentation]
    params: dict[str, tuple[str, dict[str, Any]]]
    counts: dict[str, float] = field(default_factory=dict)


def make_partitions(model: ModelAdapter, x: Tensor, seed: int = 0) -> Partitions:
    """SLIC first (its mean count sets the square and random partitions), then the others, on ``to_rgb01(x)``."""
    rgb = model.to_rgb01(x)
    slic = segment(rgb, "slic", n_segments=100)
    mean_k = float(slic.num_segments.float().mean())
    params = partitions(x.shape[-1], round(mean_k))
    segs = {"slic": slic}
    for name, (seg_name, p) in params.items():
        if name != "slic":
            extra = {"seed": seed} if name in ("random", "quickshift") and _takes_seed(seg_name) else {}
            segs[name] = segment(rgb, seg_name, **p, **extra)
    counts = {k: float(s.num_segments.float().mean()) for k, s in segs.items()}
    return Partitions(segs, params, counts)


def _takes_seed(segmenter: str) -> bool:
    from ..registry import SEGMENTERS

    return "seed" in SEGMENTERS.get(segmenter).info.get("params", {})


def _maps(
    model: ModelAdapter,
    x: Tensor,
    y: Tensor,
    method: str,
    parts: Partitions,
    seed: int,
    overrides: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Explanation]:
    """The pixel map and one grouped map per partition of ``model``'s ``method`` on ``x`` for labels ``y``
    (``overrides[method]`` updates the method's parameters)."""
    name, params = METHODS[method]
    params = {**params, **(overrides or {}).get(method, {})}
    pixel = explain(model, x, name, target=y, seed=seed, **params)
    out = {"pixel": pixel}
    for pname, seg in parts.segs.items():
        if method in GROUP_INSIDE:
            out[pname] = explain(model, x, name, target=y, seed=seed, regions=seg, **params)
        else:  # P_G on the signed raw map, then the method's own 2-D reduction: what explain(regions=seg) gives
            out[pname] = group_explanation(pixel, seg, reduce2d=METHOD_REGISTRY.get(name).info.get("reduce2d"))
    return out


def stability_rows(
    model_a: ModelAdapter,
    model_b: ModelAdapter,
    x: Tensor,
    y: Tensor,
    parts: Partitions,
    methods: Sequence[str] = tuple(METHODS),
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """SSIM (protocol B) and top-10 % intersection between A's and B's maps, per method × (pixel, partitions)."""
    rows = []
    for method in methods:
        t0 = time.perf_counter()
        ma = _maps(model_a, x, y, method, parts, seed, overrides)
        mb = _maps(model_b, x, y, method, parts, seed + 1, overrides)
        for grouping in ma:
            s = ssim(ma[grouping], mb[grouping], protocol="B").scores
            k = topk_intersection(ma[grouping], mb[grouping], k=0.1).scores
            rows.append(
                {"method": method, "grouping": grouping, "ssim": float(s.mean()), "ssim_sem": _sem(s)}
                | {"topk": float(k.mean()), "l2_unit": _l2_unit(ma[grouping], mb[grouping]), "n": int(s.numel())}
            )
        if progress:
            progress(f"ssim {method}: {time.perf_counter() - t0:.1f} s")
    return rows


def mege_rows(
    models: Sequence[ModelAdapter],
    folds: np.ndarray,
    x: Tensor,
    y: Tensor,
    parts: Partitions,
    methods: Sequence[str] = tuple(METHODS),
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """MeGe and ReCo of each method, pixel versus grouped (the same segmentations for every fold model); each
    model's pixel maps are computed once and grouped per partition as in :func:`stability_rows`."""
    preds = []
    for mdl in models:
        preds.append(mdl.predict(x, batch_size=256).argmax(1).cpu().numpy())
    rows = []
    for method in methods:
        t0 = time.perf_counter()
        maps = [_maps(mdl, x, y, method, parts, seed + i, overrides) for i, mdl in enumerate(models)]
        for grouping in maps[0]:
            m, r = mege_from_maps(preds, [mp[grouping].attribution for mp in maps], folds, y.cpu().numpy())
            rows.append({"method": method, "grouping": grouping, "mege": m, "reco": r, "n": int(x.shape[0])})
        if progress:
            progress(f"mege {method}: {time.perf_counter() - t0:.1f} s")
    return rows


#: Methods for the localisation table: (display name, method, params, grouping partition or None).
LOCALIZATION: tuple[tuple[str, str, dict[str, Any], str | None], ...] = (
    ("simple_gradient", "saliency", {}, None),
    ("simple_gradient + slic", "saliency", {}, "slic"),
    ("integrated_gradients", "integrated_gradients", {"n_steps": 20, "rule": "mean"}, None),
    ("integrated_gradients + slic", "integrated_gradients", {"n_steps": 20, "rule": "mean"}, "slic"),
    ("smoothgrad", "smoothgrad", {"n_samples": 50}, None),
    ("smoothgrad + slic", "smoothgrad", {"n_samples": 50}, "slic"),
    ("guided_backprop", "guided_backprop", {}, None),
    ("gradcam", "gradcam", {}, None),
    ("gradcam_pp", "gradcam_pp", {}, None),
    ("swag", "swag", {"n_segments": 100}, None),
    ("swag_ig", "swag_ig", {"n_segments": 100}, None),
    ("rise", "rise", {"n_masks": 1000, "progress": False}, None),
    ("occlusion", "occlusion", {"window": 8, "stride": 4, "progress": False}, None),
)


def localization_rows(
    model: ModelAdapter,
    x: Tensor,
    y: Tensor,
    masks: Tensor,
    boxes: Sequence[Sequence[tuple[int, int, int, int]]],
    parts: Partitions,
    seed: int = 0,
    tolerance: float | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Pointing game (``tolerance`` default 15 px scaled from 224 to the input size) and MaxBoxAccV2 per method,
    explaining the label; plus the "centre" baseline (a map peaked at the image centre)."""
    size = x.shape[-1]
    tol = 15.0 * size / 224 if tolerance is None else tolerance
    rows = []
    entries: list[tuple[str, Explanation]] = []
    for display, name, params, grouping in LOCALIZATION:
        t0 = time.perf_counter()
        extra: dict[str, Any] = {"regions": parts.segs[grouping]} if grouping else {}
        e = explain(model, x, name, target=y, seed=seed, **params, **extra)
        entries.append((display, e))
        if progress:
            progress(f"localisation {display}: {time.perf_counter() - t0:.1f} s")
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    centre = -((yy - (size - 1) / 2) ** 2 + (xx - (size - 1) / 2) ** 2).float()
    entries.append(("centre baseline", Explanation(attribution=centre.expand(x.shape[0], size, size).clone())))
    for display, e in entries:
        pg = evaluate(model, x, e, "pointing_game", target=y, masks=masks, tolerance=tol).scores
        mba = evaluate(model, x, e, "max_box_acc_v2", target=y, boxes=boxes)
        rows.append(
            {"method": display, "pointing_game": float(pg.mean()), "max_box_acc_v2": float(mba.scores.mean())}
            | {"n": int(x.shape[0]), "tolerance_px": tol}
        )
    return rows


def background_control(mask: np.ndarray, rng: np.random.Generator, tries: int = 64) -> np.ndarray | None:
    """The same mask shape moved (cyclic shift) to the one of ``tries`` random positions that overlaps ``mask``
    least; ``None`` when every one overlaps it."""
    h, w = mask.shape
    best, best_overlap = None, None
    for dy, dx in zip(rng.integers(0, h, tries), rng.integers(0, w, tries), strict=True):
        moved = np.roll(mask, (int(dy), int(dx)), (0, 1))
        overlap = int((moved & mask).sum())
        if best_overlap is None or overlap < best_overlap:
            best, best_overlap = moved, overlap
    return best if best_overlap == 0 else None


@torch.no_grad()
def evidence_rows(
    model: ModelAdapter, images: np.ndarray, labels: np.ndarray, masks: np.ndarray, seed: int = 0
) -> list[dict[str, Any]]:
    """True-class probability when the evidence mask is occluded versus an equal area of background.

    Occlusion fills pixels with the data's mean colour. The background control occludes the *same* mask shape
    moved onto background (:func:`background_control`); images where no such place is found are skipped. The
    object is a shape, so its occluded silhouette stays visible: a strict test of how much the model relies on
    the object's own pixels.
    """
    rng = np.random.default_rng(seed)
    fill = images.reshape(-1, 3).mean(0).round().astype(images.dtype)
    occ_ev, occ_bg, keep = images.copy(), images.copy(), []
    for i in range(len(images)):
        moved = background_control(masks[i], rng)
        if moved is not None:
            keep.append(i)
            occ_ev[i][masks[i]] = fill
            occ_bg[i][moved] = fill
    idx = np.asarray(keep, dtype=np.int64)
    rows = []
    for name, imgs in (("original", images), ("evidence occluded", occ_ev), ("background occluded", occ_bg)):
        p = model.predict(model.preprocess(list(imgs[idx])), batch_size=256)
        py = p[torch.arange(len(idx)), torch.as_tensor(labels[idx])]
        acc = (p.argmax(1).numpy() == labels[idx]).mean()
        rows.append({"condition": name, "p_true": float(py.mean()), "accuracy": float(acc), "n": len(idx)})
    return rows


def _l2_unit(a: Explanation, b: Explanation) -> float:
    """Mean L2 distance between the two models' signed maps (``raw`` when both have one), each scaled to norm 1
    (spec §1.6's companion figure; grouping can only shrink the distance between the unscaled maps)."""
    ta, tb = (a.raw, b.raw) if a.raw is not None and b.raw is not None else (a.attribution, b.attribution)
    ta, tb = ta.flatten(1).double(), tb.flatten(1).double()
    ta = ta / ta.norm(dim=1, keepdim=True).clamp_min(1e-300)
    tb = tb / tb.norm(dim=1, keepdim=True).clamp_min(1e-300)
    return float((ta - tb).norm(dim=1).mean())


def _sem(s: Tensor) -> float:
    return float(s.std() / np.sqrt(max(s.numel(), 1))) if s.numel() > 1 else 0.0


# ---------------------------------------------------------------------------------------------------- runner
def _read_manifest(models_dir: Path) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """The manifest of ``spixel train benchmark`` and its model rows grouped by recipe."""
    path = models_dir / "manifest.json"
    if not path.is_file():
        raise SpixelError(
            f"{models_dir}: no manifest.json; train the benchmark models first (spixel train benchmark --out DIR)"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise SpixelError(f"{path}: not valid JSON ({e.msg}); retrain with spixel train benchmark") from None
    by: dict[str, list[dict[str, Any]]] = {}
    for row in manifest.get("models", []):
        by.setdefault(row.get("recipe", "?"), []).append(row)
    need = {"one": 1, "halves": 2, "folds": 2}
    missing = [r for r, k in need.items() if len(by.get(r, [])) < k]
    if missing:
        raise SpixelError(f"{path}: no {', '.join(missing)} models; run spixel train benchmark --out {models_dir}")
    return manifest, by


def _arch(model: ModelAdapter) -> str | None:
    """The architecture a :mod:`spixel.train` net records in its config (``"resnet"``, ``"vgg"``), if any."""
    cfg = getattr(model.module, "config", None)
    return cfg.get("arch") if isinstance(cfg, dict) else None


def run_stability(
    models_dir: str | Path,
    *,
    n_test: int = 256,
    n_mege: int = 256,
    seed: int = 0,
    methods: Sequence[str] = tuple(METHODS),
    quick: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Run every protocol of this module on the models of ``spixel train benchmark`` in ``models_dir``.

    SSIM and localisation use the first ``n_test`` held-out images; MeGe uses ``n_mege`` training images (each in
    exactly one fold, so one fold model never saw it). Returns a JSON-friendly dict of settings and rows."""
    from ..data import SyntheticDataset
    from ..models.zoo import load_model
    from ..train.recipes import fold_assignment

    root = Path(models_dir)
    manifest, by = _read_manifest(root)
    say = (lambda msg: print(f"[bench stability] {msg}", file=sys.stderr, flush=True)) if progress else None
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise BadParameterError(f"unknown stability method(s) {unknown}; choose from {', '.join(METHODS)}")
    overrides = QUICK if quick else {}
    t0 = time.perf_counter()
    te, tr = manifest["data"]["test"], manifest["data"]["train"]
    test = SyntheticDataset(min(n_test, te["n"]), te["size"], te["seed"], distractors=te.get("distractors", 2))
    images, labels, masks = test.arrays()
    single = load_model(root / by["one"][0]["path"])
    halves = [load_model(root / r["path"]) for r in by["halves"][:2]]
    fold_rows = sorted(by["folds"], key=lambda r: r.get("fold", 0))
    folds_models = [load_model(root / r["path"]) for r in fold_rows]
    x = single.preprocess(list(images))
    y = torch.as_tensor(labels)
    parts = make_partitions(single, x, seed)
    if say:
        say(f"{len(images)} test images; segments per partition: {parts.counts}")
    result: dict[str, Any] = {
        "settings": {"models_dir": str(root), "n_test": len(images), "n_mege": n_mege, "seed": seed}
        | {"methods": {m: [METHODS[m][0], {**METHODS[m][1], **overrides.get(m, {})}] for m in methods}}
        | {"quick": quick, "partitions": parts.params, "segments": parts.counts}
        | {"accuracy": {r["name"]: r["accuracy"] for r in manifest["models"]}, "ssim_protocol": "B"}
        | {"archs": {k: _arch(m) for k, m in (("single", single), ("halves", halves[0]), ("folds", folds_models[0]))}},
        "evidence": evidence_rows(single, images, labels, masks, seed),
    }
    result["ssim"] = stability_rows(halves[0], halves[1], x, y, parts, methods, seed, say, overrides)
    # MeGe: training images with their fold; the same partitions recomputed on them
    k = len(folds_models)
    result["settings"]["k_folds"] = k
    train = SyntheticDataset(tr["n"], tr["size"], tr["seed"], distractors=tr.get("distractors", 2))
    fold = fold_assignment(tr["n"], k)
    pick = np.sort(np.random.default_rng(seed).choice(tr["n"], size=min(n_mege, tr["n"]), replace=False))
    m_images, m_labels, _ = train.arrays(pick)
    mx = single.preprocess(list(m_images))
    m_parts = make_partitions(single, mx, seed)
    result["mege"] = mege_rows(
        folds_models, fold[pick], mx, torch.as_tensor(m_labels), m_parts, methods, seed, say, overrides
    )
    result["localization"] = localization_rows(
        single, x, y, torch.as_tensor(masks), [[b] for b in test.boxes()], parts, seed, progress=say
    )
    result["seconds"] = time.perf_counter() - t0
    return result

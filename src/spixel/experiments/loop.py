"""The one experiment loop: a batch of dataset items → explain → (segment) → score → store records.

Every engine (local, Ray) and every command (``run``, ``evaluate``) runs :class:`BatchStep`; nothing else
re-implements explain-then-score. Its guarantees:

* **batch independence**: an item's rows depend only on the item, the experiment and the seed. Deterministic
  methods, segmenters and metrics run batched; anything stochastic runs one item at a time with a seed drawn
  from ``(experiment seed, item id)`` (:func:`item_seed`), so batch size, order and batch-mates never change it;
* **bad items never stop a run**: an unreadable image, an out-of-range label, a method or metric that fails on
  one image, a NaN map — the item is recorded as failed with a one-line reason and the rest of the batch goes on
  (a batch that fails is retried item by item to find the culprit);
* metrics whose annotation an item lacks (boxes, masks) are recorded as not applicable (``'na'``).
"""

from __future__ import annotations

import functools
import hashlib
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..data.items import Box, Item, choose_target
from ..errors import BadParameterError, SpixelError
from ..models.adapter import ModelAdapter
from ..types import Explanation, Segmentation
from .config import Experiment, MethodSpec, MetricSpec
from .store import ItemRecord

#: Metric parameters that carry ground truth: filled from the dataset, one per item.
GROUND_TRUTH = ("boxes", "masks", "mask")


def item_seed(seed: int, item_id: str) -> int:
    """A 31-bit seed for one item: a hash of the experiment seed and the item id (the same on every machine)."""
    return int.from_bytes(hashlib.sha256(f"{int(seed)}/{item_id}".encode()).digest()[:4], "little") >> 1


def one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text if isinstance(e, SpixelError) else f"{type(e).__name__}: {text}" if text else type(e).__name__


# ------------------------------------------------------------------------------------------- preparation
@dataclass
class Prepared:
    """An item cropped and annotated in the model's input pixels (what DataLoader workers hand the loop)."""

    item_id: str
    crop: np.ndarray | None  # uint8 (S, S, 3)
    labels: tuple[int, ...] = ()
    boxes: list[Box] = field(default_factory=list)
    box_labels: tuple[int | None, ...] = ()
    mask: np.ndarray | None = None  # bool (S, S)
    file_hash: str | None = None
    error: str | None = None

    def boxes_for(self, target: int) -> list[Box]:
        own = [b for b, k in zip(self.boxes, self.box_labels, strict=False) if k == target]
        return own or list(self.boxes)


def geometry_of(model: ModelAdapter) -> ModelAdapter:
    """A module-free copy of ``model``'s preprocessing (resize, crop, normalisation) that pickles cheaply into
    DataLoader workers."""
    return ModelAdapter(
        nn.Identity(),
        mean=model.mean,
        std=model.std,
        input_size=model.input_size,
        resize=model.resize,
        interpolation=model.interpolation,
        name=model.name,
    )


def prepare(item: Item, geometry: ModelAdapter) -> Prepared:
    """Crop an item like the model's preprocessing and map its boxes and mask into the crop (boxes falling
    outside the crop are dropped). Never raises: a failure becomes ``Prepared.error``."""
    if not item.ok or item.image is None:
        return Prepared(item.item_id, None, file_hash=item.file_hash, error=item.error or "no image")
    try:
        crop = geometry.crop(item.image)
        keep = [
            (b, k)
            for b, k in zip(
                geometry.map_boxes(item.boxes, item.image.shape),
                item.box_labels or (None,) * len(item.boxes),
                strict=True,
            )
            if b[2] > b[0] and b[3] > b[1]
        ]
        mask = None
        if item.mask is not None:
            m = np.repeat((np.asarray(item.mask, dtype=bool).astype(np.uint8) * 255)[..., None], 3, axis=-1)
            mask = geometry.crop(m)[..., 0] >= 128
        return Prepared(
            item.item_id,
            crop,
            labels=tuple(item.labels),
            boxes=[b for b, _ in keep],
            box_labels=tuple(k for _, k in keep),
            mask=mask,
            file_hash=item.file_hash,
        )
    except Exception as e:  # a damaged item must not stop the worker
        return Prepared(item.item_id, None, file_hash=item.file_hash, error=one_line(e))


class PreparedDataset(torch.utils.data.Dataset):
    """``dataset[indices[k]]`` prepared for ``geometry`` (runs in DataLoader workers)."""

    def __init__(self, dataset: Any, geometry: ModelAdapter, indices: Sequence[int]) -> None:
        self.dataset = dataset
        self.geometry = geometry
        self.indices = list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> Prepared:
        i = self.indices[k]
        try:
            item = self.dataset[i]
        except Exception as e:  # a dataset that raises for a bad item: still one failed item
            ids = self.dataset.ids() if hasattr(self.dataset, "ids") else None
            return Prepared(ids[i] if ids else str(i), None, error=one_line(e))
        return prepare(item, self.geometry)


def collate(batch: list[Prepared]) -> list[Prepared]:
    return batch


# ------------------------------------------------------------------------------------------- the map cache
class MapCache:
    """Explanations kept on disk (float16, compressed ``.npz``, with their regions), so a metric added later
    re-uses the maps instead of re-explaining: ``DIR/<model>/<method-hash>/<item id>.npz``."""

    def __init__(self, root: str | Path, exp: Experiment) -> None:
        self.root = Path(root)
        self.exp = exp

    def _path(self, m: MethodSpec, item_id: str, target: int) -> Path:
        import json

        key = json.dumps(
            {"m": m.name, "p": m.params, "r": m.regions, "c": m.channels, "s": self.exp.seed, "w": self.exp.weights},
            sort_keys=True,
            default=str,
        )
        h = hashlib.sha256(key.encode()).hexdigest()[:12]
        safe_model = "".join(c if c.isalnum() or c in "._-" else "_" for c in self.exp.model)
        return self.root / safe_model / f"{m.key}-{h}" / f"{item_id}.t{int(target)}.npz"

    def get(self, m: MethodSpec, item_id: str, target: int) -> Explanation | None:
        p = self._path(m, item_id, target)
        if not p.is_file():
            return None
        try:
            with np.load(p, allow_pickle=False) as z:
                attr = torch.from_numpy(z["attribution"].astype(np.float32))[None]
                seg = Segmentation(torch.from_numpy(z["labels"].astype(np.int64))[None]) if "labels" in z else None
        except Exception:  # a damaged cache file: explain again
            return None
        return Explanation(attribution=attr, segmentation=seg, meta={"method": m.name, "cached": True})

    def put(self, m: MethodSpec, item_id: str, target: int, e: Explanation) -> None:
        p = self._path(m, item_id, target)
        p.parent.mkdir(parents=True, exist_ok=True)
        arrays = {"attribution": e.attribution[0].detach().cpu().numpy().astype(np.float16)}
        if e.segmentation is not None:
            arrays["labels"] = e.segmentation.labels[0].cpu().numpy().astype(np.int32)
        tmp = p.with_name(p.name + ".tmp.npz")
        np.savez_compressed(tmp, **arrays)
        tmp.replace(p)  # atomic: a killed run never leaves half a file under the real name


# ------------------------------------------------------------------------------------------- the batch step
def _cat(parts: Sequence[Explanation]) -> Explanation:
    """Per-item explanations (batches of one) → one batch (regions kept where every part has them)."""
    if len(parts) == 1:
        return parts[0]
    attr = torch.cat([p.attribution for p in parts])
    seg = None
    if all(p.segmentation is not None for p in parts):
        seg = Segmentation(torch.cat([p.segmentation.labels.to(attr.device) for p in parts]))
    raw = None
    if all(p.raw is not None for p in parts) and len({tuple(p.raw.shape[1:]) for p in parts}) == 1:
        raw = torch.cat([p.raw for p in parts])
    return Explanation(attribution=attr, raw=raw, segmentation=seg, meta={"method": parts[0].meta.get("method")})


class BatchStep:
    """The batch step of an experiment on one model: ``step(prepared_items) -> [ItemRecord]``.

    ``model``: the loaded :class:`ModelAdapter` (on its device). ``cache``: an optional :class:`MapCache`.
    ``warn``: where warnings from methods and metrics go (each distinct text once).
    """

    def __init__(
        self,
        model: ModelAdapter,
        exp: Experiment,
        *,
        cache: MapCache | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        from .. import attribution, metrics, segmentation  # noqa: F401  (registration)
        from ..params import parse_segmenter_spec
        from ..regions import uses_regions
        from ..registry import METHODS, METRICS, SEGMENTERS

        self.model = model
        self.exp = exp
        self.cache = cache
        self._warn = warn
        self._warned: set[str] = set()
        self.device = model.device
        self.regions: dict[str, tuple[str, dict[str, Any]]] = {}
        self.per_item_method: dict[str, bool] = {}
        for m in exp.methods:
            stochastic = bool(METHODS.get(m.name).info.get("stochastic"))
            if m.regions is not None:
                name, params = parse_segmenter_spec(m.regions, f"{exp.name}: {m.name} regions")
                self.regions[m.regions] = (name, params)
                seeded = "seed" in SEGMENTERS.get(name).info.get("params", {}) and "seed" not in params
                stochastic = stochastic or seeded
            self.per_item_method[m.key] = stochastic
        self.uses_regions = {m.key: uses_regions(m.name) for m in exp.methods}
        self.metric_entries = {mt.name: METRICS.get(mt.name) for mt in exp.metrics}
        #: the x-axis of each metric's curve (``meta["x"]``), as first seen: the store keeps it once per run
        self.axes: dict[str, list[float]] = {}

    # ---------------------------------------------------------------- helpers
    def warn(self, text: str) -> None:
        if text not in self._warned:
            self._warned.add(text)
            if self._warn is not None:
                self._warn(text)

    def _segment(self, spec: str, x: Tensor, seeds: Sequence[int] | None) -> Segmentation:
        from ..registry import SEGMENTERS
        from ..segmentation import resolve_regions

        name, params = self.regions[spec]
        rgb = self.model.to_rgb01(x)
        if seeds is None:
            seg = resolve_regions(name, rgb, params, model=self.model)
        else:
            seeded = "seed" in SEGMENTERS.get(name).info.get("params", {}) and "seed" not in params
            parts = [
                resolve_regions(name, rgb[i : i + 1], {**params, "seed": s} if seeded else params, model=self.model)
                for i, s in enumerate(seeds)
            ]
            seg = Segmentation(torch.cat([p.labels for p in parts]))  # type: ignore[union-attr]
        assert seg is not None
        return seg

    def _explain(self, m: MethodSpec, x: Tensor, target: Tensor, seeds: Sequence[int] | None) -> Explanation:
        """Explain a batch (``seeds is None``) or each image with its own seed."""
        from ..api import explain
        from ..registry import METHODS

        quiet = "progress" in METHODS.get(m.name).info.get("params", {}) and "progress" not in m.params

        def run(xb: Tensor, tb: Tensor, seed: int | None) -> Explanation:
            kw: dict[str, Any] = dict(m.params)
            if quiet:  # the engine shows its own bar: a method's inner bar (LIME, RISE …) would interleave with it
                kw["progress"] = False
            if m.regions is not None:
                kw["regions"] = self._segment(m.regions, xb, None if seed is None else [seed])
                if not self.uses_regions[m.key]:
                    kw["channels"] = m.channels
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                e = explain(self.model, xb, m.name, tb, seed=self.exp.seed if seed is None else seed, **kw)
            for w in caught:
                self.warn(f"{m.key}: {' '.join(str(w.message).split())}")
            return e

        if seeds is None:
            return run(x, target, None)
        return _cat([run(x[i : i + 1], target[i : i + 1], s) for i, s in enumerate(seeds)])

    def _score(
        self,
        mt: MetricSpec,
        x: Tensor,
        e: Explanation,
        target: Tensor,
        gt: dict[str, Any],
        ref: Explanation | None,
        seeds: Sequence[int] | None,
    ) -> tuple[Tensor, Tensor | None]:
        from ..metrics import evaluate

        def run(sl: slice, seed: int | None) -> Any:
            kw: dict[str, Any] = dict(mt.params)
            if seed is not None and "seed" in self.metric_entries[mt.name].info.get("params", {}):
                kw["seed"] = seed
            if ref is not None:
                kw["reference"] = ref[sl]
            for k, v in gt.items():
                kw[k] = v[sl] if isinstance(v, (Tensor, list)) else v
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                r = evaluate(self.model, x[sl], e[sl], mt.name, target=target[sl], **kw)
            for w in caught:
                self.warn(f"{mt.name} on {e.meta.get('method')}: {' '.join(str(w.message).split())}")
            xs = r.meta.get("x")
            if mt.key not in self.axes and xs is not None and r.curves is not None and len(xs) == r.curves.shape[1]:
                self.axes[mt.key] = [float(v) for v in xs]
            return r

        if seeds is None:
            r = run(slice(None), None)
            return r.scores.detach().double().cpu(), None if r.curves is None else r.curves.detach().double().cpu()
        rs = [run(slice(i, i + 1), s) for i, s in enumerate(seeds)]
        curves = None
        if all(r.curves is not None for r in rs) and len({r.curves.shape[1:] for r in rs}) == 1:
            curves = torch.cat([r.curves.detach().double().cpu() for r in rs])
        return torch.cat([r.scores.detach().double().cpu() for r in rs]), curves

    def _ground_truth(
        self, mt: MetricSpec, items: Sequence[Prepared], targets: Sequence[int]
    ) -> tuple[list[bool], dict]:
        """Which items have the annotation ``mt`` needs, and the keyword arguments that carry it."""
        entry = self.metric_entries[mt.name]
        accepted = entry.info.get("params", {})
        if "mask" in accepted:  # occlusion_sensitivity: the object mask
            ok = [p.mask is not None for p in items]
            return ok, {"mask": [p.mask for p in items]}
        if "masks" in accepted and "boxes" in accepted:
            has_mask = [p.mask is not None for p in items]
            has_box = [bool(p.boxes_for(t)) for p, t in zip(items, targets, strict=True)]
            if all(has_mask) and items:
                return has_mask, {"masks": [p.mask for p in items]}
            ok = [m or b for m, b in zip(has_mask, has_box, strict=True)]
            boxes = []
            for p, t in zip(items, targets, strict=True):
                if p.boxes_for(t):
                    boxes.append(p.boxes_for(t))
                elif p.mask is not None:  # a mask but no box: its bounding box
                    ys, xs = np.nonzero(p.mask)
                    boxes.append(
                        [(int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)] if len(xs) else []
                    )
                else:
                    boxes.append([])
            return ok, {"boxes": boxes}
        return [True] * len(items), {}

    @staticmethod
    def _gt_for(gt: dict[str, Any], idx: Sequence[int], device: torch.device) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in gt.items():
            sub = [v[i] for i in idx]
            out[k] = torch.from_numpy(np.stack(sub)).to(device) if k in ("masks", "mask") else sub
        return out

    # ---------------------------------------------------------------- the step
    def __call__(self, batch: Sequence[Prepared]) -> list[ItemRecord]:
        from ..models.state import frozen

        t_start = time.perf_counter()
        records: dict[str, ItemRecord] = {}
        good: list[Prepared] = []
        for p in batch:
            if p.error is not None or p.crop is None:
                records[p.item_id] = ItemRecord(p.item_id, "failed", file_hash=p.file_hash, error=p.error)
            else:
                good.append(p)
        if not good:
            return [records[p.item_id] for p in batch]

        crops = torch.from_numpy(np.stack([p.crop for p in good])).permute(0, 3, 1, 2).float().div_(255.0)
        x = self.model.normalize(crops.to(self.device))
        with torch.no_grad(), frozen(self.model.module):
            probs = torch.cat([self.model.module(c).float().softmax(-1) for c in x.split(64)]).cpu()
        n_classes = probs.shape[1]
        predicted = probs.argmax(1).tolist()
        alive: list[int] = []
        targets: list[int] = []
        rule = self.exp.target
        for i, p in enumerate(good):
            bad = [k for k in p.labels if not 0 <= k < n_classes] if rule == "label" else []
            if bad:
                records[p.item_id] = ItemRecord(
                    p.item_id,
                    "failed",
                    file_hash=p.file_hash,
                    error=f"label {bad[0]} is not a class of {self.model.name} ({n_classes} outputs)",
                )
                targets.append(-1)
                continue
            if rule == "label":
                t = choose_target(p.labels, predicted[i])
            else:
                t = int(predicted[i]) if rule == "predicted" else int(rule)
            targets.append(t)
            alive.append(i)
        errors: dict[int, str] = {}

        # explain: each method on the items still alive (batched, per item where stochastic or after a failure)
        maps: dict[str, dict[int, Explanation]] = {m.key: {} for m in self.exp.methods}
        seconds: dict[int, float] = dict.fromkeys(alive, 0.0)
        for m in self.exp.methods:
            idx = [i for i in alive if i not in errors]
            todo = []
            for i in idx:
                hit = self.cache.get(m, good[i].item_id, targets[i]) if self.cache is not None else None
                if hit is not None:
                    maps[m.key][i] = hit.to(self.device)
                else:
                    todo.append(i)
            if not todo:
                continue
            t0 = time.perf_counter()
            got = self._run_isolated(
                todo,
                lambda ii, m=m: self._explain(
                    m,
                    x[ii],
                    torch.tensor([targets[i] for i in ii]),
                    [item_seed(self.exp.seed, good[i].item_id) for i in ii] if self.per_item_method[m.key] else None,
                ),
                errors,
                f"{m.key}",
            )
            dt = (time.perf_counter() - t0) / max(len(todo), 1)
            for i, e in got.items():
                if not bool(e.attribution.isfinite().all()):
                    errors[i] = f"{m.key}: the map contains NaN or infinite values"
                    continue
                maps[m.key][i] = e
                seconds[i] += dt
                if self.cache is not None:
                    self.cache.put(m, good[i].item_id, targets[i], e)

        # score: every metric × method on the items still alive; 'na' where an item lacks the annotation
        rows: dict[int, list[tuple]] = {i: [] for i in alive}
        for mt in self.exp.metrics:
            idx = [i for i in alive if i not in errors]
            ok, gt = self._ground_truth(mt, [good[i] for i in idx], [targets[i] for i in idx])
            applicable = [i for i, o in zip(idx, ok, strict=True) if o]
            gt_of = {i: j for j, i in enumerate(idx)}
            for i, o in zip(idx, ok, strict=True):
                if not o:
                    for m in self.exp.methods:
                        rows[i].append((m.key, m.regions_key, mt.key, None, "na", None, None))
            if not applicable:
                continue
            info = self.metric_entries[mt.name].info
            # stochastic metrics get an item seed; metrics that optimise over their batch (MaxBoxAccV2's threshold)
            # see one item at a time, so an item's value never depends on its batch-mates
            stochastic = "seed" in info.get("params", {}) or bool(info.get("batch_dependent"))
            ref_key = mt.params.get("reference")
            for m in self.exp.methods:
                if m.key == ref_key:
                    continue  # a map is not scored against itself
                live = [i for i in applicable if i not in errors]
                if not live:
                    break

                score = functools.partial(
                    self._score_subset,
                    mt=mt,
                    m=m,
                    ref_key=ref_key,
                    gt=gt,
                    gt_of=gt_of,
                    stochastic=stochastic,
                    x=x,
                    good=good,
                    targets=targets,
                    maps=maps,
                )
                t0 = time.perf_counter()
                got = self._run_isolated(live, score, errors, f"{mt.key} on {m.key}", split=True)
                dt = (time.perf_counter() - t0) / max(len(live), 1)
                for i, (val, curve) in got.items():
                    v = float(val)
                    if v != v:
                        rows[i].append((m.key, m.regions_key, mt.key, None, "ok", None, dt))
                    else:
                        rows[i].append((m.key, m.regions_key, mt.key, v, "ok", curve, dt))
                    seconds[i] += dt

        share = (time.perf_counter() - t_start) / len(good)
        for i in alive:
            p = good[i]
            rec = ItemRecord(
                p.item_id,
                "failed" if i in errors else "done",
                file_hash=p.file_hash,
                labels=p.labels,
                target=targets[i],
                predicted=int(predicted[i]),
                probability=float(probs[i, targets[i]]),
                error=errors.get(i),
                seconds=share,
                results=[] if i in errors else rows[i],
            )
            records[p.item_id] = rec
        return [records[p.item_id] for p in batch]

    def _score_subset(
        self,
        ii: list[int],
        *,
        mt: MetricSpec,
        m: MethodSpec,
        ref_key: str | None,
        gt: dict[str, Any],
        gt_of: dict[int, int],
        stochastic: bool,
        x: Tensor,
        good: Sequence[Prepared],
        targets: Sequence[int],
        maps: dict[str, dict[int, Explanation]],
    ) -> tuple[Tensor, Tensor | None]:
        """Score method ``m``'s maps of the batch items ``ii`` with ``mt`` (ground truth and reference attached)."""
        return self._score(
            mt,
            x[ii],
            _cat([maps[m.key][i] for i in ii]),
            torch.tensor([targets[i] for i in ii]),
            self._gt_for(gt, [gt_of[i] for i in ii], self.device),
            _cat([maps[ref_key][i] for i in ii]) if ref_key is not None else None,
            [item_seed(self.exp.seed, good[i].item_id) for i in ii] if stochastic else None,
        )

    def _run_isolated(
        self, idx: list[int], fn: Callable[[list[int]], Any], errors: dict[int, str], what: str, split: bool = False
    ) -> dict[int, Any]:
        """``fn(idx)`` on the batch; if it raises, once per item so only the items that fail are lost.
        Returns ``{i: result for item i}`` (an Explanation slice, or ``(score, curve)`` with ``split``)."""

        def unpack(res: Any, ii: list[int]) -> dict[int, Any]:
            if split:
                scores, curves = res
                return {i: (scores[j], None if curves is None else curves[j].tolist()) for j, i in enumerate(ii)}
            return {i: res[j] for j, i in enumerate(ii)}

        try:
            return unpack(fn(idx), idx)
        except Exception as e:
            if len(idx) == 1:
                errors[idx[0]] = f"{what}: {one_line(e)}"
                return {}
        out: dict[int, Any] = {}
        for i in idx:
            try:
                out.update(unpack(fn([i]), [i]))
            except Exception as e:
                errors[i] = f"{what}: {one_line(e)}"
        return out


# ------------------------------------------------------------------------------------------- plain batch helpers
# (``spixel explain`` and ``spixel demo`` write per-image files, not a store: they explain with these)
def run_methods(
    model: Any,
    x: Any,
    entries: Sequence[Any],
    per: dict[str, dict[str, Any]],
    target: Any,
    seed: int,
    regions: Any = None,
    channels: dict[str, str] | None = None,
) -> dict[str, tuple[Any, float]]:
    """Every method on the batch ``x``: ``{name: (Explanation, wall seconds for the batch)}``. ``regions`` (a
    ``Segmentation`` of the batch) goes to every method; ``channels`` to the methods named in it (the grouped
    ones, see :func:`spixel.cli.explain.region_roles`)."""
    from ..api import explain

    out = {}
    for e in entries:
        kw: dict[str, Any] = {}
        if regions is not None:
            kw["regions"] = regions
            if channels and e.name in channels:
                kw["channels"] = channels[e.name]
        t0 = time.perf_counter()
        try:
            ex = explain(model, x, e.name, target, seed=seed, **kw, **per[e.name])
        except SpixelError as err:
            raise BadParameterError(f"{e.name}: {one_line(err)}") from None
        out[e.name] = (ex, time.perf_counter() - t0)
    return out


def batch_classes(model: Any, x: Any, results: dict[str, tuple[Any, float]], target: Any) -> dict[str, list]:
    """Predicted / explained class and probability per image: from the explanations' ``meta`` (every method
    saw the same forward pass), or from one extra forward when a method does not record them."""
    keys = ("predicted", "predicted_probability", "target", "probability")
    meta = next(iter(results.values()))[0].meta
    if all(isinstance(meta.get(k), list) and len(meta[k]) == x.shape[0] for k in keys):
        return {k: meta[k] for k in keys}
    from ..types import resolve_targets

    probs = model.predict(x).cpu()
    pred = probs.argmax(1)
    t = resolve_targets(target, x.shape[0], probs.shape[1], predicted=pred)
    return {
        "predicted": pred.tolist(),
        "predicted_probability": probs.max(1).values.tolist(),
        "target": t.tolist(),
        "probability": probs.gather(1, t.view(-1, 1)).view(-1).tolist(),
    }


def segment_batch(model: Any, x: Any, regions: tuple[str, dict[str, Any]] | None) -> tuple[Any, dict[str, Any]]:
    """``--regions``: the batch's :class:`~spixel.types.Segmentation` (once for all methods; segmenters see
    ``model.to_rgb01(x)``) and what ``explanation.json`` records of it (segmenter, parameters with their defaults,
    seconds for the batch); ``(None, {})`` without regions."""
    if regions is None:
        return None, {}
    from ..segmentation import resolve_regions

    name, params = regions
    t0 = time.perf_counter()
    try:  # a segmenter that clusters the model's activations (nas) gets --model
        seg = resolve_regions(name, model.to_rgb01(x), params, model=model)
        assert seg is not None
    except SpixelError as err:
        raise BadParameterError(f"--regions {name}: {one_line(err)}") from None
    return seg, {"segmenter": name, "params": seg.meta.get("params", params), "seconds": time.perf_counter() - t0}

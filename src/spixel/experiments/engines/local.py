"""The local engine: stream a dataset through :class:`~spixel.experiments.loop.BatchStep` into the store, in
this process, with ``DataLoader`` workers decoding and cropping ahead of the model.

Resume is by construction: the items already recorded in the run are left out before the loader starts, and
each batch is one store transaction, so a run killed at any moment continues where its last commit ended.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ...errors import BadParameterError
from ...models.adapter import ModelAdapter
from ..config import Experiment
from ..loop import BatchStep, MapCache, PreparedDataset, collate, geometry_of
from ..store import Store


@dataclass(frozen=True)
class RunResult:
    """What a run did: ``total`` items selected (after ``limit``), ``done`` / ``failed`` among them in the store
    now, ``skipped`` (already recorded when this call started), ``computed`` (this call), ``rows`` written."""

    store: Path
    run_id: int
    resumed: bool
    total: int
    done: int
    failed: int
    skipped: int
    computed: int
    rows: int
    seconds: float
    interrupted: bool = False

    @property
    def complete(self) -> bool:
        return self.done + self.failed >= self.total and not self.interrupted


def resolve_model(exp: Experiment, model: ModelAdapter | None, device: str | None) -> ModelAdapter:
    """``model`` when given (moved to ``device``), else ``load_model(exp.model, weights=exp.weights)``."""
    from ...models import load_model

    if model is not None:
        return model.to(device) if device is not None else model
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return load_model(exp.model, weights=exp.weights, device=device)


def run_local(
    exp: Experiment,
    data: Any,
    store: str | os.PathLike[str],
    *,
    model: ModelAdapter | None = None,
    device: str | None = None,
    batch_size: int = 8,
    workers: int = 0,
    limit: int | None = None,
    cache_maps: str | os.PathLike[str] | None = None,
    retry_failed: bool = False,
    shuffle_seed: int | None = None,
    progress: bool | None = None,
    on_warning: Callable[[str], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> RunResult:
    """Run ``exp`` over ``data`` (a dataset spec such as ``"folder:DIR"`` / ``"synthetic:100"``, or a dataset
    object) into the SQLite ``store``; re-running the same experiment on the same data resumes.

    ``limit``: only the first ``limit`` items (in id order). ``workers``: DataLoader processes (0: decode in this
    process). ``cache_maps``: a folder where explanations are kept and re-used. ``retry_failed``: compute items
    recorded as failed again. ``shuffle_seed``: visit the items in a shuffled order (the rows are the same — a
    check of batch independence). ``progress``: the bar (``None``: on a terminal). ``on_batch(n)`` is called
    after each committed batch with the number of items it held.
    """
    from ...data import open_dataset
    from ...progress import progress as bar_of
    from ...progress import write

    if batch_size < 1:
        raise BadParameterError(f"batch_size must be >= 1, got {batch_size}")
    if workers < 0:
        raise BadParameterError(f"workers must be >= 0, got {workers}")
    if limit is not None and limit < 1:
        raise BadParameterError(f"limit must be >= 1, got {limit}")
    t0 = time.perf_counter()
    adapter = resolve_model(exp, model, device)
    dataset = (
        open_dataset(data, labels=adapter.labels, num_classes=adapter.num_classes) if isinstance(data, str) else data
    )
    spec = getattr(dataset, "spec", None) or str(data)
    if isinstance(exp.target, int) and adapter.num_classes is not None and exp.target >= adapter.num_classes:
        raise BadParameterError(
            f"target {exp.target} is out of range: {adapter.name} has {adapter.num_classes} classes"
        )
    ids = list(dataset.ids())
    order = list(range(len(ids)))
    if limit is not None:
        order = order[:limit]
    step = BatchStep(adapter, exp, cache=MapCache(cache_maps, exp) if cache_maps else None, warn=on_warning or write)
    with Store(store, writer=True) as st:
        run_id, resumed = st.open_run(
            name=exp.name,
            config_hash=exp.hash,
            config=exp.to_dict(),
            model=exp.model,
            dataset=spec,
            fingerprint=dataset.fingerprint() if hasattr(dataset, "fingerprint") else None,
            engine="local",
            workers=workers,
        )
        recorded = st.completed(run_id, include_failed=not retry_failed)
        todo = [i for i in order if ids[i] not in recorded]
        skipped = len(order) - len(todo)
        if shuffle_seed is not None:
            g = torch.Generator().manual_seed(shuffle_seed)
            todo = [todo[j] for j in torch.randperm(len(todo), generator=g).tolist()]
        loader = torch.utils.data.DataLoader(
            PreparedDataset(dataset, geometry_of(adapter), todo),
            batch_size=batch_size,
            shuffle=False,
            num_workers=workers,
            collate_fn=collate,
            persistent_workers=False,
        )
        bar = bar_of(len(order), f"spixel run {exp.name}", enabled=progress)
        bar.update(skipped)
        computed = rows = 0
        interrupted = False
        try:
            for batch in loader:
                records = step(batch)
                rows += st.write(run_id, records)
                st.set_axes(run_id, step.axes)
                computed += len(records)
                bar.update(len(records))
                if on_batch is not None:
                    on_batch(len(records))
        except KeyboardInterrupt:
            interrupted = True  # the batch in flight was never written: the store holds whole batches only
        finally:
            bar.close()
        selected = {ids[i] for i in order}
        statuses = dict(st.db.execute("SELECT item_id, status FROM items WHERE run_id = ?", (run_id,)).fetchall())
        done = sum(1 for k in selected if statuses.get(k) == "done")
        failed = sum(1 for k in selected if statuses.get(k) == "failed")
        complete = all(statuses.get(k) in ("done", "failed") for k in ids)
        st.finish_run(run_id, "interrupted" if interrupted else ("finished" if complete else "partial"))
    return RunResult(
        store=Path(store),
        run_id=run_id,
        resumed=resumed,
        total=len(order),
        done=done,
        failed=failed,
        skipped=skipped,
        computed=computed,
        rows=rows,
        seconds=time.perf_counter() - t0,
        interrupted=interrupted,
    )

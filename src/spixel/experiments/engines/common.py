"""What every engine shares around :class:`~spixel.experiments.loop.BatchStep`: checking the arguments, opening
the dataset and the run, selecting the items still to do (resume), the writing loop (one store transaction per
batch, the progress bar, Ctrl-C) and finishing the run with its counts.

An engine only decides *where* the batches are computed: :func:`run_engine` hands it the :class:`Plan` (the
items still to do, in order) and takes back an iterable of :class:`BatchOut` — the local engine computes them in
this process, the Ray engine on actors — which it writes as they come, this process being the store's only
writer.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ...errors import BadParameterError
from ...models.adapter import ModelAdapter
from ..config import Experiment
from ..store import ItemRecord, Store


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


@dataclass
class BatchOut:
    """One computed batch as the writer takes it: its records, the metric axes seen so far, and warnings."""

    records: list[ItemRecord]
    axes: dict[str, list[float]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@dataclass
class Plan:
    """The dataset, its ids, the selected positions (``order``, after ``limit``) and those still to do."""

    dataset: Any
    spec: str
    ids: list[str]
    order: list[int]
    todo: list[int]
    run_id: int
    resumed: bool

    @property
    def skipped(self) -> int:
        return len(self.order) - len(self.todo)


def check_args(batch_size: int, workers: int, limit: int | None) -> None:
    if batch_size < 1:
        raise BadParameterError(f"batch_size must be >= 1, got {batch_size}")
    if workers < 0:
        raise BadParameterError(f"workers must be >= 0, got {workers}")
    if limit is not None and limit < 1:
        raise BadParameterError(f"limit must be >= 1, got {limit}")


def resolve_model(exp: Experiment, model: ModelAdapter | None, device: str | None) -> ModelAdapter:
    """``model`` when given (moved to ``device``), else ``load_model(exp.model, weights=exp.weights)``."""
    from ...models import load_model

    if model is not None:
        return model.to(device) if device is not None else model
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return load_model(exp.model, weights=exp.weights, device=device)


def open_data(exp: Experiment, data: Any, adapter: ModelAdapter) -> tuple[Any, str]:
    """The dataset (``data`` opened when it is a spec) and its spec; checks a fixed target against the model."""
    from ...data import open_dataset

    dataset = (
        open_dataset(data, labels=adapter.labels, num_classes=adapter.num_classes) if isinstance(data, str) else data
    )
    spec = getattr(dataset, "spec", None) or str(data)
    if isinstance(exp.target, int) and adapter.num_classes is not None and exp.target >= adapter.num_classes:
        raise BadParameterError(
            f"target {exp.target} is out of range: {adapter.name} has {adapter.num_classes} classes"
        )
    return dataset, spec


def open_plan(
    st: Store,
    exp: Experiment,
    dataset: Any,
    spec: str,
    *,
    engine: str,
    workers: int,
    limit: int | None,
    retry_failed: bool,
    shuffle_seed: int | None,
) -> Plan:
    """Open (or resume) the run of ``exp`` on ``dataset`` and select the items still to do: the first ``limit``
    items in id order, less those recorded (done, and failed unless ``retry_failed``), shuffled when asked."""
    ids = list(dataset.ids())
    order = list(range(len(ids)))
    if limit is not None:
        order = order[:limit]
    run_id, resumed = st.open_run(
        name=exp.name,
        config_hash=exp.hash,
        config=exp.to_dict(),
        model=exp.model,
        dataset=spec,
        fingerprint=dataset.fingerprint() if hasattr(dataset, "fingerprint") else None,
        engine=engine,
        workers=workers,
    )
    recorded = st.completed(run_id, include_failed=not retry_failed)
    todo = [i for i in order if ids[i] not in recorded]
    if shuffle_seed is not None:
        g = torch.Generator().manual_seed(shuffle_seed)
        todo = [todo[j] for j in torch.randperm(len(todo), generator=g).tolist()]
    return Plan(dataset, spec, ids, order, todo, run_id, resumed)


def write_batches(
    st: Store,
    plan: Plan,
    batches: Iterable[BatchOut],
    *,
    desc: str,
    progress: bool | None,
    on_warning: Callable[[str], None] | None,
    on_batch: Callable[[int], None] | None,
) -> tuple[int, int, bool]:
    """Write each batch as it comes (one transaction each) under the progress bar; ``(computed, rows,
    interrupted)``. An item already written by this call (a batch an engine retried) is not written or counted
    twice. Ctrl-C stops the loop: the batch in flight is never written, and ``batches`` is closed (an engine's
    generator shuts its workers down in its ``finally``)."""
    from ...progress import progress as bar_of
    from ...progress import write

    warn = on_warning or write
    bar = bar_of(len(plan.order), desc, enabled=progress)
    bar.update(plan.skipped)
    computed = rows = 0
    interrupted = False
    seen: set[str] = set()
    warned: set[str] = set()
    it = iter(batches)
    try:
        for out in it:
            for w in out.warnings:
                if w not in warned:
                    warned.add(w)
                    warn(w)
            records = [r for r in out.records if r.item_id not in seen]
            if records:
                rows += st.write(plan.run_id, records)
                seen.update(r.item_id for r in records)
            st.set_axes(plan.run_id, out.axes)
            computed += len(records)
            bar.update(len(records))
            if on_batch is not None:
                on_batch(len(records))
    except KeyboardInterrupt:
        interrupted = True  # the batch in flight was never written: the store holds whole batches only
    finally:
        bar.close()
        close = getattr(it, "close", None)
        if close is not None:
            close()
    return computed, rows, interrupted


def finish(
    st: Store,
    plan: Plan,
    *,
    started: float,
    store: str | os.PathLike[str],
    computed: int,
    rows: int,
    interrupted: bool,
) -> RunResult:
    """Mark the run finished / partial / interrupted and count the selected items' states in the store."""
    selected = {plan.ids[i] for i in plan.order}
    statuses = dict(st.db.execute("SELECT item_id, status FROM items WHERE run_id = ?", (plan.run_id,)).fetchall())
    done = sum(1 for k in selected if statuses.get(k) == "done")
    failed = sum(1 for k in selected if statuses.get(k) == "failed")
    complete = all(statuses.get(k) in ("done", "failed") for k in plan.ids)
    st.finish_run(plan.run_id, "interrupted" if interrupted else ("finished" if complete else "partial"))
    return RunResult(
        store=Path(store),
        run_id=plan.run_id,
        resumed=plan.resumed,
        total=len(plan.order),
        done=done,
        failed=failed,
        skipped=plan.skipped,
        computed=computed,
        rows=rows,
        seconds=time.perf_counter() - started,
        interrupted=interrupted,
    )


def run_engine(
    exp: Experiment,
    dataset: Any,
    spec: str,
    store: str | os.PathLike[str],
    *,
    engine: str,
    workers: int,
    compute: Callable[[Plan], Iterable[BatchOut]],
    started: float,
    limit: int | None = None,
    retry_failed: bool = False,
    shuffle_seed: int | None = None,
    progress: bool | None = None,
    on_warning: Callable[[str], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> RunResult:
    """Open the run, let ``compute(plan)`` produce the batches of the items still to do, write them, finish."""
    with Store(store, writer=True) as st:
        plan = open_plan(
            st,
            exp,
            dataset,
            spec,
            engine=engine,
            workers=workers,
            limit=limit,
            retry_failed=retry_failed,
            shuffle_seed=shuffle_seed,
        )
        computed, rows, interrupted = write_batches(
            st,
            plan,
            compute(plan) if plan.todo else (),
            desc=f"spixel run {exp.name}",
            progress=progress,
            on_warning=on_warning,
            on_batch=on_batch,
        )
        return finish(st, plan, started=started, store=store, computed=computed, rows=rows, interrupted=interrupted)

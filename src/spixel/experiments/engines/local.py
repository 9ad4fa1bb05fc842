"""The local engine: stream a dataset through :class:`~spixel.experiments.loop.BatchStep` into the store, in
this process, with ``DataLoader`` workers decoding and cropping ahead of the model.

Resume is by construction: the items already recorded in the run are left out before the loader starts, and
each batch is one store transaction, so a run killed at any moment continues where its last commit ended.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch

from ...models.adapter import ModelAdapter
from ..config import Experiment
from ..loop import BatchStep, MapCache, PreparedDataset, collate, geometry_of
from .common import BatchOut, Plan, RunResult, check_args, open_data, resolve_model, run_engine

__all__ = ["RunResult", "resolve_model", "run_local"]


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
    from ...progress import write

    check_args(batch_size, workers, limit)
    t0 = time.perf_counter()
    adapter = resolve_model(exp, model, device)
    dataset, spec = open_data(exp, data, adapter)
    step = BatchStep(adapter, exp, cache=MapCache(cache_maps, exp) if cache_maps else None, warn=on_warning or write)

    def compute(plan: Plan) -> Iterator[BatchOut]:
        loader = torch.utils.data.DataLoader(
            PreparedDataset(plan.dataset, geometry_of(adapter), plan.todo),
            batch_size=batch_size,
            shuffle=False,
            num_workers=workers,
            collate_fn=collate,
            persistent_workers=False,
        )
        for batch in loader:
            yield BatchOut(step(batch), step.axes)

    return run_engine(
        exp,
        dataset,
        spec,
        store,
        engine="local",
        workers=workers,
        compute=compute,
        started=t0,
        limit=limit,
        retry_failed=retry_failed,
        shuffle_seed=shuffle_seed,
        progress=progress,
        on_warning=on_warning,
        on_batch=on_batch,
    )

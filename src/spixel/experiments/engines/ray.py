"""The Ray engine: the same run as :func:`~spixel.experiments.engines.local.run_local`, fanned out over the actors
of a `Ray <https://docs.ray.io>`_ cluster (``pip install "spixel[ray]"``).

How a run goes:

* the driver (this process) opens the dataset and the run and selects the items still to do exactly as the local
  engine does (:func:`~.common.open_plan`), then cuts them into batches of ``batch_size``;
* the batches become a Ray Data dataset, one row per batch, mapped by ``map_batches`` over a fixed pool of
  ``workers`` actors. Each actor loads the model once and runs :class:`~spixel.experiments.loop.BatchStep` — the
  one batch step every engine runs — on the items it reads **by path** (the dataset must sit on storage every
  node sees, at the same path; an actor that cannot see it stops the run with one line);
* the computed batches stream back as they finish, in any order; the driver stays the **only writer** of the
  SQLite store, one transaction per returned batch (:func:`~.common.write_batches`), so killing the driver is
  killing a local run: re-running resumes;
* an actor that dies mid-batch is restarted by Ray and its batch computed again; an item already written by
  this call is not written or counted twice (and the store's upserts make a second write harmless anyway);
* Ctrl-C closes the pipeline, which stops the actors; a local Ray instance this call started is shut down.

Results are the same rows as the local engine's: items are batch-independent and every stochastic draw is
seeded from (experiment seed, item id).
"""

from __future__ import annotations

import json
import logging
import math
import os
import pickle
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ...errors import BadParameterError, SpixelError
from ...models.adapter import ModelAdapter
from ..config import Experiment
from .common import BatchOut, Plan, RunResult, check_args, open_data, resolve_model, run_engine

__all__ = ["INSTALL_HINT", "RayEngineError", "RayUnavailableError", "run_ray"]

#: What ``--engine ray`` says when Ray is not installed.
INSTALL_HINT = 'the Ray engine needs Ray: pip install "spixel[ray]" (or pip install "ray[data]>=2.40")'


class RayUnavailableError(SpixelError):
    """Ray is not installed."""


class RayEngineError(SpixelError):
    """The cluster cannot be joined, is too small, or a worker cannot read the dataset."""


def import_ray() -> Any:
    """``ray`` (with Ray Data), or :class:`RayUnavailableError` saying how to install it."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise RayUnavailableError(INSTALL_HINT) from None
    return ray


# ------------------------------------------------------------------------------------------------- the actor
def probe_paths(dataset: Any, todo: list[int], n: int = 3) -> tuple[str | None, list[str]]:
    """What a worker must see to read ``dataset``: its root folder and up to ``n`` image files of the items to
    do that *this* machine can read (so a file missing everywhere stays a failed item, as in a local run)."""
    root = getattr(dataset, "root", None)
    entries = getattr(dataset, "entries", None)
    files: list[str] = []
    if entries is not None:
        for i in todo:
            path = getattr(entries[i], "image", None)
            if path and os.path.isfile(path):
                files.append(os.path.abspath(path))
                if len(files) >= n:
                    break
    return (os.path.abspath(root) if isinstance(root, str) else None), files


def _cannot_read(spec: str, root: str | None, files: list[str]) -> str | None:
    """The one line a worker answers when it cannot see the dataset, else ``None``."""
    if root is not None and not os.path.isdir(root):
        missing = f"the folder {root} does not exist"
    else:
        gone = [f for f in files if not os.path.isfile(f)]
        if not gone:
            return None
        missing = f"{gone[0]} does not exist" + (f" (nor {len(gone) - 1} more)" if len(gone) > 1 else "")
    return (
        f"a Ray worker on {socket.gethostname()} cannot read the dataset {spec}: {missing} there; the dataset must "
        "sit on storage every node sees, at the same path"
    )


class BatchWorker:
    """A Ray Data actor: loads the model once, then runs :class:`BatchStep` on each batch of item positions.

    Never raises while starting: a failure (the dataset unreadable here, the model not loadable) is kept and
    answered for every batch as a ``fatal`` row, which the driver turns into one line. (An actor whose
    constructor raises would be started again and again by Ray Data before the run fails with a long trace.)"""

    def __init__(
        self,
        shared: list[Any],
        spec: str,
        device: str | None,
        threads: int,
        cwd: str,
        root: str | None,
        files: list[str],
        cache_maps: str | None,
    ) -> None:
        self.fatal = ""
        self.where = f"{socket.gethostname()}:{os.getpid()}"
        try:
            import ray
            import torch

            from ..loop import BatchStep, MapCache, geometry_of

            # (experiment, dataset, model) sit once in the object store, referenced by the driver until the run
            # ends (wrapped in a list, so Ray passes the reference itself): a restarted actor gets them again
            exp, dataset, model = ray.get(shared[0])

            if os.path.isdir(cwd):
                os.chdir(cwd)  # relative checkpoint paths mean what they meant to the driver
            torch.set_num_threads(max(1, threads))
            reason = _cannot_read(spec, root, files)
            if reason is not None:
                self.fatal = reason
                return
            if device is None:
                device = "cuda" if torch.cuda.is_available() else "cpu"
            adapter = resolve_model(exp, model, device)
            self.dataset = dataset
            self.geometry = geometry_of(adapter)
            self.new_warnings: list[str] = []
            self.step = BatchStep(
                adapter,
                exp,
                cache=MapCache(cache_maps, exp) if cache_maps else None,
                warn=self.new_warnings.append,
            )
        except Exception as e:
            from ..loop import one_line

            self.fatal = f"a Ray worker on {socket.gethostname()} could not start: {one_line(e)}"

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from ..loop import PreparedDataset

        out: dict[str, list[Any]] = {k: [] for k in ("batch", "records", "axes", "warnings", "worker", "fatal")}
        for k, text in zip(batch["batch"].tolist(), batch["indices"].tolist(), strict=True):
            records: list[Any] = []
            if not self.fatal:
                indices = json.loads(text)
                prepared = PreparedDataset(self.dataset, self.geometry, indices)
                records = self.step([prepared[j] for j in range(len(indices))])
            out["batch"].append(int(k))
            out["records"].append(pickle.dumps(records, protocol=pickle.HIGHEST_PROTOCOL))
            out["axes"].append(json.dumps(self.step.axes if not self.fatal else {}))
            out["warnings"].append(json.dumps(self.new_warnings if not self.fatal else []))
            out["worker"].append(self.where)
            out["fatal"].append(self.fatal)
            if not self.fatal:
                self.new_warnings.clear()
        return {k: np.array(v, dtype=object) for k, v in out.items()}


# ------------------------------------------------------------------------------------------------- the driver
def _quiet_ray_data() -> None:
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False  # the run's own bar counts items, as the local engine's does
    ctx.enable_operator_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.execution_options.preserve_order = False  # write batches as they finish
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # "progress bars disabled", execution plans …


def _check_reachable(address: str) -> None:
    """A ``HOST:PORT`` where nothing listens fails here, at once (Ray itself retries for minutes)."""
    host, colon, port = address.rpartition(":")
    if address in ("auto", "local") or "://" in address or not colon or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
    except OSError as e:
        raise RayEngineError(
            f"cannot join the Ray cluster at {address}: nothing answers there ({e.strerror or e}); start one with "
            "'ray start --head' on that machine and give --address HEAD_IP:6379"
        ) from None


def connect(address: str | None, num_cpus: int | None = None) -> bool:
    """Join the cluster at ``address`` (``"auto"``: the one ``ray start`` runs on this machine), or start a
    local Ray instance (bound to this machine) when ``address`` is ``None``; ``True`` when this call started or
    joined Ray (and so should shut it down), ``False`` when Ray was already initialised in this process."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    if address is not None:
        _check_reachable(address)
    kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
    try:
        if address is None:
            ray.init(num_cpus=num_cpus, **kw)
        else:
            ray.init(address=address, **kw)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = "start a local Ray instance" if address is None else f"join the Ray cluster at {address}"
        hint = "" if address is None else " (start one with: ray start --head; then give --address HOST:6379)"
        raise RayEngineError(f"cannot {where}: {' '.join(str(e).split())}{hint}") from None
    return True


def pool_size(workers: int, cpus_per_worker: float, gpus_per_worker: float, batches: int) -> int:
    """The number of actors: ``workers``, or (0) as many as the cluster's CPUs and GPUs hold, at most one per
    batch; a pool the cluster cannot hold is an error (it would wait for ever)."""
    import ray

    res = ray.cluster_resources()
    cpus, gpus = float(res.get("CPU", 0.0)), float(res.get("GPU", 0.0))
    if gpus_per_worker > 0 and gpus < gpus_per_worker:
        raise RayEngineError(
            f"--gpus-per-worker {gpus_per_worker:g}: the Ray cluster has {gpus:g} GPU(s); start GPU nodes or leave "
            "--gpus-per-worker out"
        )
    fits = math.floor(cpus / cpus_per_worker + 1e-9) if cpus_per_worker > 0 else workers or 1
    if gpus_per_worker > 0:
        fits = min(fits, math.floor(gpus / gpus_per_worker + 1e-9))
    if workers == 0:
        workers = max(1, fits)
    elif workers > fits:
        raise RayEngineError(
            f"--workers {workers} × --cpus-per-worker {cpus_per_worker:g}"
            + (f" × --gpus-per-worker {gpus_per_worker:g}" if gpus_per_worker else "")
            + f" do not fit the Ray cluster ({cpus:g} CPU(s), {gpus:g} GPU(s)): at most {max(fits, 0)} worker(s)"
        )
    return max(1, min(workers, batches)) if batches else workers


def run_ray(
    exp: Experiment,
    data: Any,
    store: str | os.PathLike[str],
    *,
    model: ModelAdapter | None = None,
    device: str | None = None,
    batch_size: int = 8,
    workers: int = 0,
    address: str | None = None,
    cpus_per_worker: float = 1.0,
    gpus_per_worker: float = 0.0,
    num_cpus: int | None = None,
    limit: int | None = None,
    cache_maps: str | os.PathLike[str] | None = None,
    retry_failed: bool = False,
    shuffle_seed: int | None = None,
    progress: bool | None = None,
    on_warning: Callable[[str], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> RunResult:
    """Run ``exp`` over ``data`` into ``store`` on Ray actors; same arguments, rows and resume as
    :func:`run_local`, plus:

    ``workers``: actors in the pool (0: as many as the cluster's CPUs / GPUs hold, at most one per batch);
    ``address``: the cluster to join (``"auto"`` or ``HOST:PORT``; ``None``: start a local Ray instance with
    ``num_cpus`` CPUs, default all); ``cpus_per_worker``: CPUs each actor reserves (also its torch threads);
    ``gpus_per_worker``: GPUs each actor reserves (fractions share a GPU; the actor then runs on CUDA);
    ``device``: the workers' device (default: CUDA when the actor has a GPU). If Ray is already initialised in
    this process, that instance is used and left running.
    """
    check_args(batch_size, workers, limit)
    if not cpus_per_worker > 0:
        raise BadParameterError(f"cpus_per_worker must be > 0, got {cpus_per_worker}")
    if gpus_per_worker < 0:
        raise BadParameterError(f"gpus_per_worker must be >= 0, got {gpus_per_worker}")
    ray = import_ray()
    if address is not None and not ray.is_initialized():
        _check_reachable(address)  # before loading anything
    t0 = time.perf_counter()
    # the driver needs the model only for its labels (to open the dataset) and class count: load it on the CPU
    adapter = model if model is not None else resolve_model(exp, None, "cpu")
    dataset, spec = open_data(exp, data, adapter)
    n_items = len(dataset.ids()) if limit is None else min(limit, len(dataset.ids()))
    n_batches_max = math.ceil(n_items / batch_size)
    started_ray = connect(address, num_cpus)
    try:
        _quiet_ray_data()
        n_workers = pool_size(workers, cpus_per_worker, gpus_per_worker, n_batches_max)
        threads = max(1, int(cpus_per_worker))

        def compute(plan: Plan) -> Iterator[BatchOut]:
            from ray.data import ActorPoolStrategy

            chunks = [plan.todo[k : k + batch_size] for k in range(0, len(plan.todo), batch_size)]
            root, files = probe_paths(plan.dataset, plan.todo)
            shared = ray.put((exp, plan.dataset, model))  # alive until this generator ends
            ds = ray.data.from_items(
                [{"batch": k, "indices": json.dumps(c)} for k, c in enumerate(chunks)],
                override_num_blocks=len(chunks),
            )
            mapped = ds.map_batches(
                BatchWorker,
                batch_size=1,  # a row is a whole batch: one task, one BatchStep call, one transaction
                compute=ActorPoolStrategy(size=min(n_workers, len(chunks))),
                batch_format="numpy",
                num_cpus=cpus_per_worker,
                num_gpus=gpus_per_worker or None,
                fn_constructor_kwargs={
                    "shared": [shared],
                    "spec": plan.spec,
                    "device": device,
                    "threads": threads,
                    "cwd": os.getcwd(),
                    "root": root,
                    "files": files,
                    "cache_maps": None if cache_maps is None else os.path.abspath(cache_maps),
                },
            )  # Ray Data's actors are restarted when they die (max_restarts=-1) and their task retried
            # each block is the output of one BatchWorker call (one row per batch); no prefetching, so a batch
            # is written as soon as it is back
            blocks = mapped.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=0)
            try:
                for block in blocks:
                    for j in range(len(block["batch"])):
                        if block["fatal"][j]:
                            raise RayEngineError(str(block["fatal"][j]))
                        yield BatchOut(
                            pickle.loads(block["records"][j]),
                            json.loads(block["axes"][j]),
                            json.loads(block["warnings"][j]),
                        )
            finally:
                close = getattr(blocks, "close", None)
                if close is not None:
                    close()  # stops the streaming executor and its actor pool

        return run_engine(
            exp,
            dataset,
            spec,
            store,
            engine="ray",
            workers=n_workers,
            compute=compute,
            started=t0,
            limit=limit,
            retry_failed=retry_failed,
            shuffle_seed=shuffle_seed,
            progress=progress,
            on_warning=on_warning,
            on_batch=on_batch,
        )
    finally:
        if started_ray:
            ray.shutdown()

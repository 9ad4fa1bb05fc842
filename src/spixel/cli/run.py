"""``spixel run EXPERIMENT --data DATASET --store S.db`` and ``spixel runs S.db``: parse, call the engine, print."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..experiments import Experiment, RunResult

#: Exit code of a run that completed but recorded failed items.
EXIT_SOME_FAILED = 3
#: Exit code of a run stopped with Ctrl-C (the store holds every batch committed before it).
EXIT_INTERRUPTED = 130


def _engine_run(args: argparse.Namespace, exp: Experiment) -> RunResult:
    """Call the engine ``--engine`` names with the options it takes (the ray-only ones are refused for local)."""
    from ..errors import BadParameterError
    from ..experiments import run_local
    from .common import resolve_device

    common: dict = dict(
        batch_size=args.batch_size,
        workers=args.workers,
        limit=args.limit,
        cache_maps=args.cache_maps,
        retry_failed=args.retry_failed,
    )
    if args.engine == "local":
        given = [
            flag
            for flag, value in (
                ("--address", args.address),
                ("--cpus-per-worker", args.cpus_per_worker),
                ("--gpus-per-worker", args.gpus_per_worker),
            )
            if value is not None
        ]
        if given:
            raise BadParameterError(f"{', '.join(given)}: only with --engine ray")
        return run_local(exp, args.data, args.store, device=resolve_device(args.device), **common)
    from ..experiments.engines.ray import run_ray

    # the device is the workers' (default: CUDA when an actor has a GPU); this machine need not have it
    return run_ray(
        exp,
        args.data,
        args.store,
        device=args.device,
        address=args.address,
        cpus_per_worker=1.0 if args.cpus_per_worker is None else args.cpus_per_worker,
        gpus_per_worker=args.gpus_per_worker or 0.0,
        **common,
    )


def cmd_run(args: argparse.Namespace) -> int:
    from ..errors import BadParameterError
    from ..experiments import Store, fast, format_table, load_experiment, summarise
    from ..experiments.summary import directions_of

    exp = load_experiment(args.experiment)
    if args.fast:
        if exp.protocol is None:
            raise BadParameterError("--fast applies to protocols (spixel list protocols), not to experiment files")
        exp = fast(exp)
    exp = exp.with_overrides(model=args.model, weights=args.weights, seed=args.seed)
    if args.data is None:
        default = (exp.protocol or {}).get("data")
        if not default:
            raise BadParameterError("give --data DATASET (spixel list datasets), e.g. --data folder:photos/")
        args.data = default
    res = _engine_run(args, exp)
    with Store(args.store) as st:
        rows = st.scores(res.run_id)
        failures = st.failures(res.run_id, limit=3)
    metrics = [m.key for m in exp.metrics]
    if rows and metrics:
        print(format_table(summarise(rows), metrics, directions_of(exp)))
    state = "resumed" if res.resumed else "new"
    print(
        f"spixel: run {res.run_id} ({exp.name}, {state}) in {args.store}: {res.done} done, {res.failed} failed, "
        f"{res.skipped} skipped (already recorded) of {res.total} item(s); {res.computed} computed now in "
        f"{res.seconds:.1f} s"
    )
    if res.interrupted:
        print(
            "spixel: interrupted; every committed batch is kept: run the same command again to resume", file=sys.stderr
        )
        return EXIT_INTERRUPTED
    if res.failed:
        first = "; ".join(f"{i}: {e}" for i, e in failures)
        print(
            f"spixel: {res.failed} item(s) failed (first: {first}); see them with: sqlite3 {args.store} "
            f"\"SELECT item, error FROM item_status WHERE run = {res.run_id} AND status = 'failed'\"",
            file=sys.stderr,
        )
        return EXIT_SOME_FAILED
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from ..experiments import Store

    with Store(args.store) as st:
        runs = st.runs()
    if not runs:
        print(f"{args.store}: no runs yet")
        return 0
    head = f"{'run':>3}  {'name':<20} {'status':<11} {'done':>6} {'failed':>6}  {'engine':<10} model / dataset"
    print(head)
    for r in runs:
        eng = r.engine + (f"×{r.workers}" if r.workers else "")
        print(
            f"{r.run_id:>3}  {r.name[:20]:<20} {r.status:<11} {r.done:>6} {r.failed:>6}  {eng:<10} "
            f"{r.model} / {r.dataset}  (config {r.config_hash}, started {r.started})"
        )
    return 0

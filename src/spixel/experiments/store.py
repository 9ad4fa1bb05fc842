"""The results store: one SQLite file, one writer, one transaction per batch (the contract every reader uses).

Schema (``PRAGMA user_version`` = :data:`SCHEMA_VERSION`)::

    runs    (run_id, name, config_hash, config JSON, spixel_version, model, dataset, dataset_fingerprint,
             engine, workers, started, finished, status)                      UNIQUE (config_hash, dataset)
    items   (run_id, item_id, file_hash, labels JSON, target, predicted, probability, status 'done'|'failed',
             error, seconds, updated)                                         PRIMARY KEY (run_id, item_id)
    results (run_id, item_id, method, regions, metric, value REAL NULL, status 'ok'|'na', curve JSON NULL,
             seconds)                                  PRIMARY KEY (run_id, item_id, method, regions, metric)

    axes    (run_id, metric, x JSON)                   the x-axis of each metric's curves, once per run

    VIEW scores      (run, item, method, regions, metric, value)   -- scored rows only ('na' rows left out)
    VIEW item_status (run, item, status, error)

``method`` is the method's label in the experiment, ``regions`` its segmenter spec (``''`` for pixel maps),
``value`` the metric's score of that item (``NULL`` with status ``'na'`` when the item lacks the annotation the
metric needs), ``curve`` its curve as a JSON list where the metric has one. An item's rows and its ``items`` row
are written in the same transaction, so an item is either complete or absent: after a crash, re-running skips
exactly the committed items.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SpixelError

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    config TEXT NOT NULL,
    spixel_version TEXT NOT NULL,
    model TEXT NOT NULL,
    dataset TEXT NOT NULL,
    dataset_fingerprint TEXT,
    engine TEXT NOT NULL DEFAULT 'local',
    workers INTEGER NOT NULL DEFAULT 0,
    started TEXT NOT NULL,
    finished TEXT,
    status TEXT NOT NULL DEFAULT 'running',
    UNIQUE (config_hash, dataset)
);
CREATE TABLE IF NOT EXISTS items (
    run_id INTEGER NOT NULL REFERENCES runs(run_id),
    item_id TEXT NOT NULL,
    file_hash TEXT,
    labels TEXT,
    target INTEGER,
    predicted INTEGER,
    probability REAL,
    status TEXT NOT NULL CHECK (status IN ('done', 'failed')),
    error TEXT,
    seconds REAL,
    updated TEXT NOT NULL,
    PRIMARY KEY (run_id, item_id)
);
CREATE TABLE IF NOT EXISTS results (
    run_id INTEGER NOT NULL,
    item_id TEXT NOT NULL,
    method TEXT NOT NULL,
    regions TEXT NOT NULL DEFAULT '',
    metric TEXT NOT NULL,
    value REAL,
    status TEXT NOT NULL DEFAULT 'ok' CHECK (status IN ('ok', 'na')),
    curve TEXT,
    seconds REAL,
    PRIMARY KEY (run_id, item_id, method, regions, metric),
    FOREIGN KEY (run_id, item_id) REFERENCES items(run_id, item_id)
);
CREATE TABLE IF NOT EXISTS axes (
    run_id INTEGER NOT NULL REFERENCES runs(run_id),
    metric TEXT NOT NULL,
    x TEXT NOT NULL,
    PRIMARY KEY (run_id, metric)
);
CREATE VIEW IF NOT EXISTS scores AS
    SELECT run_id AS run, item_id AS item, method, regions, metric, value
    FROM results WHERE status = 'ok';
CREATE VIEW IF NOT EXISTS item_status AS
    SELECT run_id AS run, item_id AS item, status, error FROM items;
"""


class StoreError(SpixelError):
    """A store that cannot be opened or written (read-only, newer schema, held by another process …)."""


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


@dataclass
class ItemRecord:
    """What the loop hands the store for one item: its ``items`` row and its ``results`` rows."""

    item_id: str
    status: str  # 'done' | 'failed'
    file_hash: str | None = None
    labels: Sequence[int] = ()
    target: int | None = None
    predicted: int | None = None
    probability: float | None = None
    error: str | None = None
    seconds: float | None = None
    results: list[tuple[str, str, str, float | None, str, list[float] | None, float | None]] = field(
        default_factory=list
    )  # (method, regions, metric, value, status, curve, seconds)


@dataclass(frozen=True)
class RunInfo:
    """One row of ``runs`` with its progress counts."""

    run_id: int
    name: str
    config_hash: str
    model: str
    dataset: str
    engine: str
    workers: int
    started: str
    finished: str | None
    status: str
    done: int
    failed: int
    config: dict[str, Any]


class Store:
    """An open results store. ``Store(path)`` creates or opens it (WAL, foreign keys); ``writer=True`` also takes
    the store's exclusive lock (a sidecar ``PATH.lock`` held with ``flock``, released by the OS even on
    ``kill -9``), so a second writer gets a clear error instead of interleaving its rows."""

    def __init__(self, path: str | os.PathLike[str], *, writer: bool = False) -> None:
        self.path = Path(path)
        self._lock_fd: int | None = None
        if writer:
            self._take_lock()
        elif not self.path.exists():
            raise StoreError(f"{self.path}: no such store; spixel run writes one with --store {self.path}")
        try:
            self.db = sqlite3.connect(str(self.path), timeout=30, isolation_level=None)
            self.db.execute("PRAGMA foreign_keys = ON")
            version = int(self.db.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} was written by a newer spixel (store schema {version}, this one reads up to "
                    f"{SCHEMA_VERSION}): upgrade spixel (pip install -U spixel) or use another --store"
                )
            if writer:
                self.db.execute("PRAGMA journal_mode = WAL")
                self.db.execute("PRAGMA synchronous = NORMAL")
                if version < SCHEMA_VERSION:
                    self.db.executescript(_SCHEMA)
                    self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            elif version == 0:
                raise StoreError(f"{self.path} is not a spixel store (no schema)")
        except sqlite3.DatabaseError as e:
            self.close()
            raise StoreError(f"{self.path}: cannot use this file as a store ({e}); give another --store") from None

    # ---------------------------------------------------------------- lifetime
    def _take_lock(self) -> None:
        import fcntl

        lock = self.path.with_name(self.path.name + ".lock")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise StoreError(
                f"cannot write the store {self.path} ({e.strerror}); give a writable --store path"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StoreError(
                f"another spixel process (pid {holder}) is writing to {self.path}; wait for it or use another --store"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock_fd = fd
        if self.path.exists() and not os.access(self.path, os.W_OK):
            self.close()
            raise StoreError(f"the store {self.path} is read-only; give a writable --store path")

    def close(self) -> None:
        db = getattr(self, "db", None)
        if db is not None:
            db.close()
            self.db = None  # type: ignore[assignment]
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on any exception, Ctrl-C included)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # ---------------------------------------------------------------- runs
    def open_run(
        self,
        *,
        name: str,
        config_hash: str,
        config: dict[str, Any],
        model: str,
        dataset: str,
        fingerprint: str | None,
        engine: str = "local",
        workers: int = 0,
    ) -> tuple[int, bool]:
        """The run of ``(config_hash, dataset)``: ``(run_id, resumed)``; a new run when there is none."""
        from .. import __version__

        with self.transaction() as db:
            row = db.execute(
                "SELECT run_id FROM runs WHERE config_hash = ? AND dataset = ?", (config_hash, dataset)
            ).fetchone()
            if row is not None:
                db.execute(
                    "UPDATE runs SET status = 'running', finished = NULL, engine = ?, workers = ?, "
                    "dataset_fingerprint = ?, spixel_version = ? WHERE run_id = ?",
                    (engine, workers, fingerprint, __version__, row[0]),
                )
                return int(row[0]), True
            cur = db.execute(
                "INSERT INTO runs (name, config_hash, config, spixel_version, model, dataset, dataset_fingerprint, "
                "engine, workers, started) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    name,
                    config_hash,
                    json.dumps(config, sort_keys=True, default=str),
                    __version__,
                    model,
                    dataset,
                    fingerprint,
                    engine,
                    workers,
                    _now(),
                ),
            )
            return int(cur.lastrowid), False  # type: ignore[arg-type]

    def set_axes(self, run_id: int, axes: dict[str, list[float]]) -> None:
        """Record each metric's curve x-axis once per run (later calls leave a recorded axis as it is)."""
        if not axes:
            return
        with self.transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO axes (run_id, metric, x) VALUES (?, ?, ?)",
                [(run_id, m, json.dumps([round(v, 6) for v in x])) for m, x in axes.items()],
            )

    def axes(self, run_id: int) -> dict[str, list[float]]:
        rows = self.db.execute("SELECT metric, x FROM axes WHERE run_id = ?", (run_id,)).fetchall()
        return {m: json.loads(x) for m, x in rows}

    def finish_run(self, run_id: int, status: str = "finished") -> None:
        with self.transaction() as db:
            db.execute("UPDATE runs SET status = ?, finished = ? WHERE run_id = ?", (status, _now(), run_id))

    def completed(self, run_id: int, *, include_failed: bool = True) -> dict[str, str | None]:
        """``{item_id: file_hash}`` of the items already recorded (done, and failed unless ``include_failed``
        is false) — the items a resumed run skips."""
        q = "SELECT item_id, file_hash FROM items WHERE run_id = ?" + ("" if include_failed else " AND status='done'")
        return dict(self.db.execute(q, (run_id,)).fetchall())

    def write(self, run_id: int, records: Iterable[ItemRecord]) -> int:
        """Upsert a batch of items and their results in one transaction; returns the number of result rows. An
        item written again replaces its earlier rows (a retried failure, a changed file), never duplicates them."""
        n = 0
        now = _now()
        with self.transaction() as db:
            for r in records:
                db.execute("DELETE FROM results WHERE run_id = ? AND item_id = ?", (run_id, r.item_id))
                db.execute(
                    "INSERT INTO items (run_id, item_id, file_hash, labels, target, predicted, probability, status, "
                    "error, seconds, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (run_id, item_id) DO UPDATE SET file_hash = excluded.file_hash, "
                    "labels = excluded.labels, target = excluded.target, predicted = excluded.predicted, "
                    "probability = excluded.probability, status = excluded.status, error = excluded.error, "
                    "seconds = excluded.seconds, updated = excluded.updated",
                    (
                        run_id,
                        r.item_id,
                        r.file_hash,
                        json.dumps([int(v) for v in r.labels]),
                        r.target,
                        r.predicted,
                        r.probability,
                        r.status,
                        r.error,
                        r.seconds,
                        now,
                    ),
                )
                db.executemany(
                    "INSERT INTO results (run_id, item_id, method, regions, metric, value, status, curve, seconds) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, item_id, method, regions, metric) "
                    "DO UPDATE SET value = excluded.value, status = excluded.status, curve = excluded.curve, "
                    "seconds = excluded.seconds",
                    [
                        (
                            run_id,
                            r.item_id,
                            method,
                            regions,
                            metric,
                            value,
                            status,
                            None if curve is None else json.dumps([round(float(c), 6) for c in curve]),
                            secs,
                        )
                        for method, regions, metric, value, status, curve, secs in r.results
                    ],
                )
                n += len(r.results)
        return n

    # ---------------------------------------------------------------- reading
    def runs(self) -> list[RunInfo]:
        rows = self.db.execute(
            "SELECT r.run_id, r.name, r.config_hash, r.model, r.dataset, r.engine, r.workers, r.started, "
            "r.finished, r.status, r.config, "
            "(SELECT COUNT(*) FROM items i WHERE i.run_id = r.run_id AND i.status = 'done'), "
            "(SELECT COUNT(*) FROM items i WHERE i.run_id = r.run_id AND i.status = 'failed') "
            "FROM runs r ORDER BY r.run_id"
        ).fetchall()
        return [
            RunInfo(
                run_id=r[0],
                name=r[1],
                config_hash=r[2],
                model=r[3],
                dataset=r[4],
                engine=r[5],
                workers=r[6],
                started=r[7],
                finished=r[8],
                status=r[9],
                config=json.loads(r[10]),
                done=r[11],
                failed=r[12],
            )
            for r in rows
        ]

    def run(self, run: int | str | None = None) -> RunInfo:
        """A run by id or name (the latest of that name); ``None``: the latest run."""
        runs = self.runs()
        if not runs:
            raise StoreError(f"{self.path} holds no run yet")
        if run is None:
            return runs[-1]
        for r in reversed(runs):
            if r.run_id == run or r.name == run or str(r.run_id) == str(run):
                return r
        raise StoreError(f"{self.path} has no run {run!r}; it has: {', '.join(f'{r.run_id} ({r.name})' for r in runs)}")

    def failures(self, run_id: int, limit: int | None = None) -> list[tuple[str, str]]:
        q = "SELECT item_id, error FROM items WHERE run_id = ? AND status = 'failed' ORDER BY item_id"
        rows = self.db.execute(q + (f" LIMIT {int(limit)}" if limit else ""), (run_id,)).fetchall()
        return [(a, b) for a, b in rows]

    def scores(self, run_id: int) -> list[tuple[str, str, str, str, float]]:
        """``(item, method, regions, metric, value)`` of one run, ordered."""
        return self.db.execute(
            "SELECT item, method, regions, metric, value FROM scores WHERE run = ? "
            "ORDER BY item, method, regions, metric",
            (run_id,),
        ).fetchall()


def load(path: str | os.PathLike[str], run: int | str | None = None) -> Any:
    """The ``scores`` view of a store as a ``pandas.DataFrame`` (columns run, name, item, method, regions, metric,
    value), every run or one (``run``: id or name)."""
    import pandas as pd

    with Store(path) as s:
        q = (
            "SELECT s.run, r.name, s.item, s.method, s.regions, s.metric, s.value "
            "FROM scores s JOIN runs r ON r.run_id = s.run"
        )
        args: tuple[Any, ...] = ()
        if run is not None:
            q += " WHERE s.run = ?"
            args = (s.run(run).run_id,)
        return pd.read_sql_query(q + " ORDER BY s.run, s.item, s.method, s.regions, s.metric", s.db, params=args)

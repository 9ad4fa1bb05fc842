"""Experiments: a dataset streamed through explain → segment → score into a durable SQLite store.

``load_experiment`` reads a TOML file (or a protocol name), ``run_local`` runs it resumably into a store,
``load`` reads a store's scores as a pandas DataFrame; :mod:`.store` documents the schema.
"""

from .config import Experiment, MethodSpec, MetricSpec, from_dict, load_experiment
from .engines.local import RunResult, run_local
from .loop import BatchStep, MapCache, item_seed
from .protocol import fast
from .store import SCHEMA_VERSION, Store, StoreError, load
from .summary import format_table, summarise

__all__ = [
    "SCHEMA_VERSION",
    "BatchStep",
    "Experiment",
    "MapCache",
    "MethodSpec",
    "MetricSpec",
    "RunResult",
    "Store",
    "StoreError",
    "fast",
    "format_table",
    "from_dict",
    "item_seed",
    "load",
    "load_experiment",
    "run_local",
    "summarise",
]

"""One registry for explainers, models (and later segmenters and metrics); the CLI and bench read it.

Usage::

    @METHODS.register("saliency", family="gradient", stochastic=False)
    def saliency(model, x, target=None, ...): ...
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .errors import UnknownNameError


@dataclass(frozen=True)
class Entry:
    """A registered callable with its metadata (``info``: family, description, flags …)."""

    name: str
    fn: Callable[..., Any]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def description(self) -> str:
        doc = (self.fn.__doc__ or "").strip()
        return self.info.get("description") or (doc.splitlines()[0] if doc else "")


class Registry:
    """A named table of callables. ``get`` of an unknown name raises :class:`UnknownNameError`
    listing the valid names (and the closest match)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, **info: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._entries:
                raise RuntimeError(f"{self.kind} {name!r} registered twice")
            self._entries[name] = Entry(name, fn, dict(info))
            return fn

        return deco

    def get(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._entries, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}.{hint} Choose one of: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries[n] for n in self.names())

    def __len__(self) -> int:
        return len(self._entries)


METHODS = Registry("method")
MODELS = Registry("model")
SEGMENTERS = Registry("segmenter")
METRICS = Registry("metric")
DATASETS = Registry("dataset")
PROTOCOLS = Registry("protocol")

"""Progress bars for long work (the CLI's ``explain``, ``demo`` …): items/s and ETA on a terminal, silent otherwise.

``progress(total, desc)`` is a `tqdm <https://tqdm.github.io>`_ bar on stderr. Whether it shows is decided once,
when it is made: ``enabled=True`` / ``False`` if the caller says so; else the environment variable
``SPIXEL_PROGRESS`` (``1`` forces the bar on, ``0`` off: for logs, CI or a terminal you want quiet); else whether
the stream is a terminal (``sys.stderr.isatty()``). A disabled bar writes nothing and costs nothing; ``update``
and ``close`` still work. :func:`write` prints a line above a running bar (and plainly when there is none).
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

from tqdm import tqdm

from .errors import BadParameterError

__all__ = ["ENV_VAR", "progress", "progress_enabled", "write"]

#: ``1`` (also ``true``, ``yes``, ``on``) forces progress bars on, ``0`` (``false``, ``no``, ``off``) off.
ENV_VAR = "SPIXEL_PROGRESS"

_ON = frozenset({"1", "true", "yes", "on"})
_OFF = frozenset({"0", "false", "no", "off"})


def progress_enabled(enabled: bool | None = None, file: TextIO | None = None) -> bool:
    """Whether a bar shows: ``enabled`` when given, else ``$SPIXEL_PROGRESS``, else ``file`` (stderr) is a tty."""
    if enabled is not None:
        return bool(enabled)
    env = os.environ.get(ENV_VAR, "").strip().lower()
    if env in _ON:
        return True
    if env in _OFF:
        return False
    if env:
        raise BadParameterError(f"{ENV_VAR}={os.environ[ENV_VAR]!r}: set it to 1 (bars on) or 0 (off), or unset it")
    stream = sys.stderr if file is None else file
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def progress(
    total: int | None,
    desc: str,
    unit: str = "img",
    *,
    enabled: bool | None = None,
    file: TextIO | None = None,
) -> tqdm:
    """A tqdm bar counting ``total`` ``unit``\\ s (``None``: unknown, then no ETA) on ``file`` (default: stderr),
    showing the rate (``unit``/s) and the time left; disabled (silent) unless :func:`progress_enabled`."""
    stream = sys.stderr if file is None else file
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        file=stream,
        disable=not progress_enabled(enabled, stream),
        dynamic_ncols=True,
    )


def write(msg: str, file: TextIO | None = None) -> None:
    """Print ``msg`` on ``file`` (default: stderr) above any running bar, which is then redrawn below it."""
    tqdm.write(msg, file=sys.stderr if file is None else file)

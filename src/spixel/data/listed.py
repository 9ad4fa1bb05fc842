"""Images named one by one (``spixel evaluate a.jpg sample:chelsea …``) as a dataset for the experiments engine."""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Sequence
from pathlib import Path

from ..errors import SpixelError
from .items import Box, Item, failed

#: A source ``sample:NAME`` names a bundled photo (``spixel.data.sample_names()``).
SAMPLE_PREFIX = "sample:"


class SourcesDataset:
    """Image files and bundled photos (``sample:NAME``, which carry their classes and box) in the order given;
    ``item_id`` is the source as written. ``box``: one box ``(x0, y0, x1, y1)`` (original pixels) for every
    file without its own. ``errors``: ``{source: reason}`` for sources known to be bad before decoding (an empty
    folder). Decodes lazily; never raises for a bad item."""

    def __init__(self, sources: Sequence[str], box: Box | None = None, errors: dict[str, str] | None = None) -> None:
        self.sources = list(dict.fromkeys(sources))
        self.box = box
        self.errors = dict(errors or {})
        self.spec = "images:" + ",".join(self.sources)

    def ids(self) -> list[str]:
        return list(self.sources)

    def __len__(self) -> int:
        return len(self.sources)

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for s in self.sources:
            p = Path(s)
            st = f"{p.stat().st_size}:{p.stat().st_mtime_ns}" if not s.startswith(SAMPLE_PREFIX) and p.is_file() else ""
            h.update(f"{s}|{st}\n".encode("utf-8", "surrogateescape"))
        return h.hexdigest()[:16]

    def __getitem__(self, i: int) -> Item:
        src = self.sources[i]
        if src in self.errors:
            return failed(src, self.errors[src])
        try:
            if src.startswith(SAMPLE_PREFIX):
                return self._sample(src)
            from ..io import load_image

            data = Path(src).read_bytes() if Path(src).is_file() else b""
            image = load_image(src)
            boxes = (self.box,) if self.box is not None else ()
            return Item(src, image, boxes=boxes, file_hash=hashlib.sha256(data).hexdigest()[:16] if data else None)
        except (SpixelError, OSError, ValueError) as e:
            return failed(src, str(e))

    def _sample(self, src: str) -> Item:
        from .samples import sample, sample_names

        name = src[len(SAMPLE_PREFIX) :].strip()
        if name not in sample_names():
            close = difflib.get_close_matches(name, sample_names(), n=1)
            hint = f" Did you mean {SAMPLE_PREFIX}{close[0]}?" if close else ""
            return failed(src, f"{src}: no such bundled photo.{hint} Choose one of: {', '.join(sample_names())}")
        s = sample(name)
        return Item(src, s.image, labels=tuple(s.classes), boxes=(tuple(int(v) for v in s.box),))  # type: ignore[arg-type]

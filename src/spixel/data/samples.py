"""Real sample photos with our own annotations (ImageNet classes and a main-object box).

The photos ship inside installed packages (scikit-image, scikit-learn, matplotlib); nothing is downloaded.
Annotations live in ``samples.json`` next to this module: ``classes`` are the ImageNet-1k indices a person
would accept, ``box`` is ``(x0, y0, x1, y1)`` in the original photo's pixels with exclusive ends, and
``confident`` marks photos on which EfficientNet-Lite0 is clearly right (usable as a smoke test).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np

from ..errors import SpixelError, UnknownNameError


@dataclass(frozen=True, eq=False)
class Sample:
    """One annotated photo: ``image`` uint8 ``(H, W, 3)`` RGB; ``classes`` the ImageNet-1k indices a person
    would accept; ``box`` ``(x0, y0, x1, y1)`` of the main object in the photo's pixels, exclusive ends;
    ``confident``: EfficientNet-Lite0's top-1 is in ``classes``."""

    name: str
    image: np.ndarray = field(repr=False)
    classes: tuple[int, ...]
    box: tuple[int, int, int, int]
    source: str
    note: str = ""
    confident: bool = False

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.image.shape[0]), int(self.image.shape[1])


@lru_cache(maxsize=1)
def _annotations() -> dict[str, dict[str, Any]]:
    text = resources.files(__package__).joinpath("samples.json").read_text(encoding="utf-8")
    return {s["name"]: s for s in json.loads(text)["samples"]}


def sample_names() -> list[str]:
    """Names of the bundled photos, in catalogue order."""
    return list(_annotations())


def _rgb(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=-1)
    return np.ascontiguousarray(a[..., :3], dtype=np.uint8)


def _load_pixels(source: str) -> np.ndarray:
    """Read the photo named by ``source``: ``skimage.data.NAME`` (``NAME[i]``: item ``i`` of a tuple, e.g. the
    left image of ``stereo_motorcycle``), ``sklearn:FILE`` or ``matplotlib:FILE``."""
    try:
        if source.startswith("skimage.data."):
            import skimage.data

            fn, _, idx = source.removeprefix("skimage.data.").partition("[")
            out = getattr(skimage.data, fn)()
            if idx:
                out = out[int(idx.rstrip("]"))]
            return _rgb(out)
        if source.startswith("sklearn:"):
            from sklearn.datasets import load_sample_image

            return _rgb(load_sample_image(source.removeprefix("sklearn:")))
        if source.startswith("matplotlib:"):
            from matplotlib.cbook import get_sample_data

            from ..io import load_image

            return load_image(get_sample_data(source.removeprefix("matplotlib:"), asfileobj=False))
    except ImportError as e:
        raise SpixelError(f"sample photo {source!r} needs the package {e.name!r}: pip install it") from None
    raise SpixelError(f"samples.json names an unknown source {source!r}")  # pragma: no cover


def sample(name: str) -> Sample:
    """Load one bundled photo with its annotation (see :func:`sample_names`)."""
    ann = _annotations()
    if name not in ann:
        raise UnknownNameError(f"unknown sample {name!r}; choose one of: {', '.join(ann)}")
    a = ann[name]
    x0, y0, x1, y1 = (int(v) for v in a["box"])
    return Sample(
        name=name,
        image=_load_pixels(a["source"]),
        classes=tuple(int(c) for c in a["classes"]),
        box=(x0, y0, x1, y1),
        source=a["source"],
        note=a.get("note", ""),
        confident=bool(a.get("confident", False)),
    )


def samples(names: list[str] | tuple[str, ...] | None = None) -> list[Sample]:
    """The bundled photos (all, or those in ``names``, in that order). Only the requested photos are read."""
    if isinstance(names, str):
        names = [names]
    wanted = sample_names() if names is None else list(names)
    ann = _annotations()
    unknown = [n for n in wanted if n not in ann]
    if unknown:
        raise UnknownNameError(f"unknown sample(s) {unknown}; choose from: {', '.join(ann)}")
    return [sample(n) for n in wanted]

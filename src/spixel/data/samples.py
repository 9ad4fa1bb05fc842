"""The bundled real photos (from scikit-image, scikit-learn and matplotlib; nothing is downloaded) with our own
annotations: expected ImageNet classes and a box around the main object."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import numpy as np

from ..errors import UnknownNameError


@dataclass(frozen=True, eq=False)
class Sample:
    """A real photo: ``image`` uint8 ``(H, W, 3)``; ``classes`` the ImageNet indices a person would accept
    (empty when none fits); ``box`` ``(x0, y0, x1, y1)`` of the main object in the photo's pixels, exclusive
    ends; ``confident``: EfficientNet-Lite0's top-1 is in ``classes``."""

    name: str
    image: np.ndarray
    classes: tuple[int, ...]
    box: tuple[int, int, int, int]
    source: str
    note: str
    confident: bool


@cache
def _annotations() -> dict[str, dict[str, Any]]:
    text = resources.files(__package__).joinpath("samples.json").read_text()
    return {s["name"]: s for s in json.loads(text)["samples"]}


def _load(source: str) -> np.ndarray:
    """Read a photo from the package that ships it (offline)."""
    if source.startswith("skimage.data."):
        from skimage import data

        expr = source.removeprefix("skimage.data.")
        name, _, idx = expr.partition("[")
        img = getattr(data, name)()
        if idx:
            img = img[int(idx.rstrip("]"))]
        return np.ascontiguousarray(img)
    if source.startswith("sklearn:"):
        from sklearn.datasets import load_sample_image

        return np.ascontiguousarray(load_sample_image(source.removeprefix("sklearn:")))
    if source.startswith("matplotlib:"):
        import matplotlib.cbook as cbook
        from PIL import Image

        with cbook.get_sample_data(source.removeprefix("matplotlib:")) as f, Image.open(f) as im:
            return np.asarray(im.convert("RGB"))
    raise ValueError(f"unknown sample source {source!r}")


def sample_names() -> list[str]:
    """Names of the bundled photos, in gallery order."""
    return list(_annotations())


def sample(name: str) -> Sample:
    """One bundled photo with its annotation."""
    ann = _annotations()
    if name not in ann:
        raise UnknownNameError(f"unknown sample {name!r}; choose one of: {', '.join(ann)}")
    a = ann[name]
    return Sample(
        name=name,
        image=_load(a["source"]),
        classes=tuple(a["classes"]),
        box=tuple(a["box"]),  # type: ignore[arg-type]
        source=a["source"],
        note=a.get("note", ""),
        confident=bool(a.get("confident", False)),
    )


def samples(names: list[str] | None = None) -> list[Sample]:
    """The bundled photos (all, or those named), loaded on call."""
    return [sample(n) for n in (names if names is not None else sample_names())]

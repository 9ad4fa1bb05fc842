"""Annotation readers for the ``--data`` forms: PASCAL VOC / ImageNet box XML, WordNet ids, CSV boxes, masks.

Every box these readers return is ``(x0, y0, x1, y1)`` in the image's pixels, 0-based, with exclusive ends (the
:class:`~spixel.data.items.Item` convention). A reader raises :class:`~spixel.errors.BadParameterError` (or
:class:`~spixel.errors.BadImageError` for masks) with a one-line message; datasets turn those into failed items.
"""

from __future__ import annotations

import csv
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import BadImageError, BadParameterError
from .items import Box

PathLike = str | os.PathLike[str]
_WNID = re.compile(r"^n\d{8}$")


# ---------------------------------------------------------------------------------------------------- VOC XML
class VocObject(NamedTuple):
    """One ``<object>`` of a VOC / ImageNet XML file; ``box`` 0-based with exclusive ends."""

    name: str
    box: Box
    difficult: bool


def _number(node: ET.Element | None, tag: str, path: PathLike) -> float:
    text = node.findtext(tag) if node is not None else None
    try:
        return float((text or "").strip())
    except ValueError:
        raise BadParameterError(f"{path}: <{tag}> is {text!r}, not a number") from None


def read_voc_xml(path: PathLike) -> tuple[tuple[int, int] | None, list[VocObject]]:
    """Read a PASCAL VOC ``Annotations/*.xml`` file (or an ImageNet box XML: same schema, WordNet ids as names).

    Returns ``(size, objects)``: ``size`` is ``(width, height)`` from ``<size>`` (``None`` when absent or zero),
    ``objects`` in file order. VOC boxes are 1-based with inclusive ends; they are converted to 0-based with
    exclusive ends: ``(xmin - 1, ymin - 1, xmax, ymax)`` (fractional coordinates are rounded first).
    ElementTree neither fetches nor expands external entities.
    """
    try:
        root = ET.parse(os.fspath(path)).getroot()
    except FileNotFoundError:
        raise BadParameterError(f"{path}: no such annotation file") from None
    except (ET.ParseError, OSError) as e:
        raise BadParameterError(f"{path}: not a readable XML annotation ({e})") from None
    size = None
    node = root.find("size")
    if node is not None and node.findtext("width") and node.findtext("height"):
        w, h = round(_number(node, "width", path)), round(_number(node, "height", path))
        size = (w, h) if w > 0 and h > 0 else None
    objects = []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        bb = obj.find("bndbox")
        if not name or bb is None:
            raise BadParameterError(f"{path}: an <object> lacks its <name> or <bndbox>")
        xmin, ymin, xmax, ymax = (round(_number(bb, t, path)) for t in ("xmin", "ymin", "xmax", "ymax"))
        difficult = (obj.findtext("difficult") or "0").strip() not in ("", "0", "false")
        objects.append(VocObject(name, (xmin - 1, ymin - 1, xmax, ymax), difficult))
    return size, objects


# ---------------------------------------------------------------------------------------------------- WordNet ids
@lru_cache(maxsize=1)
def imagenet_synsets() -> tuple[str, ...]:
    """The 1000 ImageNet-1k WordNet ids in class-index order (timm's package data; nothing is downloaded)."""
    from timm.data import ImageNetInfo

    return tuple(ImageNetInfo("imagenet-1k").label_names())


@lru_cache(maxsize=1)
def _synset_index() -> dict[str, int]:
    return {w: i for i, w in enumerate(imagenet_synsets())}


def is_wordnet_id(token: str) -> bool:
    """Whether ``token`` looks like a WordNet noun id (``n`` and 8 digits)."""
    return bool(_WNID.match(token.strip()))


def wordnet_index(wnid: str) -> int:
    """The ImageNet-1k class index of WordNet id ``wnid`` (``"n02123045"`` → 281)."""
    try:
        return _synset_index()[wnid.strip()]
    except KeyError:
        raise BadParameterError(f"WordNet id {wnid!r} is not one of the 1000 ImageNet-1k classes") from None


def wordnet_id(index: int) -> str:
    """The WordNet id of ImageNet-1k class ``index`` (281 → ``"n02123045"``)."""
    syn = imagenet_synsets()
    if isinstance(index, bool) or not 0 <= int(index) < len(syn):
        raise BadParameterError(f"ImageNet-1k class index must be in 0..{len(syn) - 1}, got {index!r}")
    return syn[int(index)]


# ---------------------------------------------------------------------------------------------------- labels
def _norm(text: str) -> str:
    return " ".join(text.replace("_", " ").casefold().split())


class LabelResolver:
    """Maps annotation tokens to a model's class indices (see :func:`resolve_label`); plain data, picklable.

    ``labels``/``num_classes`` are the model's; the text lookup table is built once."""

    def __init__(self, labels: Sequence[str] | None = None, num_classes: int | None = None) -> None:
        self.labels = list(labels) if labels is not None else None
        self.num_classes = num_classes if num_classes is not None else (len(self.labels) if self.labels else None)
        self._text: dict[str, list[int]] = {}
        for i, name in enumerate(self.labels or ()):
            self._text.setdefault(_norm(name), []).append(i)

    def __call__(self, token: str) -> int:
        t = str(token).strip()
        n = self.num_classes
        if not t:
            raise BadParameterError("empty class label")
        if t.isdigit():
            k = int(t)
            if n is not None and k >= n:
                raise BadParameterError(f"class index {k} is out of range: the model has {n} classes (0..{n - 1})")
            return k
        if is_wordnet_id(t):
            if n not in (None, 1000):
                raise BadParameterError(
                    f"WordNet id {t!r} names an ImageNet-1k class, but the model has {n} classes; "
                    "use class indices or the model's label names"
                )
            return wordnet_index(t)
        hits = self._text.get(_norm(t))
        if hits and len(hits) == 1:
            return hits[0]
        if hits:
            raise BadParameterError(f"label {t!r} is ambiguous (classes {hits}); use the class index")
        if self.labels is None:
            raise BadParameterError(f"label {t!r} needs the model's label names; use a class index or WordNet id")
        import difflib

        close = difflib.get_close_matches(_norm(t), list(self._text), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise BadParameterError(f"label {t!r} is not one of the model's {len(self.labels)} class names{hint}")

    def try_resolve(self, token: str) -> int | None:
        """The class index, or ``None`` when ``token`` cannot be resolved."""
        try:
            return self(token)
        except BadParameterError:
            return None


def resolve_label(token: str, labels: Sequence[str] | None = None, num_classes: int | None = None) -> int:
    """The model class index that annotation ``token`` names.

    ``token`` is a class index (``"281"``), a WordNet id (``"n02123045"``; only for ImageNet-1k models, i.e.
    ``num_classes`` 1000, or when the model is not known), or a label text matched against the model's
    ``labels`` ignoring case and ``_``/space differences (``"Great_White shark"``). Unknown or out-of-range
    tokens raise :class:`~spixel.errors.BadParameterError` with a one-line message."""
    return LabelResolver(labels, num_classes)(token)


# ---------------------------------------------------------------------------------------------------- CSV
class CsvRow(NamedTuple):
    """One row of a box CSV: ``path`` as written (``/`` separators), ``label`` or ``None``, ``box`` or ``None``."""

    path: str
    label: str | None
    box: Box | None


_HEADER = ("path", "image", "file", "filename", "image_path")


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def read_csv_boxes(path: PathLike) -> list[CsvRow]:
    """Read a ``path,label,x0,y0,x1,y1`` CSV (header row optional; rows of 1 or 2 fields have no box).

    Several rows may name the same image (several boxes). Empty box fields mean no box, an empty label means
    unlabelled. Boxes are 0-based with exclusive ends, in the original image's pixels. Image paths are relative
    to the CSV's folder. A malformed row raises :class:`~spixel.errors.BadParameterError` naming its line.
    """
    p = Path(path)
    try:
        with p.open(newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except FileNotFoundError:
        raise BadParameterError(f"{p}: no such CSV file") from None
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise BadParameterError(f"{p}: not a readable CSV file ({e})") from None
    out: list[CsvRow] = []
    for line, row in enumerate(rows, 1):
        cells = [c.strip() for c in row]
        while cells and not cells[-1]:
            cells.pop()
        if not cells or cells[0].startswith("#"):
            continue
        if line == 1 and (cells[0].lower() in _HEADER or any(c and not _is_number(c) for c in cells[2:6])):
            continue  # header
        if len(cells) > 6 or not cells[0]:
            raise BadParameterError(f"{p}:{line}: expected path,label,x0,y0,x1,y1, got {len(row)} fields")
        coords = cells[2:6]
        box = None
        if any(coords):
            if len(coords) != 4 or not all(coords) or not all(_is_number(c) for c in coords):
                raise BadParameterError(f"{p}:{line}: a box needs four numbers x0,y0,x1,y1, got {coords}")
            x0, y0, x1, y1 = (round(float(c)) for c in coords)
            box = (x0, y0, x1, y1)
        label = cells[1] if len(cells) > 1 and cells[1] else None
        out.append(CsvRow(cells[0].replace("\\", "/"), label, box))
    return out


# ---------------------------------------------------------------------------------------------------- masks
def read_mask(path: PathLike) -> np.ndarray:
    """Read a mask PNG as bool ``(H, W)`` of object pixels.

    A palette (``P``) image is an index map (VOC ``SegmentationClass``): 0 is background, 255 the "void"
    boundary, both not object. Any other mode is converted to grey; values only in {0, 1} or {0, 255} form a
    binary mask (non-zero = object), anything else is read as an index map like a palette image."""
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    try:
        with Image.open(p) as img:
            img.load()
            if img.mode == "P":
                a = np.asarray(img)
                return (a != 0) & (a != 255)
            if img.mode == "1":
                return np.asarray(img, dtype=bool)
            a = np.asarray(img if img.mode in ("L", "I", "I;16") else img.convert("L"))
    except FileNotFoundError:
        raise BadImageError(f"{p}: no such mask file") from None
    except UnidentifiedImageError:
        raise BadImageError(f"{p}: not an image file (masks are PNG)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise BadImageError(f"{p}: the mask is damaged or truncated ({e})") from None
    if a.ndim != 2:
        raise BadImageError(f"{p}: a mask must be a single-channel image, got shape {a.shape}")
    values = np.unique(a)
    if np.isin(values, (0, 1)).all() or np.isin(values, (0, 255)).all():
        return a != 0
    return (a != 0) & (a != 255)

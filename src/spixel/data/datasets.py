"""The ``--data`` dataset forms: ``torch.utils.data.Dataset`` s of :class:`~spixel.data.items.Item`.

Open one with :func:`open_dataset`::

    FORM:ARG?key=value&key=value       e.g.  voc:/data/VOC2007?split=test   synthetic:200?size=64&seed=1
    DIR                                a bare existing directory means folder:DIR

Forms (each registered in :data:`spixel.registry.DATASETS`): ``folder``, ``voc``, ``imagenet``, ``csv``,
``masks``, ``photos`` and ``synthetic``. Every dataset has ``ids()`` (cheap, nothing decoded), ``len``,
``ds[i]`` (decodes; never raises for a bad item but returns a failed :class:`Item` with a one-line reason),
``fingerprint()`` (sha256 over the ids and each file's size and mtime, no file read), ``describe()`` and ``spec``.
Datasets are plain data (paths and lists, no open files): they pickle into ``DataLoader`` workers.

Rules shared by the file forms:

* ``item_id`` is the image's path relative to the dataset root, ``/``-separated; ids are sorted.
* Images are found recursively by extension (:data:`IMAGE_EXTENSIONS`, any case); names starting with ``.``
  are skipped. ``file_hash`` is the first 16 hex digits of the sha256 of the image file.
* A box must lie inside the image: ``0 <= x0 < x1 <= W`` and ``0 <= y0 < y1 <= H`` (0-based, exclusive ends),
  else the item fails. Boxes and masks stay at the image's resolution (the engine resizes them with the
  image); only when :func:`spixel.io.load_image` downscales a huge image are they scaled with it.
* A mask must have the image's size, else the item fails.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from torch.utils.data import Dataset

from ..errors import BadImageError, BadParameterError, SpixelError, UnknownNameError
from ..io import MAX_SIDE, load_image
from ..registry import DATASETS
from .annotations import (
    CsvRow,
    LabelResolver,
    is_wordnet_id,
    read_csv_boxes,
    read_mask,
    read_voc_xml,
    wordnet_id,
)
from .items import Box, Item, failed

#: Image file extensions the folder forms pick up (compared case-insensitively).
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")

#: Errors that make one item fail instead of stopping the run (anything else is a bug and propagates).
_ITEM_ERRORS = (SpixelError, OSError, ValueError, SyntaxError, EOFError)


# ---------------------------------------------------------------------------------------------------- helpers
def _truthy(value: str) -> bool:
    v = value.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise BadParameterError(f"expected true or false, got {value!r}")


def _positive_int(value: str) -> int:
    v = value.strip()
    if not v.isdigit() or int(v) < 1:
        raise BadParameterError(f"expected a positive integer, got {value!r}")
    return int(v)


def _nonneg_int(value: str) -> int:
    v = value.strip()
    if not v.isdigit():
        raise BadParameterError(f"expected a non-negative integer, got {value!r}")
    return int(v)


def _walk(root: Path, keep: Callable[[str], bool]) -> list[str]:
    """Relative ``/`` paths of the files under ``root`` whose name passes ``keep``, sorted; hidden names skipped."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel = Path(dirpath).relative_to(root)
        out += [(rel / f).as_posix() for f in filenames if not f.startswith(".") and keep(f)]
    return sorted(out)


def _is_image(name: str) -> bool:
    from torchvision.datasets.folder import has_file_allowed_extension

    return has_file_allowed_extension(name, IMAGE_EXTENSIONS)


def _stat(path: str | None) -> str:
    if path is None:
        return "-"
    try:
        st = os.stat(path)
    except OSError:
        return "missing"
    return f"{st.st_size}:{st.st_mtime_ns}"


def _check_box(box: Box, w: int, h: int) -> None:
    x0, y0, x1, y1 = box
    if x1 <= x0 or y1 <= y0:
        raise BadParameterError(f"box {box} is empty (needs x0 < x1 and y0 < y1)")
    if x0 < 0 or y0 < 0 or x1 > w or y1 > h:
        raise BadParameterError(f"box {box} lies outside the {w}×{h} image")


def _scale_box(box: Box, sx: float, sy: float, w: int, h: int) -> Box:
    x0, y0, x1, y1 = box
    return (
        max(0, math.floor(x0 * sx)),
        max(0, math.floor(y0 * sy)),
        min(w, max(math.ceil(x1 * sx), math.floor(x0 * sx) + 1)),
        min(h, max(math.ceil(y1 * sy), math.floor(y0 * sy) + 1)),
    )


def _images(n: int, kind: str = "") -> str:
    return f"{n} {kind + ' ' if kind else ''}image" + ("" if n == 1 else "s")


def _unique(values: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(dict.fromkeys(v for v in values if v is not None))


@dataclass(frozen=True)
class _Entry:
    """One image of a file dataset: its id, image path and annotation files (plain data)."""

    item_id: str
    image: str | None
    ann: str | None = None  # XML box file
    mask: str | None = None  # mask PNG
    folder: str | None = None  # ImageFolder class folder name
    rows: tuple[CsvRow, ...] = ()  # CSV rows


@dataclass
class _Image:
    """A decoded image with its hash and the file's own size (before any downscaling on load)."""

    pixels: np.ndarray
    file_hash: str
    size: tuple[int, int]  # (W, H) of the file


# ---------------------------------------------------------------------------------------------------- base class
class SpixelDataset(Dataset):
    """Base of the ``--data`` forms: ``ids()``, ``len``, ``ds[i] -> Item`` (never raising for a bad item),
    ``fingerprint()``, ``describe()`` and ``spec``. Subclasses implement ``ids``, ``_fingerprint_parts``,
    ``describe`` and ``_load``."""

    #: the form name (``voc``) and its options: name → parser of the option's text value
    form: ClassVar[str] = ""
    options: ClassVar[dict[str, Callable[[str], Any]]] = {}
    spec: str

    @classmethod
    def from_spec(
        cls,
        arg: str,
        options: Mapping[str, str] | None = None,
        *,
        labels: Sequence[str] | None = None,
        num_classes: int | None = None,
    ) -> SpixelDataset:
        """Open the form from the parts of a spec ``FORM:ARG?options`` (option values still text)."""
        kwargs: dict[str, Any] = {}
        for key, text in (options or {}).items():
            if key not in cls.options:
                allowed = ", ".join(sorted(cls.options)) or "none"
                raise BadParameterError(f"{cls.form}: unknown option {key!r} (options: {allowed})")
            try:
                kwargs[key] = cls.options[key](text)
            except BadParameterError as e:
                raise BadParameterError(f"{cls.form}: option {key}={text}: {e}") from None
        return cls(arg, **kwargs, labels=labels, num_classes=num_classes)

    def ids(self) -> list[str]:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.ids())

    def __getitem__(self, i: int) -> Item:
        raise NotImplementedError

    def _fingerprint_parts(self) -> list[str]:
        return self.ids()

    def fingerprint(self) -> str:
        """A short sha256 (16 hex digits) over the sorted ids, each file's size and mtime and the options that
        change the items (no file is read)."""
        h = hashlib.sha256(f"{self.form}\n".encode())
        for part in sorted(self._fingerprint_parts()):
            h.update(part.encode("utf-8", "surrogateescape") + b"\n")
        return h.hexdigest()[:16]

    def describe(self) -> str:
        return f"{self.spec}: {_images(len(self))}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r}, {_images(len(self))})"


class _FileDataset(SpixelDataset):
    """A dataset of image files under ``root`` (entries built at open time, images decoded per item)."""

    def __init__(
        self, root: str | os.PathLike[str], labels: Sequence[str] | None, num_classes: int | None, what: str
    ) -> None:
        self.root = os.path.abspath(os.fspath(root))
        if not os.path.isdir(self.root):
            raise BadParameterError(f"{self.form}: no such directory {os.fspath(root)!r}; give the {what}")
        self.spec = f"{self.form}:{os.fspath(root)}"
        self.resolver = LabelResolver(labels, num_classes)
        self.entries: list[_Entry] = []
        self.extra_files: list[str] = []  # split files, CSV files: part of the fingerprint

    def _finish(self, entries: list[_Entry], where: str) -> None:
        if not entries:
            exts = " ".join(IMAGE_EXTENSIONS)
            raise BadParameterError(f"{self.form}: no images found in {where} (looked for {exts}); check the path")
        self.entries = sorted(entries, key=lambda e: e.item_id)

    def ids(self) -> list[str]:
        return [e.item_id for e in self.entries]

    def __len__(self) -> int:
        return len(self.entries)

    def _fingerprint_parts(self) -> list[str]:
        parts = [f"{e.item_id}|{_stat(e.image)}|{_stat(e.ann)}|{_stat(e.mask)}" for e in self.entries]
        return parts + [f"extra:{os.path.relpath(f, self.root)}|{_stat(f)}" for f in self.extra_files]

    def _rel(self, path: str) -> str:
        return Path(os.path.relpath(path, self.root)).as_posix()

    def _read_image(self, path: str) -> tuple[bytes, str]:
        p = Path(path)
        if not p.is_file():
            raise BadImageError(f"{self._rel(path)}: no such image file" if not p.exists() else f"{path}: not a file")
        data = p.read_bytes()
        return data, hashlib.sha256(data).hexdigest()[:16]

    def _decode(self, path: str, data: bytes) -> tuple[np.ndarray, tuple[int, int]]:
        pixels = load_image(path)
        h, w = pixels.shape[:2]
        if max(h, w) < MAX_SIDE:
            return pixels, (w, h)
        from PIL import Image

        with Image.open(io.BytesIO(data)) as img:  # header only: the file's own size before downscaling
            return pixels, (int(img.width), int(img.height))

    def __getitem__(self, i: int) -> Item:
        e = self.entries[i]
        file_hash = None
        try:
            if e.image is None:
                raise BadImageError(f"no image file {e.item_id} for this annotation")
            data, file_hash = self._read_image(e.image)
            pixels, size = self._decode(e.image, data)
            return self._load(e, _Image(pixels, file_hash, size))
        except _ITEM_ERRORS as err:
            reason = str(err)
            if e.image is not None:
                reason = reason.replace(str(Path(e.image)), self._rel(e.image))
            return failed(e.item_id, reason.replace(self.root + os.sep, ""), file_hash)

    def _load(self, e: _Entry, img: _Image) -> Item:
        raise NotImplementedError

    def _item(
        self,
        e: _Entry,
        img: _Image,
        *,
        labels: Sequence[int] = (),
        label_names: Sequence[str] = (),
        boxes: Sequence[Box] = (),
        box_labels: Sequence[int | None] = (),
        mask: np.ndarray | None = None,
    ) -> Item:
        """The item after checking boxes and mask against the file's size (and scaling them if it was shrunk)."""
        w, h = img.size
        for b in boxes:
            _check_box(b, w, h)
        if mask is not None and mask.shape != (h, w):
            mh, mw = mask.shape[:2]
            raise BadImageError(f"the mask is {mw}×{mh} pixels but the image is {w}×{h}")
        ph, pw = img.pixels.shape[:2]
        if (pw, ph) != (w, h):  # load_image downscaled a huge image: follow it
            boxes = [_scale_box(b, pw / w, ph / h, pw, ph) for b in boxes]
            if mask is not None:
                from PIL import Image

                mask = np.asarray(Image.fromarray(mask).resize((pw, ph), Image.Resampling.NEAREST))
        return Item(
            item_id=e.item_id,
            image=img.pixels,
            labels=tuple(int(k) for k in labels),
            label_names=tuple(label_names),
            boxes=tuple(tuple(int(v) for v in b) for b in boxes),  # type: ignore[misc]
            box_labels=tuple(box_labels),
            mask=mask,
            file_hash=img.file_hash,
        )

    def describe(self) -> str:
        return f"{self.spec}: {_images(len(self))} under {self.root}"


# ---------------------------------------------------------------------------------------------------- forms
def form(name: str, description: str, example: str) -> Callable[[type[SpixelDataset]], type[SpixelDataset]]:
    """Register a dataset class as ``--data`` form ``name`` (its ``from_spec`` is the registry's callable)."""

    def deco(cls: type[SpixelDataset]) -> type[SpixelDataset]:
        cls.form = name
        info = {"description": description, "example": example, "options": tuple(cls.options), "cls": cls}
        DATASETS.register(name, **info)(cls.from_spec)
        return cls

    return deco


@form("folder", "images in a folder, recursively; ImageFolder sub-folders give the label", "folder:/data/images")
class FolderDataset(_FileDataset):
    """Images under ``root``, recursively. When ``root`` holds no images itself but its sub-folders do (the
    ImageFolder layout), the sub-folder name is the label (a class index, a WordNet id or the model's label
    text). Option ``classes``: ``auto`` (default: sub-folder labels when at least one sub-folder name is a model
    class; the others then give failed items), ``folders`` (always) or ``none`` (never)."""

    options: ClassVar[dict[str, Callable[[str], Any]]] = {"classes": str}

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        classes: str = "auto",
        labels: Sequence[str] | None = None,
        num_classes: int | None = None,
    ) -> None:
        super().__init__(root, labels, num_classes, "folder of images")
        if classes not in ("auto", "folders", "none"):
            raise BadParameterError(f"folder: option classes={classes}: use auto, folders or none")
        self.class_mode = classes
        files = _walk(Path(self.root), _is_image)
        nested = bool(files) and all("/" in f for f in files)
        self.folder_classes: dict[str, int | str] = {}  # folder name → class index, or why it is not one
        if nested and classes != "none":
            for name in sorted({f.split("/", 1)[0] for f in files}):
                try:
                    self.folder_classes[name] = self.resolver(name)
                except BadParameterError as err:
                    self.folder_classes[name] = f"folder {name!r}: {err}"
            if classes == "auto" and not any(isinstance(v, int) for v in self.folder_classes.values()):
                self.folder_classes = {}
        use = bool(self.folder_classes)
        self._finish(
            [_Entry(f, os.path.join(self.root, f), folder=f.split("/", 1)[0] if use else None) for f in files],
            repr(os.fspath(root)),
        )

    def _fingerprint_parts(self) -> list[str]:
        return [*super()._fingerprint_parts(), f"option:classes={self.class_mode}"]

    def _load(self, e: _Entry, img: _Image) -> Item:
        if e.folder is None:
            return self._item(e, img)
        k = self.folder_classes[e.folder]
        if isinstance(k, str):
            raise BadParameterError(f"{k} (add ?classes=none to ignore folder names)")
        return self._item(e, img, labels=(k,), label_names=(e.folder,))

    def describe(self) -> str:
        n = len(self.folder_classes)
        how = f"labels from {n} class folders" if n else "no labels"
        return f"{self.spec}: {_images(len(self))} under {self.root} ({how})"


@form(
    "voc",
    "PASCAL VOC: JPEGImages, Annotations/*.xml, ImageSets splits, SegmentationClass masks",
    "voc:/data/VOCdevkit/VOC2007?split=test",
)
class VocDataset(_FileDataset):
    """A PASCAL VOC folder: ``JPEGImages/``, ``Annotations/*.xml``, optional ``ImageSets/Main/<split>.txt``
    (option ``split``; ``ImageSets/Segmentation/<split>.txt`` when Main has none) and optional
    ``SegmentationClass/*.png`` (masks of every object pixel). Difficult boxes are dropped unless
    ``difficult=true``. VOC class names become model classes where they resolve (else only ``label_names``)."""

    options: ClassVar[dict[str, Callable[[str], Any]]] = {"split": str, "difficult": _truthy}

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        split: str | None = None,
        difficult: bool = False,
        labels: Sequence[str] | None = None,
        num_classes: int | None = None,
    ) -> None:
        super().__init__(root, labels, num_classes, "VOC folder (the one holding JPEGImages and Annotations)")
        r = Path(self.root)
        for sub in ("JPEGImages", "Annotations"):
            if not (r / sub).is_dir():
                raise BadParameterError(f"voc: {self.root} has no {sub}/ folder; give the VOC2007/VOC2012 folder")
        self.split, self.difficult = split, bool(difficult)
        images = {Path(f).stem: f for f in os.listdir(r / "JPEGImages") if _is_image(f) and not f.startswith(".")}
        xmls = {Path(f).stem for f in os.listdir(r / "Annotations") if f.lower().endswith(".xml")}
        seg = r / "SegmentationClass"
        masks = {Path(f).stem for f in os.listdir(seg) if f.lower().endswith(".png")} if seg.is_dir() else set()
        if split is None:
            stems = sorted(xmls)
        else:
            candidates = [r / "ImageSets" / sub / f"{split}.txt" for sub in ("Main", "Segmentation")]
            found = next((c for c in candidates if c.is_file()), None)
            if found is None:
                main = r / "ImageSets" / "Main"
                have = sorted(p.stem for p in main.glob("*.txt") if "_" not in p.stem) if main.is_dir() else []
                raise BadParameterError(
                    f"voc: no split file ImageSets/Main/{split}.txt in {self.root}"
                    + (f" (splits: {', '.join(have)})" if have else "")
                )
            self.extra_files.append(str(found))
            lines = found.read_text(encoding="utf-8").split("\n")
            rows = [ln.split() for ln in lines if ln.strip()]
            stems = sorted({r[0] for r in rows if r[1:2] != ["-1"]})  # class files mark absent images with -1
        entries = [
            _Entry(
                f"JPEGImages/{images.get(s, s + '.jpg')}",
                str(r / "JPEGImages" / images[s]) if s in images else None,
                ann=str(r / "Annotations" / f"{s}.xml"),
                mask=str(seg / f"{s}.png") if s in masks else None,
            )
            for s in stems
        ]
        self._finish(entries, f"{self.root} (Annotations/*.xml" + (f", split {split})" if split else ")"))

    def _fingerprint_parts(self) -> list[str]:
        return [*super()._fingerprint_parts(), f"option:difficult={self.difficult}"]

    def _load(self, e: _Entry, img: _Image) -> Item:
        assert e.ann is not None
        if not os.path.isfile(e.ann):
            raise BadParameterError(f"no annotation {self._rel(e.ann)}")
        _, objects = read_voc_xml(e.ann)
        kept = [o for o in objects if self.difficult or not o.difficult]
        classes = {o.name: self.resolver.try_resolve(o.name) for o in kept}
        box_labels = [classes[o.name] for o in kept]
        mask = read_mask(e.mask) if e.mask else None
        return self._item(
            e,
            img,
            labels=_unique(box_labels),
            label_names=_unique([o.name for o in kept]),
            boxes=[o.box for o in kept],
            box_labels=box_labels,
            mask=mask,
        )

    def describe(self) -> str:
        split = f"split {self.split}" if self.split else "all annotated images"
        diff = "difficult boxes kept" if self.difficult else "difficult boxes dropped"
        n_masks = sum(e.mask is not None for e in self.entries)
        return f"{self.spec}: {_images(len(self), 'VOC')} under {self.root} ({split}, {diff}, {n_masks} with masks)"


@form(
    "imagenet",
    "ImageNet images with box XML files of the same stem (option boxes=DIR for another folder)",
    "imagenet:/data/imagenet/val?boxes=/data/imagenet/val_boxes",
)
class ImageNetDataset(_FileDataset):
    """ImageNet images under ``root`` (recursively) with VOC-style box XML files of the same stem, next to the
    image or in a parallel folder (option ``boxes``: the same relative path, or just the stem, with ``.xml``).
    Box names are WordNet ids, resolved to class indices (an unknown id fails the item); labels are the distinct
    classes of the boxes. An image without XML has no boxes; its label then comes from a WordNet-id parent
    folder if it has one."""

    options: ClassVar[dict[str, Callable[[str], Any]]] = {"boxes": str}

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        boxes: str | os.PathLike[str] | None = None,
        labels: Sequence[str] | None = None,
        num_classes: int | None = None,
    ) -> None:
        super().__init__(root, labels, num_classes, "folder of ImageNet images")
        if boxes is not None and not os.path.isdir(boxes):
            raise BadParameterError(f"imagenet: option boxes={os.fspath(boxes)}: no such directory")
        self.boxes_dir = os.path.abspath(os.fspath(boxes)) if boxes is not None else self.root
        files = _walk(Path(self.root), _is_image)
        xmls = set(_walk(Path(self.boxes_dir), lambda f: f.lower().endswith(".xml")))
        by_stem = {Path(x).stem: x for x in xmls}
        entries = []
        for f in files:
            rel_xml = str(Path(f).with_suffix(".xml").as_posix())
            x = rel_xml if rel_xml in xmls else (by_stem.get(Path(f).stem) if boxes is not None else None)
            parent = Path(f).parent.name
            entries.append(
                _Entry(
                    f,
                    os.path.join(self.root, f),
                    ann=os.path.join(self.boxes_dir, x) if x else None,
                    folder=parent if is_wordnet_id(parent) else None,
                )
            )
        self._finish(entries, repr(os.fspath(root)))

    def _load(self, e: _Entry, img: _Image) -> Item:
        if e.ann is None:
            if e.folder is None:
                return self._item(e, img)
            return self._item(e, img, labels=(self.resolver(e.folder),), label_names=(e.folder,))
        _, objects = read_voc_xml(e.ann)
        box_labels = [self.resolver(o.name) for o in objects]
        return self._item(
            e,
            img,
            labels=_unique(box_labels),
            label_names=_unique([o.name for o in objects]),
            boxes=[o.box for o in objects],
            box_labels=box_labels,
        )

    def describe(self) -> str:
        n_xml = sum(e.ann is not None for e in self.entries)
        return f"{self.spec}: {_images(len(self), 'ImageNet')} under {self.root} ({n_xml} with box XML)"


@form("csv", "a CSV of path,label,x0,y0,x1,y1 rows (several rows per image = several boxes)", "csv:/data/boxes.csv")
class CsvDataset(_FileDataset):
    """The images a ``path,label,x0,y0,x1,y1`` CSV names (see :func:`~spixel.data.annotations.read_csv_boxes`),
    paths relative to the CSV's folder; boxes 0-based with exclusive ends. Labels are class indices, WordNet ids
    or the model's label texts; one that does not resolve fails its item."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        labels: Sequence[str] | None = None,
        num_classes: int | None = None,
    ) -> None:
        p = Path(path)
        if not p.is_file():
            raise BadParameterError(f"csv: no such file {os.fspath(path)!r}; give a CSV of path,label,x0,y0,x1,y1")
        super().__init__(p.parent, labels, num_classes, "CSV file")
        self.spec = f"csv:{os.fspath(path)}"
        self.csv_path = os.path.abspath(p)
        self.extra_files.append(self.csv_path)
        groups: dict[str, list[CsvRow]] = {}
        for row in read_csv_boxes(p):
            groups.setdefault(row.path, []).append(row)
        entries = [_Entry(k, os.path.join(self.root, k), rows=tuple(v)) for k, v in groups.items()]
        self._finish(entries, f"the CSV {os.fspath(path)!r}")

    def _load(self, e: _Entry, img: _Image) -> Item:
        names = [r.label for r in e.rows]
        classes = {n: self.resolver(n) for n in names if n is not None}
        with_box = [r for r in e.rows if r.box is not None]
        return self._item(
            e,
            img,
            labels=_unique([classes.get(n) for n in names if n is not None]),
            label_names=_unique(names),
            boxes=[r.box for r in with_box],  # type: ignore[misc]
            box_labels=[classes[r.label] if r.label is not None else None for r in with_box],
        )

    def describe(self) -> str:
        n_boxes = sum(r.box is not None for e in self.entries for r in e.rows)
        return f"{self.spec}: {_images(len(self))}, {n_boxes} boxes, from {self.csv_path}"


@form("masks", "DIR/images and DIR/masks (PNG) with the same relative paths", "masks:/data/seg?images=img&masks=gt")
class MaskDataset(_FileDataset):
    """Images under ``root/images`` and masks under ``root/masks`` at the same relative path with ``.png``
    (options ``images``/``masks`` rename the sub-folders). A missing mask means no mask, not an error; a binary
    or index mask (see :func:`~spixel.data.annotations.read_mask`) gives the object pixels. No labels."""

    options: ClassVar[dict[str, Callable[[str], Any]]] = {"images": str, "masks": str}

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        images: str = "images",
        masks: str = "masks",
        labels: Sequence[str] | None = None,
        num_classes: int | None = None,
    ) -> None:
        super().__init__(root, labels, num_classes, "folder holding images/ and masks/")
        img_dir, mask_dir = Path(self.root) / images, Path(self.root) / masks
        if not img_dir.is_dir():
            raise BadParameterError(f"masks: {self.root} has no {images}/ folder (option images= renames it)")
        self.images_dir, self.masks_dir = images, masks
        have = set(_walk(mask_dir, lambda f: f.lower().endswith(".png"))) if mask_dir.is_dir() else set()
        entries = []
        for f in _walk(img_dir, _is_image):
            m = Path(f).with_suffix(".png").as_posix()
            entries.append(
                _Entry(
                    f"{Path(images).as_posix()}/{f}",
                    str(img_dir / f),
                    mask=str(mask_dir / m) if m in have else None,
                )
            )
        self._finish(entries, str(img_dir))

    def _load(self, e: _Entry, img: _Image) -> Item:
        return self._item(e, img, mask=read_mask(e.mask) if e.mask else None)

    def describe(self) -> str:
        n_masks = sum(e.mask is not None for e in self.entries)
        return f"{self.spec}: {_images(len(self))} under {self.root}/{self.images_dir}, {n_masks} with masks"


@form("photos", "the bundled real photos with ImageNet classes and a main-object box", "photos")
class PhotosDataset(SpixelDataset):
    """The bundled photos (:func:`spixel.data.samples`), or those named in ``ARG`` (comma-separated).
    Labels are their ImageNet-1k classes (none for a model with another number of classes); one box each."""

    def __init__(
        self,
        names: str | Sequence[str] = "",
        *,
        labels: Sequence[str] | None = None,
        num_classes: int | None = None,
    ) -> None:
        from .samples import sample_names

        known = sample_names()
        wanted = [n.strip() for n in names.split(",") if n.strip()] if isinstance(names, str) else list(names)
        unknown = [n for n in wanted if n not in known]
        if unknown:
            raise BadParameterError(f"photos: unknown photo(s) {unknown}; choose from: {', '.join(known)}")
        self.names = wanted or known
        self.spec = "photos" + (f":{','.join(wanted)}" if wanted else "")
        n = num_classes if num_classes is not None else (len(labels) if labels is not None else None)
        self.imagenet = n in (None, 1000)

    def ids(self) -> list[str]:
        return list(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def _fingerprint_parts(self) -> list[str]:
        from importlib import resources

        ann = resources.files(__package__).joinpath("samples.json").read_bytes()
        return [*self.names, "samples.json:" + hashlib.sha256(ann).hexdigest()]

    def __getitem__(self, i: int) -> Item:
        name = self.names[i]
        try:
            from .samples import sample

            s = sample(name)
        except _ITEM_ERRORS as err:
            return failed(name, str(err))
        return Item(
            item_id=name,
            image=s.image,
            labels=s.classes if self.imagenet else (),
            label_names=tuple(wordnet_id(c) for c in s.classes),
            boxes=(s.box,),
            box_labels=(None,),
        )

    def describe(self) -> str:
        photos = _images(len(self), "bundled").replace("image", "photo")
        return f"{self.spec}: {photos} with ImageNet classes and a main-object box"


@form(
    "synthetic",
    "generated shapes with exact masks (SyntheticDataset); N images, default 100",
    "synthetic:200?size=64&seed=1",
)
class SyntheticItems(SpixelDataset):
    """``SyntheticDataset(n, size, seed)`` as items: ``synthetic/000012``, label, exact mask and its box."""

    options: ClassVar[dict[str, Callable[[str], Any]]] = {
        "size": _positive_int,
        "seed": _nonneg_int,
        "distractors": _nonneg_int,
    }

    def __init__(
        self,
        n: str | int = 100,
        *,
        size: int = 64,
        seed: int = 0,
        distractors: int = 2,
        labels: Sequence[str] | None = None,
        num_classes: int | None = None,
    ) -> None:
        from .synthetic import SyntheticDataset

        if isinstance(n, str):
            try:
                n = _positive_int(n) if n.strip() else 100
            except BadParameterError as e:
                raise BadParameterError(f"synthetic:N: N is the number of images; {e}") from None
        self.data = SyntheticDataset(n, size=size, seed=seed, distractors=distractors)
        self.spec = f"synthetic:{n}?size={size}&seed={seed}"

    def ids(self) -> list[str]:
        return [f"synthetic/{i:06d}" for i in range(len(self.data))]

    def __len__(self) -> int:
        return len(self.data)

    def _fingerprint_parts(self) -> list[str]:
        d = self.data
        return [*self.ids(), f"params:{d.size}:{d.seed}:{d.distractors}"]

    def __getitem__(self, i: int) -> Item:
        s = self.data[i]
        return Item(
            item_id=f"synthetic/{s.index:06d}",
            image=s.image,
            labels=(s.label,),
            label_names=(s.class_name,),
            boxes=(s.box,),
            box_labels=(s.label,),
            mask=s.mask,
        )

    def describe(self) -> str:
        d = self.data
        return f"{self.spec}: {_images(len(d), f'generated {d.size}×{d.size}')} of {len(d.classes)} shapes, exact masks"


# ---------------------------------------------------------------------------------------------------- specs
def _parse_options(query: str, spec: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in query.split("&"):
        if not part:
            continue
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq or not key:
            raise BadParameterError(f"--data {spec!r}: options are key=value pairs joined by '&', got {part!r}")
        if key in out:
            raise BadParameterError(f"--data {spec!r}: option {key!r} given twice")
        out[key] = value.strip()
    return out


def open_dataset(spec: str, *, labels: Sequence[str] | None = None, num_classes: int | None = None) -> SpixelDataset:
    """Open a ``--data`` spec: ``FORM:ARG?key=value&…`` (forms in :data:`~spixel.registry.DATASETS`), or a bare
    existing directory (= ``folder:DIR``). ``labels``/``num_classes`` are the model's, for resolving class
    names. An unknown form or option, a missing path or an empty dataset raise a one-line
    :class:`~spixel.errors.SpixelError`."""
    text = str(spec).strip()
    if not text:
        raise BadParameterError(f"--data is empty; give a folder or FORM:ARG (forms: {', '.join(DATASETS.names())})")
    if os.path.isdir(text):
        name, arg, query = "folder", text, ""
    else:
        head, _, query = text.partition("?")
        name, colon, arg = head.partition(":")
        if not colon and os.path.isdir(head):
            name, arg = "folder", head
        elif name not in DATASETS:
            if any(c in name for c in ("/", os.sep, ".", "~")):
                raise BadParameterError(
                    f"--data {text!r}: no such directory; give an existing folder or FORM:ARG "
                    f"(forms: {', '.join(DATASETS.names())})"
                )
            try:
                DATASETS.get(name)
            except UnknownNameError as e:
                raise UnknownNameError(f"--data {text!r}: {e} (or give an existing folder)") from None
    ds = DATASETS.get(name).fn(arg, _parse_options(query, text), labels=labels, num_classes=num_classes)
    ds.spec = text
    return ds

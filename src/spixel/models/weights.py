"""Reading a user's weights file (``weights_only=True``, never unpickling code), fitting it to an architecture
with one-line errors, label files and the label sets of multi-label heads (VOC 20, COCO 80)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import SpixelError

__all__ = [
    "COCO_CLASSES",
    "VOC_CLASSES",
    "WeightsFileError",
    "WeightsNotFoundError",
    "WrongArchitectureError",
    "default_labels",
    "fit_state_dict",
    "read_labels_file",
    "read_weights",
]

#: PASCAL VOC's 20 classes in the usual (alphabetical) order of 20-output multi-label heads (TorchRay's).
VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
    "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip

#: COCO 2014/2017's 80 object classes in category-id order (the order of 80-output multi-label heads).
COCO_CLASSES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
)  # fmt: skip


class WeightsNotFoundError(SpixelError):
    """The weights file does not exist."""


class WeightsFileError(SpixelError):
    """The file is not a state_dict that can be read without unpickling code."""


class WrongArchitectureError(SpixelError):
    """The state_dict does not fit the architecture."""


_WRAPPERS = ("state_dict", "model_state_dict", "model", "net", "module")


def read_weights(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(state_dict, extras)`` of a weights file read with ``torch.load(weights_only=True)``.

    Accepts a plain state_dict, or a dict holding one under ``state_dict`` / ``model_state_dict`` / ``model`` /
    ``net`` / ``module`` (other plain entries become ``extras``: ``labels`` / ``classes``, ``multilabel``,
    ``config`` …). A ``module.`` prefix on every key (``DataParallel``) is removed."""
    p = Path(path)
    if not p.is_file():
        raise WeightsNotFoundError(f"{p}: weights file not found")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # weights_only refuses pickled code: never unpickle user files
        msg = " ".join(str(e).split())[:120]
        raise WeightsFileError(
            f"{p}: not a loadable weights file ({type(e).__name__}: {msg}); save model.state_dict() with torch.save"
        ) from None
    extras: dict[str, Any] = {}
    sd: Any = obj
    if isinstance(obj, dict):
        for k in _WRAPPERS:
            if isinstance(obj.get(k), dict) and obj[k] and all(isinstance(v, torch.Tensor) for v in obj[k].values()):
                sd = obj[k]
                extras = {kk: v for kk, v in obj.items() if kk != k}
                break
    if not isinstance(sd, dict) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightsFileError(f"{p}: expected a state_dict (a dict of tensors)")
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return sd, extras


def _shape(t: torch.Tensor) -> str:
    return "×".join(map(str, t.shape)) or "scalar"


def fit_state_dict(module: nn.Module, sd: dict[str, torch.Tensor], where: str | os.PathLike[str], arch: str) -> None:
    """Load ``sd`` into ``module`` strictly; a mismatch is one :class:`WrongArchitectureError` line naming counts
    and the first offending keys."""
    own = module.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [k for k in own if k in sd and own[k].shape != sd[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing tensor(s) (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if shapes:
            k = shapes[0]
            parts.append(f"{len(shapes)} of another shape (e.g. {k}: {_shape(sd[k])} for {_shape(own[k])})")
        raise WrongArchitectureError(f"{where}: does not fit {arch}: {'; '.join(parts)}")
    module.load_state_dict(sd)


def read_labels_file(path: str | os.PathLike[str]) -> list[str]:
    """Class names from a text file (one per line, blank lines skipped; ``index name`` / ``index,name`` lines
    are accepted) or a JSON list / ``{index: name}`` object."""
    p = Path(path)
    if not p.is_file():
        raise SpixelError(f"{p}: labels file not found")
    text = p.read_text(encoding="utf-8-sig")
    if p.suffix.lower() == ".json":
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise SpixelError(f"{p}: not JSON ({e.msg} at line {e.lineno})") from None
        if isinstance(obj, dict):
            try:
                obj = [obj[k] for k in sorted(obj, key=int)]
            except ValueError:
                raise SpixelError(f"{p}: a JSON object of labels needs integer keys 0..K-1") from None
        if not isinstance(obj, list) or not all(isinstance(v, str) for v in obj):
            raise SpixelError(f"{p}: expected a JSON list of class names")
        return list(obj)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    out = []
    for ln in lines:
        head, _, rest = ln.replace(",", " ", 1).partition(" ")
        out.append(rest.strip() if head.isdigit() and rest.strip() else ln)
    if not out:
        raise SpixelError(f"{p}: no class names in the labels file")
    return out


def default_labels(num_classes: int) -> tuple[list[str] | None, bool]:
    """``(labels, multilabel)`` guessed from the head size: ImageNet's 1000 names; VOC's 20 and COCO's 80 names
    as multi-label heads (TorchRay's convention); ``(None, False)`` otherwise (labels read ``class k``)."""
    if num_classes == 1000:
        from .zoo import imagenet_labels

        return imagenet_labels(), False
    if num_classes == len(VOC_CLASSES):
        return list(VOC_CLASSES), True
    if num_classes == len(COCO_CLASSES):
        return list(COCO_CLASSES), True
    return None, False


def checkpoint_labels(extras: dict[str, Any]) -> tuple[list[str] | None, bool | None]:
    """Labels and the multi-label flag a weights file carries (``labels`` / ``classes`` / ``class_names`` /
    ``categories``, at the top or in ``config``)."""
    labels: list[str] | None = None
    multilabel: bool | None = None
    for src in (extras, extras.get("config") if isinstance(extras.get("config"), dict) else {}):
        for k in ("labels", "classes", "class_names", "categories"):
            v = src.get(k)
            if labels is None and isinstance(v, Sequence) and v and all(isinstance(s, str) for s in v):
                labels = list(v)
        if multilabel is None and isinstance(src.get("multilabel"), bool):
            multilabel = src["multilabel"]
    return labels, multilabel

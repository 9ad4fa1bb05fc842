"""The item contract between datasets (``spixel.data.datasets``) and the experiments engine.

A dataset is a ``torch.utils.data.Dataset`` of :class:`Item`; it decodes in ``DataLoader`` workers and never
raises for a bad item: an unreadable image, a box outside the image or an unknown class name comes back as an
``Item`` whose ``error`` says in one line what is wrong (the engine records it as failed and goes on).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

Box = tuple[int, int, int, int]


@dataclass(frozen=True, eq=False)
class Item:
    """One annotated image of a dataset.

    ``item_id``: stable across runs and machines (the path relative to the dataset root, or a built-in name).
    ``image``: uint8 ``(H, W, 3)`` RGB, ``None`` when ``error`` is set. ``labels``: the model class indices the
    annotation gives (empty: none known, the engine explains the prediction). ``label_names``: the annotation's
    own names (WordNet ids, VOC class names …), for the record. ``boxes``: ``(x0, y0, x1, y1)`` in the original
    image's pixels with exclusive ends; ``box_labels[i]`` the class index of box ``i`` (``None`` if unknown).
    ``mask``: bool ``(H, W)`` of the evidence (object) pixels, or ``None``. ``file_hash``: a short content hash of
    the image file (``None`` for generated images). ``error``: why the item cannot be used, or ``None``.
    """

    item_id: str
    image: np.ndarray | None = field(default=None, repr=False)
    labels: tuple[int, ...] = ()
    label_names: tuple[str, ...] = ()
    boxes: tuple[Box, ...] = ()
    box_labels: tuple[int | None, ...] = ()
    mask: np.ndarray | None = field(default=None, repr=False)
    file_hash: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def boxes_for(self, target: int) -> list[Box]:
        """The boxes of class ``target`` when the annotation names box classes and some match, else all boxes."""
        own = [b for b, k in zip(self.boxes, self.box_labels, strict=False) if k == target]
        return own or list(self.boxes)


def failed(item_id: str, reason: str, file_hash: str | None = None) -> Item:
    """An item that cannot be used, with a one-line reason."""
    return Item(item_id=item_id, error=" ".join(str(reason).split()), file_hash=file_hash)


def choose_target(labels: Sequence[int], predicted: int) -> int:
    """The class to explain for an item with annotated ``labels``: the prediction when it is one of them (or
    there are none), else the first label (ImageNet-style "any accepted class")."""
    if not labels or predicted in labels:
        return int(predicted)
    return int(labels[0])

"""Small frozen containers of tensors that travel between explainers, segmenters and metrics."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Union

import numpy as np
import torch
from torch import Tensor

from .errors import BadInputError, BadParameterError

#: What every explainer and metric accepts as a target: ``None`` (the predicted class), one class for the
#: whole batch, one class per image (a sequence or an ``(N,)`` tensor).
TargetLike = Union[None, int, Sequence[int], Tensor, np.ndarray]


@dataclass(frozen=True, eq=False)
class Explanation:
    """A batch of attribution maps.

    ``attribution``: float ``(N, H, W)`` at input resolution (higher = more important for the target).
    ``raw``: the signed input-space attribution ``(N, C, H, W)`` where the method has one, else ``None``.
    ``segmentation``: the partition the map lives on, for region explanations (else ``None``).
    ``meta``: method, params, seed, target, label, probability, seconds, model name.

    ``Explanation(attribution=m)`` also wraps a map made elsewhere (Captum, pytorch-grad-cam, a ``.npy``):
    a numpy array or tensor of shape ``(H, W)``, ``(N, H, W)`` or ``(N, 1, H, W)``.
    """

    attribution: Tensor
    raw: Tensor | None = None
    segmentation: Any = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        a = self.attribution
        if isinstance(a, np.ndarray):
            a = torch.from_numpy(np.ascontiguousarray(a))
        if not isinstance(a, Tensor):
            raise BadInputError(f"attribution must be a tensor or numpy array, got {type(a).__name__}")
        if a.ndim == 4 and a.shape[1] == 1:
            a = a[:, 0]
        if a.ndim == 2:
            a = a.unsqueeze(0)
        if a.ndim != 3:
            raise BadInputError(f"attribution must have shape (N, H, W) or (H, W), got {tuple(a.shape)}")
        if not a.is_floating_point():
            a = a.float()
        object.__setattr__(self, "attribution", a)
        if self.raw is not None and (self.raw.ndim != 4 or self.raw.shape[0] != a.shape[0]):
            raise BadInputError(f"raw must have shape (N, C, H, W) with N={a.shape[0]}, got {tuple(self.raw.shape)}")

    def __len__(self) -> int:
        return int(self.attribution.shape[0])

    @property
    def method(self) -> str | None:
        return self.meta.get("method")

    def __getitem__(self, idx: int | slice) -> Explanation:
        """The explanation of one image (kept as a batch of one) or of a slice of the batch."""
        sl = slice(idx, idx + 1) if isinstance(idx, int) else idx
        meta = dict(self.meta)
        for key in ("target", "label", "probability", "predicted", "predicted_label", "predicted_probability"):
            if isinstance(meta.get(key), list):
                meta[key] = meta[key][sl]
        seg = self.segmentation[sl] if self.segmentation is not None else None
        raw = self.raw[sl] if self.raw is not None else None
        return replace(self, attribution=self.attribution[sl], raw=raw, segmentation=seg, meta=meta)

    def to(self, device: torch.device | str) -> Explanation:
        seg = self.segmentation.to(device) if self.segmentation is not None else None
        raw = self.raw.to(device) if self.raw is not None else None
        return replace(self, attribution=self.attribution.to(device), raw=raw, segmentation=seg)

    def numpy(self) -> np.ndarray:
        """The maps as float32 numpy ``(N, H, W)``."""
        return self.attribution.detach().float().cpu().numpy()


def as_batch(x: Tensor) -> Tensor:
    """Validate an image tensor and return it as ``(N, C, H, W)`` (a ``(C, H, W)`` image gets a batch axis)."""
    if not isinstance(x, Tensor):
        raise BadInputError(f"expected a torch.Tensor of images, got {type(x).__name__}")
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4:
        raise BadInputError(f"expected images of shape (N, C, H, W), got {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise BadInputError("the batch is empty")
    if not x.is_floating_point():
        raise BadInputError(f"expected a float tensor (preprocessed images), got {x.dtype}")
    if not torch.isfinite(x).all():
        raise BadInputError("the input contains NaN or infinite values")
    return x


def resolve_targets(target: TargetLike, n: int, num_classes: int, predicted: Tensor | None = None) -> Tensor:
    """Turn any :data:`TargetLike` into a long tensor ``(n,)`` on the CPU, checking the range.

    ``None`` needs ``predicted`` (the arg-max classes of the batch).
    """
    if target is None:
        if predicted is None:
            raise ValueError("target=None needs the predicted classes")
        t = predicted.detach().cpu().long().reshape(-1)
    elif isinstance(target, (bool, np.bool_)):
        raise BadParameterError(f"target must be a class index, got {target!r}")
    elif isinstance(target, (int, np.integer)):
        t = torch.full((n,), int(target), dtype=torch.long)
    else:
        try:
            t = torch.as_tensor(np.asarray(target.cpu() if isinstance(target, Tensor) else target))
        except (TypeError, ValueError) as e:
            raise BadParameterError(f"target must be None, an int or one int per image: {e}") from None
        if t.is_floating_point() or t.dtype == torch.bool:
            raise BadParameterError(f"target must hold integer class indices, got dtype {t.dtype}")
        t = t.long().reshape(-1)
        if t.numel() == 1 and n > 1:
            t = t.expand(n).clone()
    if t.numel() != n:
        raise BadParameterError(f"got {t.numel()} targets for {n} images: give one per image or a single int")
    bad = (t < 0) | (t >= num_classes)
    if bad.any():
        raise BadParameterError(
            f"target {int(t[bad][0])} is out of range: the model has {num_classes} classes (0..{num_classes - 1})"
        )
    return t

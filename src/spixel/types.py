"""Small frozen containers of tensors that travel between explainers, segmenters and metrics."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .errors import BadInputError, BadParameterError

#: What every explainer and metric accepts as a target: ``None`` (the predicted class), one class for the
#: whole batch, one class per image (a sequence or an ``(N,)`` tensor).
TargetLike = None | int | Sequence[int] | Tensor | np.ndarray


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


def relabel_contiguous(labels: Tensor) -> Tensor:
    """Integer labels ``(N, H, W)`` → ids ``0..K_i-1`` per image in the canonical order: by first appearance in
    raster order, so that a partition gets the same ids whatever batch, backend or worker computed it.

    One scatter over the whole batch when the id range is small (the usual case); ``torch.unique`` per image
    when the ids are sparse (e.g. hashes), to bound memory.
    """
    flat = labels.flatten(1).long()
    flat = flat - flat.amin(1, keepdim=True)
    n, p = flat.shape
    k = int(flat.max()) + 1
    if k > 4 * p + 1024:
        flat = torch.stack([torch.unique(row, return_inverse=True)[1] for row in flat])
        k = int(flat.max()) + 1
    pos = torch.arange(p, device=flat.device).expand(n, p)
    first = torch.full((n, k), p, dtype=torch.long, device=flat.device)
    first.scatter_reduce_(1, flat, pos, reduce="amin")
    # rank of each id's first appearance; absent ids (first == p) sort last and are never looked up
    rank = torch.empty_like(first)
    rank.scatter_(1, torch.sort(first, dim=1, stable=True).indices, torch.arange(k, device=flat.device).expand(n, k))
    return rank.gather(1, flat).view(labels.shape)


@dataclass(frozen=True, eq=False)
class Segmentation:
    """A partition of each image of a batch into regions (superpixels).

    ``labels``: int64 ``(N, H, W)``; image ``i`` uses the contiguous ids ``0 .. num_segments[i] − 1``, each at
    least once. Build one from arbitrary integer labels with :meth:`from_labels` (which relabels). ``meta``
    records the segmenter and its parameters. Lives on the device of ``labels``; explainers and metrics use it
    there (pooling and painting are scatter/gather ops, see :mod:`spixel.regions`).
    """

    labels: Tensor
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        lab = self.labels
        if isinstance(lab, np.ndarray):
            lab = torch.from_numpy(np.ascontiguousarray(lab))
        if not isinstance(lab, Tensor):
            raise BadInputError(f"labels must be a tensor or numpy array, got {type(lab).__name__}")
        if lab.ndim == 2:
            lab = lab.unsqueeze(0)
        if lab.ndim != 3 or lab.is_floating_point() or lab.dtype == torch.bool:
            raise BadInputError(f"labels must be integer (N, H, W), got {lab.dtype} {tuple(lab.shape)}")
        lab = lab.long()
        flat = lab.flatten(1)
        if flat.numel() == 0:
            raise BadInputError("labels are empty")
        k = flat.amax(1) + 1
        if (flat.amin(1) != 0).any():
            raise BadInputError("segment ids must start at 0 in every image; use Segmentation.from_labels")
        counts = torch.zeros(lab.shape[0], int(k.max()), dtype=torch.long, device=lab.device)
        counts.scatter_add_(1, flat, torch.ones_like(flat))
        present = counts > 0
        if not bool((present.sum(1) == k).all()):
            raise BadInputError("segment ids must be contiguous (0..K-1, each used); use Segmentation.from_labels")
        object.__setattr__(self, "labels", lab)
        object.__setattr__(self, "_counts", counts)

    @classmethod
    def from_labels(cls, labels: Tensor | np.ndarray, **meta: Any) -> Segmentation:
        """Relabel any integer labels ``(N, H, W)`` or ``(H, W)`` to contiguous ids per image, in the canonical order
        (first appearance in raster order)."""
        lab = torch.as_tensor(np.asarray(labels) if not isinstance(labels, Tensor) else labels)
        if lab.ndim == 2:
            lab = lab.unsqueeze(0)
        if lab.ndim != 3 or lab.is_floating_point():
            raise BadInputError(f"labels must be integer (N, H, W), got {lab.dtype} {tuple(lab.shape)}")
        return cls(relabel_contiguous(lab), dict(meta))

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.labels.shape[1]), int(self.labels.shape[2])

    @property
    def num_segments(self) -> Tensor:
        """``(N,)`` number of regions of each image."""
        return (self._counts > 0).sum(1)  # type: ignore[attr-defined]

    @property
    def max_segments(self) -> int:
        return int(self._counts.shape[1])  # type: ignore[attr-defined]

    @property
    def areas(self) -> Tensor:
        """``(N, K_max)`` pixel count of each region (0 past ``num_segments[i]``)."""
        return self._counts  # type: ignore[attr-defined]

    def masks(self, i: int = 0) -> Tensor:
        """Boolean ``(K_i, H, W)`` masks of image ``i``'s regions."""
        k = int(self.num_segments[i])
        return self.labels[i].unsqueeze(0) == torch.arange(k, device=self.labels.device).view(-1, 1, 1)

    def adjacency(self, i: int = 0) -> Tensor:
        """Boolean ``(K_i, K_i)`` 4-connectivity adjacency of image ``i``'s regions (no self loops)."""
        lab = self.labels[i]
        k = int(self.num_segments[i])
        adj = torch.zeros(k, k, dtype=torch.bool, device=lab.device)
        for a, b in ((lab[:, 1:], lab[:, :-1]), (lab[1:, :], lab[:-1, :])):
            d = a != b
            adj[a[d], b[d]] = True
        adj |= adj.T.clone()
        return adj

    def boundaries(self) -> Tensor:
        """Boolean ``(N, H, W)``: pixels whose right or lower neighbour lies in another region."""
        lab = self.labels
        b = torch.zeros_like(lab, dtype=torch.bool)
        b[:, :, :-1] |= lab[:, :, 1:] != lab[:, :, :-1]
        b[:, :-1, :] |= lab[:, 1:, :] != lab[:, :-1, :]
        return b

    def __getitem__(self, idx: int | slice) -> Segmentation:
        sl = slice(idx, idx + 1) if isinstance(idx, int) else idx
        lab = self.labels[sl]
        # ids stay contiguous per image; trim the shared K_max to the slice's own
        return Segmentation(lab, dict(self.meta))

    def to(self, device: torch.device | str) -> Segmentation:
        return Segmentation(self.labels.to(device), dict(self.meta))


@dataclass(frozen=True, eq=False)
class MetricResult:
    """Scores of one metric on a batch: ``scores`` float ``(N,)``; ``curves`` ``(N, T)`` where the metric has
    one (deletion, insertion …) with its x-axis in ``meta["x"]``; ``meta``: metric name, parameters,
    ``higher_is_better``, category, paper reference, seconds, warnings."""

    scores: Tensor
    curves: Tensor | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @property
    def mean(self) -> float:
        return float(self.scores.float().mean())

    @property
    def higher_is_better(self) -> bool | None:
        return self.meta.get("higher_is_better")

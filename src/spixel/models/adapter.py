"""`ModelAdapter`: wraps any classifier ``nn.Module`` with its preprocessing, labels and named layers."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from ..errors import BadImageError, BadInputError, BadParameterError
from ..io import check_image_array, load_image
from .state import frozen

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_INTERP = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


class ModelAdapter:
    """A classifier together with everything an explainer needs to know about it.

    ``module`` takes the *normalised* tensor ``(x_rgb01 - mean) / std`` of shape ``(N, 3, S, S)`` and returns
    logits ``(N, K)``. ``preprocess`` resizes the shorter side of a photo to ``resize`` (default
    ``round(input_size * 256 / 224)``) with ``interpolation``, centre-crops ``input_size`` and normalises;
    ``to_rgb01`` inverts the normalisation (what segmenters see). ``layers`` maps roles to names from
    ``module.named_modules()``; the role ``"cam"`` is the default layer of the CAM methods. ``nas_layers``: the
    layers NAS clusters by default (else found, :func:`spixel.models.layers.find_nas_layers`).

    ``tokens``: for a Vision Transformer, the number of prefix (class / register) tokens of its ``(N, T, D)`` token
    tensors; found by :func:`spixel.models.layers.token_prefix` when not given (``None`` for a CNN). CAM methods
    and NAS then read token outputs on the patch grid (prefix dropped, :func:`spixel.models.layers.to_grid`).

    ``multilabel``: the head was trained with one sigmoid per class (VOC / COCO multi-label models, as
    TorchRay's): :meth:`probabilities` and :meth:`predict` use sigmoids, and :meth:`positive_labels` gives every
    class above ``threshold`` (the targets to explain).
    """

    def __init__(
        self,
        module: nn.Module,
        *,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        input_size: int = 224,
        labels: Sequence[str] | None = None,
        layers: dict[str, str] | None = None,
        resize: int | None = None,
        interpolation: str = "bilinear",
        name: str | None = None,
        tokens: int | None = None,
        multilabel: bool = False,
        nas_layers: Sequence[str] | None = None,
    ) -> None:
        if not isinstance(module, nn.Module):
            raise BadParameterError(f"ModelAdapter wraps a torch.nn.Module, got {type(module).__name__}")
        if len(mean) != 3 or len(std) != 3 or any(s <= 0 for s in std):
            raise BadParameterError("mean and std need 3 values each, std > 0")
        if input_size < 8:
            raise BadParameterError(f"input_size must be at least 8, got {input_size}")
        if interpolation not in _INTERP:
            raise BadParameterError(f"interpolation must be one of {sorted(_INTERP)}, got {interpolation!r}")
        self.module = module
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.input_size = int(input_size)
        self.resize = int(resize) if resize is not None else round(input_size * 256 / 224)
        if self.resize < self.input_size:
            raise BadParameterError(f"resize ({self.resize}) must be >= input_size ({self.input_size})")
        self.interpolation = interpolation
        self.labels = list(labels) if labels is not None else None
        self.layers = dict(layers or {})
        self.name = name or type(module).__name__
        names = dict(module.named_modules())
        for role, lname in self.layers.items():
            if lname not in names:
                raise BadParameterError(f"layer {lname!r} (role {role!r}) is not a module of {self.name}")
        self.nas_layers = list(nas_layers) if nas_layers is not None else None
        for lname in self.nas_layers or ():
            if lname not in names or not lname:
                raise BadParameterError(f"NAS layer {lname!r} is not a module of {self.name}")
        if tokens is None:
            from .layers import token_prefix

            tokens = token_prefix(module)
        elif isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
            raise BadParameterError(f"tokens must be the number of prefix tokens (an integer >= 0), got {tokens!r}")
        self.tokens = tokens
        if not isinstance(multilabel, bool):
            raise BadParameterError(f"multilabel must be True or False, got {multilabel!r}")
        self.multilabel = multilabel

    # ------------------------------------------------------------------ device and basic facts
    @property
    def device(self) -> torch.device:
        p = next(self.module.parameters(), None)
        if p is None:
            b = next(self.module.buffers(), None)
            return b.device if b is not None else torch.device("cpu")
        return p.device

    def to(self, device: torch.device | str) -> ModelAdapter:
        self.module.to(device)
        return self

    @property
    def num_classes(self) -> int | None:
        return len(self.labels) if self.labels is not None else None

    def label(self, k: int) -> str:
        return self.labels[k] if self.labels is not None and 0 <= k < len(self.labels) else f"class {k}"

    def __repr__(self) -> str:
        return f"ModelAdapter({self.name}, input_size={self.input_size}, device={self.device})"

    def layer(self, name_or_role: str) -> nn.Module:
        """The sub-module called ``name_or_role`` (a role from ``layers`` or a ``named_modules`` name)."""
        lname = self.layers.get(name_or_role, name_or_role)
        mods = dict(self.module.named_modules())
        if lname not in mods:
            raise BadParameterError(f"{self.name} has no layer {lname!r}; use a name from model.module.named_modules()")
        return mods[lname]

    # ------------------------------------------------------------------ geometry
    def _geometry(self, h: int, w: int) -> tuple[float, float, float, int, int]:
        """(scale, left, top, new_w, new_h) of the resize-shorter-side + centre-crop transform."""
        s = self.resize / min(h, w)
        nw, nh = max(self.resize, round(w * s)), max(self.resize, round(h * s))
        left = (nw - self.input_size) // 2
        top = (nh - self.input_size) // 2
        return s, float(left), float(top), nw, nh

    def map_boxes(
        self, boxes: Iterable[Sequence[float]], image_shape: Sequence[int]
    ) -> list[tuple[int, int, int, int]]:
        """Map ``(x0, y0, x1, y1)`` boxes (original pixels, exclusive ends) into model-input pixels.

        ``image_shape`` is the original ``(H, W[, C])``. Boxes are clipped to the crop; a box that falls
        entirely outside the crop comes back empty (``x0 == x1`` or ``y0 == y1``).
        """
        h, w = int(image_shape[0]), int(image_shape[1])
        _, left, top, nw, nh = self._geometry(h, w)
        sx, sy = nw / w, nh / h
        out = []
        for b in boxes:
            x0, y0, x1, y1 = (float(v) for v in b)
            if not (x1 >= x0 and y1 >= y0):
                raise BadParameterError(f"box {tuple(b)} must be (x0, y0, x1, y1) with x1 >= x0 and y1 >= y0")
            s = self.input_size
            X0 = min(max(round(x0 * sx - left), 0), s)
            X1 = min(max(round(x1 * sx - left), 0), s)
            Y0 = min(max(round(y0 * sy - top), 0), s)
            Y1 = min(max(round(y1 * sy - top), 0), s)
            out.append((X0, Y0, X1, Y1))
        return out

    # ------------------------------------------------------------------ preprocessing
    def _one(self, img: Any) -> np.ndarray:
        if isinstance(img, (str, os.PathLike)):
            return load_image(img)
        if isinstance(img, Image.Image):
            from ..io import _to_rgb_uint8

            return check_image_array(_to_rgb_uint8(img))
        if isinstance(img, np.ndarray):
            return check_image_array(img)
        raise BadImageError(f"cannot read an image from {type(img).__name__}; give a path, PIL image or HWC array")

    def crop(self, rgb: np.ndarray) -> np.ndarray:
        """Resize the shorter side to ``resize`` and centre-crop ``input_size``: uint8 ``(S, S, 3)``."""
        h, w = rgb.shape[:2]
        _, left, top, nw, nh = self._geometry(h, w)
        img = Image.fromarray(rgb).resize((nw, nh), _INTERP[self.interpolation])
        s = self.input_size
        return np.array(img.crop((int(left), int(top), int(left) + s, int(top) + s)))  # a writable copy

    def normalize(self, rgb01: Tensor) -> Tensor:
        """RGB in [0, 1] ``(N, 3, H, W)`` → the tensor the module takes."""
        mean = torch.tensor(self.mean, dtype=rgb01.dtype, device=rgb01.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=rgb01.dtype, device=rgb01.device).view(1, 3, 1, 1)
        return (rgb01 - mean) / std

    def preprocess(self, images: Any, device: torch.device | str | None = None) -> Tensor:
        """Paths, PIL images or uint8 HWC arrays (one or a list) → float ``(N, 3, S, S)`` on the model's device."""
        if isinstance(images, (str, os.PathLike, Image.Image)) or (
            isinstance(images, np.ndarray) and images.ndim in (2, 3)
        ):
            images = [images]
        if isinstance(images, np.ndarray) and images.ndim == 4:
            images = list(images)
        if not isinstance(images, (list, tuple)) or len(images) == 0:
            raise BadImageError("give at least one image (path, PIL image or HWC array)")
        crops = np.stack([self.crop(self._one(im)) for im in images])
        t = torch.from_numpy(crops).permute(0, 3, 1, 2).float().div_(255.0)
        return self.normalize(t.to(device if device is not None else self.device))

    def to_rgb01(self, x: Tensor) -> Tensor:
        """Invert :meth:`normalize`: RGB in [0, 1], clipped, same shape and device."""
        if x.ndim not in (3, 4) or x.shape[-3] != 3:
            raise BadInputError(f"to_rgb01 expects (N, 3, H, W) or (3, H, W), got {tuple(x.shape)}")
        shape = (1, 3, 1, 1) if x.ndim == 4 else (3, 1, 1)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(shape)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(shape)
        return (x * std + mean).clamp(0.0, 1.0)

    # ------------------------------------------------------------------ inference
    def probabilities(self, logits: Tensor) -> Tensor:
        """Class probabilities of logits ``(N, K)``: softmax, or one sigmoid per class for a multi-label head."""
        return logits.float().sigmoid() if self.multilabel else logits.float().softmax(-1)

    @torch.no_grad()
    def predict(self, x: Tensor, batch_size: int = 64) -> Tensor:
        """Probabilities ``(N, K)`` (:meth:`probabilities`) in eval mode (the module's mode is restored)."""
        with frozen(self.module):
            return torch.cat([self.probabilities(self.module(c)) for c in x.split(batch_size)])

    def positive_labels(self, x: Tensor, threshold: float = 0.5, batch_size: int = 64) -> list[list[int]]:
        """Per image, the classes to explain: every class with probability ``> threshold`` for a multi-label
        model (the top class when none is), the top class otherwise."""
        p = self.predict(x, batch_size)
        top = p.argmax(1).tolist()
        if not self.multilabel:
            return [[t] for t in top]
        out = []
        for row, t in zip(p, top, strict=True):
            pos = (row > threshold).nonzero().view(-1).tolist()
            out.append(pos or [t])
        return out


def expand_targets(x: Tensor, targets: Sequence[Sequence[int]]) -> tuple[Tensor, Tensor, Tensor]:
    """Repeat each image once per target (e.g. :meth:`ModelAdapter.positive_labels`): ``(x_rep, t, index)`` with
    ``index[j]`` the image row ``j`` of ``x_rep`` came from — explain ``x_rep`` with ``target=t``."""
    if len(targets) != x.shape[0]:
        raise BadParameterError(f"give one list of targets per image: {len(targets)} lists for {x.shape[0]} images")
    index = torch.tensor([i for i, ts in enumerate(targets) for _ in ts], dtype=torch.long)
    t = torch.tensor([int(k) for ts in targets for k in ts], dtype=torch.long)
    return x[index.to(x.device)], t, index


def as_adapter(model: ModelAdapter | nn.Module) -> ModelAdapter:
    """Wrap a plain ``nn.Module`` with ImageNet mean/std (documented default) or return the adapter."""
    if isinstance(model, ModelAdapter):
        return model
    if isinstance(model, nn.Module):
        return ModelAdapter(model)
    raise BadParameterError(f"model must be a spixel.ModelAdapter or torch.nn.Module, got {type(model).__name__}")

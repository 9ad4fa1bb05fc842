"""What the torchvision and timm zoos share: model options, labels, found layers, the adapter."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import BadParameterError
from .adapter import ModelAdapter
from .layers import find_cam_layer, find_nas_layers, shared_trace, token_prefix
from .weights import checkpoint_labels, default_labels, read_labels_file

#: Options of a ``torchvision:NAME?key=value&…`` / ``timm:NAME?…`` model spec (and keywords of ``load_model``).
OPTIONS = ("labels", "multilabel", "preset", "input_size", "transform_input", "cam_layer", "nas_layers")


@dataclass
class Preprocessing:
    """How the architecture's recipe prepares a photo."""

    input_size: int
    resize: int
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def _truthy(key: str, v: Any) -> bool:
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in ("1", "true", "yes", "on"):
        return True
    if s in ("0", "false", "no", "off"):
        return False
    raise BadParameterError(f"model option {key}={v!r}: use true or false")


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``NAME?key=value&key=value`` → ``(NAME, options)``; unknown keys are refused with the known ones."""
    name, _, query = spec.partition("?")
    opts: dict[str, Any] = {}
    for part in filter(None, query.split("&")):
        k, eq, v = part.partition("=")
        k = k.strip()
        if not eq or not k:
            raise BadParameterError(f"model option {part!r}: write key=value, e.g. {name}?labels=classes.txt")
        opts[k] = v.strip()
    return name.strip(), check_options(opts)


def check_options(opts: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in opts.items():
        if v is None:
            continue
        if k not in OPTIONS:
            raise BadParameterError(f"unknown model option {k!r}; options: {', '.join(OPTIONS)}")
        if k in ("multilabel", "transform_input"):
            out[k] = _truthy(k, v)
        elif k == "input_size":
            try:
                out[k] = int(v)
            except (TypeError, ValueError):
                raise BadParameterError(f"model option input_size={v!r}: give an integer") from None
            if out[k] < 8:
                raise BadParameterError(f"model option input_size={v!r}: at least 8")
        elif k == "nas_layers":
            out[k] = [s.strip() for s in v.split(",") if s.strip()] if isinstance(v, str) else list(v)
        else:
            out[k] = v
    return out


def resolve_labels(
    num_classes: int,
    extras: dict[str, Any],
    labels: str | os.PathLike[str] | Sequence[str] | None,
    multilabel: bool | None,
) -> tuple[list[str] | None, bool]:
    """Labels: given (a file or a list) > carried by the weights file > ImageNet's for 1000 outputs (VOC's /
    COCO's for 20 / 80, which also makes the head multi-label unless ``multilabel=False``) > none."""
    own, own_ml = checkpoint_labels(extras)
    guessed, guessed_ml = default_labels(num_classes)
    if labels is not None:
        names = read_labels_file(labels) if isinstance(labels, (str, os.PathLike)) else [str(s) for s in labels]
        ml = own_ml if own_ml is not None else False
    elif own is not None:
        names, ml = own, bool(own_ml)
    else:
        names, ml = guessed, guessed_ml if own_ml is None else own_ml
    if multilabel is not None:
        ml = multilabel
    if names is not None and len(names) != num_classes:
        raise BadParameterError(f"{len(names)} labels for a head with {num_classes} outputs; give one name per output")
    return names, ml


#: torchvision names for which NAS has the paper's own layer lists (``spixel.segmentation.nas.PAPER_LAYERS``).
PAPER_NAS = ("resnet18", "vgg16")


def make_adapter(
    module: nn.Module,
    name: str,
    pre: Preprocessing,
    labels: list[str] | None,
    multilabel: bool,
    cam_layer: str | None = None,
    nas_layers: Sequence[str] | None = None,
) -> ModelAdapter:
    """The adapter of a built, loaded ``module`` (eval mode), with its found CAM and NAS layers."""
    module.eval()
    tokens = token_prefix(module)
    x = torch.zeros(1, 3, pre.input_size, pre.input_size, device=next(module.parameters()).device)
    with shared_trace():  # one forward for all the finders
        layers = {"cam": cam_layer or find_cam_layer(module, x, tokens=tokens)}
        if nas_layers:
            nas: list[str] | None = list(nas_layers)
        elif name in PAPER_NAS:
            nas = None  # NAS uses the paper's layers for these (spixel.segmentation.nas.PAPER_LAYERS, by name)
        else:
            nas = find_nas_layers(module, x, tokens=tokens)
    return ModelAdapter(
        module,
        mean=pre.mean,
        std=pre.std,
        input_size=pre.input_size,
        resize=pre.resize,
        interpolation=pre.interpolation,
        labels=labels,
        layers=layers,
        name=name,
        tokens=tokens,
        multilabel=multilabel,
        nas_layers=nas,
    )


def head_key(state: dict[str, Any]) -> str | None:
    """The classifier's weight: the last parameter of 2 or more dimensions named ``*weight``."""
    keys = [k for k, v in state.items() if k.endswith("weight") and getattr(v, "ndim", 0) >= 2]
    return keys[-1] if keys else None

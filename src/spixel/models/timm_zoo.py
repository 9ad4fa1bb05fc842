"""Every timm architecture with the user's weights: ``timm:NAME`` (``--weights FILE``).

``timm.create_model(NAME, pretrained=False, num_classes=K)`` — nothing is downloaded; ``K`` is read from the
file's classifier (``model.get_classifier()``). Preprocessing from the model's ``pretrained_cfg``
(``timm.data.resolve_model_data_config``): input size, interpolation, mean/std, and the resize
``input_size / crop_pct`` before the centre crop. A ViT's ``img_size`` follows its position embedding in the file
(or ``input_size=``). Labels as :func:`spixel.models._build.resolve_labels`; layers found
(:mod:`spixel.models.layers`), ``cam_layer=`` / ``nas_layers=`` override them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..errors import BadParameterError, SpixelError, UnknownNameError
from ._build import Preprocessing, check_options, make_adapter, resolve_labels
from .adapter import ModelAdapter
from .weights import fit_state_dict, read_weights

__all__ = ["build_timm", "load_timm", "timm_preprocessing"]


def _check_name(name: str) -> None:
    import timm

    if not timm.is_model(name):
        import difflib

        close = difflib.get_close_matches(name, timm.list_models(), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UnknownNameError(f"timm has no architecture {name!r}.{hint} (timm.list_models())")


def _head_key(module: nn.Module) -> str | None:
    get = getattr(module, "get_classifier", None)
    head = get() if callable(get) else None
    for n, m in module.named_modules():
        if m is head and isinstance(getattr(m, "weight", None), torch.Tensor):
            return f"{n}.weight"
    return None


def _vit_img_size(ref: nn.Module, sd: dict[str, torch.Tensor] | None) -> int | None:
    pos = sd.get("pos_embed") if sd is not None else None
    if pos is None or not hasattr(ref, "patch_embed") or pos.ndim != 3:
        return None
    prefix = 0 if getattr(ref, "no_embed_class", False) else int(getattr(ref, "num_prefix_tokens", 1))
    g = math.isqrt(int(pos.shape[1]) - prefix)
    patch = ref.patch_embed.patch_size
    return g * int(patch[0] if isinstance(patch, (tuple, list)) else patch)


def build_timm(name: str, num_classes: int | None = None, **kwargs: Any) -> nn.Module:
    """``timm.create_model(name, pretrained=False, ...)`` (random weights)."""
    import timm

    _check_name(name)
    kw = dict(kwargs)
    if num_classes is not None:
        kw["num_classes"] = num_classes
    try:
        return timm.create_model(name, pretrained=False, **kw)
    except TypeError as e:
        raise BadParameterError(f"timm {name}: {' '.join(str(e).split())[:160]}") from None


def timm_preprocessing(module: nn.Module, input_size: int | None = None) -> Preprocessing:
    """The model's preprocessing from its ``pretrained_cfg`` (``input_size`` overrides the crop)."""
    import timm

    cfg = timm.data.resolve_model_data_config(module)
    crop = int(input_size or cfg["input_size"][-1])
    crop_pct = float(cfg.get("crop_pct") or 1.0)
    interp = "bicubic" if cfg.get("interpolation") == "bicubic" else "bilinear"
    return Preprocessing(crop, max(crop, math.floor(crop / crop_pct)), interp, tuple(cfg["mean"]), tuple(cfg["std"]))  # type: ignore[arg-type]


def load_timm(
    name: str,
    weights: str | os.PathLike[str] | None,
    *,
    labels: str | os.PathLike[str] | Sequence[str] | None = None,
    multilabel: bool | None = None,
    input_size: int | None = None,
    cam_layer: str | None = None,
    nas_layers: Sequence[str] | None = None,
    preset: str | None = None,
    transform_input: bool | None = None,
) -> ModelAdapter:
    """``timm:NAME`` with the weights of a local file (see the module docstring), in eval mode."""
    check_options({"multilabel": multilabel, "input_size": input_size})
    if preset is not None or transform_input is not None:
        raise BadParameterError("preset and transform_input are torchvision options; timm reads its pretrained_cfg")
    _check_name(name)
    if weights is None:
        raise SpixelError(
            f"timm:{name} needs a local weights file: --weights FILE (weights=...); nothing is downloaded"
        )
    sd, extras = read_weights(weights)
    with torch.device("meta"):
        ref = build_timm(name)
    key = _head_key(ref)
    k = int(sd[key].shape[0]) if key is not None and key in sd and sd[key].ndim >= 2 else None
    kw: dict[str, Any] = {}
    size = _vit_img_size(ref, sd) or input_size
    if size is not None and hasattr(ref, "patch_embed"):
        kw["img_size"] = size
    module = build_timm(name, k, **kw)
    fit_state_dict(module, sd, weights, f"{name} (timm)")
    if k is None:
        k = _out_features(module)
    names, ml = resolve_labels(k, extras, labels, multilabel)
    return make_adapter(module, f"timm:{name}", timm_preprocessing(module, size), names, ml, cam_layer, nas_layers)


def _out_features(module: nn.Module) -> int:
    nc = getattr(module, "num_classes", None)
    if isinstance(nc, int) and nc > 0:
        return nc
    raise SpixelError("cannot tell the number of classes of this timm model (it has no classifier)")


def wrap_timm(
    name: str,
    module: nn.Module,
    *,
    labels: Sequence[str] | None = None,
    multilabel: bool | None = None,
    input_size: int | None = None,
    cam_layer: str | None = None,
    nas_layers: Sequence[str] | None = None,
) -> ModelAdapter:
    """An adapter for a timm ``module`` already in memory (its pretrained_cfg preprocessing, found layers)."""
    if input_size is None and hasattr(module, "patch_embed"):
        size = getattr(module.patch_embed, "img_size", None)
        input_size = int(size[0]) if isinstance(size, (tuple, list)) else size
    names, ml = resolve_labels(_out_features(module), {}, labels, multilabel)
    return make_adapter(
        module, f"timm:{name}", timm_preprocessing(module, input_size), names, ml, cam_layer, nas_layers
    )

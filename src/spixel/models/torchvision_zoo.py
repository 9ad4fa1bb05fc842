"""Every torchvision classification architecture with the user's weights: ``torchvision:NAME`` (``--weights FILE``).

* **Architecture**: ``torchvision.models.get_model(NAME, weights=None, ...)`` — nothing is downloaded. The head
  size comes from the weights file (a ResNet-50 fine-tuned to 3 classes loads as such); Inception-V3 and GoogLeNet
  keep their auxiliary heads when the file has them and use ``transform_input=True`` as torchvision's pretrained
  models do (``transform_input=false`` to turn it off); a ViT's ``image_size`` follows its position embedding.
* **Preprocessing**: the arch's own recipe from torchvision's weights metadata (``preset``: a weights name such as
  ``IMAGENET1K_V1``; default the arch's ``DEFAULT``): resize, crop, interpolation, mean/std — Inception-V3 resizes
  to 342 and crops 299, EfficientNet-B0 is bicubic. ``input_size`` overrides the crop (the resize is scaled alike).
* **Labels**: see :func:`spixel.models._build.resolve_labels`.
* **Layers**: the CAM and NAS layers are found (:mod:`spixel.models.layers`); ``cam_layer=`` / ``nas_layers=``
  override them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..errors import BadParameterError, SpixelError, UnknownNameError
from ._build import Preprocessing, check_options, head_key, make_adapter, resolve_labels
from .adapter import ModelAdapter
from .weights import fit_state_dict, read_weights

__all__ = ["build_torchvision", "load_torchvision", "torchvision_names", "torchvision_preprocessing"]


def torchvision_names() -> list[str]:
    """The classification architectures of ``torchvision.models`` (``list_models``; no detection/segmentation)."""
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def _check_name(name: str) -> None:
    names = torchvision_names()
    if name not in names:
        import difflib

        close = difflib.get_close_matches(name, names, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UnknownNameError(
            f"torchvision has no classification architecture {name!r}.{hint} (torchvision.models.list_models())"
        )


def torchvision_preprocessing(name: str, preset: str | None = None, input_size: int | None = None) -> Preprocessing:
    """The arch's preprocessing from torchvision's weights metadata (no download): ``preset`` weights (default
    ``DEFAULT``), crop overridden by ``input_size`` (resize scaled by the same factor)."""
    from torchvision.models import get_model_weights

    enum = get_model_weights(name)
    if preset is None:
        w = enum.DEFAULT
    else:
        try:
            w = enum[preset]
        except KeyError:
            raise BadParameterError(
                f"preset {preset!r} is not a torchvision weights name of {name}; "
                f"one of: {', '.join(e.name for e in enum)}"
            ) from None
    t = w.transforms()
    crop, resize = int(t.crop_size[0]), int(t.resize_size[0])
    interp = "bicubic" if "BICUBIC" in str(t.interpolation) else "bilinear"
    if input_size is not None:
        resize = max(input_size, round(resize * input_size / crop))
        crop = input_size
    return Preprocessing(crop, resize, interp, tuple(t.mean), tuple(t.std))  # type: ignore[arg-type]


def _kwargs(name: str, sd: dict[str, torch.Tensor] | None, transform_input: bool | None) -> dict[str, Any]:
    kw: dict[str, Any] = {}
    if name == "inception_v3":
        kw["aux_logits"] = sd is None or any(k.startswith("AuxLogits.") for k in sd)
        kw["init_weights"] = False
        kw["transform_input"] = True if transform_input is None else transform_input
    elif name == "googlenet":
        kw["aux_logits"] = sd is not None and any(k.startswith("aux1.") for k in sd)
        kw["init_weights"] = False
        kw["transform_input"] = True if transform_input is None else transform_input
    elif transform_input is not None:
        raise BadParameterError("transform_input applies to inception_v3 and googlenet only")
    return kw


def _vit_image_size(name: str, sd: dict[str, torch.Tensor] | None, input_size: int | None) -> int | None:
    if not name.startswith("vit_"):
        return None
    patch = int(name.split("_")[-1])
    if sd is not None and "encoder.pos_embedding" in sd:
        g = math.isqrt(int(sd["encoder.pos_embedding"].shape[1]) - 1)
        return g * patch
    return input_size


def build_torchvision(
    name: str,
    num_classes: int = 1000,
    *,
    state_dict: dict[str, torch.Tensor] | None = None,
    transform_input: bool | None = None,
    image_size: int | None = None,
) -> nn.Module:
    """The architecture ``name`` with random weights (``weights=None``), shaped for ``state_dict`` when given."""
    import torchvision

    _check_name(name)
    kw = _kwargs(name, state_dict, transform_input)
    size = _vit_image_size(name, state_dict, image_size)
    if size is not None:
        kw["image_size"] = size
    return torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kw)


def _num_classes(name: str, sd: dict[str, torch.Tensor], transform_input: bool | None) -> int:
    import torchvision

    with torch.device("meta"):  # the architecture only: parameter names and shapes, no memory, no init cost
        ref = torchvision.models.get_model(name, weights=None, **_kwargs(name, sd, transform_input))
    key = head_key(ref.state_dict())
    if key is not None and key in sd and sd[key].ndim >= 2:
        return int(sd[key].shape[0])
    return 1000  # the head is missing: fit_state_dict reports the mismatch


def load_torchvision(
    name: str,
    weights: str | os.PathLike[str] | None,
    *,
    labels: str | os.PathLike[str] | Sequence[str] | None = None,
    multilabel: bool | None = None,
    preset: str | None = None,
    input_size: int | None = None,
    transform_input: bool | None = None,
    cam_layer: str | None = None,
    nas_layers: Sequence[str] | None = None,
) -> ModelAdapter:
    """``torchvision:NAME`` with the weights of a local file (see the module docstring), in eval mode."""
    check_options({"multilabel": multilabel, "input_size": input_size})
    _check_name(name)
    if weights is None:
        raise SpixelError(
            f"torchvision:{name} needs a local weights file: --weights FILE (weights=...); nothing is downloaded"
        )
    sd, extras = read_weights(weights)
    k = _num_classes(name, sd, transform_input)
    module = build_torchvision(name, k, state_dict=sd, transform_input=transform_input, image_size=input_size)
    fit_state_dict(module, sd, weights, f"{name} (torchvision)")
    size = _vit_image_size(name, sd, input_size)
    pre = torchvision_preprocessing(name, preset, size if size is not None else input_size)
    names, ml = resolve_labels(k, extras, labels, multilabel)
    return make_adapter(module, name, pre, names, ml, cam_layer, nas_layers)


def wrap_torchvision(
    name: str,
    module: nn.Module,
    *,
    labels: Sequence[str] | None = None,
    multilabel: bool | None = None,
    preset: str | None = None,
    input_size: int | None = None,
    cam_layer: str | None = None,
    nas_layers: Sequence[str] | None = None,
) -> ModelAdapter:
    """An adapter for a torchvision ``module`` of architecture ``name`` already in memory (its preprocessing,
    labels from its head size, found layers)."""
    _check_name(name)
    key = head_key(module.state_dict())
    k = int(module.state_dict()[key].shape[0]) if key else 1000
    names, ml = resolve_labels(k, {}, labels, multilabel)
    return make_adapter(
        module, name, torchvision_preprocessing(name, preset, input_size), names, ml, cam_layer, nas_layers
    )

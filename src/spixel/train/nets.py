"""Small CNNs for the synthetic benchmark: a ResNet-style net and a VGG-style net, built from a plain config.

A config is a dict of plain values (``arch``, ``widths``, ``blocks``, ``num_classes``), so a checkpoint can rebuild
the net without pickled code. Every activation is its own non-inplace ``nn.ReLU`` module (guided backprop and
deconvolution replace the backward of ``nn.ReLU`` modules); the last convolutional block is the module named by
:func:`cam_layer` (the ``"cam"`` role of the :class:`~spixel.models.ModelAdapter`).

* ``resnet``: conv3×3(stride 2)-BN-ReLU stem, then one stage per width of ``blocks`` basic residual blocks
  (He et al. 2016: conv-BN-ReLU-conv-BN + shortcut, ReLU); every stage after the first halves the resolution;
  global pool, linear head. Stages are ``stages.0 … stages.{S-1}``.
* ``vgg``: per width ``blocks`` × (conv3×3-BN-ReLU) then a 2×2 max pool (Simonyan & Zisserman 2015, with BN), the
  last stage without pool; global pool, linear head. Stages are ``stages.0 …``.

The global pool (``pool``) is ``"max"`` by default: on cluttered synthetic images the evidence is one small object,
and averaging its features with the background's made the nets learn several times slower than a max (measured:
after 700 steps the average-pooled ResNet-style net was still at chance, the max-pooled one well above it).
``"avg"`` gives the classic global average pool.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ..errors import BadParameterError

#: Architectures :func:`build_net` knows, with their default widths.
ARCHS: dict[str, tuple[int, ...]] = {"resnet": (16, 32, 64), "vgg": (16, 32, 64)}
POOLS = ("max", "avg")


def _pool(kind: str) -> nn.Module:
    return nn.AdaptiveMaxPool2d(1) if kind == "max" else nn.AdaptiveAvgPool2d(1)


class BasicBlock(nn.Module):
    """conv3×3-BN-ReLU-conv3×3-BN plus the shortcut (1×1 conv-BN when the shape changes), then ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
        self.relu2 = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        y = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(y + self.shortcut(x))


def _conv_bn_relu(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


class SmallResNet(nn.Module):
    """ResNet-style classifier (see the module docstring); ``config`` is kept as a plain dict."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.config = dict(config)
        widths, blocks = list(config["widths"]), int(config["blocks"])
        self.stem = nn.Sequential(*_conv_bn_relu(3, widths[0], stride=2))
        stages, cin = [], widths[0]
        for i, w in enumerate(widths):
            layers = [BasicBlock(cin if j == 0 else w, w, stride=2 if (i > 0 and j == 0) else 1) for j in range(blocks)]
            stages.append(nn.Sequential(*layers))
            cin = w
        self.stages = nn.Sequential(*stages)
        self.pool = _pool(config["pool"])
        self.fc = nn.Linear(cin, int(config["num_classes"]))
        _init(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pool(self.stages(self.stem(x))).flatten(1))


class SmallVGG(nn.Module):
    """VGG-style classifier (see the module docstring); ``config`` is kept as a plain dict."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.config = dict(config)
        widths, blocks = list(config["widths"]), int(config["blocks"])
        stages, cin = [], 3
        for i, w in enumerate(widths):
            layers: list[nn.Module] = []
            for _ in range(blocks):
                layers += _conv_bn_relu(cin, w)
                cin = w
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.pool = _pool(config["pool"])
        self.fc = nn.Linear(cin, int(config["num_classes"]))
        _init(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pool(self.stages(x)).flatten(1))


def _init(net: nn.Module) -> None:
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    for m in net.modules():  # zero-init the last BN of each residual branch: blocks start as identities
        if isinstance(m, BasicBlock):
            nn.init.zeros_(m.bn2.weight)


def net_config(
    arch: str = "resnet",
    num_classes: int = 6,
    widths: list[int] | tuple[int, ...] | None = None,
    blocks: int = 1,
    pool: str = "max",
) -> dict[str, Any]:
    """A checked plain config: ``{"arch", "widths", "blocks", "pool", "num_classes"}``."""
    if arch not in ARCHS:
        raise BadParameterError(f"unknown architecture {arch!r}; use one of {', '.join(ARCHS)}")
    w = list(ARCHS[arch] if widths is None else widths)
    if not w or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in w):
        raise BadParameterError(f"widths must be a non-empty list of positive integers, got {widths!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise BadParameterError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    if isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 1:
        raise BadParameterError(f"blocks must be an integer >= 1, got {blocks!r}")
    if pool not in POOLS:
        raise BadParameterError(f"pool must be one of {', '.join(POOLS)}, got {pool!r}")
    return {"arch": arch, "widths": w, "blocks": int(blocks), "pool": pool, "num_classes": int(num_classes)}


def build_net(config: dict[str, Any]) -> nn.Module:
    """The (randomly initialised, global RNG) net of a config from :func:`net_config`."""
    if not isinstance(config, dict):
        raise BadParameterError(f"a net config is a dict, got {type(config).__name__}")
    try:
        cfg = net_config(
            config["arch"],
            config["num_classes"],
            config.get("widths"),
            config.get("blocks", 1),
            config.get("pool", "max"),
        )
    except KeyError as e:
        raise BadParameterError(f"net config lacks {e.args[0]!r}") from None
    return SmallResNet(cfg) if cfg["arch"] == "resnet" else SmallVGG(cfg)


def cam_layer(config: dict[str, Any]) -> str:
    """Name (``named_modules``) of the net's last convolutional block: the default layer of the CAM methods."""
    return f"stages.{len(config['widths']) - 1}"

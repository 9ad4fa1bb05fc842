"""The training loop: :func:`fit` a net on uint8 images, :func:`accuracy`, :func:`logits`.

Data may be a dataset with ``arrays()`` and ``classes`` (``spixel.data.SyntheticDataset``) or a pair
``(images, labels)``: uint8 ``(N, H, W, 3)`` (numpy or tensor) and int labels ``(N,)``. The whole set is held once as a
uint8 ``(N, 3, H, W)`` tensor; each batch is converted to ``(x / 255 - mean) / std`` on the fly.

Seeding: the net is initialised under ``torch.manual_seed(seed)`` inside :func:`torch.random.fork_rng` (the caller's
global RNG is left as it was); shuffling and augmentation draw from a ``torch.Generator`` seeded with ``seed``. With
the same thread count the result is bitwise reproducible on the CPU.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import BadInputError, BadParameterError
from ..models.adapter import ModelAdapter
from ..models.state import frozen
from .nets import build_net, cam_layer, net_config

#: Normalisation of the synthetic models: ``(x / 255 - 0.5) / 0.25``.
MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
STD: tuple[float, float, float] = (0.25, 0.25, 0.25)

_OPTIMIZERS = ("sgd", "adam")
_SCHEDULES = ("cosine", "step", "constant")


def as_arrays(data: Any, indices: Sequence[int] | np.ndarray | None = None) -> tuple[Tensor, Tensor]:
    """``data`` → (uint8 ``(N, 3, H, W)`` tensor, int64 labels ``(N,)``), optionally only the rows ``indices``."""
    if hasattr(data, "arrays"):
        idx = None if indices is None else np.asarray(indices, dtype=np.int64)
        images, labels = data.arrays(idx)[:2]
    elif isinstance(data, (tuple, list)) and len(data) >= 2:
        images, labels = data[0], data[1]
        if indices is not None:
            idx = np.asarray(indices, dtype=np.int64)
            images, labels = images[idx], labels[idx]
    else:
        raise BadInputError(
            f"training data must be a dataset with .arrays() or a pair (images, labels), got {type(data).__name__}"
        )
    img = torch.as_tensor(np.asarray(images) if not isinstance(images, Tensor) else images)
    lab = torch.as_tensor(np.asarray(labels) if not isinstance(labels, Tensor) else labels)
    if img.dtype != torch.uint8 or img.ndim != 4 or img.shape[-1] != 3:
        raise BadInputError(f"images must be uint8 (N, H, W, 3), got {img.dtype} {tuple(img.shape)}")
    if lab.ndim != 1 or lab.shape[0] != img.shape[0] or lab.is_floating_point():
        raise BadInputError(f"labels must be integers (N,) matching {img.shape[0]} images, got {tuple(lab.shape)}")
    return img.permute(0, 3, 1, 2).contiguous(), lab.long()


def class_names(data: Any, num_classes: int | None = None) -> list[str]:
    """``data.classes`` when the data has them, else ``class 0 …``."""
    names = getattr(data, "classes", None)
    if names is not None:
        return [str(c) for c in names]
    if num_classes is None:
        raise BadInputError("give labels= (the class names): the training data carries none")
    return [f"class {k}" for k in range(num_classes)]


def _normalize(batch: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    m = torch.tensor(mean, dtype=torch.float32, device=batch.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=batch.device).view(1, 3, 1, 1)
    return (batch.float().div_(255.0) - m) / s


def _augment(x: Tensor, gen: torch.Generator, flip: bool, shift: int) -> Tensor:
    """Random horizontal flips and integer shifts (zero padding = the mean colour after normalisation)."""
    n = x.shape[0]
    if flip:
        f = torch.rand(n, generator=gen) < 0.5
        x = torch.where(f.view(-1, 1, 1, 1).to(x.device), x.flip(-1), x)
    if shift > 0:
        h, w = x.shape[-2:]
        pad = F.pad(x, (shift, shift, shift, shift))
        dx = torch.randint(0, 2 * shift + 1, (n,), generator=gen)
        dy = torch.randint(0, 2 * shift + 1, (n,), generator=gen)
        rows = (dy.view(-1, 1) + torch.arange(h)).to(x.device)  # (n, h)
        cols = (dx.view(-1, 1) + torch.arange(w)).to(x.device)  # (n, w)
        b = torch.arange(n, device=x.device).view(-1, 1, 1)
        x = pad.permute(0, 2, 3, 1)[b, rows.view(n, h, 1), cols.view(n, 1, w)].permute(0, 3, 1, 2)
    return x.contiguous()


def _check(name: str, v: Any, lo: float, integer: bool = False) -> Any:
    bad = isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not isinstance(v, int))
    if bad or v < lo or v != v:
        raise BadParameterError(f"{name} must be {'an integer' if integer else 'a number'} >= {lo}, got {v!r}")
    return v


def fit(
    train: Any,
    *,
    arch: str = "resnet",
    widths: Sequence[int] | None = None,
    blocks: int = 1,
    pool: str = "max",
    epochs: int = 40,
    batch_size: int = 64,
    optimizer: str = "sgd",
    lr: float | None = None,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    schedule: str = "cosine",
    warmup: float = 0.15,
    flip: bool = False,
    shift: int = 4,
    seed: int = 0,
    labels: Sequence[str] | None = None,
    name: str | None = None,
    mean: Sequence[float] = MEAN,
    std: Sequence[float] = STD,
    indices: Sequence[int] | np.ndarray | None = None,
    progress: bool = True,
    device: torch.device | str | None = None,
) -> ModelAdapter:
    """Train a fresh ``arch`` net (:mod:`spixel.train.nets`) on ``train`` and return it as a :class:`ModelAdapter`.

    ``optimizer`` ``"sgd"`` (momentum, Nesterov, ``lr`` default 0.1) or ``"adam"`` (AdamW, ``lr`` default 2e-3),
    both with ``weight_decay`` (not on biases and BN); ``schedule`` ``"cosine"`` (per step, to 0, after a linear
    warm-up over the fraction ``warmup`` of the steps), ``"step"`` (×0.1 at 50 % and 75 % of the steps) or
    ``"constant"``. ``pool``: the nets' global pool (``"max"`` default, see :mod:`spixel.train.nets`).
    Augmentation: ``shift`` pixels of random translation (0: none) and optional horizontal
    ``flip`` (off by default: a class may be told apart by orientation). ``indices`` trains on those rows only.
    The adapter has ``input_size = resize = H`` (preprocessing an ``H×H`` image is the identity), ``labels``
    (default ``train.classes``), ``layers={"cam": <last block>}``, and the module carries ``config`` (its net
    config) and ``train_info`` (the fit parameters, final loss and seconds), both plain dicts. Eval mode.
    """
    images, targets = as_arrays(train, indices)
    n, _, h, w = images.shape
    if n == 0:
        raise BadInputError("no training images")
    if h != w:
        raise BadInputError(f"images must be square, got {h}×{w}")
    epochs = _check("epochs", epochs, 1, integer=True)
    batch_size = _check("batch_size", batch_size, 1, integer=True)
    shift = _check("shift", shift, 0, integer=True)
    seed = _check("seed", seed, 0, integer=True)
    if optimizer not in _OPTIMIZERS:
        raise BadParameterError(f"optimizer must be one of {', '.join(_OPTIMIZERS)}, got {optimizer!r}")
    if schedule not in _SCHEDULES:
        raise BadParameterError(f"schedule must be one of {', '.join(_SCHEDULES)}, got {schedule!r}")
    lr = float(_check("lr", lr if lr is not None else (0.1 if optimizer == "sgd" else 2e-3), 0))
    names = list(labels) if labels is not None else class_names(train, int(targets.max()) + 1)
    if int(targets.min()) < 0 or int(targets.max()) >= len(names):
        raise BadInputError(f"labels must lie in 0..{len(names) - 1} (one per class name)")
    cfg = net_config(arch, len(names), None if widths is None else list(widths), blocks, pool)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = build_net(cfg)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    net.to(dev, memory_format=torch.channels_last)  # ~1.3-2x faster convolutions on the CPU

    decay, no_decay = [], []
    for p in net.parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    opt: torch.optim.Optimizer
    if optimizer == "sgd":
        opt = torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=momentum > 0)
    else:
        opt = torch.optim.AdamW(groups, lr=lr)
    steps_per_epoch = math.ceil(n / batch_size)
    total = epochs * steps_per_epoch
    warm = round(float(_check("warmup", warmup, 0)) * total) if schedule == "cosine" else 0

    def cosine(s: int) -> float:
        if s < warm:
            return (s + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (s - warm) / max(total - warm, 1)))

    if schedule == "cosine":
        sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine)
    elif schedule == "step":
        m1, m2 = int(0.5 * total), int(0.75 * total)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.1 ** ((s >= m1) + (s >= m2)))
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)

    from tqdm import tqdm

    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    net.train()
    last = float("nan")
    bar = tqdm(total=total, disable=not progress, unit="step", desc=name or f"train {arch}", leave=False)
    for ep in range(epochs):
        order = torch.randperm(n, generator=gen)
        run_loss, seen = 0.0, 0
        for s in range(0, n, batch_size):
            idx = order[s : s + batch_size]
            x = _normalize(images[idx].to(dev), mean, std)
            x = _augment(x, gen, flip, shift).contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(net(x), targets[idx].to(dev))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            run_loss += float(loss.detach()) * len(idx)
            seen += len(idx)
            bar.update(1)
        last = run_loss / seen
        bar.set_postfix(epoch=ep + 1, loss=f"{last:.3f}")
    bar.close()
    net.to(memory_format=torch.contiguous_format)
    net.eval()
    net.train_info = {  # type: ignore[assignment]
        "epochs": epochs,
        "batch_size": batch_size,
        "optimizer": optimizer,
        "lr": lr,
        "momentum": momentum,
        "weight_decay": weight_decay,
        "schedule": schedule,
        "warmup": warmup,
        "flip": bool(flip),
        "shift": shift,
        "seed": seed,
        "n_train": int(n),
        "final_loss": last,
        "seconds": time.perf_counter() - t0,
    }
    return make_adapter(net, cfg, h, names, mean=mean, std=std, name=name)


def make_adapter(
    net: nn.Module,
    cfg: dict[str, Any],
    size: int,
    labels: Sequence[str],
    *,
    mean: Sequence[float] = MEAN,
    std: Sequence[float] = STD,
    name: str | None = None,
) -> ModelAdapter:
    """Wrap a net of :mod:`spixel.train.nets` (identity preprocessing of ``size×size`` images)."""
    net.eval()
    return ModelAdapter(
        net,
        mean=mean,
        std=std,
        input_size=size,
        resize=size,
        labels=list(labels),
        layers={"cam": cam_layer(cfg)},
        name=name or f"{cfg['arch']}-{size}",
    )


@torch.no_grad()
def logits(model: ModelAdapter, images: Any, batch_size: int = 256) -> Tensor:
    """Eval-mode logits ``(N, K)`` (CPU, float32) of uint8 ``(N, H, W, 3)`` images (or a dataset / pair)."""
    if hasattr(images, "arrays") or isinstance(images, (tuple, list)):
        img = as_arrays(images)[0]
    else:
        img = as_arrays((images, np.zeros(len(images), dtype=np.int64)))[0]
    dev = model.device
    with frozen(model.module):
        out = [model.module(_normalize(c.to(dev), model.mean, model.std)).float().cpu() for c in img.split(batch_size)]
    return torch.cat(out) if out else torch.empty(0, model.num_classes or 0)


def accuracy(model: ModelAdapter, images: Any, labels: Any = None, batch_size: int = 256) -> float:
    """Top-1 accuracy of ``model`` on uint8 ``(N, H, W, 3)`` images with ``labels`` (or on a dataset / pair)."""
    if labels is None:
        img, lab = as_arrays(images)
    else:
        img, lab = as_arrays((images, labels))
    if img.shape[0] == 0:
        raise BadInputError("no images to score")
    pred = logits(model, (img.permute(0, 2, 3, 1), lab), batch_size).argmax(1)
    return float((pred == lab).float().mean())

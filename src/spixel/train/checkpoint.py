"""Checkpoints of :mod:`spixel.train`: ``{"state_dict": tensors, "config": plain values}`` written by ``torch.save``
and read with ``torch.load(weights_only=True)`` only (no pickled code is ever run); the net is rebuilt from the
config. ``spixel.load_model(path)`` reads them. Fine-tuned torchvision / timm models (:mod:`spixel.train.finetune`)
have ``arch`` = ``PREFIX:NAME`` and a ``build`` entry, and are rebuilt through the zoo.

The config holds: ``format`` (:data:`FORMAT`), the net config (``arch``, ``widths``, ``blocks``, ``num_classes``),
the adapter (``input_size``, ``mean``, ``std``, ``labels``, ``layers``, ``name``), ``seed``, ``epochs``, ``fit`` (the
training parameters), ``recipe`` (name and parameters), ``accuracy`` (held-out) and ``data`` (how to regenerate the
training set and which of its indices were used) — str, int, float, bool, None, list and dict only.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch

from ..errors import SpixelError
from ..models.adapter import ModelAdapter
from .loop import make_adapter
from .nets import build_net

#: Format tag of the config; :func:`load_checkpoint` refuses other files.
FORMAT = "spixel.train/1"


def _plain(v: Any, where: str = "config") -> Any:
    """Check (and convert numpy/torch scalars in) a value made of str/int/float/bool/None/list/dict only."""
    if v is None or isinstance(v, (str, bool, int)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if hasattr(v, "item") and getattr(v, "ndim", 1) == 0:  # numpy / torch scalars
        return _plain(v.item(), where)
    if isinstance(v, (list, tuple)):
        return [_plain(x, where) for x in v]
    if hasattr(v, "tolist"):
        return _plain(v.tolist(), where)
    if isinstance(v, dict):
        return {str(k): _plain(x, f"{where}.{k}") for k, x in v.items()}
    raise SpixelError(f"{where}: {type(v).__name__} is not a plain value (str, int, float, list, dict)")


def checkpoint_config(model: ModelAdapter, **extra: Any) -> dict[str, Any]:
    """The config of ``model`` (a net from :mod:`spixel.train`) merged with ``extra`` (recipe, data, accuracy …)."""
    net_cfg = getattr(model.module, "config", None)
    ck = getattr(model.module, "checkpoint", None)
    if (not isinstance(net_cfg, dict) or "arch" not in net_cfg) and isinstance(ck, dict) and ":" in str(ck.get("arch")):
        net_cfg = {k: ck[k] for k in ("arch", "build", "num_classes")}
    if isinstance(net_cfg, dict) and ":" in str(net_cfg.get("arch")):
        # a fine-tuned torchvision / timm model (spixel.train.finetune), e.g. a GAD support trained from one
        net_cfg = {
            **net_cfg,
            "resize": model.resize,
            "interpolation": model.interpolation,
            "nas_layers": model.nas_layers,
            "multilabel": model.multilabel,
        }
    if not isinstance(net_cfg, dict) or "arch" not in net_cfg:
        raise SpixelError(f"{model.name} is not a spixel.train net (its module has no config); save its state_dict")
    info = dict(getattr(model.module, "train_info", {}) or {})
    cfg: dict[str, Any] = {
        "format": FORMAT,
        **net_cfg,
        "input_size": model.input_size,
        "mean": list(model.mean),
        "std": list(model.std),
        "labels": list(model.labels or []),
        "layers": dict(model.layers),
        "name": model.name,
        "seed": info.get("seed"),
        "epochs": info.get("epochs"),
        "fit": info,
    }
    cfg.update(extra)
    return _plain(cfg)


def save_checkpoint(path: str | os.PathLike[str], model: ModelAdapter, **extra: Any) -> Path:
    """Write ``model``'s weights and config (:func:`checkpoint_config` with ``extra``) to ``path``; returns it."""
    p = Path(path)
    cfg = checkpoint_config(model, **extra)
    sd = {k: v.detach().cpu().clone() for k, v in model.module.state_dict().items()}
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    torch.save({"state_dict": sd, "config": cfg}, tmp)
    os.replace(tmp, p)
    return p


def read_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(state_dict, config)`` of a checkpoint, read with ``weights_only=True``; clear errors otherwise."""
    p = Path(path)
    if not p.is_file():
        raise SpixelError(f"{p}: checkpoint file not found")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt, truncated, or pickled code that weights_only refuses
        raise SpixelError(
            f"{p}: not a readable spixel.train checkpoint ({type(e).__name__}: {str(e).splitlines()[0][:100]})"
        ) from None
    if (
        not isinstance(obj, dict)
        or not isinstance(obj.get("config"), dict)
        or not isinstance(obj.get("state_dict"), dict)
    ):
        raise SpixelError(f"{p}: not a spixel.train checkpoint (expected a dict with 'state_dict' and 'config')")
    cfg = obj["config"]
    if cfg.get("format") != FORMAT:
        raise SpixelError(f"{p}: not a spixel.train checkpoint (format {cfg.get('format')!r}, expected {FORMAT!r})")
    return obj["state_dict"], cfg


def load_checkpoint(path: str | os.PathLike[str], device: torch.device | str | None = None) -> ModelAdapter:
    """Rebuild the net of a checkpoint, load its weights and return the :class:`ModelAdapter` (eval mode).

    The module carries ``config`` (the net config) and ``checkpoint`` (the whole config of the file)."""
    sd, cfg = read_checkpoint(path)
    if ":" in str(cfg.get("arch", "")):  # a fine-tuned torchvision / timm model (spixel.train.finetune)
        from .finetune import rebuild_finetuned

        try:
            model = rebuild_finetuned(sd, cfg)
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise SpixelError(
                f"{path}: checkpoint does not rebuild ({type(e).__name__}: {str(e).splitlines()[0][:120]})"
            ) from None
        model.module.train_info = cfg.get("fit", {})  # type: ignore[assignment]
        return model.to(device) if device is not None else model
    try:
        net = build_net(cfg)
        net.load_state_dict(sd)
        model = make_adapter(
            net, net.config, int(cfg["input_size"]), cfg["labels"], mean=cfg["mean"], std=cfg["std"], name=cfg["name"]
        )
    except (SpixelError, KeyError, TypeError, ValueError, RuntimeError) as e:
        raise SpixelError(
            f"{path}: checkpoint does not rebuild ({type(e).__name__}: {str(e).splitlines()[0][:120]})"
        ) from None
    net.checkpoint = cfg  # type: ignore[assignment]
    net.train_info = cfg.get("fit", {})  # type: ignore[assignment]
    if device is not None:
        model.to(device)
    return model

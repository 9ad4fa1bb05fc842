"""Fine-tuning a pretrained backbone on the user's dataset (``spixel train finetune``; paper 001's setting).

:func:`finetune` loads a backbone — ``torchvision:NAME`` / ``timm:NAME`` (or a bare torchvision name) with a local
``weights`` file, or a :mod:`spixel.train` checkpoint (one of our small nets, or an earlier fine-tuning) — gives it
a new head for the dataset's classes (the old head is kept when the classes are its own, in order), and trains
every layer with the papers' defaults: SGD (momentum 0.9, weight decay 1e-4) or Adam, lr 1e-3, constant schedule
(``"cosine"`` anneals to 0), 50 epochs, batch 32, augmentation = the architecture's resize of the shorter side,
a *random* crop of the input size and a horizontal flip (evaluation: the centre crop); a last batch of one image
is skipped (BatchNorm cannot train on it). Nothing is downloaded.

**Data**: any ``--data`` form (:func:`spixel.data.open_dataset`). An ImageFolder (``folder:DIR`` or a bare
``DIR``: one sub-folder per class) gives the classes from the sub-folder names, sorted; other forms give the
classes their items are labelled with (resolved against the backbone's labels; an item's first label is its
class). Failed items are skipped (counted). The held-out split is ``holdout`` (default 0.2) of each class,
chosen with ``seed``, unless a separate ``test`` dataset is given.

**Resume**: after each epoch ``OUT/last.pt`` (weights, optimizer state, epoch, history; written atomically, read
with ``weights_only=True``) is replaced; a re-run with the same settings resumes after the last finished epoch
(a ``SIGKILL`` mid-epoch loses only that epoch). Shuffling and augmentation are drawn from generators seeded by
``(seed, epoch, item)``, so on the CPU with the same thread count a resumed run ends with the same weights as an
uninterrupted one. A re-run with other settings (other than ``epochs``) is refused unless ``resume=False``.

**Result**: ``OUT/model.pt``, a :mod:`spixel.train` checkpoint (``spixel.load_model("OUT/model.pt")``,
``--model OUT/model.pt``) with its labels, preprocessing and found layers; its config records the held-out
accuracy before and after, the history and the data. ``OUT/history.json`` has one row per epoch.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from ..errors import BadParameterError, SpixelError
from ..models._build import Preprocessing, head_key, make_adapter
from ..models.adapter import _INTERP, ModelAdapter
from ..models.weights import read_weights
from .checkpoint import FORMAT, _plain, read_checkpoint

__all__ = ["FINETUNE_DEFAULTS", "Finetuned", "finetune", "rebuild_finetuned"]

#: The papers' defaults (paper 001: SGD, lr 1e-3, 50 epochs).
FINETUNE_DEFAULTS: dict[str, Any] = {
    "epochs": 50,
    "batch_size": 32,
    "optimizer": "sgd",
    "lr": 1e-3,
    "momentum": 0.9,
    "weight_decay": 1e-4,
    "schedule": "constant",
    "holdout": 0.2,
    "augment": True,
}
STATE_FORMAT = "spixel.finetune-state/1"


@dataclass
class Finetuned:
    """The result: checkpoint ``path``, held-out ``accuracy`` (and ``start_accuracy`` before fine-tuning), the
    ``model``, the per-epoch ``history`` and ``resumed_after`` (the epochs a re-run found done, 0 if none)."""

    path: Path
    accuracy: float
    start_accuracy: float
    model: ModelAdapter = field(repr=False)
    history: list[dict[str, Any]] = field(default_factory=list)
    resumed_after: int = 0
    skipped: int = 0


# ---------------------------------------------------------------------------------------------------- data
def _folder_root(spec: str) -> str | None:
    text = str(spec).strip()
    if os.path.isdir(text):
        return text
    if text.startswith("folder:"):
        return text[len("folder:") :].partition("?")[0]
    return None


def _class_folders(root: str) -> list[str]:
    from ..data.datasets import IMAGE_EXTENSIONS

    names = []
    for d in sorted(os.listdir(root)):
        p = os.path.join(root, d)
        if d.startswith(".") or not os.path.isdir(p):
            continue
        if any(f.lower().endswith(IMAGE_EXTENSIONS) for _, _, fs in os.walk(p) for f in fs):
            names.append(d)
    return names


def open_labelled(
    spec: str, base_labels: Sequence[str] | None = None, classes: Sequence[str] | None = None
) -> tuple[Any, list[int], list[int], list[str]]:
    """``(dataset, item indices, class per item, class names)`` of a ``--data`` spec for training. ``classes``
    fixes the class names (a test set uses the training set's)."""
    from ..data import open_dataset

    root = _folder_root(spec)
    if root is not None:
        names = list(classes) if classes is not None else _class_folders(root)
        if not names:
            raise SpixelError(f"--data {spec}: no class sub-folders with images (ImageFolder layout: DIR/CLASS/*.jpg)")
        ds = open_dataset(spec, labels=names)
        idx, lab = [], []
        for i, item_id in enumerate(ds.ids()):
            folder = item_id.split("/", 1)[0]
            if "/" in item_id and folder in names:
                idx.append(i)
                lab.append(names.index(folder))
        return ds, idx, lab, names
    ds = open_dataset(spec, labels=base_labels, num_classes=len(base_labels) if base_labels else None)
    found: list[tuple[int, int]] = []
    for i in range(len(ds)):
        item = ds[i]
        if item.ok and item.labels:
            found.append((i, int(item.labels[0])))
    if not found:
        raise SpixelError(f"--data {spec}: no item has a class label to train on")
    used = sorted({k for _, k in found})
    if classes is not None:
        names = list(classes)
        lookup = {k: names.index(_name(base_labels, k)) for k in used if _name(base_labels, k) in names}
    else:
        names = [_name(base_labels, k) for k in used]
        lookup = {k: j for j, k in enumerate(used)}
    pairs = [(i, lookup[k]) for i, k in found if k in lookup]
    return ds, [i for i, _ in pairs], [k for _, k in pairs], names


def _name(labels: Sequence[str] | None, k: int) -> str:
    return labels[k] if labels is not None and 0 <= k < len(labels) else f"class {k}"


def split_holdout(labels: Sequence[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Positions ``(train, held_out)`` into ``labels``: ``round(fraction · n_c)`` of each class held out (at least
    one when a class has two or more items), chosen with a generator seeded by ``seed``."""
    g = torch.Generator().manual_seed(seed)
    lab = np.asarray(labels)
    train, held = [], []
    for c in sorted(set(lab.tolist())):
        pos = np.flatnonzero(lab == c)
        perm = pos[torch.randperm(len(pos), generator=g).numpy()]
        k = round(fraction * len(pos))
        if fraction > 0 and len(pos) >= 2:
            k = min(max(k, 1), len(pos) - 1)
        held += perm[:k].tolist()
        train += perm[k:].tolist()
    return sorted(train), sorted(held)


class _View(torch.utils.data.Dataset):
    """Items ``indices`` of ``ds`` as ``(uint8 (3, S, S), class)``: random crop + flip (``train``) or the centre
    crop; a failed item gives ``None`` (dropped by :func:`_collate`)."""

    def __init__(
        self, ds: Any, indices: Sequence[int], labels: Sequence[int], pre: Preprocessing, train: bool, seed: int
    ) -> None:
        self.ds, self.indices, self.labels = ds, list(indices), list(labels)
        self.pre, self.train, self.seed, self.epoch = pre, train, seed, 0

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, j: int) -> tuple[Tensor, int] | None:
        item = self.ds[self.indices[j]]
        if not item.ok or item.image is None:
            return None
        rgb = item.image
        h, w = rgb.shape[:2]
        s, r = self.pre.input_size, self.pre.resize
        sc = r / min(h, w)
        nw, nh = max(r, round(w * sc)), max(r, round(h * sc))
        img = Image.fromarray(rgb).resize((nw, nh), _INTERP[self.pre.interpolation])
        if self.train:
            g = torch.Generator().manual_seed(hash((self.seed, self.epoch, self.indices[j])) % (2**62))
            left = int(torch.randint(0, nw - s + 1, (1,), generator=g))
            top = int(torch.randint(0, nh - s + 1, (1,), generator=g))
            flip = bool(torch.rand(1, generator=g) < 0.5)
        else:
            left, top, flip = (nw - s) // 2, (nh - s) // 2, False
        arr = np.asarray(img.crop((left, top, left + s, top + s)))
        if flip:
            arr = arr[:, ::-1]
        return torch.from_numpy(np.array(arr)).permute(2, 0, 1), self.labels[j]


def _collate(batch: list[Any]) -> tuple[Tensor, Tensor, int]:
    ok = [b for b in batch if b is not None]
    if not ok:
        return torch.empty(0, 3, 1, 1, dtype=torch.uint8), torch.empty(0, dtype=torch.long), len(batch)
    return torch.stack([b[0] for b in ok]), torch.tensor([b[1] for b in ok]), len(batch) - len(ok)


# ---------------------------------------------------------------------------------------------------- backbones
def _adapt_head(module: nn.Module, sd: dict[str, Tensor], where: Any, arch: str, reset: bool) -> list[str]:
    """Load ``sd`` into ``module`` whose head may have another number of classes: the head's tensors (and the
    auxiliary heads') keep the module's fresh initialisation when ``reset`` (other classes) or when their shape
    differs only in the leading (class) dimension. Returns those keys."""
    own = module.state_dict()
    head = head_key(own)
    heads = {head, head[: -len("weight")] + "bias"} if head else set()
    heads |= {k for k in own if k.startswith(("AuxLogits.fc.", "aux1.fc2.", "aux2.fc2."))}
    fresh = [
        k
        for k in own
        if k in sd and k in heads and (reset or own[k].shape != sd[k].shape) and own[k].shape[1:] == sd[k].shape[1:]
    ]
    merged = {**sd, **{k: own[k] for k in fresh}}
    from ..models.weights import fit_state_dict

    fit_state_dict(module, merged, where, arch)
    return fresh


def _base(
    arch: str, weights: str | os.PathLike[str] | None, input_size: int | None
) -> tuple[dict[str, Any], dict[str, Tensor], Preprocessing, list[str] | None]:
    """``(build config, state_dict, preprocessing, labels)`` of the backbone to fine-tune."""
    spec = str(arch)
    is_path = spec.endswith((".pt", ".pth")) or os.path.isfile(spec) or os.sep in spec
    if is_path and not spec.startswith(("torchvision:", "timm:")):
        if weights is not None:
            raise BadParameterError(f"{spec}: a spixel.train checkpoint carries its own weights; drop --weights")
        sd, cfg = read_checkpoint(spec)
        if ":" in str(cfg.get("arch", "")):
            build = dict(cfg["build"])
            pre = Preprocessing(
                int(input_size or cfg["input_size"]), int(cfg["resize"]), cfg["interpolation"],
                tuple(cfg["mean"]), tuple(cfg["std"]),
            )  # fmt: skip
        else:
            build = {k: cfg[k] for k in ("arch", "widths", "blocks", "pool", "num_classes") if k in cfg}
            size = int(input_size or cfg["input_size"])
            pre = Preprocessing(size, size, "bilinear", tuple(cfg["mean"]), tuple(cfg["std"]))  # type: ignore[arg-type]
        return build, sd, pre, list(cfg.get("labels") or []) or None
    if weights is None:
        raise SpixelError(f"{spec}: fine-tuning needs pretrained weights: --weights FILE (nothing is downloaded)")
    prefix, colon, name = spec.partition(":")
    if not colon:
        prefix, name = "torchvision", spec
    sd, extras = read_weights(weights)
    if prefix == "torchvision":
        from ..models.torchvision_zoo import _kwargs, _vit_image_size, torchvision_preprocessing

        kw = _kwargs(name, sd, None)
        size = _vit_image_size(name, sd, input_size)
        if size is not None:
            kw["image_size"] = size
        pre = torchvision_preprocessing(name, None, size or input_size)
    elif prefix == "timm":
        from ..models.timm_zoo import _vit_img_size, build_timm, timm_preprocessing

        with torch.device("meta"):
            ref = build_timm(name)
        kw = {}
        size = _vit_img_size(ref, sd) or input_size
        if size is not None and hasattr(ref, "patch_embed"):
            kw["img_size"] = size
        pre = timm_preprocessing(ref, size)
    else:
        raise BadParameterError(f"--arch {spec!r}: use torchvision:NAME, timm:NAME or a spixel.train checkpoint")
    from ..models._build import resolve_labels

    k = int(sd[head_key(sd)].shape[0]) if head_key(sd) else 1000
    try:
        labels, _ = resolve_labels(k, extras, None, None)
    except BadParameterError:
        labels = None
    return {"arch": f"{prefix}:{name}", "kwargs": kw}, sd, pre, labels


def _build(build: dict[str, Any], num_classes: int) -> nn.Module:
    arch = str(build["arch"])
    if arch.startswith("torchvision:"):
        import torchvision

        return torchvision.models.get_model(
            arch.split(":", 1)[1], weights=None, num_classes=num_classes, **build["kwargs"]
        )
    if arch.startswith("timm:"):
        from ..models.timm_zoo import build_timm

        return build_timm(arch.split(":", 1)[1], num_classes, **build["kwargs"])
    from .nets import build_net

    return build_net({**build, "num_classes": num_classes})


def rebuild_finetuned(sd: dict[str, Tensor], cfg: dict[str, Any]) -> ModelAdapter:
    """The adapter of a fine-tuned torchvision/timm checkpoint (``cfg["arch"]`` = ``PREFIX:NAME``)."""
    module = _build(cfg["build"], int(cfg["num_classes"]))
    from ..models.weights import fit_state_dict

    fit_state_dict(module, sd, cfg.get("name", "checkpoint"), str(cfg["arch"]))
    pre = Preprocessing(
        int(cfg["input_size"]), int(cfg["resize"]), cfg["interpolation"], tuple(cfg["mean"]), tuple(cfg["std"])
    )  # type: ignore[arg-type]
    model = make_adapter(
        module, cfg["name"], pre, list(cfg["labels"]), bool(cfg.get("multilabel", False)),
        (cfg.get("layers") or {}).get("cam"), cfg.get("nas_layers"),
    )  # fmt: skip
    module.checkpoint = cfg  # type: ignore[assignment]
    return model


# ---------------------------------------------------------------------------------------------------- the loop
def _normalise(x: Tensor, pre: Preprocessing) -> Tensor:
    m = torch.tensor(pre.mean, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(pre.std, device=x.device).view(1, 3, 1, 1)
    return (x.float() / 255.0 - m) / s


@torch.no_grad()
def _accuracy(net: nn.Module, loader: Any, pre: Preprocessing, dev: torch.device) -> float:
    was = net.training
    net.eval()
    right = seen = 0
    for x, y, _ in loader:
        if len(y):
            right += int((net(_normalise(x.to(dev), pre)).argmax(1).cpu() == y).sum())
            seen += len(y)
    net.train(was)
    return right / seen if seen else float("nan")


def _save_atomic(obj: dict[str, Any], path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def finetune(
    arch: str,
    data: str,
    out_dir: str | os.PathLike[str],
    *,
    weights: str | os.PathLike[str] | None = None,
    test: str | None = None,
    epochs: int = FINETUNE_DEFAULTS["epochs"],
    batch_size: int = FINETUNE_DEFAULTS["batch_size"],
    optimizer: str = FINETUNE_DEFAULTS["optimizer"],
    lr: float = FINETUNE_DEFAULTS["lr"],
    momentum: float = FINETUNE_DEFAULTS["momentum"],
    weight_decay: float = FINETUNE_DEFAULTS["weight_decay"],
    schedule: str = FINETUNE_DEFAULTS["schedule"],
    holdout: float = FINETUNE_DEFAULTS["holdout"],
    augment: bool = FINETUNE_DEFAULTS["augment"],
    input_size: int | None = None,
    seed: int = 0,
    workers: int = 0,
    device: torch.device | str | None = None,
    resume: bool = True,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> Finetuned:
    """Fine-tune ``arch`` on ``data`` into ``out_dir`` (see the module docstring); returns :class:`Finetuned`."""
    from tqdm import tqdm

    for k, v, lo in (("epochs", epochs, 1), ("batch_size", batch_size, 1), ("workers", workers, 0), ("seed", seed, 0)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise BadParameterError(f"{k} must be an integer >= {lo}, got {v!r}")
    if optimizer not in ("sgd", "adam"):
        raise BadParameterError(f"optimizer must be sgd or adam, got {optimizer!r}")
    if schedule not in ("constant", "cosine"):
        raise BadParameterError(f"schedule must be constant or cosine, got {schedule!r}")
    if not (isinstance(lr, (int, float)) and lr > 0) or not 0 <= holdout < 1:
        raise BadParameterError(f"need lr > 0 and 0 <= holdout < 1, got lr={lr!r}, holdout={holdout!r}")
    say = log or (lambda s: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    build, sd, pre, base_labels = _base(arch, weights, input_size)

    ds, idx, lab, names = open_labelled(data, base_labels)
    if len(names) < 2:
        raise SpixelError(f"--data {data}: fine-tuning needs at least 2 classes, found {len(names)}")
    if test is not None:
        tds, tidx, tlab, _ = open_labelled(test, base_labels, classes=names)
        tr_pos, te_view = list(range(len(idx))), (tds, tidx, tlab)
    else:
        tr_pos, te_pos = split_holdout(lab, holdout, seed)
        if not te_pos:
            raise SpixelError("no held-out images: give --test DATASET or a holdout > 0 with 2+ images per class")
        te_view = (ds, [idx[p] for p in te_pos], [lab[p] for p in te_pos])
    tr_idx, tr_lab = [idx[p] for p in tr_pos], [lab[p] for p in tr_pos]
    if not tr_idx:
        raise SpixelError(f"--data {data}: no training images left after the held-out split")

    keep_head = base_labels is not None and list(base_labels) == names
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = _build(build, len(names))  # the new head's initialisation is seeded
        fresh = _adapt_head(module, sd, weights or arch, str(build["arch"]), reset=not keep_head)
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    module.to(dev)

    key = _plain(
        {
            "arch": str(arch), "weights": str(weights) if weights else None, "data": str(data),
            "test": str(test) if test else None, "classes": names, "n_train": len(tr_idx), "batch_size": batch_size,
            "optimizer": optimizer, "lr": float(lr), "momentum": float(momentum), "weight_decay": float(weight_decay),
            "schedule": schedule, "holdout": float(holdout), "augment": bool(augment), "input_size": pre.input_size,
            "seed": seed,
        }
    )  # fmt: skip
    decay = [p for p in module.parameters() if p.ndim > 1]
    no_decay = [p for p in module.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    sgd = optimizer == "sgd"
    opt = torch.optim.SGD(groups, lr=lr, momentum=momentum) if sgd else torch.optim.Adam(groups, lr=lr)

    train_view = _View(ds, tr_idx, tr_lab, pre, train=augment, seed=seed)
    test_view = _View(*te_view, pre, train=False, seed=seed)
    loader_kw = {"batch_size": batch_size, "num_workers": workers, "collate_fn": _collate}
    test_loader = torch.utils.data.DataLoader(test_view, shuffle=False, **loader_kw)

    state_path = out / "last.pt"
    history: list[dict[str, Any]] = []
    start_epoch, start_acc, skipped = 0, float("nan"), 0
    if state_path.is_file() and resume:
        try:
            st = torch.load(state_path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise SpixelError(
                f"{state_path}: unreadable resume state ({type(e).__name__}); delete it to start over"
            ) from None
        if not isinstance(st, dict) or st.get("format") != STATE_FORMAT:
            raise SpixelError(f"{state_path}: not a fine-tuning state; delete it or use another --out")
        if st["key"] != key:
            diff = sorted(k for k in key if st["key"].get(k) != key[k])
            raise SpixelError(
                f"{out} holds a fine-tuning run with other settings ({', '.join(diff)}); use another --out or "
                "--no-resume to start over"
            )
        module.load_state_dict(st["state_dict"])
        opt.load_state_dict(st["optimizer"])
        start_epoch, history, start_acc = int(st["epoch"]), list(st["history"]), float(st["start_accuracy"])
        skipped = int(st.get("skipped", 0))
        say(f"resuming after epoch {start_epoch} of {epochs} (held-out accuracy {history[-1]['accuracy']:.1%})")
    if start_epoch == 0:
        start_acc = _accuracy(module, test_loader, pre, dev)
        say(f"held-out accuracy before fine-tuning: {start_acc:.1%} ({len(test_view)} images, {len(names)} classes)")

    t0 = time.perf_counter()
    steps = math.ceil(len(train_view) / batch_size)
    bar = tqdm(total=(epochs - start_epoch) * steps, disable=not progress, unit="step", desc="finetune", leave=False)
    for ep in range(start_epoch, epochs):
        lr_ep = lr if schedule == "constant" else 0.5 * lr * (1 + math.cos(math.pi * ep / epochs))
        for g in opt.param_groups:
            g["lr"] = lr_ep
        train_view.epoch = ep
        order = torch.randperm(len(train_view), generator=torch.Generator().manual_seed(seed * 100003 + ep)).tolist()
        loader = torch.utils.data.DataLoader(torch.utils.data.Subset(train_view, order), shuffle=False, **loader_kw)
        module.train()
        run_loss, seen = 0.0, 0
        for x, y, bad in loader:
            skipped += bad if ep == start_epoch else 0
            if not len(y) or (len(y) == 1 and steps > 1):  # BatchNorm cannot train on one image at 1×1
                continue
            logits = module(_normalise(x.to(dev), pre))
            if not isinstance(logits, Tensor):  # Inception-V3 / GoogLeNet in train mode: (logits, aux …)
                logits = logits[0]
            loss = F.cross_entropy(logits, y.to(dev))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            run_loss += float(loss.detach()) * len(y)
            seen += len(y)
            bar.update(1)
            bar.set_postfix(epoch=f"{ep + 1}/{epochs}", loss=f"{run_loss / max(seen, 1):.3f}")
        acc = _accuracy(module, test_loader, pre, dev)
        history.append({"epoch": ep + 1, "loss": run_loss / max(seen, 1), "accuracy": acc, "lr": lr_ep})
        module.eval()
        _save_atomic(
            {
                "format": STATE_FORMAT, "key": key, "epoch": ep + 1, "history": history, "start_accuracy": start_acc,
                "skipped": skipped, "state_dict": {k: v.detach().cpu() for k, v in module.state_dict().items()},
                "optimizer": opt.state_dict(),
            },
            state_path,
        )  # fmt: skip
        say(f"epoch {ep + 1}/{epochs}: loss {history[-1]['loss']:.4f}, held-out accuracy {acc:.1%}")
    bar.close()
    module.eval()
    module.to("cpu")

    arch_name = str(build["arch"])
    pretty = arch_name if ":" in arch_name else Path(str(arch)).stem
    name = f"{pretty.split(':')[-1]}-finetuned"
    model = make_adapter(module, name, pre, names, False) if ":" in arch_name else None
    if model is None:
        from .loop import make_adapter as small_adapter

        model = small_adapter(module, module.config, pre.input_size, names, mean=pre.mean, std=pre.std, name=name)
    final = history[-1]["accuracy"] if history else start_acc
    fit_info = {**key, "epochs": epochs, "seconds": time.perf_counter() - t0, "final_loss": history[-1]["loss"]}
    cfg: dict[str, Any] = {
        "format": FORMAT,
        **(build if ":" not in arch_name else {"arch": arch_name, "build": build}),
        "num_classes": len(names),
        "input_size": pre.input_size,
        "resize": pre.resize,
        "interpolation": pre.interpolation,
        "mean": list(pre.mean),
        "std": list(pre.std),
        "labels": names,
        "layers": dict(model.layers),
        "nas_layers": model.nas_layers,
        "multilabel": False,
        "name": name,
        "seed": seed,
        "epochs": epochs,
        "fit": fit_info,
        "recipe": {"name": "finetune", "params": key, "fresh_head": fresh},
        "accuracy": final,
        "start_accuracy": start_acc,
        "history": history,
        "data": {"spec": str(data), "test": str(test) if test else f"holdout {holdout}", "skipped": skipped},
    }
    path = out / "model.pt"
    _save_atomic(
        {"state_dict": {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}, "config": _plain(cfg)},
        path,
    )
    (out / "history.json").write_text(json.dumps(_plain(history), indent=1) + "\n")
    module.train_info = fit_info  # type: ignore[assignment]
    module.checkpoint = _plain(cfg)  # type: ignore[assignment]
    return Finetuned(path, final, start_acc, model, history, start_epoch, skipped)


# ---------------------------------------------------------------------------------------------------- recipes' data
class ItemArrays:
    """Items of a labelled ``--data`` dataset held as uint8 ``(N, S, S, 3)`` centre crops at a model's input size,
    with ``arrays()`` and ``classes`` (what the in-memory recipes take: GAD supports on the user's data). Class
    indices are the model's (its labels are the dataset's classes, as after :func:`finetune`); failed items are
    dropped."""

    def __init__(self, ds: Any, indices: Sequence[int], labels: Sequence[int], model: ModelAdapter, spec: str) -> None:
        crops, keep = [], []
        for i, k in zip(indices, labels, strict=True):
            item = ds[i]
            if item.ok and item.image is not None:
                crops.append(model.crop(item.image))
                keep.append(int(k))
        s = model.input_size
        self.images = np.stack(crops) if crops else np.zeros((0, s, s, 3), np.uint8)
        self.labels = np.asarray(keep, dtype=np.int64)
        self.classes = list(model.labels or [])
        self.spec = spec

    def __len__(self) -> int:
        return len(self.labels)

    def arrays(self, idx: Any = None) -> tuple[np.ndarray, np.ndarray]:
        if idx is None:
            return self.images, self.labels
        return self.images[idx], self.labels[idx]


def item_arrays(
    data: str, model: ModelAdapter, *, test: str | None = None, holdout: float = 0.2, seed: int = 0
) -> tuple[ItemArrays, ItemArrays]:
    """``(train, test)`` :class:`ItemArrays` of ``data`` for ``model`` (whose labels name the dataset's classes):
    ``test`` when given, else a stratified ``holdout`` split seeded by ``seed``."""
    if not model.labels:
        raise SpixelError(f"{model.name} has no class names to match --data's classes; fine-tune it first")
    ds, idx, lab, _ = open_labelled(data, model.labels, classes=model.labels)
    if not idx:
        raise SpixelError(f"--data {data}: no item of the classes of {model.name} ({', '.join(model.labels[:5])} …)")
    if test is not None:
        tds, tidx, tlab, _ = open_labelled(test, model.labels, classes=model.labels)
        return ItemArrays(ds, idx, lab, model, data), ItemArrays(tds, tidx, tlab, model, test)
    tr, te = split_holdout(lab, holdout, seed)
    pick = lambda pos: ([idx[p] for p in pos], [lab[p] for p in pos])  # noqa: E731
    return ItemArrays(ds, *pick(tr), model, data), ItemArrays(ds, *pick(te), model, f"{data} (held out)")

"""Training recipes: one model, disjoint halves (paper 000, spec §1.6), k folds (MeGe, spec §1.6), ROAR retraining
(spec §1.6) and GAD's support regressions (paper 003, spec §4.1); :func:`train_benchmark_set` runs them all.

Every recipe writes checkpoints (:mod:`spixel.train.checkpoint`) into ``out_dir`` and returns :class:`Trained`
records (name, path, held-out accuracy, the adapter). Training data is a dataset with ``arrays()`` / ``classes``
(``spixel.data.SyntheticDataset(n, size, seed=0)``); ``test`` is an independent held-out set (``seed=1``).
Keyword arguments a recipe does not know itself go to :func:`spixel.train.fit` (``arch``, ``epochs``, ``lr`` …).
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import BadParameterError, SpixelError
from ..models.adapter import ModelAdapter
from .checkpoint import save_checkpoint
from .loop import _normalize, accuracy, as_arrays, class_names, fit, logits

#: Seed of the shuffled index list that splits the training set (sibling code of paper 000: ``random.seed(10007)``).
SPLIT_SEED = 10007

#: Cheaper-than-default settings of the explanations ROAR ranks pixels by (every train and test image is explained).
ROAR_PARAMS: dict[str, dict[str, Any]] = {
    "integrated_gradients": {"n_steps": 16},
    "smoothgrad": {"n_samples": 16},
    "sparsified_smoothgrad": {"n_samples": 32},
}

#: ROAR removal levels and GAD α values of the papers.
ROAR_LEVELS = (0.1, 0.5, 0.9)
GAD_ALPHAS = (0.0, 2.0, 4.0, 6.0, 8.0)


@dataclass
class Trained:
    """One trained model: ``name``, checkpoint ``path``, held-out ``accuracy``, the ``model`` and ``info`` (recipe
    facts such as the ROAR level or the GAD α)."""

    name: str
    path: Path
    accuracy: float
    model: ModelAdapter = field(repr=False)
    info: dict[str, Any] = field(default_factory=dict)

    def row(self, root: Path | None = None) -> dict[str, Any]:
        path = self.path.relative_to(root) if root is not None and self.path.is_relative_to(root) else self.path
        secs = (getattr(self.model.module, "train_info", None) or {}).get("seconds")
        return {"name": self.name, "path": str(path), "accuracy": self.accuracy, "seconds": secs, **self.info}


# ---------------------------------------------------------------------------------------------- data facts
def data_info(ds: Any) -> dict[str, Any]:
    """How to regenerate ``ds``: its class, ``n``, ``size`` and ``seed`` (those it has)."""
    ds = getattr(ds, "_ds", ds)  # a _Materialised copy describes its source
    info: dict[str, Any] = {"generator": f"{type(ds).__module__}.{type(ds).__qualname__}", "n": len(ds)}
    for k in ("size", "seed", "distractors"):
        v = getattr(ds, k, None)
        if isinstance(v, (int, float, str)):
            info[k] = v
    return info


def halves_indices(n: int, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint halves of ``range(n)`` (paper 000's protocol): a shuffled index list (``torch.randperm`` with
    ``seed``), part 0 = its first ``n // 2`` entries, part 1 = the next ``n // 2`` (an odd ``n`` leaves one out);
    each sorted."""
    if n < 2:
        raise BadParameterError(f"need at least 2 training images to split into halves, got {n}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    m = n // 2
    return np.sort(perm[:m]), np.sort(perm[m : 2 * m])


def fold_assignment(n: int, k: int = 4, seed: int = SPLIT_SEED) -> np.ndarray:
    """Fold id ``(n,)`` of each training index: ``k`` near-equal contiguous chunks of a shuffled index list
    (``torch.randperm`` with ``seed``). Model ``i`` of :func:`train_folds` trains on every index whose fold is not
    ``i`` (MeGe, spec §1.6: k=4)."""
    if k < 2 or n < k:
        raise BadParameterError(f"k folds need 2 <= k <= n, got k={k}, n={n}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    fold = np.empty(n, dtype=np.int64)
    fold[perm] = (np.arange(n) * k) // n
    return fold


def _fit_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    bad = {"train", "indices", "labels", "name"} & set(kwargs)
    if bad:
        raise BadParameterError(f"the recipe sets {', '.join(sorted(bad))} itself")
    return kwargs


def _record(
    model: ModelAdapter,
    test: Any,
    path: Path,
    recipe: str,
    params: dict[str, Any],
    data: dict[str, Any],
    test_arrays: tuple[Tensor, Tensor] | None = None,
    info: dict[str, Any] | None = None,
) -> Trained:
    img, lab = test_arrays if test_arrays is not None else as_arrays(test)
    acc = accuracy(model, img.permute(0, 2, 3, 1), lab)
    test_info = data_info(test) if hasattr(test, "arrays") else {"n": int(lab.shape[0])}
    save_checkpoint(
        path,
        model,
        recipe={"name": recipe, "params": params},
        accuracy=acc,
        data={**data, "test": test_info},
        **({"info": info} if info else {}),
    )
    return Trained(model.name, path, acc, model, dict(info or {}))


# ---------------------------------------------------------------------------------------------- recipes
def train_one(
    train: Any, test: Any, out_dir: str | Path, *, name: str | None = None, progress: bool = True, **fit_params: Any
) -> Trained:
    """One model on the whole training set; checkpoint ``<out_dir>/<name>.pt`` (default name ``<arch>``)."""
    fp = _fit_kwargs(fit_params)
    name = name or str(fp.get("arch", "resnet"))
    model = fit(train, name=name, progress=progress, **fp)
    data = {**data_info(train), "indices": "all"}
    return _record(model, test, Path(out_dir) / f"{name}.pt", "one", fp, data)


def train_halves(
    train: Any,
    test: Any,
    out_dir: str | Path,
    *,
    name: str | None = None,
    split_seed: int = SPLIT_SEED,
    progress: bool = True,
    **fit_params: Any,
) -> list[Trained]:
    """Two models with an identical recipe (same ``seed``) on the disjoint halves of :func:`halves_indices`
    (paper 000, spec §1.6); checkpoints ``<name>-half0.pt`` and ``<name>-half1.pt``, each recording its indices."""
    fp = _fit_kwargs(fit_params)
    base = name or f"{fp.get('arch', 'resnet')}-half"
    out, test_arrays = [], as_arrays(test)
    for part, idx in enumerate(halves_indices(len(train), split_seed)):
        nm = f"{base}{part}"
        model = fit(train, indices=idx, name=nm, progress=progress, **fp)
        data = {
            **data_info(train),
            "indices": idx.tolist(),
            "split": {"rule": "halves", "seed": split_seed, "part": part},
        }
        out.append(
            _record(
                model,
                test,
                Path(out_dir) / f"{nm}.pt",
                "halves",
                {**fp, "split_seed": split_seed},
                data,
                test_arrays,
                {"part": part},
            )
        )
    return out


def train_folds(
    train: Any,
    test: Any,
    out_dir: str | Path,
    *,
    k: int = 4,
    name: str | None = None,
    split_seed: int = SPLIT_SEED,
    progress: bool = True,
    **fit_params: Any,
) -> list[Trained]:
    """``k`` models, model ``i`` trained on every fold but ``i`` (:func:`fold_assignment`; MeGe, spec §1.6);
    checkpoints ``<name>-fold<i>.pt``. Each config's ``data.folds`` is the fold id of every training index and
    ``data.split.exclude`` the fold the model did not see."""
    fp = _fit_kwargs(fit_params)
    base = name or f"{fp.get('arch', 'resnet')}-fold"
    fold = fold_assignment(len(train), k, split_seed)
    out, test_arrays = [], as_arrays(test)
    for i in range(k):
        nm = f"{base}{i}"
        model = fit(train, indices=np.flatnonzero(fold != i), name=nm, progress=progress, **fp)
        data = {
            **data_info(train),
            "folds": fold.tolist(),
            "split": {"rule": "folds", "seed": split_seed, "k": k, "exclude": i},
        }
        out.append(
            _record(
                model,
                test,
                Path(out_dir) / f"{nm}.pt",
                "folds",
                {**fp, "k": k, "split_seed": split_seed},
                data,
                test_arrays,
                {"fold": i},
            )
        )
    return out


def train_indices(config: dict[str, Any]) -> np.ndarray:
    """The training-set indices a checkpoint's model was trained on (from its ``config["data"]``)."""
    data = config.get("data", {})
    if isinstance(data.get("indices"), list):
        return np.asarray(data["indices"], dtype=np.int64)
    if "folds" in data:
        return np.flatnonzero(np.asarray(data["folds"]) != data["split"]["exclude"])
    if data.get("indices") == "all" and "n" in data:
        return np.arange(int(data["n"]))
    raise SpixelError("this checkpoint does not record its training indices")


# ---------------------------------------------------------------------------------------------- ROAR
def roar_remove(images: Tensor, maps: Tensor, fraction: float, fill: Sequence[int]) -> Tensor:
    """Replace the top ``round(fraction · H · W)`` pixels of each image, ranked by its ``(H, W)`` map (largest first;
    ties broken by the lower row-major index), by the colour ``fill`` (3 uint8 values); uint8 ``(N, 3, H, W)`` in and
    out (ROAR, Hooker et al. 2019; spec §1.6)."""
    if not 0.0 <= fraction <= 1.0:
        raise BadParameterError(f"the removal fraction must lie in [0, 1], got {fraction!r}")
    n, c, h, w = images.shape
    if maps.shape != (n, h, w):
        raise BadParameterError(f"maps must be (N, H, W) = {(n, h, w)}, got {tuple(maps.shape)}")
    k = math.floor(fraction * h * w + 0.5)
    flat = maps.reshape(n, -1).float().nan_to_num(nan=float("-inf"))
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices[:, :k]
    removed = torch.zeros(n, h * w, dtype=torch.bool).scatter_(1, order, True).view(n, 1, h, w)
    colour = torch.as_tensor(list(fill), dtype=torch.uint8).view(1, c, 1, 1)
    return torch.where(removed, colour, images)


def explanation_maps(
    model: ModelAdapter,
    images: Tensor,
    labels: Tensor,
    method: str,
    *,
    params: dict[str, Any] | None = None,
    seed: int = 0,
    batch_size: int = 128,
    progress: bool = False,
) -> Tensor:
    """``(N, H, W)`` maps of ``method`` (``spixel.explain``; ``"random"``: uniform noise from ``seed``) for uint8
    ``(N, 3, H, W)`` images, explaining each image's ``labels``."""
    n, _, h, w = images.shape
    if method == "random":
        return torch.rand(n, h, w, generator=torch.Generator().manual_seed(seed))
    from tqdm import tqdm

    from ..api import explain

    out = []
    for s in tqdm(range(0, n, batch_size), disable=not progress, desc=f"explain {method}", leave=False):
        x = _normalize(images[s : s + batch_size].to(model.device), model.mean, model.std)
        ex = explain(model, x, method, labels[s : s + batch_size].to(model.device), seed=seed, **(params or {}))
        out.append(ex.attribution.detach().float().cpu())
    return torch.cat(out)


#: The fit parameters ROAR copies from the base model's ``train_info``.
_RECIPE_KEYS = ("epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay", "schedule", "warmup", "flip")
_RECIPE_KEYS += ("shift", "seed")


def _roar_recipe(base: ModelAdapter, fit_params: dict[str, Any]) -> dict[str, Any]:
    """``base``'s training recipe (its ``train_info`` and net config), overridden by ``fit_params``."""
    info0 = getattr(base.module, "train_info", None) or {}
    recipe = {k: v for k, v in info0.items() if k in _RECIPE_KEYS}
    cfg = getattr(base.module, "config", {}) or {}
    if "arch" not in cfg:  # a torchvision / timm model: retraining it from scratch is not a recipe here
        raise BadParameterError(
            f"ROAR retrains the base's architecture from scratch, which spixel does for its own nets only (resnet, "
            f"vgg); {base.name} is not one"
        )
    recipe.update({k: cfg[k] for k in ("arch", "widths", "blocks", "pool") if k in cfg})
    recipe.update(_fit_kwargs(fit_params))
    return recipe


def train_roar_reference(
    base: ModelAdapter,
    train: Any,
    test: Any,
    out_dir: str | Path,
    *,
    name: str | None = None,
    progress: bool = True,
    **fit_params: Any,
) -> Trained:
    """ROAR's 0 % point (spec §1.6): a fresh model retrained exactly as :func:`train_roar` retrains (``base``'s
    recipe and seed, overridden by ``fit_params``) on the *unmodified* images — the accuracy every ROAR level is
    read against (Hooker et al. compare retrained models with retrained models). Checkpoint
    ``<name>-reference.pt``; it equals :func:`train_roar` at level 0 without explaining any image."""
    recipe = _roar_recipe(base, fit_params)
    nm = f"{name or str(recipe.get('arch', 'resnet')) + '-roar'}-reference"
    img, lab = as_arrays(train)
    labels = base.labels or class_names(train)
    model = fit((img.permute(0, 2, 3, 1), lab), labels=labels, name=nm, progress=progress, **recipe)
    data = {**data_info(train), "indices": "all", "roar": {"base": base.name, "level": 0.0, "target": "label"}}
    params, info = {**recipe, "level": 0.0}, {"method": None, "level": 0.0}
    return _record(model, test, Path(out_dir) / f"{nm}.pt", "roar", params, data, info=info)


def train_roar(
    base: ModelAdapter,
    train: Any,
    test: Any,
    out_dir: str | Path,
    method: str,
    *,
    levels: Sequence[float] = ROAR_LEVELS,
    params: dict[str, Any] | None = None,
    seed: int | None = None,
    name: str | None = None,
    progress: bool = True,
    **fit_params: Any,
) -> list[Trained]:
    """ROAR (spec §1.6): explain every train and test image with ``method`` on ``base`` (for its true label;
    ``params`` default :data:`ROAR_PARAMS`), rank the pixels by the method's 2-D map as it comes (for signed maps
    such as IG's channel sum: most positive first, as in ROAD, spec §1.6; ``"random"``: a seeded random ranking),
    replace the top ``p`` fraction of them (:func:`roar_remove`) by the per-channel mean of
    the training images (rounded to uint8), retrain a fresh model with ``base``'s recipe (its ``train_info``,
    overridden by ``fit_params``) on the modified train set and score it on the modified test set; one checkpoint
    ``<name>-<method>-<round(100 p)>.pt`` per level. ``info`` records the level and the accuracy of ``base``
    itself on the modified test set (no retraining)."""
    levels = [float(p) for p in levels]
    for p in levels:
        if not 0.0 <= p <= 1.0:
            raise BadParameterError(f"ROAR levels are fractions in [0, 1], got {p!r}")
    recipe = _roar_recipe(base, fit_params)
    seed = int(recipe.get("seed", 0)) if seed is None else seed
    mparams = dict(ROAR_PARAMS.get(method, {}) if params is None else params)
    base_name = name or f"{recipe.get('arch', 'resnet')}-roar"

    tr_img, tr_lab = as_arrays(train)
    te_img, te_lab = as_arrays(test)
    count = tr_img.shape[0] * tr_img.shape[2] * tr_img.shape[3]
    fill = [math.floor(float(s) / count + 0.5) for s in tr_img.sum(dim=(0, 2, 3), dtype=torch.int64)]
    t0 = time.perf_counter()
    tr_maps = explanation_maps(base, tr_img, tr_lab, method, params=mparams, seed=seed, progress=progress)
    te_maps = explanation_maps(base, te_img, te_lab, method, params=mparams, seed=seed + 1, progress=progress)
    explain_s = time.perf_counter() - t0
    labels = base.labels or class_names(train)
    out = []
    for p in levels:
        tr_mod = roar_remove(tr_img, tr_maps, p, fill).permute(0, 2, 3, 1)
        te_mod = roar_remove(te_img, te_maps, p, fill).permute(0, 2, 3, 1)
        nm = f"{base_name}-{method}-{round(100 * p)}"
        model = fit((tr_mod, tr_lab), labels=labels, name=nm, progress=progress, **recipe)
        info = {
            "method": method,
            "level": p,
            "base_accuracy": accuracy(base, te_mod, te_lab),
            "explain_seconds": explain_s,
        }
        data = {
            **data_info(train),
            "indices": "all",
            "roar": {
                "base": base.name,
                "method": method,
                "params": mparams,
                "level": p,
                "fill": fill,
                "target": "label",
                "seed": seed,
            },
        }
        out.append(
            _record(
                model,
                test,
                Path(out_dir) / f"{nm}.pt",
                "roar",
                {**recipe, "method": method, "level": p, "params": mparams},
                data,
                (te_mod.permute(0, 3, 1, 2), te_lab),
                info,
            )
        )
    return out


# ---------------------------------------------------------------------------------------------- GAD
def gad_targets(z: Tensor, labels: Tensor, a: int, b: int, alpha: float) -> Tensor:
    """GAD's regression targets (paper 003 §4.1, spec §4.1): ``z`` with ``z_b − α`` on class-``a`` rows and
    ``z_a − α`` on class-``b`` rows; every other entry and row unchanged."""
    t = z.detach().clone()
    t[labels == a, b] -= alpha
    t[labels == b, a] -= alpha
    return t


def fit_gad_support(
    model: ModelAdapter,
    train: Any,
    a: int,
    b: int,
    alpha: float,
    *,
    epochs: int = 10,
    lr: float = 4e-5,
    batch_size: int = 32,
    seed: int = 0,
    name: str | None = None,
    progress: bool = True,
) -> tuple[ModelAdapter, list[float]]:
    """One GAD support model (spec §4.1): a copy of ``model`` fine-tuned (all weights, train-mode BN) with
    ``MSE(g(x), gad_targets(z(x)))`` by Adam(``lr``) for ``epochs`` on the training images of classes ``a`` and
    ``b``; ``z`` = the frozen original's eval-mode logits, computed once. No augmentation. Returns the support (eval
    mode) and the loss of every step."""
    k = model.num_classes
    if a == b or k is None or not (0 <= a < k and 0 <= b < k):
        raise BadParameterError(f"the GAD class pair must be two distinct classes in 0..{(k or 0) - 1}, got ({a}, {b})")
    img, lab = as_arrays(train)
    keep = (lab == a) | (lab == b)
    img, lab = img[keep], lab[keep]
    if img.shape[0] == 0:
        raise BadParameterError(f"no training images of classes {a} and {b}")
    z = logits(model, (img.permute(0, 2, 3, 1), lab))
    t = gad_targets(z, lab, a, b, float(alpha))
    net = copy.deepcopy(model.module)
    if hasattr(net, "checkpoint"):  # a base read from a file: that file's config is not the support's
        del net.checkpoint
    for p in net.parameters():
        p.requires_grad_(True)
    dev = model.device
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    from tqdm import tqdm

    n = img.shape[0]
    t0 = time.perf_counter()
    net.train()
    bar = tqdm(total=epochs * math.ceil(n / batch_size), disable=not progress, desc=name or "gad", leave=False)
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        for s in range(0, n, batch_size):
            idx = order[s : s + batch_size]
            loss = F.mse_loss(net(_normalize(img[idx].to(dev), model.mean, model.std)), t[idx].to(dev))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            bar.update(1)
    bar.close()
    net.eval()
    cfg = dict(getattr(model.module, "config", {}) or {})
    ck = getattr(model.module, "checkpoint", None)
    if not cfg and isinstance(ck, dict) and ":" in str(ck.get("arch")):  # a fine-tuned torchvision / timm base
        cfg = {k: ck[k] for k in ("arch", "build", "num_classes")}
    net.config = cfg  # type: ignore[assignment]
    net.train_info = {  # type: ignore[assignment]
        "epochs": epochs,
        "batch_size": batch_size,
        "optimizer": "adam",
        "lr": lr,
        "loss": "mse",
        "seed": seed,
        "n_train": int(n),
        "final_loss": losses[-1],
        "seconds": time.perf_counter() - t0,
    }
    sup = ModelAdapter(
        net,
        mean=model.mean,
        std=model.std,
        input_size=model.input_size,
        resize=model.resize,
        labels=model.labels,
        layers=model.layers,
        interpolation=model.interpolation,
        name=name or f"{model.name}-gad{a}-{b}-a{alpha:g}",
    )
    return sup, losses


def train_gad_supports(
    base: ModelAdapter,
    train: Any,
    test: Any,
    out_dir: str | Path,
    *,
    pair: tuple[int, int] = (0, 1),
    alphas: Sequence[float] = GAD_ALPHAS,
    epochs: int = 10,
    lr: float = 4e-5,
    batch_size: int = 32,
    seed: int = 0,
    name: str | None = None,
    progress: bool = True,
) -> list[Trained]:
    """GAD support regressions for the class pair ``(a, b)`` of ``base``, one per ``α`` (spec §4.1), checkpoints
    ``<name>-<a>-<b>-alpha<α>.pt``. ``info`` records α, the final training loss and the test MSE against the
    α-shifted targets on the pair's test images."""
    a, b = int(pair[0]), int(pair[1])
    base_name = name or f"{base.name}-gad"
    te_img, te_lab = as_arrays(test)
    keep = (te_lab == a) | (te_lab == b)
    z_te = logits(base, (te_img[keep].permute(0, 2, 3, 1), te_lab[keep]))
    out = []
    for alpha in alphas:
        nm = f"{base_name}-{a}-{b}-alpha{float(alpha):g}"
        sup, losses = fit_gad_support(
            base,
            train,
            a,
            b,
            float(alpha),
            epochs=epochs,
            lr=lr,
            batch_size=batch_size,
            seed=seed,
            name=nm,
            progress=progress,
        )
        t_te = gad_targets(z_te, te_lab[keep], a, b, float(alpha))
        mse = float(F.mse_loss(logits(sup, (te_img[keep].permute(0, 2, 3, 1), te_lab[keep])), t_te))
        info = {"pair": [a, b], "alpha": float(alpha), "final_loss": losses[-1], "test_mse": mse}
        data = {**data_info(train), "indices": f"labels in ({a}, {b})", "gad": {"base": base.name, "pair": [a, b]}}
        params = {
            "pair": [a, b],
            "alpha": float(alpha),
            "epochs": epochs,
            "lr": lr,
            "batch_size": batch_size,
            "seed": seed,
            "loss": "mse",
            "optimizer": "adam",
        }
        out.append(_record(sup, test, Path(out_dir) / f"{nm}.pt", "gad", params, data, (te_img, te_lab), info))
    return out


# ---------------------------------------------------------------------------------------------- tiny model
#: The tiny recipe: 32×32 images without distractors (``SyntheticDataset(n, size=32, distractors=0)``) and a
#: VGG-style net 16-32-64 trained 10 epochs on 8000 images (1250 SGD steps). Measured on 1 CPU thread: 29 s
#: (3 s of it generating the images) to 88.5 % held-out accuracy on 1000 images of seed 1; the errors are mostly
#: cross ↔ star, whose arms are 2–3 pixels wide at this size (docs/ground_truth.md).
TINY_DATA: dict[str, Any] = {"size": 32, "distractors": 0}
TINY_FIT: dict[str, Any] = {
    "arch": "vgg",
    "widths": [16, 32, 64],
    "epochs": 10,
    "batch_size": 64,
    "lr": 0.05,
    "shift": 2,
}


def train_tiny(
    out_dir: str | Path,
    *,
    n: int = 8000,
    n_test: int = 1000,
    data_seed: int = 0,
    seed: int = 0,
    name: str = "tiny",
    progress: bool = True,
    **fit_params: Any,
) -> Trained:
    """A small model in about half a minute on one CPU thread (:data:`TINY_DATA`, :data:`TINY_FIT`): trained on
    ``SyntheticDataset(n, 32, data_seed, distractors=0)``, scored on ``n_test`` images of seed ``data_seed + 1``;
    checkpoint ``<out_dir>/<name>.pt``. For trying methods and for tests; ``fit_params`` override :data:`TINY_FIT`."""
    from ..data import SyntheticDataset

    train = SyntheticDataset(n, seed=data_seed, **TINY_DATA)
    test = SyntheticDataset(n_test, seed=data_seed + 1, **TINY_DATA)
    return train_one(train, test, out_dir, name=name, progress=progress, **{**TINY_FIT, "seed": seed, **fit_params})


# ---------------------------------------------------------------------------------------------- benchmark set
#: ROAR methods of the benchmark set (cheap enough to explain every train and test image).
BENCHMARK_ROAR_METHODS = ("saliency", "integrated_gradients", "gradcam")


def train_benchmark_set(
    out_dir: str | Path,
    *,
    n: int = 8000,
    n_test: int = 1000,
    size: int = 64,
    data_seed: int = 0,
    epochs: int = 40,
    vgg_epochs: int = 24,
    split_epochs: int = 20,
    roar_epochs: int = 10,
    split_arch: str = "vgg",
    roar_methods: Sequence[str] = BENCHMARK_ROAR_METHODS,
    roar_levels: Sequence[float] = ROAR_LEVELS,
    gad_pair: tuple[int, int] = (0, 1),
    gad_alphas: Sequence[float] = GAD_ALPHAS,
    k: int = 4,
    progress: bool = True,
    **fit_params: Any,
) -> dict[str, Any]:
    """Every model the benchmarks need, in ``out_dir``: ResNet-style and VGG-style single models; two disjoint halves
    and ``k`` folds (``split_arch``, VGG-style by default: it learns faster here); ROAR retraining for
    ``roar_methods`` × ``roar_levels`` on the ResNet-style model's maps; GAD supports for ``gad_pair`` ×
    ``gad_alphas``. Data:
    ``SyntheticDataset(n, size, data_seed)`` for training, ``SyntheticDataset(n_test, size, data_seed + 1)`` held out.

    Epochs (SGD, batch 64, cosine; measured on this data with n=8000: the ResNet-style net reached 95.7 % held-out
    accuracy after 5000 steps, the VGG-style net 97.7 % after 3000; a VGG-style half at 20 epochs (1250 steps) 88.9 %,
    a ResNet-style one 72–76 %):
    ``epochs`` for the ResNet-style model, ``vgg_epochs`` for the VGG-style one, ``split_epochs`` for the halves and
    folds (both models of a comparison share the recipe, which is what paper 000 and MeGe need; they are less
    accurate than the single model), ``roar_epochs`` for every ROAR retraining (all methods and levels share it;
    ``info["base_accuracy"]`` is the single model without retraining). Other ``fit_params`` (``lr``,
    ``batch_size`` …) apply to every model. Writes and returns the manifest (``manifest.json``: every checkpoint
    with its held-out accuracy and seconds, the ROAR and GAD tables, the total time); it is rewritten after every
    stage, so an interrupted run shows what it finished."""
    from .. import __version__
    from ..data import SyntheticDataset

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fp = _fit_kwargs(dict(fit_params))
    fp.pop("arch", None)
    ep = {"resnet": epochs, "vgg": vgg_epochs, "split": split_epochs, "roar": roar_epochs, "split_arch": split_arch}
    t0 = time.perf_counter()
    train, test = SyntheticDataset(n, size, data_seed), SyntheticDataset(n_test, size, data_seed + 1)
    tr_img, tr_lab = as_arrays(train)
    te_img, te_lab = as_arrays(test)
    # the recipes take the arrays (generated once); the checkpoints still record how to regenerate them
    tr_data, te_data = _Materialised(train, tr_img, tr_lab), _Materialised(test, te_img, te_lab)
    manifest: dict[str, Any] = {
        "spixel_version": __version__,
        "data": {"train": data_info(train), "test": data_info(test)},
        "fit": fp,
        "epochs": ep,
        "models": [],
        "roar": [],
        "roar_reference": None,
        "gad": [],
        "stages": {},
        "seconds": None,
    }

    def stage(label: str, rows: list[Trained], recipe: str, t: float) -> None:
        manifest["models"] += [{"recipe": recipe, **r.row(out)} for r in rows]
        manifest["stages"][label] = time.perf_counter() - t
        manifest["seconds"] = time.perf_counter() - t0
        (out / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")

    manifest["stages"]["data"] = time.perf_counter() - t0
    t = time.perf_counter()
    resnet = train_one(tr_data, te_data, out, arch="resnet", name="resnet", epochs=epochs, progress=progress, **fp)
    stage("resnet", [resnet], "one", t)
    t = time.perf_counter()
    vgg = train_one(tr_data, te_data, out, arch="vgg", name="vgg", epochs=vgg_epochs, progress=progress, **fp)
    stage("vgg", [vgg], "one", t)
    t = time.perf_counter()
    stage(
        "halves",
        train_halves(
            tr_data,
            te_data,
            out,
            arch=split_arch,
            name=f"{split_arch}-half",
            epochs=split_epochs,
            progress=progress,
            **fp,
        ),
        "halves",
        t,
    )
    t = time.perf_counter()
    stage(
        "folds",
        train_folds(
            tr_data,
            te_data,
            out,
            k=k,
            arch=split_arch,
            name=f"{split_arch}-fold",
            epochs=split_epochs,
            progress=progress,
            **fp,
        ),
        "folds",
        t,
    )
    t = time.perf_counter()
    ref = train_roar_reference(
        resnet.model, tr_data, te_data, out, name="resnet-roar", progress=progress, **{**fp, "epochs": roar_epochs}
    )
    manifest["roar_reference"] = {"accuracy": ref.accuracy, "path": ref.row(out)["path"]}
    stage("roar-reference", [ref], "roar", t)
    for method in roar_methods:
        t = time.perf_counter()
        rows = train_roar(
            resnet.model,
            tr_data,
            te_data,
            out,
            method,
            levels=roar_levels,
            name="resnet-roar",
            progress=progress,
            **{**fp, "epochs": roar_epochs},
        )
        manifest["roar"] += [
            {
                "method": method,
                "level": r.info["level"],
                "accuracy": r.accuracy,
                "base_accuracy": r.info["base_accuracy"],
                "path": r.row(out)["path"],
            }
            for r in rows
        ]
        stage(f"roar-{method}", rows, "roar", t)
    t = time.perf_counter()
    rows = train_gad_supports(
        resnet.model, tr_data, te_data, out, pair=gad_pair, alphas=gad_alphas, name="resnet-gad", progress=progress
    )
    manifest["gad"] = [
        {k2: r.info[k2] for k2 in ("pair", "alpha", "final_loss", "test_mse")}
        | {"accuracy": r.accuracy, "path": r.row(out)["path"]}
        for r in rows
    ]
    stage("gad", rows, "gad", t)
    return manifest


class _Materialised:
    """A dataset whose arrays were generated once: ``arrays()`` slices them; ``n``/``size``/``seed`` and ``classes``
    are the original's (so checkpoints still say how to regenerate the data)."""

    def __init__(self, ds: Any, images: Tensor, labels: Tensor) -> None:
        self._ds, self._images, self._labels = ds, images.permute(0, 2, 3, 1), labels
        self.classes = list(ds.classes)
        for k in ("n", "size", "seed", "distractors"):
            if hasattr(ds, k):
                setattr(self, k, getattr(ds, k))

    def __len__(self) -> int:
        return len(self._ds)

    def arrays(self, indices: Any = None) -> tuple[Tensor, Tensor]:
        if indices is None:
            return self._images, self._labels
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        return self._images[idx], self._labels[idx]

"""Training the models the benchmarks need, on the synthetic ground-truth data (``spixel train ...``).

* :func:`fit` / :func:`accuracy` — the loop (:mod:`spixel.train.loop`); nets in :mod:`spixel.train.nets`;
* :func:`save_checkpoint` / :func:`load_checkpoint` — ``spixel.load_model(path)`` reads them;
* recipes (:mod:`spixel.train.recipes`): :func:`train_one`, :func:`train_halves`, :func:`train_folds`,
  :func:`train_roar` (and :func:`train_roar_reference`, its 0 % point), :func:`train_gad_supports`,
  :func:`train_benchmark_set`;
  :func:`train_tiny` — a 32×32 model in ~30 s, for trying methods and for tests.
"""

from .checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from .loop import accuracy, fit, logits
from .nets import build_net, cam_layer, net_config
from .recipes import (
    Trained,
    fit_gad_support,
    fold_assignment,
    gad_targets,
    halves_indices,
    roar_remove,
    train_folds,
    train_gad_supports,
    train_halves,
    train_indices,
    train_one,
    train_roar,
    train_roar_reference,
    train_tiny,
)

__all__ = [
    "Trained",
    "accuracy",
    "build_net",
    "cam_layer",
    "fit",
    "fit_gad_support",
    "fold_assignment",
    "gad_targets",
    "halves_indices",
    "load_checkpoint",
    "logits",
    "net_config",
    "read_checkpoint",
    "roar_remove",
    "save_checkpoint",
    "train_folds",
    "train_gad_supports",
    "train_halves",
    "train_indices",
    "train_one",
    "train_roar",
    "train_roar_reference",
    "train_tiny",
]

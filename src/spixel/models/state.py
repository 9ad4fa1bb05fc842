"""Leaving a model as found: the context manager every explainer, metric and recipe runs a model inside."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn

__all__ = ["frozen"]


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and no parameter gradients for the duration; mode and ``requires_grad`` flags are restored.

    Gradients w.r.t. parameters are never needed by an explainer, and skipping them makes backward cheaper.
    """
    modes = {m: m.training for m in module.modules()}
    flags = {p: p.requires_grad for p in module.parameters()}
    module.eval()
    for p in flags:
        p.requires_grad_(False)
    try:
        yield module
    finally:
        for m, t in modes.items():
            m.training = t
        for p, f in flags.items():
            p.requires_grad_(f)

"""Data-independent partitions: square grid blocks and random groups (paper 000's controls, spec §1.3)."""

from __future__ import annotations

import torch
from torch import Tensor

from ..attribution._core import check_int, make_generator
from ..types import Segmentation
from .base import relabel_batch, segmenter


@segmenter("grid", backend="torch", description="square s×s blocks (s=1: every pixel its own region)")
def grid(rgb01: Tensor, *, size: int = 16) -> Segmentation:
    """Regular grid of ``size``×``size`` blocks (the last row/column may be narrower)."""
    check_int("size", size)
    n, _, h, w = rgb01.shape
    rows = torch.arange(h, device=rgb01.device) // size
    cols = torch.arange(w, device=rgb01.device) // size
    ncols = (w + size - 1) // size
    lab = (rows.view(-1, 1) * ncols + cols.view(1, -1)).expand(n, h, w).contiguous()
    return Segmentation(lab)


@segmenter("random", backend="torch", description="each pixel i.i.d. in one of K groups (seeded control)")
def random(rgb01: Tensor, *, n_segments: int = 100, seed: int | None = 0) -> Segmentation:
    """Assign every pixel independently and uniformly to one of ``n_segments`` groups (non-contiguous regions).
    Image ``i`` of the batch uses the generator seeded with ``seed`` advanced through images ``0..i-1``."""
    check_int("n_segments", n_segments)
    gen, seed = make_generator(seed)
    n, _, h, w = rgb01.shape
    lab = torch.randint(0, n_segments, (n, h, w), generator=gen)
    return Segmentation(relabel_batch(lab).to(rgb01.device), {"seed": seed})

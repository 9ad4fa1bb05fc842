"""Random reference maps for the fidelity metrics.

"Better than a random map" depends on the random map's granularity: deleting i.i.d. random *pixels* scatters
holes over the whole image and destroys a prediction far faster than deleting any coherent area does (on
EfficientNet-Lite0, deletion AUC ≈ 0.09 against Grad-CAM's ≈ 0.21 — see docs/ground_truth.md). A fair reference
removes pixels in the same units as the explanation it is compared with: random scores on the explanation's own
regions, or a random low-resolution map upsampled like a CAM.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..attribution._core import check_int, make_generator
from ..errors import BadParameterError
from ..regions import paint
from ..types import Explanation


def random_map(like: Explanation, *, seed: int | Sequence[int] | None = 0, grid: int | None = None) -> Explanation:
    """Uniform random scores shaped like ``like``, at its granularity.

    * ``grid=None`` and ``like`` carries a :class:`~spixel.types.Segmentation`: one score per region of that
      partition (the returned explanation carries it too, so the region-order metrics remove whole regions);
    * ``grid=g``: a ``g``×``g`` random map upsampled bilinearly to the input size (a CAM's granularity, e.g.
      ``grid=7`` for a network whose last convolution is 7×7);
    * otherwise: i.i.d. uniform pixels.

    Image ``i`` draws from its own CPU generator seeded with ``seed + i`` (or ``seed[i]`` when ``seed`` is one
    per image), so its map depends on its seed and its own partition only — never on its batch-mates (the same
    map on every device and in every batch). ``meta`` records the kind and the seed.
    """
    n, h, w = like.attribution.shape
    device = like.attribution.device
    if isinstance(seed, Sequence) and not isinstance(seed, str):
        seeds = [check_int("seed", s, 0) for s in seed]
        if len(seeds) != n:
            raise BadParameterError(f"random_map got {len(seeds)} seeds for {n} maps: give one per map or one int")
        recorded: int | list[int] = seeds
    else:
        _, base = make_generator(seed)
        seeds = [base + i for i in range(n)]
        recorded = base
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    seg = None
    if grid is not None:
        check_int("grid", grid)
        if grid > min(h, w):
            raise BadParameterError(f"grid={grid} is finer than the {h}×{w} map: use grid=None for i.i.d. pixels")
        coarse = torch.stack([torch.rand(1, grid, grid, generator=g) for g in gens])
        attr = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)[:, 0]
        kind = f"grid {grid}×{grid}"
    elif like.segmentation is not None:
        seg = like.segmentation
        k = seg.num_segments.tolist()
        scores = torch.zeros(n, seg.max_segments)
        for i, g in enumerate(gens):
            scores[i, : k[i]] = torch.rand(k[i], generator=g)
        attr = paint(scores.to(seg.labels.device), seg)
        kind = "regions"
    else:
        attr = torch.stack([torch.rand(h, w, generator=g) for g in gens])
        kind = "pixels"
    return Explanation(
        attribution=attr.to(device), segmentation=seg, meta={"method": "random", "kind": kind, "seed": recorded}
    )

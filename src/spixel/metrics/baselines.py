"""Random reference maps for the fidelity metrics.

"Better than a random map" depends on the random map's granularity: deleting i.i.d. random *pixels* scatters
holes over the whole image and destroys a prediction far faster than deleting any coherent area does (on
EfficientNet-Lite0, deletion AUC ≈ 0.09 against Grad-CAM's ≈ 0.21 — see docs/ground_truth.md). A fair reference
removes pixels in the same units as the explanation it is compared with: random scores on the explanation's own
regions, or a random low-resolution map upsampled like a CAM.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..attribution._core import check_int, make_generator
from ..errors import BadParameterError
from ..regions import paint
from ..types import Explanation


def random_map(like: Explanation, *, seed: int | None = 0, grid: int | None = None) -> Explanation:
    """Uniform random scores shaped like ``like``, at its granularity.

    * ``grid=None`` and ``like`` carries a :class:`~spixel.types.Segmentation`: one score per region of that
      partition (the returned explanation carries it too, so the region-order metrics remove whole regions);
    * ``grid=g``: a ``g``×``g`` random map upsampled bilinearly to the input size (a CAM's granularity, e.g.
      ``grid=7`` for a network whose last convolution is 7×7);
    * otherwise: i.i.d. uniform pixels.

    ``seed`` seeds a CPU generator (the same map on every device); ``meta`` records the kind and the seed.
    """
    gen, seed = make_generator(seed)
    n, h, w = like.attribution.shape
    device = like.attribution.device
    seg = None
    if grid is not None:
        check_int("grid", grid)
        if grid > min(h, w):
            raise BadParameterError(f"grid={grid} is finer than the {h}×{w} map: use grid=None for i.i.d. pixels")
        coarse = torch.rand(n, 1, grid, grid, generator=gen)
        attr = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)[:, 0]
        kind = f"grid {grid}×{grid}"
    elif like.segmentation is not None:
        seg = like.segmentation
        attr = paint(torch.rand(n, seg.max_segments, generator=gen).to(seg.labels.device), seg)
        kind = "regions"
    else:
        attr = torch.rand(n, h, w, generator=gen)
        kind = "pixels"
    return Explanation(
        attribution=attr.to(device), segmentation=seg, meta={"method": "random", "kind": kind, "seed": seed}
    )

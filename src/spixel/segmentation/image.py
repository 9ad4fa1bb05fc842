"""Image superpixels: SLIC, Quickshift, Felzenszwalb and compact watershed (scikit-image; fast-slic optional).

Every segmenter takes float RGB ``(N, 3, H, W)`` in [0, 1] (the de-normalised image) and returns a
:class:`~spixel.types.Segmentation` with contiguous ids per image. The images of a batch are segmented in parallel
threads (:func:`~spixel.segmentation.base.map_images`): the heavy loops of these skimage functions (``_slic_cython``,
``_quickshift_cython``, the Felzenszwalb graph cut, the watershed heap) and fast-slic's C++ core release the GIL,
which we checked by timing a Python thread while another thread segments (its longest stall stays at a few ms
where the call lasts 20–500 ms; a call that held the GIL would stall it for the whole call). ``workers=1`` runs the
batch serially; the result never depends on ``workers`` or on an image's position in the batch.

Defaults (spec §1.3, §2.2):

* ``slic``: skimage's ``n_segments=100, compactness=10`` (paper 000 on CIFAR-10: 100 segments; SWAG uses 300 and
  compactness 20 on 224×224 ImageNet crops, which its preset passes), ``sigma=0``, ``max_num_iter=10``, connectivity
  enforced. Fewer regions than asked are normal (grid placement + connectivity enforcement).
* ``quickshift``: LIME's ``kernel_size=4, max_dist=200, ratio=0.2`` (the ``lime`` package's image explainer;
  ~30–40 regions on a 224×224 photo); paper 000 uses ``max_dist=3`` on ImageNet (``--regions
  quickshift:max_dist=3``: ~400–800 regions).
* ``felzenszwalb``: ``scale=100, sigma=0.8, min_size=50`` — ``sigma`` is skimage's default, ``scale``/``min_size``
  are the skimage gallery's ("comparison of segmentation algorithms"): ~50–170 regions on a 224×224 photo, where
  skimage's own ``scale=1, min_size=20`` gives 600–800.
* ``watershed``: compact watershed on the Sobel magnitude of the grey image with ``markers=n_segments=250`` and
  ``compactness=0.001`` (the same gallery example).

Degenerate input: ``n_segments <= 0`` (and other impossible values) raise :class:`BadParameterError`. A constant
image (all black included) gives a valid partition — SLIC and compact watershed a spatial grid of compact
regions, Quickshift and Felzenszwalb a single region — and a 3×3 image a valid partition into at most 9 regions.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np
from torch import Tensor

from ..attribution._core import check_float, check_int
from ..errors import BadParameterError
from ..types import Segmentation
from .base import map_images, segmenter

SLIC_BACKENDS = ("auto", "skimage", "fast_slic")


def fast_slic_available() -> bool:
    """Whether the optional fast-slic package (``import fast_slic``) is installed."""
    return importlib.util.find_spec("fast_slic") is not None


def _check_workers(workers: int | None) -> None:
    if workers is not None:
        check_int("workers", workers)


def _fast_slic_class() -> Any:
    """fast-slic's AVX2 SLIC where the CPU and build support it, else its portable one."""
    try:
        from fast_slic.avx2 import SlicAvx2

        return SlicAvx2
    except ImportError:
        from fast_slic import Slic

        return Slic


@segmenter(
    "slic",
    backend="skimage",
    backends=SLIC_BACKENDS,
    description="SLIC k-means superpixels in Lab+xy (skimage; backend='fast_slic' when installed)",
)
def slic(
    rgb01: Tensor,
    *,
    n_segments: int = 100,
    compactness: float = 10.0,
    sigma: float = 0.0,
    max_num_iter: int = 10,
    enforce_connectivity: bool = True,
    backend: str = "auto",
    workers: int | None = None,
) -> Segmentation:
    """SLIC (Achanta et al., TPAMI 2012) with skimage's ``slic(..., start_label=0, channel_axis=-1)``.

    ``backend``: ``"skimage"``, ``"fast_slic"`` (the optional fast-slic package: ~10× faster, uint8 Lab colour,
    Manhattan spatial distance and subsampled updates, so the same ``compactness`` gives different shapes and
    ``enforce_connectivity`` cannot be turned off) or ``"auto"`` = skimage, so that a result never depends on
    which optional packages happen to be installed.
    """
    check_int("n_segments", n_segments)
    check_float("compactness", compactness, lo=0.0, lo_open=True)
    check_float("sigma", sigma)
    check_int("max_num_iter", max_num_iter)
    _check_workers(workers)
    if backend not in SLIC_BACKENDS:
        raise BadParameterError(f"slic backend must be one of {', '.join(SLIC_BACKENDS)}, got {backend!r}")
    if backend == "fast_slic":
        return _fast_slic(rgb01, n_segments, compactness, sigma, max_num_iter, enforce_connectivity, workers)

    from skimage.segmentation import slic as sk_slic

    def run(img: np.ndarray, _: int) -> np.ndarray:
        return sk_slic(
            img,
            n_segments=n_segments,
            compactness=compactness,
            max_num_iter=max_num_iter,
            sigma=sigma,
            enforce_connectivity=bool(enforce_connectivity),
            start_label=0,
            channel_axis=-1,
        )

    return Segmentation(map_images(run, rgb01, workers), {"backend": "skimage"})


def _fast_slic(
    rgb01: Tensor,
    n_segments: int,
    compactness: float,
    sigma: float,
    max_num_iter: int,
    enforce_connectivity: bool,
    workers: int | None,
) -> Segmentation:
    if not fast_slic_available():
        raise BadParameterError(
            "slic backend='fast_slic' needs the optional fast-slic package: `pip install cython` then "
            "`pip install --no-build-isolation fast-slic` (or use backend='skimage')"
        )
    if not enforce_connectivity:
        raise BadParameterError("fast-slic always enforces connectivity: use backend='skimage' for disconnected")
    cls = _fast_slic_class()

    def run(img: np.ndarray, _: int) -> np.ndarray:
        if sigma > 0:
            from skimage.filters import gaussian

            img = gaussian(img, sigma=sigma, channel_axis=-1)
        u8 = np.ascontiguousarray(np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8))
        # fast-slic divides by zero (SIGFPE, the process dies) when asked for more clusters than pixels
        k = min(n_segments, u8.shape[0] * u8.shape[1])
        # a fresh model per image: a fast-slic model keeps the centres of the first image it saw;
        # one thread each, the batch is parallel across images instead
        return cls(num_components=k, compactness=compactness, num_threads=1).iterate(u8, max_iter=max_num_iter)

    return Segmentation(map_images(run, rgb01, workers), {"backend": "fast_slic", "fast_slic_class": cls.__name__})


@segmenter("quickshift", backend="skimage", stochastic=True, description="Quickshift mode seeking in Lab+xy (LIME's)")
def quickshift(
    rgb01: Tensor,
    *,
    kernel_size: float = 4.0,
    max_dist: float = 200.0,
    ratio: float = 0.2,
    sigma: float = 0.0,
    seed: int = 0,
    workers: int | None = None,
) -> Segmentation:
    """Quickshift (Vedaldi & Soatto, ECCV 2008) via skimage ``quickshift(img, kernel_size, max_dist, ratio, sigma,
    convert2lab=True, rng=seed)``. Defaults are LIME's; paper 000 uses ``max_dist=3`` on ImageNet (spec §1.3).
    ``seed`` only breaks ties between equal densities; every image of the batch uses the same seed (as LIME does),
    so an image's regions do not depend on its position in the batch."""
    check_float("kernel_size", kernel_size, lo=1.0)
    check_float("max_dist", max_dist)
    check_float("ratio", ratio, lo=0.0, hi=1.0)
    check_float("sigma", sigma)
    check_int("seed", seed, lo=0)
    _check_workers(workers)
    from skimage.segmentation import quickshift as sk_quickshift

    def run(img: np.ndarray, _: int) -> np.ndarray:
        return sk_quickshift(
            img, ratio=ratio, kernel_size=kernel_size, max_dist=max_dist, sigma=sigma, convert2lab=True, rng=seed
        )

    return Segmentation(map_images(run, rgb01, workers), {"seed": seed})


@segmenter("felzenszwalb", backend="skimage", description="Felzenszwalb–Huttenlocher graph-based segmentation")
def felzenszwalb(
    rgb01: Tensor,
    *,
    scale: float = 100.0,
    sigma: float = 0.8,
    min_size: int = 50,
    workers: int | None = None,
) -> Segmentation:
    """Felzenszwalb & Huttenlocher (IJCV 2004) via skimage ``felzenszwalb(img, scale, sigma, min_size)``; larger
    ``scale`` = larger regions; ``min_size`` merges smaller components."""
    check_float("scale", scale, lo=0.0, lo_open=True)
    check_float("sigma", sigma)
    check_int("min_size", min_size, lo=0)
    _check_workers(workers)
    from skimage.segmentation import felzenszwalb as sk_felzenszwalb

    def run(img: np.ndarray, _: int) -> np.ndarray:
        return sk_felzenszwalb(img, scale=scale, sigma=sigma, min_size=min_size, channel_axis=-1)

    return Segmentation(map_images(run, rgb01, workers))


@segmenter("watershed", backend="skimage", description="compact watershed on the Sobel gradient of the grey image")
def watershed(
    rgb01: Tensor,
    *,
    n_segments: int = 250,
    compactness: float = 0.001,
    workers: int | None = None,
) -> Segmentation:
    """Compact watershed (Neubert & Protzel, ICPR 2014) via skimage ``watershed(sobel(rgb2gray(img)),
    markers=n_segments, compactness=compactness)``: ``n_segments`` seeds on a regular grid; ``compactness=0`` is the
    classic watershed, larger values give more regular regions."""
    check_int("n_segments", n_segments)
    check_float("compactness", compactness)
    _check_workers(workers)
    from skimage.color import rgb2gray
    from skimage.filters import sobel
    from skimage.segmentation import watershed as sk_watershed

    def run(img: np.ndarray, _: int) -> np.ndarray:
        return sk_watershed(sobel(rgb2gray(img)), markers=n_segments, compactness=compactness)

    return Segmentation(map_images(run, rgb01, workers))

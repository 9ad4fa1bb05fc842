"""Image filters shared by the explainers and the metrics: separable Gaussian smoothing.

:func:`gaussian_window` (a truncated, normalised 1-D Gaussian) and :func:`separable_conv` (the same 1-D profile
along both axes, per channel, zero / replicate / no padding) serve the metrics' own smoothing rules — SSIM's window
(skimage's, truncated at 3.5σ), the pointing game's map smoothing (TorchRay's ``imsmooth``, ⌈4σ⌉) and the seams of
``insertion_blur`` (⌈4σ⌉, replicate padding). :func:`gaussian_blur` is the one blur behind every ``"blur"`` in
spixel: RISE's insertion substrate (Petsiuk et al. 2018; spec §6.2), the
``fill="blur"`` of occlusion, LIME and RISE, and the blurred deletion substrate. RISE builds its kernel as
``scipy.ndimage.gaussian_filter`` of a centred delta on a ``klen × klen`` grid (``gkern``: a Gaussian whose tails
are reflected back into the window, summing to 1) and applies it with zero padding. That kernel is the outer
product of its 1-D profile, so it is applied here as two 1-D convolutions (same result, ``2·klen`` instead of
``klen²`` multiplies per pixel).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def gaussian_window(
    sigma: float, radius: int, *, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
) -> Tensor:
    """``exp(-t² / 2σ²)`` for ``t = -radius … radius``, divided by its sum: ``(2·radius + 1,)``."""
    t = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def separable_conv(x: Tensor, profile: Tensor, padding: str = "zeros") -> Tensor:
    """Convolve every channel of ``(N, C, H, W)`` with ``profile`` (odd length) along W, then along H.
    ``padding``: ``"zeros"`` (same size), ``"replicate"`` (same size, edge values repeated) or ``"valid"`` (no
    padding: the output loses ``len(profile) - 1`` rows and columns)."""
    c, k = x.shape[1], profile.numel()
    r = k // 2
    row = profile.to(x.device, x.dtype).view(1, 1, 1, k).expand(c, 1, 1, k)
    col = profile.to(x.device, x.dtype).view(1, 1, k, 1).expand(c, 1, k, 1)
    if padding == "zeros":
        return F.conv2d(F.conv2d(x, row, padding=(0, r), groups=c), col, padding=(r, 0), groups=c)
    if padding == "replicate":
        y = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), row, groups=c)
        return F.conv2d(F.pad(y, (0, 0, r, r), mode="replicate"), col, groups=c)
    if padding == "valid":
        return F.conv2d(F.conv2d(x, row, groups=c), col, groups=c)
    raise ValueError(f"padding must be 'zeros', 'replicate' or 'valid', got {padding!r}")


def gaussian_profile(klen: int = 11, sigma: float = 5.0) -> Tensor:
    """The 1-D profile of RISE's ``gkern``: ``scipy.ndimage.gaussian_filter1d`` of a centred delta of length
    ``klen`` (reflect mode, truncated at 4σ), float64, summing to 1."""
    from scipy.ndimage import gaussian_filter1d

    delta = np.zeros(klen)
    delta[klen // 2] = 1.0
    return torch.from_numpy(gaussian_filter1d(delta, sigma))


def gaussian_kernel(klen: int = 11, sigma: float = 5.0) -> Tensor:
    """RISE's ``gkern(klen, nsig)``: ``scipy.ndimage.gaussian_filter`` of a centred delta, ``(klen, klen)`` float32."""
    p = gaussian_profile(klen, sigma)
    return torch.outer(p, p).float()


def gaussian_blur(x: Tensor, klen: int = 11, sigma: float = 5.0) -> Tensor:
    """Per-channel blur of ``(N, C, H, W)`` with :func:`gaussian_kernel` and zero padding (RISE's substrate), applied
    separably; keeps ``x``'s device, dtype and memory format."""
    return separable_conv(x, gaussian_profile(klen, sigma), "zeros")

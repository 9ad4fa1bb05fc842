"""spixel.filters: the shared separable Gaussian smoothing, against 2-D references computed with numpy/scipy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import convolve

from spixel.filters import gaussian_blur, gaussian_kernel, gaussian_window, separable_conv


def test_gaussian_window_is_a_normalised_truncated_gaussian():
    k = gaussian_window(1.5, 5, dtype=torch.float64)
    t = np.arange(-5, 6)
    ref = np.exp(-(t**2) / (2 * 1.5**2))
    np.testing.assert_allclose(k.numpy(), ref / ref.sum(), rtol=1e-12)


@pytest.mark.parametrize("padding", ["zeros", "replicate", "valid"])
def test_separable_conv_equals_the_2d_outer_product_kernel(padding):
    x = torch.randn(2, 3, 10, 13, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    p = gaussian_window(1.2, 3, dtype=torch.float64)
    k2 = np.outer(p.numpy(), p.numpy())
    mode = {"zeros": "constant", "replicate": "nearest", "valid": "constant"}[padding]
    ref = np.stack([[convolve(x[i, c].numpy(), k2, mode=mode, cval=0.0) for c in range(3)] for i in range(2)])
    if padding == "valid":
        ref = ref[..., 3:-3, 3:-3]
    out = separable_conv(x, p, padding)
    assert out.shape == ref.shape
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-10, atol=1e-12)


def test_gaussian_blur_uses_rise_gkern_and_keeps_the_layout():
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(2)).contiguous(
        memory_format=torch.channels_last
    )
    k2 = gaussian_kernel(11, 5.0).double().numpy()
    ref = np.stack([convolve(x[0, c].double().numpy(), k2, mode="constant") for c in range(3)])
    np.testing.assert_allclose(gaussian_blur(x)[0].numpy(), ref, rtol=1e-4, atol=1e-5)
    assert gaussian_blur(x).is_contiguous(memory_format=torch.channels_last)


def test_separable_conv_rejects_an_unknown_padding():
    with pytest.raises(ValueError, match="padding must be"):
        separable_conv(torch.zeros(1, 1, 5, 5), gaussian_window(1.0, 1), "reflect")

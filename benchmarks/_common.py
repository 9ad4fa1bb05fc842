"""Helpers shared by the benchmark scripts: the photos they time on, and timing that waits for the device."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

import spixel

#: photos from ``skimage.data`` (shipped with scikit-image, no download), cycled when more are asked for
PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "immunohistochemistry", "colorwheel", "hubble_deep_field")


def photos(model: spixel.ModelAdapter, n: int, names: Sequence[str] = PHOTOS) -> Tensor:
    """``n`` real photos from ``skimage.data`` (``names``, cycled), preprocessed by the adapter."""
    from skimage import data

    return model.preprocess([getattr(data, names[i % len(names)])() for i in range(n)])


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so that a timer measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(
    fn: Callable[[], Any], device: torch.device, clock: Callable[[], float] = time.perf_counter
) -> tuple[float, Any]:
    """``(seconds, fn())``, with the device synchronised before and after."""
    sync(device)
    t0 = clock()
    out = fn()
    sync(device)
    return clock() - t0, out


def timed_cpu(fn: Callable[[], Any], device: torch.device) -> tuple[float, float, Any]:
    """``(wall seconds, process CPU seconds, fn())``, with the device synchronised before and after. With one
    thread (``torch.set_num_threads(1)``) the CPU time is the work done, whatever other jobs load the machine."""
    sync(device)
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    sync(device)
    return time.perf_counter() - w0, time.process_time() - c0, out


def held_out(model: spixel.ModelAdapter, n: int) -> tuple[Any, Any, Any, Tensor, Tensor]:
    """The first ``n`` held-out synthetic images (``SyntheticDataset(n, size=model.input_size, seed=1)``, the
    ``spixel train`` test split): ``(images uint8, labels, masks, x preprocessed, y tensor)``."""
    from spixel.data import SyntheticDataset

    images, labels, masks = SyntheticDataset(n, size=model.input_size, seed=1).arrays()
    return images, labels, masks, model.preprocess(list(images)), torch.as_tensor(labels)

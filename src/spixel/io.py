"""Reading and writing images, maps and explanation JSON. All input validation happens here, at the edge."""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import BadImageError

#: Images smaller than this on either side are refused: no classifier or segmenter can use them.
MIN_SIDE = 8
#: Larger images are downscaled on load (keeping the aspect ratio); models resize to ~256 px anyway.
MAX_SIDE = 4096

ImageLike = "str | os.PathLike[str] | Image.Image | np.ndarray"


def _to_rgb_uint8(img: Image.Image) -> np.ndarray:
    """Convert any PIL mode (L, LA, P, RGBA, I;16, I, F, CMYK …) to uint8 RGB."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        if img.mode.startswith("I;16"):
            a = a / 65535.0
        else:
            lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
            a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
        a = np.clip(np.round(a * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(a[..., None], 3, axis=-1)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))  # composite on white, like a viewer
        img = Image.alpha_composite(bg, rgba)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def check_image_array(a: np.ndarray, name: str = "image") -> np.ndarray:
    """Validate an in-memory image and return it as uint8 ``(H, W, 3)`` RGB.

    Accepts uint8 / uint16 / float in [0, 1] arrays of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4).
    """
    if not isinstance(a, np.ndarray):
        raise BadImageError(f"{name}: expected a numpy array, got {type(a).__name__}")
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=-1)
    if a.ndim != 3 or a.shape[-1] not in (3, 4):
        raise BadImageError(f"{name}: expected an H×W×3 RGB array, got shape {a.shape}")
    a = a[..., :3]
    if a.dtype == np.uint8:
        out = a
    elif a.dtype == np.uint16:
        out = np.round(a / 257.0).astype(np.uint8)
    elif np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise BadImageError(f"{name}: the array contains NaN or infinite values")
        if a.min() < 0 or a.max() > 1:
            raise BadImageError(f"{name}: float images must lie in [0, 1], got [{a.min():.3g}, {a.max():.3g}]")
        out = np.round(a * 255.0).astype(np.uint8)
    else:
        raise BadImageError(f"{name}: unsupported dtype {a.dtype}; use uint8 or float in [0, 1]")
    h, w = out.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise BadImageError(f"{name}: image is {w}×{h} pixels; spixel needs at least {MIN_SIDE}×{MIN_SIDE}")
    return np.ascontiguousarray(out)


def load_image(path: str | os.PathLike[str], max_side: int = MAX_SIDE) -> np.ndarray:
    """Read an image file as uint8 ``(H, W, 3)`` RGB.

    Grayscale, palette, RGBA (composited on white) and 16-bit images are converted; images larger than
    ``max_side`` are downscaled. Missing, empty, non-image, truncated or tiny files raise
    :class:`~spixel.errors.BadImageError` with a message that says what is wrong.
    """
    p = Path(path)
    if not p.exists():
        raise BadImageError(f"{p}: no such file")
    if p.is_dir():
        raise BadImageError(f"{p}: is a directory, not an image file")
    if p.stat().st_size == 0:
        raise BadImageError(f"{p}: the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(p) as img:
                if max(img.size) > max_side and hasattr(img, "draft"):
                    img.draft("RGB", (max_side, max_side))  # cheap JPEG downscale while decoding
                img.load()
                arr = _to_rgb_uint8(img)  # first: alpha on white and 16-bit scaling must happen before resizing
                if max(img.size) > max_side:
                    s = max_side / max(img.size)
                    size = (max(1, round(img.width * s)), max(1, round(img.height * s)))
                    arr = np.asarray(Image.fromarray(arr).resize(size, Image.Resampling.LANCZOS))
    except UnidentifiedImageError:
        raise BadImageError(f"{p}: not an image file spixel can read (use PNG, JPEG, TIFF, BMP or WebP)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise BadImageError(f"{p}: the image is damaged or truncated ({e})") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BadImageError(f"{p}: the image is too large to decode safely") from None
    return check_image_array(arr, name=str(p))


def save_png(path: str | os.PathLike[str], rgb: np.ndarray) -> None:
    """Write a uint8 RGB array as PNG (creating the folder)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path)


def save_map(path: str | os.PathLike[str], m: np.ndarray) -> None:
    """Write one attribution map as float32 ``.npy`` (H×W)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.asarray(m, dtype=np.float32), allow_pickle=False)


def load_map(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a map written by :func:`save_map` (never unpickles)."""
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise BadImageError(f"{path}: not a readable .npy map ({e})") from None


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        f = float(v)
        return f if math.isfinite(f) else None
    if isinstance(v, (str, int, bool)) or v is None:
        return v
    if hasattr(v, "tolist"):
        return _jsonable(v.tolist())
    if isinstance(v, os.PathLike):
        return os.fspath(v)
    return repr(v)


def save_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON; tensors, numpy scalars and tuples are converted."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(_jsonable(obj), indent=2) + "\n")

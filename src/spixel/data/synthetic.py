"""A procedurally generated image dataset whose evidence is known exactly (issue 5).

Each image shows one class-defining object on a textured, cluttered background, plus distractor objects that
carry no class information (smaller irregular blobs, present in every class alike). Classes are told apart by
**shape** only: every object's colour, texture, size, rotation and position are drawn from the same distributions
whatever its class, so a classifier that is right must be right because of the shape. The object is drawn last,
so its ``mask`` (the pixels it covers) is exact, and ``box`` is the bounding box of that mask.

Everything is a function of ``(seed, index)`` (``numpy.random.default_rng([seed, index])``): images are generated
on demand, never stored, and the same index gives the same image on any machine and in any order.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import BadParameterError

CLASSES: tuple[str, ...] = ("disk", "square", "triangle", "cross", "ring", "star", "crescent")


@dataclass(frozen=True, eq=False)
class SyntheticSample:
    """One generated image: ``image`` uint8 ``(H, W, 3)``; ``label`` the class index; ``mask`` bool ``(H, W)``, the
    object's pixels (the evidence); ``box`` ``(x0, y0, x1, y1)``, the mask's bounding box with exclusive ends."""

    index: int
    image: np.ndarray = field(repr=False)
    label: int
    mask: np.ndarray = field(repr=False)
    box: tuple[int, int, int, int]
    class_name: str

    @property
    def name(self) -> str:
        return f"{self.index:06d}_{self.class_name}"


# ---------------------------------------------------------------------------------------------------- shapes
def _shape(name: str, u: np.ndarray, v: np.ndarray, r: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask of shape ``name`` of radius ``r`` in coordinates ``(u, v)`` already centred and rotated."""
    rho = np.hypot(u, v)
    theta = np.arctan2(v, u)
    if name == "disk":
        return rho <= r
    if name == "ring":
        return (rho <= r) & (rho >= r * rng.uniform(0.5, 0.62))
    if name == "square":
        s = r * 0.82
        return (np.abs(u) <= s) & (np.abs(v) <= s)
    if name == "triangle":  # equilateral: the intersection of three half-planes
        out = np.ones_like(u, dtype=bool)
        for j in range(3):
            a = 2 * np.pi * j / 3
            out &= u * np.cos(a) + v * np.sin(a) <= r / 2
        return out
    if name == "cross":
        w = r * rng.uniform(0.3, 0.4)
        return ((np.abs(u) <= r) & (np.abs(v) <= w)) | ((np.abs(v) <= r) & (np.abs(u) <= w))
    if name == "star":
        inner = rng.uniform(0.4, 0.5)
        # five points: radius interpolates linearly between tips (r) and notches (inner·r) in angle
        phase = np.mod(theta, 2 * np.pi / 5) / (2 * np.pi / 5)  # 0 at a tip, 0.5 at a notch
        lim = r * (1 - (1 - inner) * (1 - np.abs(1 - 2 * phase)))
        return rho <= lim
    if name == "crescent":
        off = r * rng.uniform(0.45, 0.6)
        moon = (rho <= r) & (np.hypot(u - off, v) > r * 0.85)
        # the horns taper to nothing: drop pixels that sampling cut off from the body
        from skimage.measure import label as components

        lab = components(moon, connectivity=2)
        return lab == np.bincount(lab.ravel())[1:].argmax() + 1
    raise AssertionError(name)  # pragma: no cover


def _blob(u: np.ndarray, v: np.ndarray, r: float, rng: np.random.Generator) -> np.ndarray:
    """An irregular star-convex polygon (a distractor): 6–9 vertices at random radii 0.35–1 r."""
    k = int(rng.integers(6, 10))
    angles = np.sort(rng.uniform(0, 2 * np.pi, k))
    radii = r * rng.uniform(0.35, 1.0, k)
    theta = np.mod(np.arctan2(v, u), 2 * np.pi)
    ang = np.concatenate([angles - 2 * np.pi, angles, angles + 2 * np.pi])
    rad = np.concatenate([radii, radii, radii])
    return np.hypot(u, v) <= np.interp(theta, ang, rad)


# ---------------------------------------------------------------------------------------------------- textures
def _upsample_matrix(n: int, k: int) -> np.ndarray:
    """``(n, k)`` linear-interpolation matrix from a k-point grid to n pixels (pixel centres)."""
    pos = (np.arange(n) + 0.5) / n * (k - 1)
    lo = np.clip(np.floor(pos).astype(int), 0, k - 2)
    t = pos - lo
    m = np.zeros((n, k))
    m[np.arange(n), lo] = 1 - t
    m[np.arange(n), lo + 1] = t
    return m


def _smooth_field(rng: np.random.Generator, size: int, k: int) -> np.ndarray:
    """A smooth random field in [0, 1]: a k×k uniform grid interpolated to size×size."""
    m = _upsample_matrix(size, k)
    return m @ rng.uniform(0, 1, (k, k)) @ m.T


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 255, 3)


def _texture(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, size: int) -> np.ndarray:
    """A fill pattern in [-1, 1] of the same distribution for every class: flat, stripes, checks or noise."""
    kind = rng.integers(4)
    if kind == 0:
        return np.zeros_like(u)
    period = rng.uniform(0.08, 0.16) * size
    a = rng.uniform(0, np.pi)
    if kind == 1:
        return np.sign(np.sin(2 * np.pi * (u * np.cos(a) + v * np.sin(a)) / period))
    if kind == 2:
        return np.sign(np.sin(2 * np.pi * u / period) * np.sin(2 * np.pi * v / period))
    return rng.uniform(-1, 1, u.shape)


def _paint(img: np.ndarray, where: np.ndarray, colour: np.ndarray, tex: np.ndarray, amp: float) -> None:
    img[where] = np.clip(colour[None, :] + amp * tex[where][:, None], 0, 255)


# ---------------------------------------------------------------------------------------------------- generator
def render(
    seed: int, index: int, size: int = 64, distractors: int = 2, *, draw_object: bool = True
) -> tuple[np.ndarray, int, np.ndarray]:
    """Generate image ``index`` of the dataset with ``seed``: ``(image uint8 (S,S,3), label, mask bool (S,S))``.

    ``draw_object=False`` leaves the object out (same background and distractors, same mask): what the object
    covers, for tests and occlusion baselines."""
    rng = np.random.default_rng([int(seed), int(index)])
    label = int(rng.integers(len(CLASSES)))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5

    # background: two colours mixed by a smooth field, a fine texture, and thin clutter lines
    c0, c1 = _random_colour(rng), _random_colour(rng)
    mix = _smooth_field(rng, size, int(rng.integers(3, 7)))[..., None]
    img = c0 * (1 - mix) + c1 * mix
    img += rng.normal(0, rng.uniform(4, 14), (size, size, 1)) + rng.normal(0, 4, (size, size, 3))
    for _ in range(int(rng.integers(2, 6))):
        p, q = rng.uniform(0, size, 2), rng.uniform(0, size, 2)
        d = q - p
        t = np.clip(((xx - p[0]) * d[0] + (yy - p[1]) * d[1]) / max(float(d @ d), 1e-9), 0, 1)
        line = np.hypot(xx - p[0] - t * d[0], yy - p[1] - t * d[1]) <= rng.uniform(0.5, 1.2) * size / 64
        img[line] = _random_colour(rng)

    def place(r: float) -> tuple[np.ndarray, np.ndarray]:
        cx, cy = rng.uniform(r + 1, size - r - 1, 2)
        a = rng.uniform(0, 2 * np.pi)
        du, dv = xx - cx, yy - cy
        return du * np.cos(a) + dv * np.sin(a), -du * np.sin(a) + dv * np.cos(a)

    def colour_apart(where: np.ndarray) -> np.ndarray:
        """A random colour at least 90 (RGB distance) from the mean colour under ``where``, when one is found."""
        under = img[where].mean(0) if where.any() else img.reshape(-1, 3).mean(0)
        best = _random_colour(rng)
        for _ in range(16):
            if np.linalg.norm(best - under) >= 90:
                break
            best = _random_colour(rng)
        return best

    # distractors: smaller irregular blobs with the objects' colour and texture distributions
    for _ in range(int(rng.integers(0, distractors + 1))):
        r = rng.uniform(0.07, 0.12) * size
        u, v = place(r)
        blob = _blob(u, v, r, rng)
        _paint(img, blob, colour_apart(blob), _texture(rng, u, v, size), rng.uniform(10, 30))

    # the object, drawn last: its mask is exactly the pixels it covers
    r = rng.uniform(0.17, 0.27) * size
    u, v = place(r)
    mask = _shape(CLASSES[label], u, v, r, rng)
    if draw_object:
        _paint(img, mask, colour_apart(mask), _texture(rng, u, v, size), rng.uniform(10, 30))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), label, mask


def box_of(mask: np.ndarray) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` bounding box of a boolean mask, exclusive ends."""
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


class SyntheticDataset:
    """``n`` generated images of ``size``×``size`` pixels, deterministic from ``(seed, index)``.

    Classes (``ds.classes``) are shapes — disk, square, triangle, cross, ring, star and crescent — drawn at
    random position, rotation, size, colour and texture over a textured background with clutter lines and up to
    ``distractors`` smaller irregular blobs. Use one seed for training and another for a held-out split::

        train, test = SyntheticDataset(8000, seed=0), SyntheticDataset(1000, seed=1)
        s = train[0]; s.image, s.label, s.mask, s.box
        images, labels, masks = test.arrays()
    """

    def __init__(self, n: int, size: int = 64, seed: int = 0, *, distractors: int = 2) -> None:
        for what, val, lo in (("n", n, 1), ("size", size, 16), ("distractors", distractors, 0)):
            if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < lo:
                raise BadParameterError(f"SyntheticDataset: {what} must be an integer >= {lo}, got {val!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise BadParameterError(f"SyntheticDataset: seed must be a non-negative integer, got {seed!r}")
        self.n, self.size, self.seed, self.distractors = int(n), int(size), int(seed), int(distractors)
        self.classes: list[str] = list(CLASSES)

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        return f"SyntheticDataset(n={self.n}, size={self.size}, seed={self.seed}, distractors={self.distractors})"

    def _index(self, i: int) -> int:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise BadParameterError(f"SyntheticDataset index must be an integer, got {type(i).__name__}")
        j = int(i) + self.n if i < 0 else int(i)
        if not 0 <= j < self.n:
            raise IndexError(f"index {i} out of range for {self.n} images")
        return j

    def __getitem__(self, i: int) -> SyntheticSample:
        j = self._index(i)
        image, label, mask = render(self.seed, j, self.size, self.distractors)
        return SyntheticSample(j, image, label, mask, box_of(mask), CLASSES[label])

    def __iter__(self) -> Iterator[SyntheticSample]:
        return (self[i] for i in range(self.n))

    def arrays(self, indices: Sequence[int] | np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(images uint8 (N,S,S,3), labels int64 (N,), masks bool (N,S,S))`` for ``indices`` (default all)."""
        idx = range(self.n) if indices is None else [self._index(int(i)) for i in indices]
        out = [render(self.seed, j, self.size, self.distractors) for j in idx]
        if not out:
            s = self.size
            return np.zeros((0, s, s, 3), np.uint8), np.zeros(0, np.int64), np.zeros((0, s, s), bool)
        images, labels, masks = zip(*out, strict=True)
        return np.stack(images), np.asarray(labels, dtype=np.int64), np.stack(masks)

    def boxes(self, indices: Sequence[int] | np.ndarray | None = None) -> list[tuple[int, int, int, int]]:
        """The evidence boxes of ``indices`` (default all), ``(x0, y0, x1, y1)`` exclusive ends."""
        return [box_of(m) for m in self.arrays(indices)[2]]

    def export(self, out: str | Path, indices: Sequence[int] | None = None) -> Path:
        """Write ``NAME.png`` (image), ``NAME_mask.png`` (evidence, 0/255) and one ``annotations.json`` into ``out``.

        The JSON records the generator parameters, the class names and, per image, its file names, label and box.
        """
        from PIL import Image

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        rows = []
        for i in range(self.n) if indices is None else indices:
            s = self[i]
            Image.fromarray(s.image).save(out / f"{s.name}.png")
            Image.fromarray((s.mask * 255).astype(np.uint8)).save(out / f"{s.name}_mask.png")
            rows.append(
                {"index": s.index, "image": f"{s.name}.png", "mask": f"{s.name}_mask.png", "label": s.label}
                | {"class": s.class_name, "box": list(s.box)}
            )
        meta = {"generator": "spixel.data.SyntheticDataset", "n": self.n, "size": self.size, "seed": self.seed}
        meta |= {"distractors": self.distractors, "classes": self.classes, "images": rows}
        path = out / "annotations.json"
        path.write_text(json.dumps(meta, indent=1), encoding="utf-8")
        return path

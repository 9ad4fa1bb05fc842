"""Attribution maps drawn over their photo, with a colour bar: :func:`overlay` (a uint8 RGB array) and
:func:`render_map` (PNG bytes).

Rendering uses matplotlib's object API (``Figure`` + ``FigureCanvasAgg``): no pyplot, no global state.
The blend itself is computed in numpy, so the photo keeps its exact pixels and the output size is known:

* non-negative maps (saliency, SmoothGrad, CAMs …) use a sequential colour map (``inferno``) on
  ``[0, v]``; signed maps (Integrated Gradients, Input × Gradient …) a diverging one (``RdBu_r``: red
  positive, blue negative) on ``[-v, v]``, centred at 0;
* ``v`` is the 99th percentile of ``|map|`` (``clip_percentile``), so a few extreme pixels do not wash
  out the rest (PAIR-saliency's and Captum's ``outlier_perc`` convention);
* each pixel's opacity grows with ``|map| / v`` up to ``alpha``: unimportant pixels show the (dimmed,
  partly desaturated) photo;
* region boundaries (``boundaries=``) are white: a boolean mask is drawn at the image's own pixels; integer
  region labels are drawn at the *output* resolution, one output pixel wide, so that they stay thin when the
  overlay is enlarged (``scale=2``) and hundreds of superpixels do not hide the map.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from ..errors import BadInputError

SEQUENTIAL_CMAP = "inferno"
DIVERGING_CMAP = "RdBu_r"

# layout, in pixels at scale 1 (dpi 100): margins, title line height, colour bar band
_MARGIN = 4
_TITLE_LINE = 14
_CBAR_GAP = 4
_CBAR_H = 8
_CBAR_LABELS = 14
_FONT_PT = 8.0
#: opacity = alpha · (|map| / v) ** _GAMMA; the photo underneath is dimmed and partly desaturated
_GAMMA = 0.75
_BASE_DIM = 0.8
_BASE_SAT = 0.45
#: opacity of the white 1-px region boundaries drawn from labels (a boolean mask is drawn opaque)
_LABEL_EDGE_OPACITY = 0.7


def _as_numpy(a: Any) -> np.ndarray:
    if hasattr(a, "detach"):  # torch tensor
        a = a.detach().float().cpu().numpy()
    return np.asarray(a)


def _photo01(image: Any) -> np.ndarray:
    """uint8 or float [0, 1] ``(H, W, 3)`` (or ``(3, H, W)`` tensor layout) → float32 ``(H, W, 3)`` in [0, 1]."""
    a = _as_numpy(image)
    if a.ndim == 3 and a.shape[0] == 3 and a.shape[-1] != 3:
        a = np.moveaxis(a, 0, -1)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=-1)
    if a.ndim != 3 or a.shape[-1] not in (3, 4):
        raise BadInputError(f"overlay: expected an H×W×3 image, got shape {a.shape}")
    a = a[..., :3]
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    if not np.issubdtype(a.dtype, np.floating):
        raise BadInputError(f"overlay: the image must be uint8 or float in [0, 1], got {a.dtype}")
    return np.clip(np.nan_to_num(a.astype(np.float32)), 0.0, 1.0)


def boundary_mask(labels: Any, thickness: int = 1) -> np.ndarray:
    """Boolean ``(H, W)``: pixels whose right or lower neighbour lies in another region (the convention of
    :meth:`~spixel.types.Segmentation.boundaries`), grown to ``thickness`` pixels (to the right and down)."""
    lab = _as_numpy(labels)
    if lab.ndim != 2:
        raise BadInputError(f"labels must be (H, W), got shape {lab.shape}")
    t = int(thickness)
    if t < 1:
        raise BadInputError(f"thickness must be >= 1, got {thickness}")
    b = np.zeros(lab.shape, bool)
    b[:, :-1] |= lab[:, 1:] != lab[:, :-1]
    b[:-1, :] |= lab[1:, :] != lab[:-1, :]
    if t > 1:  # a square dilation by shifted ORs: O(t · HW)
        rows = b.copy()
        for d in range(1, t):
            rows[d:, :] |= b[:-d, :]
        b = rows.copy()
        for d in range(1, t):
            b[:, d:] |= rows[:, :-d]
    return b


def _label_boundaries(boundaries: Any, shape: tuple[int, int], out_hw: tuple[int, int]) -> np.ndarray:
    """Integer region labels ``shape`` → their 1-px boundary mask at the output size ``out_hw`` (labels upscaled
    by nearest neighbour first, so the line is one output pixel wide whatever the scale)."""
    lab = _as_numpy(boundaries)
    if lab.shape != shape:
        raise BadInputError(f"overlay: region labels have shape {lab.shape}, expected {shape}")
    (h, w), (oh, ow) = shape, out_hw
    if (oh, ow) != (h, w):
        lab = lab[(np.arange(oh) * h // oh)[:, None], (np.arange(ow) * w // ow)[None, :]]
    return boundary_mask(lab)


def _is_labels(boundaries: Any) -> bool:
    return boundaries is not None and _as_numpy(boundaries).dtype.kind in "iu"


def is_signed(attribution: np.ndarray) -> bool:
    """Whether a map has meaningful negative values (below ``-1e-6 · max |map|``)."""
    a = np.asarray(attribution)
    if a.size == 0:
        return False
    m = float(np.max(np.abs(a)))
    return m > 0 and float(np.min(a)) < -1e-6 * m


def color_scale(attribution: np.ndarray, signed: bool, clip_percentile: float | None = 99.0) -> float:
    """The value ``v`` mapped to the end of the colour map: the ``clip_percentile`` of ``|map|`` (the max
    when that is 0 or ``clip_percentile`` is ``None``), and 1 for an all-zero map (never 0 or NaN)."""
    mag = np.abs(attribution) if signed else np.clip(attribution, 0, None)
    v = float(np.percentile(mag, clip_percentile)) if clip_percentile is not None and mag.size else 0.0
    if not v > 0:
        v = float(mag.max()) if mag.size else 0.0
    return v if v > 0 and np.isfinite(v) else 1.0


def blend(
    image: Any,
    attribution: Any,
    *,
    cmap: str | None = None,
    signed: bool | None = None,
    alpha: float = 0.75,
    clip_percentile: float | None = 99.0,
    boundaries: Any = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The photo with the coloured map blended in, float32 ``(H, W, 3)`` in [0, 1], and the colour scale
    (``{"cmap", "vmin", "vmax", "signed"}``) for a colour bar. See :func:`overlay` for the arguments."""
    from matplotlib import colormaps

    photo = _photo01(image)
    a = _as_numpy(attribution).astype(np.float32, copy=False)
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.shape != photo.shape[:2]:
        raise BadInputError(f"overlay: the map has shape {a.shape} but the image is {photo.shape[:2]}; they must match")
    a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
    signed = is_signed(a) if signed is None else bool(signed)
    cmap = cmap or (DIVERGING_CMAP if signed else SEQUENTIAL_CMAP)
    v = color_scale(a, signed, clip_percentile)
    if signed:
        vmin, vmax = -v, v
        t = np.clip((a / v + 1.0) * 0.5, 0.0, 1.0)
        w = np.clip(np.abs(a) / v, 0.0, 1.0)
    else:
        vmin, vmax = 0.0, v
        t = np.clip(a / v, 0.0, 1.0)
        w = t
    heat = colormaps[cmap](t)[..., :3].astype(np.float32)
    # the photo dimmed and partly desaturated so the colours of the map read; opacity grows with |map| / v
    gray = photo.mean(-1, keepdims=True)
    base = _BASE_DIM * (_BASE_SAT * photo + (1 - _BASE_SAT) * gray)
    op = (float(alpha) * w**_GAMMA)[..., None]
    out = base * (1.0 - op) + heat * op
    if boundaries is not None:
        b = boundary_mask(boundaries) if _is_labels(boundaries) else _as_numpy(boundaries).astype(bool)
        if b.shape != a.shape:
            raise BadInputError(f"overlay: boundaries have shape {b.shape}, expected {a.shape}")
        out[b] = 1.0  # region boundaries in white
    return out.astype(np.float32), {"cmap": cmap, "vmin": vmin, "vmax": vmax, "signed": signed}


def overlay(
    image: Any,
    attribution: Any,
    *,
    cmap: str | None = None,
    signed: bool | None = None,
    alpha: float = 0.75,
    clip_percentile: float | None = 99.0,
    title: str | None = None,
    colorbar: bool = True,
    boundaries: Any = None,
    scale: float = 1.0,
    max_side: int = 1024,
    min_side: int | None = None,
) -> np.ndarray:
    """Draw ``attribution`` (``H × W``) over ``image`` (uint8 or float-in-[0, 1] ``H × W × 3``).

    ``cmap``: default ``"inferno"`` for non-negative maps, ``"RdBu_r"`` centred at 0 for signed ones
    (``signed=None`` decides from the data). ``clip_percentile``: the colour scale ends at this percentile of
    ``|map|`` (``None``: at the max). ``alpha``: opacity of the strongest pixels. ``title``: text above the
    image (``\\n`` for more lines). ``boundaries``: an optional boolean ``H × W`` mask (e.g. superpixel
    edges) drawn in white at the image's pixels, or integer ``H × W`` region labels (e.g.
    ``Segmentation.labels[i]``) whose boundaries are drawn in white one *output* pixel wide. ``scale``: output
    pixels per image pixel (images larger than ``max_side`` are shown smaller; ``min_side``: smaller ones are
    shown at least that large, with title and colour bar at their normal size).

    Returns uint8 RGB. Without title and colour bar, at scale 1, its size is exactly ``H × W``; the title
    adds a band above and the colour bar one below (the width stays ``W·scale + 8``).
    """
    labels = _is_labels(boundaries)
    mixed, cs = blend(
        image,
        attribution,
        cmap=cmap,
        signed=signed,
        alpha=alpha,
        clip_percentile=clip_percentile,
        boundaries=None if labels else boundaries,
    )
    h, w = mixed.shape[:2]
    s = min(float(scale), max_side / max(h, w))
    unit = max(s, 1.0)  # text and bars follow the requested scale, not the min_side enlargement
    if min_side is not None and max(h, w) * s < min_side:
        s = min_side / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    if labels:  # enlarge first, then draw the boundaries one output pixel wide
        if size != (w, h):
            up = Image.fromarray(np.round(mixed * 255.0).astype(np.uint8)).resize(size, Image.Resampling.BILINEAR)
            mixed = np.asarray(up).astype(np.float32) / 255.0
        edge = _label_boundaries(boundaries, (h, w), (size[1], size[0]))
        mixed[edge] = (1.0 - _LABEL_EDGE_OPACITY) * mixed[edge] + _LABEL_EDGE_OPACITY  # white, the map faintly under
    if not title and not colorbar:
        out = np.round(mixed * 255.0).astype(np.uint8)
        if mixed.shape[:2] != (size[1], size[0]):
            out = np.asarray(Image.fromarray(out).resize(size, Image.Resampling.BILINEAR))
        return out
    return _figure(mixed, cs, title, colorbar, 1.0 if labels else s, u=unit)


def _figure(
    mixed: np.ndarray, cs: dict[str, Any], title: str | None, colorbar: bool, s: float, u: float | None = None
) -> np.ndarray:
    """Lay out the blended image (shown ``s`` times its size), title and horizontal colour bar on an Agg canvas;
    ``u`` is the layout unit (text and bar sizes; default ``max(s, 1)``)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    h, w = mixed.shape[:2]
    iw, ih = max(1, round(w * s)), max(1, round(h * s))
    u = max(s, 1.0) if u is None else u  # layout unit: text and bars grow with the output scale
    m = round(_MARGIN * u)
    n_lines = title.count("\n") + 1 if title else 0
    th = round((_TITLE_LINE * n_lines + 3) * u) if title else 0
    cb = round((_CBAR_GAP + _CBAR_H + _CBAR_LABELS) * u) if colorbar else 0
    W, H = iw + 2 * m, m + th + ih + cb + m
    dpi = 100.0 * u
    fig = Figure(figsize=(W / dpi, H / dpi), dpi=dpi, facecolor="white")
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes((m / W, (m + cb) / H, iw / W, ih / H))
    ax.imshow(mixed, interpolation="nearest" if s == 1.0 else "antialiased", aspect="auto")
    ax.set_axis_off()
    if title:
        fig.text(
            0.5, 1.0 - (m + 1) / H, title, ha="center", va="top", fontsize=_FONT_PT, linespacing=1.15, color="#222222"
        )
    if colorbar:
        bh = _CBAR_H * u
        cax = fig.add_axes((m / W, (m + cb - _CBAR_GAP * u - bh) / H, iw / W, bh / H))
        sm = ScalarMappable(norm=Normalize(cs["vmin"], cs["vmax"]), cmap=cs["cmap"])
        bar = fig.colorbar(sm, cax=cax, orientation="horizontal")
        ticks = [cs["vmin"], 0.0, cs["vmax"]] if cs["signed"] else [0.0, cs["vmax"] / 2, cs["vmax"]]
        bar.set_ticks(ticks, labels=[_fmt(t) for t in ticks])
        tl = bar.ax.get_xticklabels()
        tl[0].set_horizontalalignment("left")  # keep the end labels inside the figure
        tl[-1].set_horizontalalignment("right")
        bar.ax.tick_params(labelsize=_FONT_PT - 1.0, length=2 * u, width=0.5 * u, pad=1 * u, colors="#333333")
        bar.outline.set_linewidth(0.5 * u)
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    return np.ascontiguousarray(rgba[..., :3])


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    return f"{v:.2g}".replace("e-0", "e-").replace("e+0", "e")


def render_map(image: Any, attribution: Any, **kwargs: Any) -> bytes:
    """:func:`overlay` encoded as PNG bytes (same keyword arguments)."""
    buf = io.BytesIO()
    Image.fromarray(overlay(image, attribution, **kwargs)).save(buf, format="PNG")
    return buf.getvalue()


def draw_boxes(
    image: Any,
    boxes: Iterable[Sequence[float]],
    *,
    color: tuple[int, int, int] = (60, 220, 90),
    width: int = 2,
) -> np.ndarray:
    """A uint8 RGB copy of ``image`` with rectangles ``(x0, y0, x1, y1)`` (exclusive ends) drawn on it;
    empty boxes are skipped."""
    img = Image.fromarray(np.round(_photo01(image) * 255.0).astype(np.uint8))
    d = ImageDraw.Draw(img)
    for x0, y0, x1, y1 in boxes:
        if x1 > x0 and y1 > y0:
            d.rectangle((x0, y0, x1 - 1, y1 - 1), outline=color, width=width)
    return np.asarray(img)

"""Visualisation: attribution overlays with colour bars, region pictures, box drawing and the HTML gallery."""

from .gallery import GalleryColumn, GalleryRow, GalleryTile, write_gallery
from .overlay import blend, boundary_mask, draw_boxes, is_signed, overlay, render_map
from .regions import distinct_colors, draw_regions

__all__ = [
    "GalleryColumn",
    "GalleryRow",
    "GalleryTile",
    "blend",
    "boundary_mask",
    "distinct_colors",
    "draw_boxes",
    "draw_regions",
    "is_signed",
    "overlay",
    "render_map",
    "write_gallery",
]

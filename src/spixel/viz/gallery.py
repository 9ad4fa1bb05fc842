"""A self-contained HTML gallery: one row per photo (the photo tile, then one tile per method), method names
as column headers, a legend explaining each method. Images are relative PNG files next to ``index.html``."""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class GalleryColumn:
    """A method column: ``key`` (matches :attr:`GalleryRow.tiles`), display ``title``, ``family`` tag,
    a plain-language ``description`` and an optional ``note`` (e.g. the settings used)."""

    key: str
    title: str
    description: str = ""
    family: str = ""
    note: str = ""


@dataclass(frozen=True)
class GalleryTile:
    """An image (path relative to the page) with an optional caption."""

    src: str
    caption: str = ""
    alt: str = ""


@dataclass(frozen=True)
class GalleryRow:
    """One photo: its ``title``, the photo tile, caption ``lines`` under it, an optional verdict badge
    (``True`` correct, ``False`` wrong, ``None`` none) and one tile per column key."""

    title: str
    photo: GalleryTile
    lines: Sequence[str] = ()
    correct: bool | None = None
    tiles: dict[str, GalleryTile] = field(default_factory=dict)


_CSS = """
:root { --bg:#f4f5f7; --card:#ffffff; --ink:#1d2330; --muted:#5f6b7a; --line:#e2e5ea; --accent:#3b5bdb;
        --ok:#2b8a3e; --bad:#c92a2a; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
       font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
header.top { background:linear-gradient(135deg,#1f2a44,#34466e); color:#fff; padding:28px 32px 24px; }
header.top h1 { margin:0 0 6px; font-size:26px; font-weight:650; letter-spacing:.2px; }
header.top p { margin:4px 0; max-width:980px; color:#d9e0ee; }
header.top code { background:rgba(255,255,255,.12); padding:1px 5px; border-radius:4px; }
main { padding:20px 24px 40px; max-width:1800px; margin:0 auto; }
h2 { font-size:18px; margin:26px 0 10px; }
.gallery { display:flex; flex-direction:column; gap:14px; }
.head, .row { display:grid; grid-template-columns:minmax(170px, 330px) repeat(var(--k), minmax(140px, 300px));
              gap:10px; align-items:start; justify-content:center; }
.head { position:sticky; top:0; z-index:2; background:var(--bg); padding:8px 0 6px;
        border-bottom:1px solid var(--line); }
.head div { font-weight:650; font-size:14px; text-align:center; }
.head div small { display:block; font-weight:400; color:var(--muted); font-size:12px; }
.row { background:var(--card); border:1px solid var(--line); border-radius:12px; padding:10px;
       box-shadow:0 1px 2px rgba(20,30,50,.05); }
figure { margin:0; }
figure img { width:100%; height:auto; display:block; border-radius:6px; }
figcaption { font-size:12.5px; color:var(--muted); margin-top:5px; text-align:center; line-height:1.35; }
figcaption b { color:var(--ink); font-weight:600; }
.photo figcaption { text-align:left; }
.photo .name { font-size:15px; color:var(--ink); font-weight:650; text-transform:capitalize; }
.badge { display:inline-block; font-size:11px; padding:0 6px; border-radius:9px; color:#fff;
         margin-left:4px; vertical-align:1px; }
.badge.ok { background:var(--ok); } .badge.bad { background:var(--bad); }
.tile .m { display:none; }
.legend { display:grid; grid-template-columns:repeat(auto-fill, minmax(300px, 1fr)); gap:12px; }
.legend .card { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:12px 14px; }
.legend h3 { margin:0 0 4px; font-size:15px; }
.legend .fam { color:var(--muted); font-size:12px; font-weight:400; margin-left:6px; }
.legend p { margin:4px 0; font-size:14px; }
.legend .note { color:var(--muted); font-size:13px; }
.notes { color:var(--muted); font-size:13.5px; max-width:1000px; }
footer { color:var(--muted); font-size:12.5px; padding:10px 24px 30px; max-width:1800px; margin:0 auto; }
@media (max-width: 980px) {
  .head { display:none; }
  .row { grid-template-columns:repeat(2, minmax(0, 1fr)); }
  .row .photo { grid-column:1 / -1; max-width:340px; }
  .tile .m { display:block; color:var(--ink); font-weight:600; }
}
"""


def _e(s: str) -> str:
    return html.escape(str(s), quote=True)


def write_gallery(
    path: str | os.PathLike[str],
    *,
    title: str,
    intro: Sequence[str] = (),
    columns: Sequence[GalleryColumn],
    rows: Sequence[GalleryRow],
    notes: Sequence[str] = (),
    footer: str = "",
) -> Path:
    """Write the gallery page to ``path`` (usually ``<dir>/index.html``) and return it.

    ``intro`` and ``notes`` are paragraphs of plain text (escaped; ``<code>`` is not interpreted). Tile
    ``src`` paths are written as given: keep them relative to the page so the folder can be moved.
    """
    out = Path(path)
    k = len(columns)
    parts: list[str] = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title>",
        f"<style>{_CSS}</style></head>",
        f'<body style="--k:{k}">',
        f'<header class="top"><h1>{_e(title)}</h1>',
        *(f"<p>{_e(p)}</p>" for p in intro),
        "</header><main>",
        '<section class="gallery">',
        '<div class="head"><div>Photo<small>model input crop, annotated box</small></div>',
        *(f"<div>{_e(c.title)}<small>{_e(c.family)}</small></div>" for c in columns),
        "</div>",
    ]
    for r in rows:
        badge = ""
        if r.correct is not None:
            badge = '<span class="badge ok">correct</span>' if r.correct else '<span class="badge bad">miss</span>'
        lines = "".join(f"<br>{_e(x)}" for x in r.lines)
        parts.append('<div class="row">')
        parts.append(
            f'<figure class="photo"><img loading="lazy" src="{_e(r.photo.src)}" alt="{_e(r.photo.alt or r.title)}">'
            f'<figcaption><span class="name">{_e(r.title)}</span>{badge}{lines}</figcaption></figure>'
        )
        for c in columns:
            t = r.tiles.get(c.key)
            if t is None:
                parts.append('<figure class="tile"><figcaption>—</figcaption></figure>')
                continue
            parts.append(
                f'<figure class="tile"><img loading="lazy" src="{_e(t.src)}" alt="{_e(t.alt or c.title)}">'
                f'<figcaption><span class="m">{_e(c.title)}</span>{_e(t.caption)}</figcaption></figure>'
            )
        parts.append("</div>")
    parts.append("</section>")
    if columns:
        parts.append('<h2>The methods</h2><section class="legend">')
        for c in columns:
            fam = f'<span class="fam">{_e(c.family)}</span>' if c.family else ""
            note = f'<p class="note">{_e(c.note)}</p>' if c.note else ""
            parts.append(f'<div class="card"><h3>{_e(c.title)}{fam}</h3><p>{_e(c.description)}</p>{note}</div>')
        parts.append("</section>")
    if notes:
        parts.append('<h2>How to read the maps</h2><div class="notes">')
        parts.extend(f"<p>{_e(p)}</p>" for p in notes)
        parts.append("</div>")
    parts.append("</main>")
    if footer:
        parts.append(f"<footer>{_e(footer)}</footer>")
    parts.append("</body></html>\n")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(parts), encoding="utf-8")
    return out

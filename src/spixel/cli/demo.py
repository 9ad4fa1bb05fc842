"""``spixel demo``: every bundled photo × the default methods → overlays and an ``index.html`` gallery."""

from __future__ import annotations

import argparse
import time
from typing import Any

from ..errors import SpixelError
from ..experiments.loop import batch_classes, run_methods
from .common import get_model, parse_methods, prepare_out, resolve_device
from .explain import class_info

#: The demo's methods (those registered are used) and its cheaper-than-default settings.
DEMO_METHODS = ("saliency", "integrated_gradients", "smoothgrad", "gradcam", "swag_ig")


DEMO_PARAMS: dict[str, dict[str, Any]] = {
    "integrated_gradients": {"n_steps": 16},
    "smoothgrad": {"n_samples": 16},
    "sparsified_smoothgrad": {"n_samples": 32},
}


#: Plain-language explanations for the gallery (others fall back to the method's docstring).
METHOD_BLURBS = {
    "saliency": "How strongly would the class score react if this pixel changed a little? The magnitude of "
    "the gradient of the class score with respect to each pixel (Simonyan et al. 2014). Sharp but speckled.",
    "input_x_gradient": "The gradient multiplied by the pixel values (Shrikumar et al. 2016): a first-order "
    "estimate of each pixel's contribution. Red pushes towards the class, blue away from it.",
    "integrated_gradients": "Gradients accumulated along a straight path from a plain mean-colour image to the photo "
    "(Sundararajan et al. 2017). The pixel contributions add up to the change of the class score; red "
    "pixels push towards the class, blue ones away from it.",
    "smoothgrad": "The gradient averaged over many noisy copies of the photo (Smilkov et al. 2017): much of the "
    "speckle of plain saliency averages out, leaving the object's shape.",
    "sparsified_smoothgrad": "SmoothGrad where every noisy gradient keeps only its strongest 10% of entries "
    "(Levine et al. 2019): sparse, stable maps.",
    "guided_backprop": "The gradient with every negative signal stopped at each ReLU on the way back "
    "(Springenberg et al. 2015): crisp, edge-like pictures. Beautiful, but known to depend little on what "
    "the model learned (Adebayo et al. 2018).",
    "deconvolution": "Zeiler & Fergus's DeconvNet: like guided backprop, but only the backward signal's sign "
    "gates each ReLU. Shows image structure more than the class.",
    "gradcam": "The last convolutional feature maps weighted by their average gradient (Selvaraju et al. "
    "2017): a coarse map of where the evidence for the class lies, upsampled from the network's grid.",
    "gradcam_pp": "Grad-CAM with per-location weights from higher-order gradients (Chattopadhay et al. 2018): "
    "better when the class appears several times.",
    "scorecam": "Each feature map is used as a mask on the photo and weighted by how much the masked photo "
    "raises the class score (Wang et al. 2020): gradient-free.",
    "swag": "SWAG (Hartley et al. 2021): guided-backprop scores averaged over SLIC superpixels of the photo — "
    "one value per region, so the map reads as a set of parts.",
    "swag_ig": "SWAG with gradient-aware superpixels (Hartley et al. 2021): SLIC steered by the image colours "
    "and the guided-backprop map, so region borders follow what the model reacts to; each region shows its "
    "average score (white lines: region borders).",
    "swag_g": "SWAG with superpixels built from the guided-backprop map alone (Hartley et al. 2021).",
    "lime": "LIME (Ribeiro et al. 2016): regions switched off at random, a weighted linear model fitted to the "
    "class probability; each region shows its coefficient.",
    "rise": "RISE (Petsiuk et al. 2018): thousands of random smooth masks, each weighted by the class "
    "probability of the masked photo.",
    "occlusion": "Occlusion (Zeiler & Fergus 2014): how much the class score drops when a patch is greyed out.",
    "xrai": "XRAI (Kapishnikov et al. 2019): integrated gradients summed over multi-scale superpixels, regions "
    "ranked greedily by attribution density.",
    "attribution_equilibrium": "Attribution Equilibrium (Nam & Lee 2024): relevance passed back from the last "
    "convolutional layer to the pixels, balancing the evidence for the class (red) against the evidence "
    "against it (blue) at every layer. Runs on VGG-style networks.",
    "gad": "GAD (Mazini Rodrigues et al. 2024): integrated gradients of the model and of support models trained "
    "to push two classes further apart; only the pixels that all of them mark as evidence are kept.",
}


def _load_samples() -> list[Any]:
    """The bundled photos (imported lazily: ``spixel.data`` is optional at import time)."""
    try:
        from ..data import samples
    except ImportError:
        raise SpixelError("the bundled demo photos (spixel.data) are not available in this installation") from None
    return list(samples())


def method_summary(entry: Any, limit: int = 240) -> str:
    """The registered description or the docstring's first paragraph, shortened to whole sentences."""
    text = entry.info.get("description") or (entry.fn.__doc__ or "").strip().split("\n\n")[0]
    text = " ".join(text.replace("``", "").split())
    if len(text) <= limit:
        return text
    cut = text.rfind(". ", 0, limit)
    return text[: cut + 1] if cut > 40 else text[: limit - 1].rstrip() + "…"


def method_blurb(entry: Any) -> str:
    """A plain-language description: :data:`METHOD_BLURBS` or the first paragraph of the docstring."""
    return METHOD_BLURBS.get(entry.name) or method_summary(entry)


def _demo_note(entry: Any, params: dict[str, Any]) -> str:
    defaults = entry.info.get("params", {})
    parts = [f"{k}={v} (default {defaults.get(k)})" for k, v in params.items() if k != "batch_size"]
    return ("Demo setting, for speed: " + ", ".join(parts) + ".") if parts else ""


def cmd_demo(args: argparse.Namespace) -> int:
    from .. import __version__
    from ..io import save_json, save_png
    from ..progress import progress
    from ..registry import METHODS
    from ..viz.gallery import GalleryColumn, GalleryRow, GalleryTile, write_gallery
    from ..viz.overlay import draw_boxes, overlay

    default = ",".join(n for n in DEMO_METHODS if n in METHODS)
    entries = parse_methods(args.methods or default)
    per = {
        e.name: {k: v for k, v in DEMO_PARAMS.get(e.name, {}).items() if k in e.info.get("params", {})} for e in entries
    }
    device = resolve_device(args.device)
    out = prepare_out(args.out)
    samples = _load_samples()
    if not samples:
        raise SpixelError("spixel.data.samples() returned no photos")
    model = get_model(args.model, None, device)

    t_start = time.perf_counter()
    rows: list[GalleryRow] = []
    summary: list[dict[str, Any]] = []
    # one step = one photo × one method (a map): the bar moves after each method on each batch
    bar = progress(len(samples) * len(entries), "spixel demo", "map")
    for s in range(0, len(samples), args.batch_size):
        chunk = samples[s : s + args.batch_size]
        x = model.preprocess([smp.image for smp in chunk])
        results: dict[str, tuple[Any, float]] = {}
        for e in entries:
            bar.set_postfix_str(e.name)  # the method now running
            results.update(run_methods(model, x, [e], per, None, 0))
            bar.update(len(chunk))
        meta = batch_classes(model, x, results, None)
        rgb01 = model.to_rgb01(x).permute(0, 2, 3, 1).float().cpu().numpy()
        for i, smp in enumerate(chunk):
            d = out / smp.name
            k, p = int(meta["predicted"][i]), float(meta["predicted_probability"][i])
            boxes = model.map_boxes([smp.box], smp.image.shape) if getattr(smp, "box", None) is not None else []
            save_png(d / "photo.png", draw_boxes(rgb01[i], boxes, width=2))
            classes = [int(c) for c in getattr(smp, "classes", [])]
            expected = ", ".join(model.label(c) for c in classes) or "—"
            tiles, secs = {}, {}
            for name, (ex, t) in results.items():
                amap = ex.attribution[i].detach().float().cpu().numpy()
                save_png(d / f"{name}.png", overlay(rgb01[i], amap, title=None))
                secs[name] = t / len(chunk)
                tiles[name] = GalleryTile(
                    f"{smp.name}/{name}.png", caption=f"{secs[name]:.2f} s per image", alt=f"{name} map for {smp.name}"
                )
            rows.append(
                GalleryRow(
                    title=smp.name.replace("_", " "),
                    photo=GalleryTile(f"{smp.name}/photo.png", alt=f"{smp.name} photo"),
                    lines=[
                        f"predicted: {model.label(k)} ({p:.0%})",
                        f"annotated: {expected}",
                        f"source: {getattr(smp, 'source', '')}",
                    ],
                    correct=(k in classes) if classes else None,
                    tiles=tiles,
                )
            )
            summary.append(
                {"name": smp.name, "predicted": class_info(model, k, p), "classes": classes, "seconds": secs}
            )
    bar.close()
    total = time.perf_counter() - t_start

    columns = [
        GalleryColumn(
            e.name, e.name.replace("_", " "), method_blurb(e), e.info.get("family", ""), _demo_note(e, per[e.name])
        )
        for e in entries
    ]
    cheap = [c.note for c in columns if c.note]
    intro = [
        f"{len(samples)} bundled photos explained by {model.name} with {len(entries)} attribution methods. "
        f"Each row shows the {model.input_size}×{model.input_size} crop the model sees (the annotated object "
        "box in green), its top prediction, and one map per method for that predicted class.",
        f"Generated by 'spixel demo' in {total:.0f} s on {device}."
        + (" For speed some methods run with fewer steps/samples than their defaults (see below)." if cheap else ""),
    ]
    notes = [
        "Non-negative maps (saliency, SmoothGrad, guided backprop, CAMs) use the 'inferno' colour scale: dark "
        "purple → orange → pale yellow for increasing importance; the more important a pixel, the more opaque "
        "its colour, so unimportant areas show the photo.",
        "Signed maps (integrated gradients, input × gradient) use a red–blue scale centred at zero: red "
        "pixels raise the class score, blue ones lower it.",
        "Every colour scale ends at the 99th percentile of the map's magnitude, so a handful of extreme pixels "
        "does not wash out the rest. The numbers on the colour bars are in the method's own units; the time "
        "under each tile is seconds per image.",
    ]
    page = write_gallery(
        out / "index.html",
        title="spixel demo: what is the model looking at?",
        intro=intro,
        columns=columns,
        rows=rows,
        notes=notes,
        footer=f"spixel {__version__} · model {model.name} · device {device}",
    )
    save_json(
        out / "demo.json",
        {
            "model": model.name,
            "device": device,
            "seconds": total,
            "methods": {e.name: per[e.name] for e in entries},
            "photos": summary,
        },
    )
    print(f"spixel: wrote {len(samples)} photo(s) × {len(entries)} method(s); open {page}")
    return 0

"""``spixel explain``: every method on every image, overlays, ``.npy`` maps and ``explanation.json`` (the batch helpers
it runs — methods, regions, classes — live in :mod:`spixel.experiments.loop`)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from ..errors import BadImageError, BadParameterError
from ..experiments.loop import batch_classes, run_methods, segment_batch
from .common import (
    assign_params,
    bad_images_exit,
    expand_images,
    get_model,
    load_item,
    one_line,
    parse_methods,
    parse_params,
    parse_regions,
    prepare_out,
    print_error,
    resolve_device,
    resolve_target,
)


def region_roles(entries: Sequence[Any], channels: str | None) -> dict[str, str]:
    """Check that ``--regions`` applies to every listed method and return ``{grouped method: channels}``.

    Methods with a ``regions`` parameter (LIME, occlusion, XRAI) use the regions themselves; methods that make
    their own superpixels (SWAG, ``groupable=False``) refuse them; every other method is grouped (spec §1.2) and
    pools its channels as ``channels`` says (a ``--channels`` no listed method can use is an error)."""
    from ..regions import uses_regions

    own = [e.name for e in entries if e.info.get("groupable", True) is False and not uses_regions(e.name)]
    if own:
        raise BadParameterError(
            f"{', '.join(own)} make{'s' if len(own) == 1 else ''} {'its' if len(own) == 1 else 'their'} own "
            "superpixels: --regions does not apply; run without --regions (or list the other methods separately)"
        )
    grouped = [e.name for e in entries if not uses_regions(e.name)]
    if channels is not None and not grouped:
        names = ", ".join(e.name for e in entries)
        verb = "uses its" if len(entries) == 1 else "use their"
        raise BadParameterError(f"--channels applies to grouped methods; {names} {verb} regions themselves")
    return {n: channels or "joint" for n in grouped}


#: Overlays with region boundaries are drawn this many times larger, their boundaries one output pixel wide.
REGION_OVERLAY_SCALE = 2.0


#: Overlays of small inputs (e.g. the 64×64 synthetic images) are enlarged to at least this many pixels a side so
#: that the title and colour bar fit.
MIN_OVERLAY_SIDE = 256


def region_overlay(rgb01: Any, amap: Any, title: str | None, labels: Any = None) -> Any:
    """The overlay of one map; with region ``labels`` (``H × W`` ints) enlarged ``REGION_OVERLAY_SCALE`` times
    with the regions' boundaries drawn in thin white lines; small inputs enlarged to ``MIN_OVERLAY_SIDE``."""
    from ..viz.overlay import overlay

    if labels is None:
        return overlay(rgb01, amap, title=title, min_side=MIN_OVERLAY_SIDE)
    return overlay(rgb01, amap, title=title, boundaries=labels, scale=REGION_OVERLAY_SCALE, min_side=MIN_OVERLAY_SIDE)


def class_info(model: Any, k: int, prob: float) -> dict[str, Any]:
    return {"class": int(k), "label": model.label(int(k)), "probability": float(prob)}


def cmd_explain(args: argparse.Namespace) -> int:
    import torch

    from .. import __version__
    from ..io import save_json, save_map, save_png
    from ..progress import progress
    from ..viz.overlay import is_signed

    entries = parse_methods(args.method)
    per = assign_params(entries, parse_params(args.param))
    regions = parse_regions(args.regions, args.seed) if args.regions is not None else None
    if regions is None and args.channels is not None:
        raise BadParameterError("--channels only applies with --regions (e.g. --regions slic)")
    channels = region_roles(entries, args.channels) if regions is not None else None
    device = resolve_device(args.device)
    items = expand_images(args.images)
    out = prepare_out(args.out)
    model = get_model(args.model, args.weights, device)
    target = resolve_target(args.target, model)

    n_bad = n_done = 0
    bar = progress(len(items), "spixel explain", "img")  # images/s and ETA on a terminal, silent otherwise
    for s in range(0, len(items), args.batch_size):
        chunk, good = items[s : s + args.batch_size], []
        for it in chunk:
            try:
                good.append((it, load_item(it)[0]))
            except BadImageError as err:
                print_error(one_line(err))
                n_bad += 1
        if good:
            x = model.preprocess([rgb for _, rgb in good])
            seg, seg_info = segment_batch(model, x, regions)
            results = run_methods(model, x, entries, per, target, args.seed, seg, channels)
            rgb01 = model.to_rgb01(x).permute(0, 2, 3, 1).float().cpu().numpy()
            meta = batch_classes(model, x, results, target)
            region_labels = {
                name: ex.segmentation.labels.cpu().numpy()
                for name, (ex, _) in results.items()
                if ex.segmentation is not None
            }
            for i, (it, rgb) in enumerate(good):
                d = out / it.name
                info: dict[str, Any] = {
                    "spixel_version": __version__,
                    "model": model.name,
                    "weights": args.weights,
                    "device": device,
                    "image": it.source,
                    "image_size": [int(rgb.shape[1]), int(rgb.shape[0])],
                    "input_size": int(x.shape[-1]),
                    "predicted": class_info(model, meta["predicted"][i], meta["predicted_probability"][i]),
                    "explained": class_info(model, meta["target"][i], meta["probability"][i]),
                    "target_given": args.target,
                    "regions": None
                    if seg is None
                    else {
                        **seg_info,
                        "num_segments": int(seg.num_segments[i]),
                        "seconds": seg_info["seconds"] / len(good),
                    },
                    "methods": {},
                }
                for name, (ex, secs) in results.items():
                    amap = ex.attribution[i].detach().float().cpu().numpy()
                    save_map(d / f"{name}.npy", amap)
                    lab = info["explained"]
                    title = f"{name}\n{lab['label']} (p = {lab['probability']:.2f})"
                    k_i = int(ex.segmentation.num_segments[i]) if ex.segmentation is not None else None
                    if k_i is not None:
                        src = seg_info["segmenter"] if seg is not None else ex.segmentation.meta.get("segmenter")
                        title += f"\n{k_i} regions" + (f" ({src})" if src else "")
                    save_png(
                        d / f"{name}.png",
                        region_overlay(
                            rgb01[i], amap, title, region_labels[name][i] if name in region_labels else None
                        ),
                    )
                    info["methods"][name] = {
                        "params": ex.meta.get("params", {}),
                        "seed": ex.meta.get("seed"),
                        "seconds": secs / len(good),
                        "batch_images": len(good),
                        "signed": is_signed(amap),
                        "overlay": f"{name}.png",
                        "map": f"{name}.npy",
                    }
                    if k_i is not None:
                        info["methods"][name]["num_segments"] = k_i
                    if channels and name in channels:
                        info["methods"][name]["channels"] = channels[name]
                save_json(d / "explanation.json", info)
                n_done += 1
            del x, results
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
        bar.update(len(chunk))
    bar.close()
    if n_done:
        print(f"spixel: wrote {n_done} image(s) × {len(entries)} method(s) to {out}/")
    return bad_images_exit(n_bad, len(items))

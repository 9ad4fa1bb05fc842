"""``spixel segment``: regions of each image as boundary pictures, ``.npy`` labels and JSON."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from ..errors import BadImageError, BadParameterError, SpixelError
from .common import (
    assign_params,
    bad_images_exit,
    expand_images,
    get_model,
    load_item,
    one_line,
    parse_params,
    prepare_out,
    print_error,
    resolve_device,
    segmenters,
)

#: ``spixel segment`` draws images up to this size (the model crops) this many times larger, with 1-px boundaries.
SEGMENT_PICTURE_SCALE = 2.0


SEGMENT_ENLARGE_BELOW = 512


def _segment_groups(images: list[Any]) -> list[list[int]]:
    """Indices of ``images`` grouped by size (a group is segmented as one batch), in first-seen order."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for j, im in enumerate(images):
        groups.setdefault(im.shape, []).append(j)
    return list(groups.values())


def cmd_segment(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from tqdm import tqdm

    from .. import __version__
    from ..io import save_json, save_png
    from ..segmentation import segment
    from ..viz.regions import draw_regions

    registry = segmenters()
    names = [n.strip() for n in args.segmenter.split(",") if n.strip()]
    if not names:
        raise BadParameterError("--segmenter needs at least one segmenter name (spixel list segmenters)")
    entries = [registry.get(n) for n in dict.fromkeys(names)]
    per = assign_params(entries, parse_params(args.param), kind="segmenter")
    for e in entries:
        if "seed" in e.info.get("params", {}):
            per[e.name]["seed"] = args.seed
        missing = [k for k in e.info.get("needs", ()) if k not in per[e.name]]
        if missing:
            raise BadParameterError(
                f"segmenter {e.name} needs {', '.join(missing)} (an array), which the command line cannot give; "
                "it is used by methods (e.g. swag_ig)"
            )
    # segmenters that cluster a classifier's activations (nas) run on --model, which must then be named
    with_model = [e.name for e in entries if "model" in e.info.get("params", {})]
    for name in with_model:
        if "model" in per[name]:
            raise BadParameterError(f"segmenter {name}: give the model as --model NAME, not --param model=")
        if args.model is None:
            raise BadParameterError(
                f"segmenter {name} clusters a classifier's activations: name it with --model NAME "
                "(e.g. --model efficientnet_lite0; not with --no-crop, the model's crop is segmented)"
            )
    device = resolve_device(args.device)
    items = expand_images(args.images)
    out = prepare_out(args.out)
    model_device = device if with_model else "cpu"
    model = None if args.no_crop else get_model(args.model or "efficientnet_lite0", args.weights, model_device)
    for name in with_model:
        per[name]["model"] = model

    n_bad = n_done = 0
    bar = tqdm(total=len(items), disable=len(items) <= 1, file=sys.stderr, unit="img", desc="spixel segment")
    for s in range(0, len(items), args.batch_size):
        chunk, good = items[s : s + args.batch_size], []
        for it in chunk:
            try:
                rgb = load_item(it)[0]
                good.append((it, rgb, rgb if model is None else model.crop(rgb)))
            except BadImageError as err:
                print_error(one_line(err))
                n_bad += 1
        for group in _segment_groups([im for _, _, im in good]):
            batch = np.stack([good[j][2] for j in group])
            rgb01 = torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(255.0).to(device)
            for e in entries:
                t0 = time.perf_counter()
                try:
                    seg = segment(rgb01, e.name, **per[e.name])
                except SpixelError as err:
                    raise BadParameterError(f"{e.name}: {one_line(err)}") from None
                secs = (time.perf_counter() - t0) / len(group)
                labels = seg.labels.cpu().numpy()
                for b, j in enumerate(group):
                    it, rgb, im = good[j]
                    d = out / it.name
                    d.mkdir(parents=True, exist_ok=True)
                    np.save(d / f"{e.name}.npy", labels[b], allow_pickle=False)
                    scale = SEGMENT_PICTURE_SCALE if max(im.shape[:2]) <= SEGMENT_ENLARGE_BELOW else 1.0
                    save_png(d / f"{e.name}.png", draw_regions(im, labels[b], fill=args.fill, scale=scale))
                    save_json(
                        d / f"{e.name}.json",
                        {
                            "spixel_version": __version__,
                            "image": it.source,
                            "image_size": [int(rgb.shape[1]), int(rgb.shape[0])],
                            "crop": None
                            if model is None
                            else {"model": model.name, "input_size": model.input_size, "resize": model.resize},
                            "size": [int(im.shape[1]), int(im.shape[0])],
                            "segmenter": e.name,
                            "backend": e.info.get("backend"),
                            "params": seg.meta.get("params", per[e.name]),
                            "num_segments": int(seg.num_segments[b]),
                            "seconds": secs,
                            "device": device,
                            "overlay": f"{e.name}.png",
                            "overlay_scale": scale,
                            "labels": f"{e.name}.npy",
                        },
                    )
        n_done += len(good)
        bar.update(len(chunk))
    bar.close()
    if n_done:
        print(f"spixel: wrote {n_done} image(s) × {len(entries)} segmenter(s) to {out}/")
    return bad_images_exit(n_bad, len(items))

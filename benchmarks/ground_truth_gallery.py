"""A picture of the papers' methods on exact ground truth: for a few held-out synthetic images (the object's outline
in white), integrated gradients, Grad-CAM, guided backprop, Attribution Equilibrium, GAD and Grad-CAM averaged over
Ward NAS superpixels, all from the same ``spixel train`` model and for the label.
Writes an image (PNG or JPEG by the suffix; docs/images)::

    python benchmarks/ground_truth_gallery.py --model M/vgg.pt --supports G --out docs/images/ground_truth_methods.jpg
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from PIL import Image

import spixel
from _common import held_out
from spixel.regions import group
from spixel.segmentation import segment
from spixel.viz.overlay import boundary_mask, overlay


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="a VGG-style checkpoint written by spixel train")
    ap.add_argument("--supports", required=True, help="folder of its GAD supports (spixel train gad)")
    ap.add_argument("--out", required=True, help="image to write (.png or .jpg)")
    ap.add_argument("--n", type=int, default=5, help="images (default: 5)")
    args = ap.parse_args()
    model = spixel.load_model(args.model)
    images, _, masks, x, y = held_out(model, 40)
    # one image per class where the model is right, in class order
    pred = model.predict(x).argmax(1)
    picks = [int(i) for c in range(int(y.max()) + 1) for i in (((y == c) & (pred == y)).nonzero().view(-1)[:1])]
    picks = picks[: args.n]
    x, y, images, masks = x[picks], y[picks], images[picks], masks[picks]
    nas = segment(model.to_rgb01(x), "nas", model=model, n_segments=10, method="ward")
    gradcam = spixel.explain(model, x, "gradcam", target=y)
    cols = {
        "integrated gradients": spixel.explain(model, x, "integrated_gradients", target=y, n_steps=32),
        "Grad-CAM": gradcam,
        "guided backprop": spixel.explain(model, x, "guided_backprop", target=y),
        "Attribution Equilibrium": spixel.explain(model, x, "attribution_equilibrium", target=y),
        "GAD (IG)": spixel.explain(model, x, "gad", target=y, supports=args.supports, method_params={"n_steps": 32}),
        "Grad-CAM on NAS (Ward)": spixel.Explanation(attribution=group(gradcam.attribution, nas), segmentation=nas),
    }
    rows = []
    for i in range(len(picks)):
        edge = boundary_mask(masks[i].astype(np.int64))
        photo = images[i].copy()
        photo[edge] = 255
        tiles = [overlay(photo, np.zeros(masks[i].shape), title=model.label(int(y[i])), colorbar=False, min_side=160)]
        for name, e in cols.items():
            b = e.segmentation.labels[i].cpu().numpy() if e.segmentation is not None else None
            a = e.attribution[i].cpu().numpy()
            tiles.append(
                overlay(images[i], a, title=name if i == 0 else None, colorbar=False, min_side=160, boundaries=b)
            )
        h = max(t.shape[0] for t in tiles)
        tiles = [np.pad(t, ((h - t.shape[0], 0), (0, 4), (0, 0)), constant_values=255) for t in tiles]
        rows.append(np.concatenate(tiles, 1))
    w = max(r.shape[1] for r in rows)
    grid = np.concatenate([np.pad(r, ((0, 4), (0, w - r.shape[1]), (0, 0)), constant_values=255) for r in rows], 0)
    Image.fromarray(grid).save(args.out)
    print(f"wrote {args.out} ({grid.shape[1]}×{grid.shape[0]})")


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()

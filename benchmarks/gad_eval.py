"""Paper 003's evaluation of GAD on exact ground truth: is the evidence that survives the support models' artificial
distancing smaller (convex-hull ratio RC < 1), more sensitive to occlusion (RS), and more on the object?

``--base`` is a ``spixel train`` checkpoint and ``--supports`` the folder of its GAD supports
(``spixel train gad --base BASE --out DIR``; α = 2, 4, 6, 8 are used, α = 0 skipped). The held-out images of the
pair's two classes among ``SyntheticDataset(--n, seed=1)`` are explained for their label with integrated gradients
(``--ig-steps``) and with GAD over the same integrated gradients (threshold 10 % of the max, the original's map
kept). Reported per map: the fraction of pixels kept, RC against IG (top ``--fraction`` of each map, spec §4.3),
RS of the map's hull against RS of the supplementary hull (IG's hull minus GAD's: the paper expects GAD's to be
larger), the outside–inside relevance ratio against the exact object mask (lower: more on the object) and the
pointing game; the control is IG cut to its own top pixels, as many per image as GAD keeps.
An experiment, not a timing::

    python benchmarks/gad_eval.py --base M/vgg.pt --supports G --n 1000 --threads 2
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import spixel
from _common import held_out
from spixel.attribution.gad import load_supports


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True, help="the checkpoint the supports were trained from")
    ap.add_argument("--supports", required=True, help="folder of GAD support checkpoints")
    ap.add_argument("--n", type=int, default=1000, help="held-out images to draw the pair's images from")
    ap.add_argument("--ig-steps", type=int, default=32, help="integrated gradients steps (default: 32)")
    ap.add_argument("--fraction", type=float, default=0.1, help="top fraction of a map for its hull (default: 0.1)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: 2)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = spixel.load_model(args.base)
    sups = load_supports(args.supports)
    a, b = sups[0].module.checkpoint["recipe"]["params"]["pair"]
    _, labels, masks, x_all, y_all = held_out(model, args.n)
    keep = torch.as_tensor((labels == a) | (labels == b))
    x, y, m = x_all[keep], y_all[keep], torch.as_tensor(masks)[keep]
    ig_params = {"n_steps": args.ig_steps}
    ig = spixel.explain(model, x, "integrated_gradients", target=y, **ig_params)
    gad = spixel.explain(model, x, "gad", target=y, supports=sups, method_params=ig_params)
    print(f"pair {a},{b}: {int(keep.sum())} held-out images; supports α = {[s['alpha'] for s in gad.meta['supports']]}")
    print(f"GAD keeps {np.mean(gad.meta['kept_fraction']):.3%} of the pixels on average")
    ev = spixel.evaluate
    rc = ev(model, x, gad, "convex_hull_ratio", target=y, reference=ig, fraction=args.fraction).scores
    rs_gad = ev(model, x, gad, "occlusion_sensitivity", target=y, fraction=args.fraction).scores
    rs_sup = ev(model, x, gad, "occlusion_sensitivity", target=y, reference=ig, fraction=args.fraction).scores
    print(
        f"RC = A(CH_GAD) / A(CH_IG): mean {rc.mean():.3f}, median {rc.median():.3f}, "
        f"RC < 1 on {(rc < 1).float().mean():.1%}"
    )
    print(
        f"RS ×10²: GAD hull {100 * rs_gad.mean():.3f}, supplementary hull {100 * rs_sup.mean():.3f}; "
        f"GAD's larger on {(rs_gad > rs_sup).float().mean():.1%} of the images"
    )
    # the sceptic's control: IG's own top pixels, as many per image as GAD keeps (GAD = selection, not sparsity?)
    kept = (gad.attribution != 0).flatten(1).sum(1)
    flat = ig.attribution.flatten(1)
    order = flat.argsort(dim=1, descending=True, stable=True).argsort(dim=1)
    top = torch.where(order < kept.view(-1, 1), flat, torch.zeros_like(flat)).view_as(ig.attribution)
    ig_top = spixel.Explanation(attribution=top)
    rs_top = ev(model, x, ig_top, "occlusion_sensitivity", target=y, fraction=args.fraction).scores
    print(
        f"control, IG's top pixels as many as GAD keeps: RS ×10² {100 * rs_top.mean():.3f}; GAD's RS larger on "
        f"{(rs_gad > rs_top).float().mean():.1%} of the images"
    )
    tol = 15.0 * model.input_size / 224
    print("| map | outside-inside ratio (median) | pointing game |")
    print("|---|---:|---:|")
    for name, e in (("integrated gradients", ig), ("IG, top pixels as many as GAD keeps", ig_top), ("GAD (IG)", gad)):
        oir = ev(model, x, e, "outside_inside_ratio", target=y, masks=m).scores
        pg = ev(model, x, e, "pointing_game", target=y, masks=m, tolerance=tol).scores
        print(f"| {name} | {oir.median():.3f} | {pg.mean():.3f} |")


if __name__ == "__main__":
    main()

"""Speed of the propagation methods, and ``lrp`` against Zennit on the same batch in the same run.

For each model (ResNet-50 with random weights, EfficientNet-Lite0 with its bundled ImageNet weights) it times one
plain forward + backward (the input gradient of the target logit) and every propagation method on one batch, and
reports each method's time as a multiple of that. Then, on ResNet-50, ``lrp`` with Zennit's composites against
Zennit 0.5 (``Gradient`` attributor, ``ResNetCanonizer``), same batch, same start relevance: time of both and
their largest difference relative to Zennit's largest relevance.

    python benchmarks/propagation.py                      # CPU, batch 8, 224 px
    python benchmarks/propagation.py --device cuda --repeat 5 --json out.json
    python benchmarks/propagation.py --gallery docs/images/propagation.jpg   # only the gallery

The gallery shows every propagation method on two bundled photos with EfficientNet-Lite0, next to Grad-CAM and
AE (which refuses Lite0's inverted residuals: shown as such).

Times are medians over ``--repeat`` runs after one warm-up run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torchvision
from torch import nn

import spixel

METHODS: list[tuple[str, dict[str, Any]]] = [
    ("lrp", {"composite": "epsilon_plus_flat"}),
    ("lrp", {"composite": "epsilon_gamma_box"}),
    ("lrp", {"composite": "epsilon_alpha2_beta1"}),
    ("lrp_comp", {}),
    ("clrp", {}),
    ("sglrp", {}),
    ("contrastive_eb", {}),
    ("relevance_cam", {}),
    ("attribution_equilibrium", {}),
    ("gradcam", {}),
]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn: Callable[[], Any], device: torch.device, repeat: int) -> float:
    fn()  # warm-up
    _sync(device)
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def _models(device: torch.device, names: list[str]) -> dict[str, spixel.models.ModelAdapter]:
    out = {}
    for name in names:
        if name == "resnet50":
            torch.manual_seed(0)
            m = torchvision.models.resnet50(weights=None).eval()
            out[name] = spixel.models.ModelAdapter(m, input_size=224, layers={"cam": "layer4"}, name="resnet50-random")
        else:
            out[name] = spixel.load_model(name)
        out[name].to(device)
    return out


def fwd_bwd(model: spixel.models.ModelAdapter, x: torch.Tensor, t: torch.Tensor) -> None:
    xl = x.detach().requires_grad_(True)
    logits = model.module(xl)
    torch.autograd.grad(logits.gather(1, t.view(-1, 1)).sum(), xl)


def zennit_comparison(model: nn.Module, x: torch.Tensor, t: torch.Tensor, device: torch.device, repeat: int) -> list:
    from zennit import composites as zc
    from zennit.attribution import Gradient
    from zennit.torchvision import ResNetCanonizer

    mean = torch.tensor(spixel.models.adapter.IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(spixel.models.adapter.IMAGENET_STD, device=device).view(1, 3, 1, 1)
    low, high = ((0 - mean) / std).expand_as(x), ((1 - mean) / std).expand_as(x)
    zennit = {
        "epsilon_plus_flat": lambda: zc.EpsilonPlusFlat(canonizers=[ResNetCanonizer()]),
        "epsilon_gamma_box": lambda: zc.EpsilonGammaBox(low=low, high=high, canonizers=[ResNetCanonizer()]),
        "epsilon_alpha2_beta1": lambda: zc.EpsilonAlpha2Beta1(canonizers=[ResNetCanonizer()]),
    }
    with torch.no_grad():
        logits = model(x)
    seed = torch.zeros_like(logits).scatter(1, t.view(-1, 1), logits.gather(1, t.view(-1, 1)))
    rows = []
    for name, make in zennit.items():
        ours: dict[str, Any] = {}

        def run_ours(name: str = name, ours: dict[str, Any] = ours) -> None:
            ours["r"] = spixel.explain(model, x, "lrp", t, composite=name, batch_size=len(x)).raw

        def run_zennit(make: Callable[[], Any] = make, ours: dict[str, Any] = ours) -> None:
            with Gradient(model, make()) as attributor:
                _, ours["z"] = attributor(x.clone().requires_grad_(True), seed)

        t_ours = _time(run_ours, device, repeat)
        t_zennit = _time(run_zennit, device, repeat)
        diff = float((ours["r"] - ours["z"]).abs().max() / ours["z"].abs().max())
        rows.append({"composite": name, "spixel_s": t_ours, "zennit_s": t_zennit, "speedup": t_zennit / t_ours,
                     "max_rel_diff": diff})  # fmt: skip
    return rows


GALLERY: list[tuple[str, str, dict[str, Any]]] = [
    ("Grad-CAM", "gradcam", {}),
    ("AE", "attribution_equilibrium", {}),
    ("LRP ε-z⁺-flat", "lrp", {"composite": "epsilon_plus_flat"}),
    ("LRP ε-γ-box", "lrp", {"composite": "epsilon_gamma_box"}),
    ("LRP ε-α2β1", "lrp", {"composite": "epsilon_alpha2_beta1"}),
    ("LRP-COMP", "lrp_comp", {}),
    ("c*LRP", "clrp", {}),
    ("SGLRP", "sglrp", {}),
    ("c*EB", "contrastive_eb", {}),
    ("Relevance-CAM", "relevance_cam", {}),
]


def gallery(path: str, device: torch.device, names: tuple[str, ...] = ("chelsea", "coffee")) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from spixel.data.samples import sample
    from spixel.viz.overlay import blend

    model = spixel.load_model("efficientnet_lite0").to(device)
    photos = [sample(n) for n in names]
    x = model.preprocess([p.image for p in photos]).to(device)
    rgb = model.to_rgb01(x).permute(0, 2, 3, 1).cpu().numpy()
    fig, axes = plt.subplots(len(photos), len(GALLERY) + 1, figsize=(1.9 * (len(GALLERY) + 1), 2.1 * len(photos)))
    for i in range(len(photos)):
        axes[i, 0].imshow(rgb[i])
        axes[i, 0].set_title(photos[i].name, fontsize=8)
    for j, (title, method, params) in enumerate(GALLERY, start=1):
        try:
            e = spixel.explain(model, x, method, None, **params)
        except spixel.errors.SpixelError as err:
            for i in range(len(photos)):
                axes[i, j].imshow(rgb[i] * 0.25)
                axes[i, j].text(0.5, 0.5, "refused:\n" + str(err).split(";")[-1].strip()[:60].replace(" (", "\n("),
                                ha="center", va="center", fontsize=5, color="w", wrap=True,
                                transform=axes[i, j].transAxes)  # fmt: skip
                axes[i, j].set_title(title, fontsize=8)
            continue
        for i in range(len(photos)):
            img, _ = blend(rgb[i], e.attribution[i].cpu().numpy())
            axes[i, j].imshow(img)
            label = e.meta["label"][i].split(",")[0][:14]
            axes[i, j].set_title(f"{title}\n{label}", fontsize=7)
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110, pil_kwargs={"quality": 85})
    print(f"wrote {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--models", default="resnet50,efficientnet_lite0")
    ap.add_argument("--no-zennit", action="store_true")
    ap.add_argument("--json", default=None)
    ap.add_argument("--gallery", default=None, help="write the gallery JPEG to this path and stop")
    a = ap.parse_args()
    device = torch.device(a.device)
    if a.gallery:
        gallery(a.gallery, device)
        return
    g = torch.Generator().manual_seed(0)
    x = torch.randn(a.batch, 3, a.size, a.size, generator=g).to(device)
    t = torch.arange(a.batch, device=device) * 97 % 1000
    report: dict[str, Any] = {"device": str(device), "batch": a.batch, "size": a.size, "torch": torch.__version__}
    if device.type == "cuda":
        report["gpu"] = torch.cuda.get_device_name(device)
    for name, model in _models(device, a.models.split(",")).items():
        with spixel.models.state.frozen(model.module):
            base = _time(lambda model=model: fwd_bwd(model, x, t), device, a.repeat)
        rows = [{"method": "forward+backward", "seconds": base, "x_fwd_bwd": 1.0}]
        for method, params in METHODS:
            label = method + (f"[{params['composite']}]" if "composite" in params else "")
            try:
                s = _time(lambda m=method, p=params, model=model: spixel.explain(model, x, m, t, **p), device, a.repeat)
                rows.append({"method": label, "seconds": s, "x_fwd_bwd": s / base})
            except spixel.errors.SpixelError as e:
                rows.append({"method": label, "error": str(e).splitlines()[0][:100]})
        report[name] = rows
        print(f"\n## {name} — batch {a.batch}, {a.size} px, {device}")
        print("| method | seconds | × forward+backward |\n|---|---|---|")
        for r in rows:
            if "error" in r:
                print(f"| {r['method']} | refused: {r['error']} | |")
            else:
                print(f"| {r['method']} | {r['seconds']:.3f} | {r['x_fwd_bwd']:.1f} |")
        if name == "resnet50" and not a.no_zennit:
            with spixel.models.state.frozen(model.module):
                zr = zennit_comparison(model.module, x, t, device, a.repeat)
            report["zennit_resnet50"] = zr
            print(f"\n## lrp vs Zennit on ResNet-50 — batch {a.batch}, {a.size} px, {device}, same run")
            print("| composite | spixel s | Zennit s | Zennit / spixel | max rel. difference |\n|---|---|---|---|---|")
            for r in zr:
                print(f"| {r['composite']} | {r['spixel_s']:.3f} | {r['zennit_s']:.3f} | {r['speedup']:.2f} | "
                      f"{r['max_rel_diff']:.1e} |")  # fmt: skip
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()

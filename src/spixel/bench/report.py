"""Reports of the bench protocols: JSON (everything), Markdown tables (for the docs), PNG figures and one
self-contained HTML page (the figure embedded, the tables rendered) to open in a browser."""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

GROUPINGS = ("pixel", "slic", "quickshift", "square", "random")


def _f(v: Any, digits: int = 3) -> str:
    return "–" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.{digits}f}"


def _net(arch: str | None, plural: bool = False) -> str:
    """``"vgg"`` → ``"VGG-style model"`` (the architectures of :mod:`spixel.train.nets`)."""
    name = {"resnet": "ResNet-style ", "vgg": "VGG-style "}.get(arch or "", "")
    return f"{name}model{'s' if plural else ''}"


def stability_markdown(result: dict[str, Any]) -> str:
    """The tables of :func:`spixel.bench.stability.run_stability` as Markdown."""
    st = result["settings"]
    seg = st["segments"]
    archs = st.get("archs", {})
    lines = [
        "## Stability across disjoint halves (paper 000's protocol)",
        "",
        f"SSIM (protocol B) between the maps of two {_net(archs.get('halves'), True)} trained on disjoint halves, on "
        f"{st['n_test']} held-out images, explaining the label. Mean ± s.e.m.; higher is more stable. Grouped = the "
        "signed map averaged over each region (`P_G`, mean, joint channels). Mean segments per image: "
        + ", ".join(f"{k} {v:.0f}" for k, v in seg.items())
        + ".",
        "",
        "| method | " + " | ".join(GROUPINGS) + " |",
        "|---" * (len(GROUPINGS) + 1) + "|",
    ]
    rows = {(r["method"], r["grouping"]): r for r in result["ssim"]}
    for m in dict.fromkeys(r["method"] for r in result["ssim"]):
        cells = [
            f"{_f(rows[m, g]['ssim'])} ± {_f(rows[m, g]['ssim_sem'])}" if (m, g) in rows else "–" for g in GROUPINGS
        ]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += ["", "Top-10 % intersection of the same pairs of maps (signed, spec §1.6):", ""]
    lines += ["| method | " + " | ".join(GROUPINGS) + " |", "|---" * (len(GROUPINGS) + 1) + "|"]
    for m in dict.fromkeys(r["method"] for r in result["ssim"]):
        lines.append(
            f"| {m} | " + " | ".join(_f(rows[m, g]["topk"]) if (m, g) in rows else "–" for g in GROUPINGS) + " |"
        )
    lines += ["", "Mean L2 distance between the two models' signed maps, each scaled to norm 1 (lower = closer):", ""]
    lines += ["| method | " + " | ".join(GROUPINGS) + " |", "|---" * (len(GROUPINGS) + 1) + "|"]
    for m in dict.fromkeys(r["method"] for r in result["ssim"]):
        cells = [_f(rows[m, g].get("l2_unit")) if (m, g) in rows else "–" for g in GROUPINGS]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    mrows = {(r["method"], r["grouping"]): r for r in result["mege"]}
    n_mege = result["mege"][0]["n"] if result["mege"] else 0
    lines += [
        "",
        "## MeGe / ReCo across fold models",
        "",
        f"{result['settings'].get('k_folds', 'k')} fold {_net(archs.get('folds'), True)} (each trained on all "
        "folds but one), "
        f"{n_mege} training images, each unseen by exactly one model. MeGe ∈ (0, 1], higher = more consistent "
        "explanations between models that agree (xplique's definition).",
        "",
        "| method | " + " | ".join(f"MeGe {g}" for g in GROUPINGS) + " | ReCo pixel | ReCo slic |",
        "|---" * (len(GROUPINGS) + 3) + "|",
    ]
    for m in dict.fromkeys(r["method"] for r in result["mege"]):
        cells = [_f(mrows[m, g]["mege"]) if (m, g) in mrows else "–" for g in GROUPINGS]
        reco = [_f(mrows[m, g]["reco"]) if (m, g) in mrows else "–" for g in ("pixel", "slic")]
        lines.append(f"| {m} | " + " | ".join(cells + reco) + " |")
    loc = result["localization"]
    tol = loc[0]["tolerance_px"] if loc else 0
    lines += [
        "",
        "## Localisation against the exact evidence",
        "",
        f"Pointing game (tolerance {tol:.1f} px = 15 px at 224 scaled to the input) against the evidence mask, "
        f"and MaxBoxAccV2 against its box, on the single {_net(archs.get('single'))}, explaining the label.",
        "",
        "| method | pointing game | MaxBoxAccV2 |",
        "|---|---|---|",
    ]
    lines += [f"| {r['method']} | {_f(r['pointing_game'])} | {_f(r['max_box_acc_v2'])} |" for r in loc]
    ev = result["evidence"]
    lines += [
        "",
        "## Evidence check",
        "",
        "True-class probability of the single model when the evidence mask is filled with the mean colour, versus the "
        f"same mask shape moved onto background (equal area, no overlap with the evidence); {ev[0]['n']} held-out "
        "images.",
        "",
        "| condition | mean p(true class) | accuracy |",
        "|---|---|---|",
    ]
    lines += [f"| {r['condition']} | {_f(r['p_true'])} | {_f(r['accuracy'])} |" for r in ev]
    acc = st.get("accuracy", {})
    if acc:
        lines += ["", "Held-out accuracy of the models: " + ", ".join(f"{k} {v:.3f}" for k, v in acc.items()) + "."]
    lines += ["", f"Run time: {result.get('seconds', 0):.0f} s."]
    return "\n".join(lines) + "\n"


def stability_figure(result: dict[str, Any], path: str | Path) -> Path:
    """Bar chart: SSIM per method, pixel versus each partition."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(dict.fromkeys(r["method"] for r in result["ssim"]))
    rows = {(r["method"], r["grouping"]): r for r in result["ssim"]}
    fig, ax = plt.subplots(figsize=(8, 3.4), dpi=120)
    width = 0.8 / len(GROUPINGS)
    for j, g in enumerate(GROUPINGS):
        vals = [rows[m, g]["ssim"] if (m, g) in rows else np.nan for m in methods]
        err = [rows[m, g]["ssim_sem"] if (m, g) in rows else 0 for m in methods]
        ax.bar(np.arange(len(methods)) + (j - 2) * width, vals, width, yerr=err, label=g, capsize=2)
    ax.set_xticks(np.arange(len(methods)), [m.replace("_", " ") for m in methods], fontsize=8)
    ax.set_ylabel("SSIM between disjoint-half models")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, ncol=5, loc="upper center", bbox_to_anchor=(0.5, 1.15), frameon=False)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def _inline(text: str) -> str:
    """Escape ``text`` for HTML, then render the Markdown we write ourselves: ``code`` and **bold**."""
    t = html.escape(text)
    t = re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", t)


def markdown_html(md: str) -> str:
    """The subset of Markdown :func:`stability_markdown` writes (``#`` headings, pipe tables, paragraphs) as HTML."""
    out: list[str] = []
    table: list[list[str]] = []

    def flush() -> None:
        if table:
            head, body = table[0], [r for r in table[1:] if not all(set(c) <= set("-: ") for c in r)]
            out.append("<table><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in head) + "</tr>")
            out.extend("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in body)
            out.append("</table>")
            table.clear()

    for line in md.splitlines():
        if line.startswith("|"):
            table.append([c.strip() for c in line.strip().strip("|").split("|")])
            continue
        flush()
        m = re.match(r"(#{1,6}) (.*)", line)
        if m:
            level = len(m.group(1))
            out.append(f"<h{level}>{_inline(m.group(2))}</h{level}>")
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
    flush()
    return "\n".join(out)


def stability_html(result: dict[str, Any], figure: str | Path) -> str:
    """One self-contained page: the SSIM figure (embedded PNG) and every table of :func:`stability_markdown`."""
    png = base64.b64encode(Path(figure).read_bytes()).decode("ascii")
    style = (
        "body{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.4}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:right}"
        "td:first-child,th:first-child{text-align:left}img{max-width:100%}"
    )
    return (
        '<!doctype html><html><head><meta charset="utf-8"><title>spixel bench stability</title>'
        f"<style>{style}</style></head><body><h1>spixel bench stability</h1>"
        f'<img alt="SSIM between the disjoint-half models, pixel versus grouped" src="data:image/png;base64,{png}">'
        f"{markdown_html(stability_markdown(result))}</body></html>\n"
    )


def write_stability_report(result: dict[str, Any], out: str | Path) -> dict[str, Path]:
    """``stability.json``, ``stability.md``, ``stability.png`` and ``stability.html`` in ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "stability.json", "markdown": out / "stability.md", "figure": out / "stability.png"}
    paths["html"] = out / "stability.html"
    paths["json"].write_text(json.dumps(result, indent=1, default=str), encoding="utf-8")
    paths["markdown"].write_text(stability_markdown(result), encoding="utf-8")
    stability_figure(result, paths["figure"])
    paths["html"].write_text(stability_html(result, paths["figure"]), encoding="utf-8")
    return paths

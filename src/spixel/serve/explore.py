"""Page 1 — explore one image: a photo (bundled, uploaded or a path), a model, its top-5, several methods over
optional regions, their overlays side by side with a colour bar, deletion / insertion curves and SSIM.

Query parameters preset the first view (a shareable link): ``?sample=chelsea&methods=saliency,gradcam&regions=slic
&n_segments=80``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import streamlit as st

from . import _ui, compute

DEFAULT_METHODS = ("saliency", "integrated_gradients", "gradcam")
NO_REGIONS = "none (pixel maps)"
SOURCES = ("bundled photo", "upload", "path")
MODES = ("auto", "signed", "absolute")


# ------------------------------------------------------------------------------------------------- cached work
@st.cache_data(show_spinner=False, max_entries=32)
def _crop(model_key: tuple, image: np.ndarray) -> np.ndarray:
    return _ui.model(*model_key).crop(image)


@st.cache_data(show_spinner=False, max_entries=64)
def _top5(model_key: tuple, crop: np.ndarray) -> list[tuple[int, str, float]]:
    return compute.top_k(_ui.model(*model_key), crop, 5)


@st.cache_data(show_spinner=False, max_entries=256)
def _explain(
    model_key: tuple, crop: np.ndarray, method: str, target: int, params: str, regions: str, seed: int
) -> compute.Map:
    import json

    reg = json.loads(regions)
    return compute.explain_crop(
        _ui.model(*model_key),
        crop,
        method,
        target,
        json.loads(params),
        None if reg is None else (reg[0], reg[1]),
        seed,
    )


@st.cache_data(show_spinner=False, max_entries=256)
def _curves(model_key: tuple, crop: np.ndarray, m: compute.Map, target: int, n_steps: int) -> dict:
    return compute.curves_of(_ui.model(*model_key), crop, m, target, compute.CURVE_METRICS, n_steps)


@st.cache_data(show_spinner=False, max_entries=256)
def _overlay(crop: np.ndarray, m: compute.Map, mode: str, boundaries: bool, title: str) -> np.ndarray:
    return compute.render(crop, m, mode=mode, boundaries=boundaries, title=title)


@st.cache_data(show_spinner=False, max_entries=64)
def _ssim(maps: dict[str, np.ndarray]) -> Any:
    return compute.ssim_matrix(maps)


@st.cache_data(show_spinner=False, max_entries=16)
def _sample(name: str) -> np.ndarray:
    return compute.sample_image(name)


@st.cache_data(show_spinner=False, max_entries=16)
def _upload(data: bytes, name: str) -> np.ndarray:
    return compute.decode_upload(data, name)


@st.cache_data(show_spinner=False, max_entries=16)
def _path(path: str, mtime: float) -> np.ndarray:
    return compute.image_from_path(path)


# ------------------------------------------------------------------------------------------------- the page
def _query_list(name: str) -> list[str] | None:
    v = st.query_params.get(name)
    return [s.strip() for s in v.split(",") if s.strip()] if v else None


def _image(source: str) -> tuple[np.ndarray, str] | None:
    """The chosen image and a name for it, or ``None`` (nothing chosen yet); errors are messages."""
    from ..data import sample_names

    if source == "upload":
        up = st.file_uploader(
            f"Image file (PNG, JPEG, TIFF, BMP, WebP; at most {compute.MAX_UPLOAD_MB} MB)",
            type=["png", "jpg", "jpeg", "tif", "tiff", "bmp", "webp"],
            key="upload",
        )
        if up is None:
            return None
        data = up.getvalue()
        with _ui.shown_errors("upload"):
            return _upload(data, up.name), up.name
    if source == "path":
        p = st.text_input("Image path (on the machine running spixel serve)", key="path")
        if not p.strip():
            return None
        import os

        full = os.path.expanduser(p.strip())
        with _ui.shown_errors("image"):
            mtime = os.path.getmtime(full) if os.path.isfile(full) else 0.0
            return _path(full, mtime), os.path.basename(full)
    names = sample_names()
    wanted = st.query_params.get("sample")
    name = st.selectbox("Photo", names, index=names.index(wanted) if wanted in names else 0, key="sample")
    return _sample(name), name


def _sidebar() -> dict[str, Any]:
    from ..api import list_methods, list_segmenters

    s: dict[str, Any] = {}
    with st.sidebar:
        st.subheader("Model")
        s["model"] = st.text_input(
            "Model",
            value=compute.env("model", "efficientnet_lite0"),
            help="a name from `spixel list models` (efficientnet_lite0/1/2 carry weights), `torchvision:resnet50`, "
            "`timm:NAME`, or a checkpoint written by spixel train",
            key="model",
            disabled=compute.remote(),
        )
        s["weights"] = st.text_input(
            "Weights file",
            value=compute.env("weights", ""),
            help="a local state_dict for torchvision:/timm:",
            key="w",
            disabled=compute.remote(),
        )
        st.subheader("Image")
        sources = SOURCES[:2] if compute.remote() else SOURCES  # no server paths for visitors from elsewhere
        s["source"] = st.radio("Source", sources, horizontal=True, key="source", label_visibility="collapsed")
        s["image"] = _image(s["source"])

        st.subheader("Methods")
        known = list_methods()
        wanted = [m for m in (_query_list("methods") or DEFAULT_METHODS) if m in known]
        s["methods"] = st.multiselect("Methods", known, default=wanted, key="methods")
        s["params"] = {}
        for m in s["methods"]:
            defaults = compute.method_defaults(m)
            if compute.editable_params(defaults):
                with st.expander(f"{m} parameters"):
                    s["params"][m] = _ui.param_widgets(f"m:{m}", defaults, sliders={"n_segments": (10, 1000)})
            else:
                s["params"][m] = {}

        st.subheader("Regions")
        segs = [NO_REGIONS, *list_segmenters()]
        q = st.query_params.get("regions")
        reg = st.selectbox(
            "Explain over regions",
            segs,
            index=segs.index(q) if q in segs else 0,
            key="regions",
            help="grouped methods average their map over each region; region methods (LIME, occlusion, XRAI) "
            "use the regions as their own",
        )
        s["regions"] = None
        if reg != NO_REGIONS:
            defaults = compute.segmenter_defaults(reg)
            if "n_segments" in defaults and st.query_params.get("n_segments", "").isdigit():
                defaults["n_segments"] = int(st.query_params["n_segments"])
            main = {k: v for k, v in defaults.items() if k in ("n_segments", "size")}
            rest = {k: v for k, v in defaults.items() if k not in main}
            vals = _ui.param_widgets(f"s:{reg}", main, sliders={"n_segments": (2, 1000), "size": (2, 64)})
            if compute.editable_params(rest):
                with st.expander(f"{reg} parameters"):
                    vals.update(_ui.param_widgets(f"s:{reg}", rest))
            s["regions"] = (reg, vals)

        st.subheader("Display")
        s["mode"] = st.radio(
            "Map values", MODES, horizontal=True, key="mode", help="auto: signed maps diverging, others sequential"
        )
        s["boundaries"] = st.checkbox("Region boundaries", value=True, key="boundaries")
        s["curves"] = st.checkbox("Deletion / insertion curves", value=True, key="curves")
        s["n_steps"] = st.slider("Curve steps", 8, 100, 24, key="n_steps", disabled=not s["curves"])
        s["seed"] = int(st.number_input("Seed", min_value=0, value=0, step=1, key="seed"))
    return s


def render() -> None:
    st.title("Explore one image")
    s = _sidebar()
    model_key = (s["model"].strip(), s["weights"].strip() or None, _ui.device())
    with _ui.shown_errors("model"):
        model = _ui.model(*model_key)
    if s["image"] is None:
        st.info("Choose an image in the sidebar: upload one or give its path.")
        return
    image, image_name = s["image"]
    with _ui.shown_errors("image"):
        crop = _crop(model_key, image)
        preds = _top5(model_key, crop)

    left, right = st.columns([1, 2], gap="large")
    with left:
        st.image(crop, caption=f"{image_name} — {model.name}'s input ({crop.shape[1]}×{crop.shape[0]} crop)")
    with right:
        import pandas as pd

        st.markdown("**Top-5 predictions**")
        st.dataframe(
            pd.DataFrame(
                {"class": [k for k, _, _ in preds], "label": [lab for _, lab, _ in preds], "p": [p for *_, p in preds]}
            ),
            hide_index=True,
            column_config={"p": st.column_config.ProgressColumn("probability", min_value=0.0, max_value=1.0)},
            key="top5",
        )
        target = st.selectbox(
            "Class to explain",
            [k for k, _, _ in preds],
            format_func=lambda k: f"{k} · {model.label(k)} ({dict((a, c) for a, _, c in preds)[k]:.1%})",
            key="target",
        )
    if not s["methods"]:
        st.info("Choose one or more methods in the sidebar.")
        return

    regions_json = _ui.canonical(None if s["regions"] is None else list(s["regions"]))
    maps: dict[str, compute.Map] = {}
    errors: dict[str, str] = {}
    curves: dict[str, dict[str, compute.Curve]] = {}
    n = len(s["methods"])
    bar = st.progress(0.0, text="explaining …")
    for i, m in enumerate(s["methods"]):
        bar.progress(i / n, text=f"{m}: explaining ({i + 1}/{n}) …")
        try:
            maps[m] = _explain(model_key, crop, m, int(target), _ui.canonical(s["params"][m]), regions_json, s["seed"])
            if s["curves"]:
                bar.progress((i + 0.5) / n, text=f"{m}: deletion and insertion curves ({i + 1}/{n}) …")
                curves[m] = _curves(model_key, crop, maps[m], int(target), s["n_steps"])
        except Exception as e:  # one method failing leaves the others on the page
            errors[m] = _ui.one_line(e)
    bar.empty()
    for m, err in errors.items():
        st.error(f"{m}: {err}")
    if not maps:
        return

    st.subheader(f"Explaining “{model.label(int(target))}” (class {int(target)})")
    per_row = min(3, len(maps))
    names = list(maps)
    for r in range(0, len(names), per_row):
        cols = st.columns(per_row)
        for col, m in zip(cols, names[r : r + per_row], strict=False):
            mp = maps[m]
            title = m
            if mp.num_regions is not None:
                title += f" · {mp.num_regions} regions"
            if m in curves:
                c = curves[m]
                title += f"\ndeletion {c['deletion'].score:.3f} ↓ · insertion {c['insertion'].score:.3f} ↑"
            col.image(_overlay(crop, mp, s["mode"], s["boundaries"], title), width="stretch")

    import pandas as pd

    table = pd.DataFrame(
        {
            "method": names,
            "regions": [maps[m].num_regions for m in names],
            **(
                {
                    "deletion ↓": [curves[m]["deletion"].score for m in names],
                    "insertion ↑": [curves[m]["insertion"].score for m in names],
                }
                if curves and all(m in curves for m in names)
                else {}
            ),
            "time": [maps[m].seconds for m in names],
        }
    )
    if curves:
        st.markdown(
            "**Deletion and insertion curves** (the class's probability as its most relevant pixels go or come)"
        )
        st.pyplot(compute.curves_figure(curves), clear_figure=False)
    c1, c2 = st.columns([5, 4], gap="large")
    with c1:
        st.markdown("**Scores**")
        st.dataframe(
            table,
            hide_index=True,
            column_config={
                "regions": st.column_config.NumberColumn(width="small"),
                "time": st.column_config.NumberColumn(format="%.1f s", width="small", help="seconds to explain"),
                "deletion ↓": st.column_config.NumberColumn(format="%.4f"),
                "insertion ↑": st.column_config.NumberColumn(format="%.4f"),
            },
            key="scores",
        )
    with c2:
        if len(maps) > 1:
            st.markdown("**SSIM between the maps** (PAIR's protocol B)")
            sim = _ssim({m: maps[m].attribution for m in names})
            st.dataframe(
                sim.style.format("{:.3f}").background_gradient(cmap="Greens", vmin=0, vmax=1),
                column_config={m: st.column_config.NumberColumn(width="small") for m in names},
                key="ssim",
            )

"""Page 2 — browse a results store written by ``spixel run``: pick a run, its method × metric table (mean ± 95 %
Student-t CI, as at the end of ``spixel run``), items sorted and filtered by any score, one item's image, maps
(from the map cache when the run kept one, else recomputed on demand) and curves, and the failed items."""

from __future__ import annotations

import contextlib
import os
from typing import Any

import numpy as np
import streamlit as st

from ..errors import SpixelError
from . import _ui, compute


# ------------------------------------------------------------------------------------------------- cached reads
def _mtime(path: str) -> float:
    """The store's change time (its WAL included), so cached reads refresh while a run is writing."""
    t = 0.0
    for p in (path, path + "-wal"):
        with contextlib.suppress(OSError):
            t = max(t, os.path.getmtime(p))
    return t


@st.cache_data(show_spinner=False, max_entries=16)
def _runs(path: str, mtime: float) -> list[Any]:
    from ..experiments import Store

    with Store(path) as s:
        return s.runs()


@st.cache_data(show_spinner=False, max_entries=32)
def _scores(path: str, run_id: int, mtime: float) -> list[tuple]:
    from ..experiments import Store

    with Store(path) as s:
        return s.scores(run_id)


@st.cache_data(show_spinner="computing the report's statistics …", max_entries=32)
def _report(path: str, run_id: int, mtime: float) -> Any:
    from ..experiments import Store

    with Store(path) as s:
        return compute.report_of(s, s.run(run_id))


@st.cache_data(show_spinner=False, max_entries=32)
def _failures(path: str, run_id: int, mtime: float) -> list[tuple[str, str]]:
    from ..experiments import Store

    with Store(path) as s:
        return s.failures(run_id)


@st.cache_data(show_spinner=False, max_entries=64)
def _item(path: str, run_id: int, item: str, mtime: float) -> tuple[dict | None, list[tuple], dict]:
    from ..experiments import Store

    with Store(path) as s:
        return compute.item_info(s, run_id, item), compute.item_rows(s, run_id, item), s.axes(run_id)


@st.cache_data(show_spinner=False, max_entries=64)
def _prepared(model_key: tuple, dataset: str, item: str) -> Any:
    return compute.item_crop(_ui.model(*model_key), dataset, item)


@st.cache_data(show_spinner=False, max_entries=64)
def _maps(
    model_key: tuple, where: str, _exp: Any, exp_hash: str, _prepared: Any, item: str, target: int, cache: str, go: bool
) -> dict[str, compute.Map | None]:
    return compute.item_maps(_ui.model(*model_key), _exp, _prepared, target, cache or None, compute=go)


# ------------------------------------------------------------------------------------------------- the page
def _sidebar() -> tuple[str, str]:
    with st.sidebar:
        st.subheader("Results store")
        path = st.text_input(
            "Store (SQLite file written by spixel run)",
            value=compute.env("store", ""),
            key="store",
            disabled=compute.remote(),
        ).strip()
        cache = st.text_input(
            "Map cache folder (spixel run --cache-maps)",
            value=compute.env("cache_maps", ""),
            key="cache_maps",
            disabled=compute.remote(),
            help="where the run kept its maps; without one, an item's maps are recomputed on demand",
        ).strip()
    return os.path.expanduser(path), os.path.expanduser(cache)


def render() -> None:
    st.title("Browse a results store")
    path, cache = _sidebar()
    if not path:
        st.info("Give a results store in the sidebar (or start with `spixel serve --store S.db`).")
        return
    mtime = _mtime(path)
    with _ui.shown_errors("store"):
        runs = _runs(path, mtime)
    if not runs:
        st.warning(f"{path} holds no run yet: spixel run EXPERIMENT --data DATASET --store {path}")
        return
    with st.sidebar:
        run = st.selectbox("Run", runs[::-1], format_func=compute.run_label, key="run", help="the latest run first")
    st.caption(
        f"run {run.run_id} **{run.name}** · model `{run.model}` · data `{run.dataset}` · {run.status} · "
        f"{run.done} done, {run.failed} failed · config {run.config_hash} · started {run.started}"
        + (f", finished {run.finished}" if run.finished else "")
    )
    proto = run.config.get("protocol") or {}
    if proto:
        where = ", ".join(str(proto[k]) for k in ("paper", "table") if proto.get(k))
        st.info(f"protocol **{proto.get('name', run.name)}**" + (f" — {where}" if where else ""))
    rows = _scores(path, run.run_id, mtime)
    failures = _failures(path, run.run_id, mtime)
    if rows:
        dirs = compute.directions(run, sorted({r[3] for r in rows}))
        st.subheader("Methods × metrics")
        ci = st.radio(
            "Confidence intervals",
            ["bootstrap (as spixel report)", "Student t (as spixel run)"],
            horizontal=True,
            key="ci",
            label_visibility="collapsed",
        )
        if ci.startswith("bootstrap"):
            rep = _report(path, run.run_id, mtime)
            st.caption(
                "mean [95 % percentile-bootstrap CI] n over the items; ★ best per column; ≈ tied with the best "
                "(Wilcoxon signed-rank over paired items, α = 0.05); ↑/↓ higher/lower is better"
            )
            st.dataframe(compute.report_table(rep), key="summary")
            if rep.claims:
                import pandas as pd

                st.markdown("**Claims of the protocol**")
                st.dataframe(
                    pd.DataFrame(
                        [(c.text, c.metric, c.verdict, c.test) for c in rep.claims],
                        columns=["claim", "metric", "verdict", "test"],
                    ),
                    hide_index=True,
                    key="claims",
                )
            for u in rep.unmatched:
                st.caption(f"⚠ {u}")
        else:
            table, _ = compute.summary_table(rows, dirs)
            st.caption("mean ± half-width of the 95 % confidence interval (Student t over items) (n items)")
            st.dataframe(table, key="summary")
        _items(path, cache, run, rows, mtime, dirs)
    else:
        st.info("This run has no scores yet.")
    _failed(failures)


def _pick_row() -> None:
    """A click on a row of the items table selects that item."""
    event = st.session_state.get("items")
    rows = list(event["selection"]["rows"]) if event else []
    order = st.session_state.get("_item_order", [])
    if rows and 0 <= rows[0] < len(order):
        st.session_state["item"] = order[rows[0]]


def _items(path: str, cache: str, run: Any, rows: list[tuple], mtime: float, directions: dict[str, bool]) -> None:
    st.subheader("Items")
    wide = compute.item_table(rows)
    cols = list(wide.columns)
    c1, c2, c3 = st.columns([3, 2, 3])
    by = c1.selectbox("Sort by", cols, key="sort_by")
    metric = by.rsplit(" · ", 1)[-1]
    hib = directions.get(metric)
    orders = ["worst first", "best first"] if hib is not None else ["ascending", "descending"]
    order = c2.radio("Order", orders, horizontal=True, key="order")
    ascending = (order == "ascending") if hib is None else ((order == "worst first") == hib)
    vals = wide[by].dropna()
    lo, hi = (float(vals.min()), float(vals.max())) if len(vals) else (0.0, 1.0)
    if hi > lo:
        rng = c3.slider("Keep items with a score in", lo, hi, (lo, hi), key=f"range:{by}", format="%.4f")
    else:
        rng = (lo, hi)
    text = st.text_input("Item id contains", key="item_filter")
    view = wide[(wide[by] >= rng[0] - 1e-12) & (wide[by] <= rng[1] + 1e-12)] if len(vals) else wide
    if text.strip():
        view = view[view.index.str.contains(text.strip(), regex=False)]
    view = view.sort_values(by, ascending=ascending, na_position="last")
    st.caption(f"{len(view)} of {len(wide)} item(s)")
    st.session_state["_item_order"] = list(view.index)
    st.dataframe(
        view,
        height=min(38 + 35 * len(view), 320),
        key="items",
        column_config={c: st.column_config.NumberColumn(format="%.4f") for c in cols},
        on_select=_pick_row,
        selection_mode="single-row",
    )
    if view.empty:
        return
    if st.session_state.get("item") not in st.session_state["_item_order"]:
        st.session_state.pop("item", None)  # filtered away: the first item of the new view
    item = st.selectbox("Item (or click a row above)", list(view.index), key="item")
    _detail(path, cache, run, item, mtime)


def _detail(path: str, cache: str, run: Any, item: str, mtime: float) -> None:
    info, rows, axes = _item(path, run.run_id, item, mtime)
    if info is None:
        st.warning(f"{item} is not in run {run.run_id}")
        return
    st.subheader(f"Item {item}")
    with _ui.shown_errors("run configuration"):
        exp = compute.experiment_of(run)
    model_key = (run.model, exp.weights, _ui.device())
    target = int(info["target"]) if info["target"] is not None else None
    left, right = st.columns([1, 3], gap="large")
    prepared = None
    model = None
    try:
        model = _ui.model(*model_key)
        prepared = _prepared(model_key, run.dataset, item)
    except Exception as e:  # the model or the data moved away: the scores and curves still show
        left.warning(f"the item's image is not available here: {_ui.one_line(e)}")
    with left:
        if prepared is not None:
            from ..viz import draw_boxes

            img = (
                draw_boxes(prepared.crop, prepared.boxes_for(target))
                if prepared.boxes and target is not None
                else prepared.crop
            )
            st.image(
                img,
                caption="the model's input" + (" with the annotated box" if prepared.boxes else ""),
                width="stretch",
            )
        if model is not None and target is not None:
            lbl = ", ".join(model.label(int(k)) for k in info["labels"]) or "—"
            st.markdown(
                f"explained class **{model.label(target)}** ({target}), p = {info['probability']:.3f}  \n"
                f"predicted **{model.label(int(info['predicted']))}** · labels: {lbl}"
            )
    with right:
        import pandas as pd

        vals = pd.DataFrame(
            [(compute.method_label(m, r), mt, v, s) for m, r, mt, v, s, _ in rows],
            columns=["method", "metric", "value", "status"],
        )
        if not vals.empty:
            piv = vals.pivot_table(index="method", columns="metric", values="value", aggfunc="first")
            st.dataframe(piv.style.format("{:.4f}", na_rep="n/a"), key="item_scores")
        curves = compute.store_curves(rows, axes)
        if curves:
            st.pyplot(compute.curves_figure(curves, title_suffix=f" — {item}", panel=(3.6, 2.7)), clear_figure=False)
    if prepared is None or target is None:
        return
    _item_maps(model_key, exp, run, prepared, item, target, cache)


def _item_maps(model_key: tuple, exp: Any, run: Any, prepared: Any, item: str, target: int, cache: str) -> None:
    st.markdown("**Maps**")
    flag = f"recompute:{run.run_id}:{item}"
    go = bool(st.session_state.get(flag))
    try:
        maps = _maps(model_key, f"{run.run_id}:{run.dataset}", exp, exp.hash, prepared, item, target, cache, go)
    except SpixelError as e:
        st.error(f"maps: {_ui.one_line(e)}")
        return
    except Exception as e:
        st.error(f"maps failed: {_ui.one_line(e)}")
        return
    missing = [k for k, v in maps.items() if v is None]
    if missing:
        where = f"in {cache}" if cache else "(the run kept no map cache, or none was given)"
        st.caption(f"{len(missing)} map(s) not cached {where}: {', '.join(missing)}")
        if st.button("Recompute the missing maps (as the run did: same seeds, regions, parameters)", key="recompute"):
            st.session_state[flag] = True
            st.rerun()
    shown = {k: v for k, v in maps.items() if v is not None}
    if not shown:
        return
    per_row = min(4, len(shown))
    names = list(shown)
    for r in range(0, len(names), per_row):
        cols = st.columns(per_row)
        for col, k in zip(cols, names[r : r + per_row], strict=False):
            mp = shown[k]
            title = k + (f" · {mp.num_regions} regions" if mp.num_regions else "") + (" · cached" if mp.cached else "")
            col.image(_render(prepared.crop, mp, title), width="stretch")


@st.cache_data(show_spinner=False, max_entries=128)
def _render(crop: np.ndarray, m: compute.Map, title: str) -> np.ndarray:
    return compute.render(crop, m, title=title, size=384)


def _failed(failures: list[tuple[str, str]]) -> None:
    if not failures:
        return
    import pandas as pd

    st.subheader(f"Failed items ({len(failures)})")
    st.dataframe(pd.DataFrame(failures, columns=["item", "reason"]), hide_index=True, key="failed")

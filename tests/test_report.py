"""``spixel report``: the HTML page's numbers equal the store's (parsed from its ``data-`` attributes and checked
against means computed here from sqlite3 rows), seeded bootstrap CIs, claim verdicts on stores whose answer is
known, Kendall τ, the Markdown form, failed items, the gallery from a map cache, the CLI, and a headless-Chromium
screenshot of the page."""

from __future__ import annotations

import json
import math
import os
import shutil
import sqlite3
import subprocess
from collections import defaultdict
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from spixel.cli import main
from spixel.experiments import Store, from_dict, run_local
from spixel.experiments.report import FAILS, HOLDS, INCONCLUSIVE, build_report, kendall_tau, paired_test, write_report
from spixel.experiments.store import ItemRecord
from spixel.experiments.summary import bootstrap_ci
from test_experiments import smooth_model

CHROMIUM = "/usr/bin/chromium"


class Tags(HTMLParser):
    """Every start tag of a page with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def having(self, key: str, cls: str | None = None) -> list[dict[str, str]]:
        return [a for _t, a in self.tags if key in a and (cls is None or cls in a.get("class", "").split())]


def parse(path: Path) -> Tags:
    p = Tags()
    p.feed(path.read_text(encoding="utf-8"))
    return p


# ------------------------------------------------------------------------------------------------- a real run
@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """A small real run (synthetic data, the smooth net, its maps cached) plus one failed item written by hand."""
    d = tmp_path_factory.mktemp("real")
    exp = from_dict(
        {
            "experiment": {"name": "tiny", "model": "smooth", "seed": 1},
            "method": [
                {"name": "saliency"},
                {"name": "gradcam", "regions": "slic:n_segments=16"},
                {"name": "centre_map"},
            ],
            "metric": [
                {"name": "deletion", "params": {"n_steps": 6}},
                {"name": "insertion", "params": {"n_steps": 6}},
                {"name": "pointing_game"},
            ],
        }
    )
    store, cache = d / "s.db", d / "cache"
    model = smooth_model()
    r = run_local(exp, "synthetic:6", store, model=model, cache_maps=cache, progress=False, on_warning=lambda _: None)
    with Store(store, writer=True) as st:
        st.write(r.run_id, [ItemRecord("synthetic/broken", "failed", error="BadImageError: truncated file")])
    return store, cache, model


def test_html_cells_equal_the_store(real, tmp_path):
    store, _cache, _model = real
    out = write_report(store, tmp_path / "r.html")
    page = parse(out)
    con = sqlite3.connect(store)
    acc: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for method, regions, metric, value in con.execute(
        "SELECT method, regions, metric, value FROM results WHERE run_id = 1 AND status = 'ok'"
    ):
        acc[(method, regions, metric)].append(value)
    con.close()
    cells = {(a["data-method"], a["data-regions"], a["data-metric"]): a for a in page.having("data-mean", "cell")}
    assert set(cells) == set(acc) and len(cells) == 9
    for k, vals in acc.items():
        c = cells[k]
        assert float(c["data-mean"]) == pytest.approx(sum(vals) / len(vals), rel=1e-12, abs=1e-12)
        assert int(c["data-n"]) == len(vals) == 6
        assert float(c["data-lo"]) <= float(c["data-mean"]) <= float(c["data-hi"])
    for metric, lower in (("deletion", True), ("insertion", False), ("pointing_game", False)):
        col = {k: float(a["data-mean"]) for k, a in cells.items() if k[2] == metric}
        best = (min if lower else max)(col, key=col.get)
        assert cells[best]["data-mark"] == "best"
        assert sum(cells[k]["data-mark"] == "best" for k in col) == 1
        for k in col:  # a tied cell's p-value is >= alpha, a plain one's below
            mark, p = cells[k]["data-mark"], cells[k]["data-p"]
            if mark != "best":
                assert (float(p) >= 0.05) == (mark == "tied")
                assert "Wilcoxon" in cells[k]["title"]
    # curves for the metrics with curves only; the failed item; self-contained (no script, link or remote source)
    assert {a["data-metric"] for a in page.having("data-metric", "curves")} == {"deletion", "insertion"}
    assert [a["data-item"] for a in page.having("data-item", "failed")] == ["synthetic/broken"]
    text = out.read_text(encoding="utf-8")
    assert "truncated file" in text and "<script" not in text and "<link" not in text
    assert not any(
        v.startswith(("http:", "https:", "//")) for _t, a in page.tags for k, v in a.items() if k in ("src", "href")
    )
    assert "@media print" in text
    # provenance
    assert "config hash" in text and "dataset fingerprint" in text and "synthetic:6" in text
    with Store(store) as st:
        fp = st.db.execute("SELECT dataset_fingerprint FROM runs WHERE run_id = 1").fetchone()[0]
    assert fp and fp in text
    assert not page.having("data-kind")  # no map cache given: no gallery


def test_gallery_from_the_map_cache(real, tmp_path):
    store, cache, model = real
    page = parse(write_report(store, tmp_path / "g.html", cache_maps=cache, model=model, gallery_k=2))
    tiles = page.having("data-kind", "tile")
    by_method = defaultdict(list)
    for t in tiles:
        by_method[t["data-method"]].append((t["data-kind"], t["data-item"]))
    assert set(by_method) == {"saliency", "gradcam", "centre_map"}
    assert all([k for k, _ in v] == ["best", "best", "worst", "worst"] for v in by_method.values())
    imgs = [a["src"] for t, a in page.tags if t == "img"]
    assert len(imgs) == len(tiles) == 12 and all(s.startswith("data:image/jpeg;base64,") for s in imgs)
    # the best by deletion (lower is better) of one method really are its lowest scores
    con = sqlite3.connect(store)
    rows = con.execute(
        "SELECT item_id, value FROM results WHERE run_id = 1 AND method = 'saliency' AND metric = 'deletion' "
        "ORDER BY value, item_id"
    ).fetchall()
    con.close()
    assert [i for k, i in by_method["saliency"] if k == "best"] == [rows[0][0], rows[1][0]]
    assert [i for k, i in by_method["saliency"] if k == "worst"] == [rows[-1][0], rows[-2][0]]
    # ranked by another metric (insertion: higher is better); a metric the run lacks is a note
    rep = build_report(store, cache_maps=cache, model=model, gallery_metric="insertion", gallery_k=1)[0]
    ins = rep.cells[("saliency", "")]["insertion"].values
    assert [(t.kind, t.item) for t in rep.gallery[("saliency", "")]] == [
        ("best", max(sorted(ins), key=ins.get)),
        ("worst", min(sorted(ins), key=ins.get)),
    ]
    bad = build_report(store, cache_maps=cache, model=model, gallery_metric="nope")[0]
    assert not bad.gallery and "nope is not scored" in bad.gallery_note
    # a folder that is not the cache: a note, no tiles
    empty = tmp_path / "empty"
    empty.mkdir()
    reps = build_report(store, cache_maps=empty, model=model)
    assert not reps[0].gallery and "none of the maps" in reps[0].gallery_note


def test_bootstrap_is_seeded_and_contains_the_mean():
    rng = np.random.default_rng(5)
    v = rng.exponential(size=40)
    a, b = bootstrap_ci(v, seed=3), bootstrap_ci(v, seed=3)
    assert a == b and a != bootstrap_ci(v, seed=4)
    assert a[0] < v.mean() < a[1]
    assert bootstrap_ci([0.25]) == (0.25, 0.25) and bootstrap_ci([2.0, 2.0]) == (2.0, 2.0)
    assert all(math.isnan(x) for x in bootstrap_ci([]))
    # about 95 % of a normal mean's spread: the half-width is near 1.96 σ/√n
    w = rng.normal(size=400)
    lo, hi = bootstrap_ci(w, n_boot=4000)
    assert (hi - lo) / 2 == pytest.approx(1.96 * w.std(ddof=1) / 20, rel=0.15)


def test_kendall_tau_and_paired_test_by_hand():
    assert kendall_tau([1, 2, 3], [1, 3, 2])[0] == pytest.approx(1 / 3)  # 2 concordant, 1 discordant pair
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1])[0] == pytest.approx(-1.0)
    assert math.isnan(kendall_tau([1.0], [2.0])[0])
    a = {f"i{k}": float(k) for k in range(10)}
    t = paired_test({k: v + 1 for k, v in a.items()}, a)
    assert (t.n, t.larger, t.smaller, t.equal) == (10, 10, 0, 0) and t.p < 0.01 and t.r_plus > t.r_minus
    same = paired_test(a, dict(a))
    assert same.p == 1.0 and same.equal == 10
    assert paired_test(a, {"other": 1.0}).n == 0


# ------------------------------------------------------------------------------------------------- a built store
def built_store(path: Path) -> Path:
    """Methods A, B, C, D and E over 20 items with known scores: A deletes faster (lower) than B on every item,
    C equals A, D is A plus noise (mean +0.001) (inconclusive against A); on insertion A > B > C."""
    noise = np.random.default_rng(0).normal(scale=0.01, size=20)
    noise = noise - noise.mean() + 0.001  # D: A plus noise, slightly worse on average, not significantly
    config = {
        "name": "built",
        "model": "m",
        "weights": None,
        "seed": 0,
        "target": "label",
        "methods": [
            {"name": "saliency", "label": lab, "params": {}, "regions": reg, "channels": "joint"}
            for lab, reg in (("A", None), ("B", None), ("C", None), ("D", None), ("E", "slic"), ("E", "grid"))
        ],
        "metrics": [
            {"name": "deletion", "label": "deletion", "params": {}},
            {"name": "insertion", "label": "ins", "params": {}},
        ],
        "protocol": {
            "name": "p-built",
            "paper": "999",
            "table": "Table 9",
            "published": [
                {"method": "A", "metric": "deletion", "value": 0.11, "note": "the paper's"},
                {"method": "E", "regions": "slic", "metric": "ins", "value": 0.5},
                {"method": "E", "metric": "deletion", "value": 0.3},  # ambiguous: two E rows
                {"method": "Z", "metric": "deletion", "value": 0.3},  # not in the run
            ],
            "claims": [
                {"text": "A deletes faster than B", "metric": "deletion", "better": "A", "worse": "B"},
                {"text": "B deletes faster than A", "metric": "deletion", "better": "B", "worse": "A"},
                {"text": "A deletes faster than C", "metric": "deletion", "better": "A", "worse": "C"},
                {"text": "A inserts better than B", "metric": "ins", "better": "A", "worse": "B"},
                {"text": "B inserts better than A", "metric": "ins", "better": "B", "worse": "A"},
                {"text": "D beats A", "metric": "deletion", "better": "D", "worse": "A"},
                {"text": "E slic beats A", "metric": "deletion", "better": "E", "better_regions": "slic", "worse": "A"},
                {"text": "E beats A", "metric": "deletion", "better": "E", "worse": "A"},
                {"text": "Z beats A", "metric": "deletion", "better": "Z", "worse": "A"},
            ],
        },
    }
    with Store(path, writer=True) as st:
        run, _ = st.open_run(
            name="built", config_hash="h", config=config, model="m", dataset="fake:20", fingerprint="fp"
        )
        recs = []
        for i in range(20):
            base = 0.1 + 0.01 * i
            res = [
                ("A", "", "deletion", base, "ok", None, None),
                ("B", "", "deletion", base + 0.05, "ok", None, None),
                ("C", "", "deletion", base, "ok", None, None),
                ("D", "", "deletion", base + float(noise[i]), "ok", None, None),
                ("E", "slic", "deletion", base + 0.2, "ok", None, None),
                ("E", "grid", "deletion", base + 0.3, "ok", None, None),
                ("A", "", "ins", 0.9 - 0.01 * i, "ok", None, None),
                ("B", "", "ins", 0.7 - 0.01 * i, "ok", None, None),
                ("C", "", "ins", 0.5 - 0.01 * i, "ok", None, None),
            ]
            recs.append(ItemRecord(f"item{i:02d}", "done", target=0, results=res))
        recs.append(ItemRecord("bad", "failed", error="could not decode"))
        st.write(run, recs)
        st.finish_run(run)
    return path


def test_claim_verdicts_on_a_store_with_known_answers(tmp_path):
    store = built_store(tmp_path / "b.db")
    page = parse(write_report(store, tmp_path / "b.html"))
    claims = page.having("data-verdict", "claim")
    verdict = {(c["data-better"], c["data-worse"], c["data-metric"]): c["data-verdict"] for c in claims}
    assert len(claims) == 9
    assert verdict[("A", "B", "deletion")] == HOLDS  # lower deletion on every item
    assert verdict[("B", "A", "deletion")] == FAILS
    assert verdict[("A", "C", "deletion")] == INCONCLUSIVE  # identical scores
    assert verdict[("A", "B", "ins")] == HOLDS  # insertion: higher is better
    assert verdict[("B", "A", "ins")] == FAILS
    assert verdict[("D", "A", "deletion")] == INCONCLUSIVE  # noise around A
    rep = build_report(store)[0]
    by_text = {c.text: c for c in rep.claims}
    assert by_text["E slic beats A"].verdict == FAILS  # E slic is worse than A on every item
    assert by_text["E beats A"].verdict == INCONCLUSIVE and "ambiguous" in by_text["E beats A"].test
    assert "not in this run" in by_text["Z beats A"].test
    assert by_text["A deletes faster than B"].n == 20 and by_text["A deletes faster than B"].p < 1e-4
    # published numbers: beside the matched cells; the rest listed, not dropped
    pub = {
        (a["data-method"], a["data-regions"], a["data-metric"]): float(a["data-published"])
        for a in page.having("data-published")
    }
    assert pub == {("A", "", "deletion"): 0.11, ("E", "slic", "ins"): 0.5}
    assert len(rep.unmatched) == 2 and any("ambiguous" in u for u in rep.unmatched)
    # best and ties: A and C are equal best on deletion (A first); ins has A best, B and C significantly worse
    cells = {(a["data-method"], a["data-regions"], a["data-metric"]): a for a in page.having("data-n", "cell")}
    assert cells[("A", "", "deletion")]["data-mark"] == "best"
    assert cells[("C", "", "deletion")]["data-mark"] == "tied"
    assert cells[("D", "", "deletion")]["data-mark"] == "tied"
    assert cells[("B", "", "deletion")]["data-mark"] == ""
    assert [cells[(m, "", "ins")]["data-mark"] for m in "ABC"] == ["best", "", ""]
    assert cells[("D", "", "ins")]["data-n"] == "0"
    # agreement: over A, B, C both metrics give the order A ≻ B ≻ C … with C tied with A on deletion
    tau = {(a["data-a"], a["data-b"]): (float(a["data-tau"]), int(a["data-n"])) for a in page.having("data-tau")}
    assert tau[("deletion", "ins")][1] == 3
    expected = kendall_tau([-0.195, -0.245, -0.195], [0.805, 0.605, 0.405])[0]
    assert (
        tau[("deletion", "ins")][0] == pytest.approx(expected) and tau[("ins", "deletion")] == tau[("deletion", "ins")]
    )


def test_markdown_has_the_same_numbers(tmp_path):
    store = built_store(tmp_path / "b.db")
    md = write_report(store, tmp_path / "b.md", fmt="md").read_text(encoding="utf-8")
    rep = build_report(store)[0]
    from spixel.experiments.report import _num

    for key in rep.rows:
        for c in rep.cells[key].values():
            assert f"[{_num(c.lo)}, {_num(c.hi)}] n={c.n}" in md
    assert "| A | **0.195** ★ [" in md  # best bold and starred
    assert md.count("**holds**") == 2 and md.count("**does not hold**") == 3
    assert "`bad`: could not decode" in md and "### Provenance" in md and "fingerprint `fp`" in md
    assert "| method | deletion ↓ | deletion (paper) | ins ↑ | ins (paper) |" in md
    assert "<td" not in md and "<span" not in md  # Markdown, not HTML
    assert "p < 1e-4" in md


def test_cli_report(tmp_path, capsys):
    store = built_store(tmp_path / "b.db")
    assert main(["report", str(store), "--out", str(tmp_path / "x.html"), "--run", "built"]) == 0
    assert "wrote" in capsys.readouterr().out and (tmp_path / "x.html").stat().st_size > 2000
    assert main(["report", str(store), "--out", str(tmp_path / "x.md")]) == 0  # md from the suffix
    assert (tmp_path / "x.md").read_text(encoding="utf-8").startswith("# spixel report")
    assert main(["report", str(store), "--run", "nope", "--out", str(tmp_path / "y.html")]) == 2
    assert "no run 'nope'" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing.db")]) == 2
    assert main(["report", str(store), "--out", str(tmp_path / "z.html"), "--cache-maps", str(tmp_path / "no")]) == 0
    assert "is not a folder" in (tmp_path / "z.html").read_text(encoding="utf-8")


def test_report_of_two_runs_and_a_run_picked(real, tmp_path):
    store, _c, _m = real
    two = tmp_path / "two.db"
    shutil.copy(store, two)
    with Store(two, writer=True) as st:
        cfg = json.loads(st.db.execute("SELECT config FROM runs WHERE run_id = 1").fetchone()[0])
        run, _ = st.open_run(name="second", config_hash="x", config=cfg, model="smooth", dataset="d", fingerprint=None)
        st.write(
            run, [ItemRecord("a", "done", results=[("saliency", "", "deletion", 0.5, "ok", [1.0, 0.5, 0.0], None)])]
        )
    page = parse(write_report(two, tmp_path / "two.html"))
    assert [a["data-run"] for a in page.having("data-run")] == ["1", "2"]
    with Store(two, writer=True) as st:
        st.open_run(name="empty", config_hash="y", config=cfg, model="smooth", dataset="d", fingerprint=None)
    one = parse(write_report(two, tmp_path / "one.html", runs=["second"]))
    assert [a["data-name"] for a in one.having("data-run")] == ["second"]
    assert main(["report", str(two), "--run", "1,empty", "--run", "empty", "--out", str(tmp_path / "p.html")]) == 0
    picked = tmp_path / "p.html"
    assert [a["data-run"] for a in parse(picked).having("data-run")] == ["1", "3"]
    assert "No scored rows in this run yet" in picked.read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------------------- the screenshot
def test_screenshot_in_headless_chromium(real, tmp_path):
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing on CI (.ci/run installs the Debian package chromium)")
        pytest.skip(f"{CHROMIUM} not installed")
    from PIL import Image

    store, cache, model = real
    page = write_report(store, tmp_path / "shot.html", cache_maps=cache, model=model)
    png = tmp_path / "shot.png"
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--screenshot={png}",
        "--window-size=1400,1000",
        page.resolve().as_uri(),
    ]
    subprocess.run(cmd, capture_output=True, timeout=90, check=False)
    assert png.is_file(), "chromium wrote no screenshot"
    img = np.asarray(Image.open(png).convert("RGB"), dtype=np.float32)
    assert img.shape[:2] == (1000, 1400)
    assert img.std() > 20  # a page, not a blank
    assert (np.abs(img - [31, 42, 68]).sum(-1) < 40).mean() > 0.01  # the dark header band rendered

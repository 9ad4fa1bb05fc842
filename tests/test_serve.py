"""``spixel serve``: both pages under Streamlit's AppTest (widgets, results that follow the settings, errors as
messages, the store page against the end-of-run table), the pure helpers, and a smoke test of the real server
(HTTP 200 and a headless-Chromium screenshot; Chromium is required when ``CI=true``)."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest

from spixel.data import SyntheticDataset
from spixel.data.synthetic import CLASSES
from spixel.errors import BadImageError
from spixel.experiments import Store, format_table, from_dict, run_local, summarise
from spixel.experiments.summary import directions_of
from spixel.models.adapter import ModelAdapter
from spixel.serve import command, compute, environment
from spixel.serve.screenshot import chromium, screenshot
from spixel.train.checkpoint import save_checkpoint
from spixel.train.nets import build_net, cam_layer, net_config

EXPLORE = "from spixel.serve.explore import render\nrender()\n"
BROWSE = "from spixel.serve.browse import render\nrender()\n"
TIMEOUT = 120


def small_model() -> ModelAdapter:
    torch.manual_seed(0)
    cfg = net_config("resnet", 7, widths=[8, 16], blocks=1, pool="avg")
    return ModelAdapter(
        build_net(cfg).eval(), input_size=64, resize=64, labels=list(CLASSES), layers={"cam": cam_layer(cfg)}, name="s"
    )


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("model") / "small.pt"
    save_checkpoint(p, small_model())
    return p


@pytest.fixture(scope="module")
def run_store(tmp_path_factory, ckpt) -> tuple[Path, Path]:
    """A store of one run over 4 images and 2 damaged files, with a map cache: (store, cache)."""
    root = tmp_path_factory.mktemp("run")
    imgs = root / "imgs"
    imgs.mkdir()
    ds = SyntheticDataset(4, size=64, seed=1)
    for i in range(4):
        Image.fromarray(ds[i].image).save(imgs / f"img{i}.png")
    good = (imgs / "img0.png").read_bytes()
    (imgs / "truncated.png").write_bytes(good[: len(good) // 3])
    (imgs / "notes.jpg").write_text("not an image")
    exp = from_dict(
        {
            "experiment": {"name": "serve-test", "model": str(ckpt), "seed": 1},
            "method": [
                {"name": "saliency"},
                {"name": "smoothgrad", "params": {"n_samples": 3}},
                {"name": "gradcam", "regions": "slic:n_segments=20"},
            ],
            "metric": [{"name": "deletion", "params": {"n_steps": 8}}, {"name": "insertion", "params": {"n_steps": 8}}],
        }
    )
    store, cache = root / "s.db", root / "maps"
    r = run_local(exp, f"folder:{imgs}", store, cache_maps=cache, progress=False)
    assert (r.done, r.failed) == (4, 2)
    return store, cache


def app(script: str, monkeypatch, **env: str) -> AppTest:
    for k in ("model", "weights", "store", "cache_maps", "device", "remote"):
        monkeypatch.delenv(f"SPIXEL_SERVE_{k.upper()}", raising=False)
    monkeypatch.setenv("SPIXEL_SERVE_DEVICE", "cpu")
    for k, v in env.items():
        monkeypatch.setenv(f"SPIXEL_SERVE_{k.upper()}", v)
    at = AppTest.from_string(script, default_timeout=TIMEOUT)
    return at.run()


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.message for e in at.exception]
    return at


def by_key(at: AppTest, kind: str, key: str):
    for w in getattr(at, kind):
        if w.key == key:
            return w
    raise AssertionError(f"no {kind} with key {key!r}: {[w.key for w in getattr(at, kind)]}")


FRAMES = {
    "top5": lambda d: "label" in d.columns,
    "scores": lambda d: "time" in d.columns,
    "ssim": lambda d: d.shape[0] == d.shape[1] and list(d.index) == list(d.columns),
    "summary": lambda d: d.index.name == "method" and d.map(lambda v: "n=" in str(v)).any().any(),
    "item_scores": lambda d: d.index.name == "method" and not d.map(lambda v: "n=" in str(v)).any().any(),
    "items": lambda d: d.index.name == "item",
    "failed": lambda d: list(d.columns) == ["item", "reason"],
}


def frame(at: AppTest, kind: str):
    """The page's dataframe of this kind (recognised by its columns; AppTest does not expose a dataframe's key)."""
    found = [d.value for d in at.dataframe if FRAMES[kind](d.value)]
    assert len(found) == 1, f"{len(found)} dataframes look like {kind!r}"
    return found[0]


def png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


# ------------------------------------------------------------------------------------------------- helpers
def test_command_binds_localhost_and_caps_uploads(tmp_path):
    cmd = command()
    assert cmd[1:4] == ["-m", "streamlit", "run"] and cmd[4].endswith("app.py")
    opts = dict(zip(cmd[5::2], cmd[6::2], strict=True))
    assert opts["--server.address"] == "127.0.0.1" and opts["--server.port"] == "8501"
    assert opts["--server.maxUploadSize"] == str(compute.MAX_UPLOAD_MB)
    assert opts["--browser.gatherUsageStats"] == "false" and opts["--client.showErrorDetails"] == "none"
    env = environment(store=str(tmp_path / "s.db"), model="efficientnet_lite0")
    assert env["SPIXEL_SERVE_STORE"] == str((tmp_path / "s.db").resolve())
    assert env["SPIXEL_SERVE_MODEL"] == "efficientnet_lite0" and "SPIXEL_SERVE_WEIGHTS" not in env
    assert env["SPIXEL_SERVE_REMOTE"] == "0" and environment(host="::1")["SPIXEL_SERVE_REMOTE"] == "0"
    assert environment(host="0.0.0.0")["SPIXEL_SERVE_REMOTE"] == "1"


def test_a_server_reachable_from_elsewhere_reads_no_typed_paths(monkeypatch, ckpt, run_store):
    at = ok(app(EXPLORE, monkeypatch, model=str(ckpt), remote="1"))
    assert by_key(at, "radio", "source").options == ["bundled photo", "upload"]
    assert by_key(at, "text_input", "model").disabled and by_key(at, "text_input", "w").disabled
    at = ok(app(BROWSE, monkeypatch, store=str(run_store[0]), remote="1"))
    assert by_key(at, "text_input", "store").disabled and by_key(at, "text_input", "cache_maps").disabled


def test_uploads_are_size_limited_and_decoded_as_images_only():
    img = np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    assert compute.decode_upload(png(img), "a.png").shape == (40, 50, 3)
    with pytest.raises(BadImageError, match=r"a\.png: not an image"):
        compute.decode_upload(b"<script>alert(1)</script>", "a.png")
    with pytest.raises(BadImageError, match="damaged or truncated"):
        compute.decode_upload(png(img)[:200], "a.png")
    with pytest.raises(BadImageError, match="upload limit"):
        compute.decode_upload(b"\0" * (compute.MAX_UPLOAD_BYTES + 1), "big.png")
    with pytest.raises(BadImageError, match="empty"):
        compute.decode_upload(b"", "e.png")
    with pytest.raises(BadImageError, match="no such file"):
        compute.image_from_path("/no/such/image.png")


def test_cli_serve_checks_its_arguments_before_starting(tmp_path, capsys, monkeypatch):
    from spixel.cli import main

    monkeypatch.setitem(sys.modules, "streamlit", None)  # not installed
    assert main(["serve"]) == 2
    assert "pip install 'spixel[serve]'" in capsys.readouterr().err
    monkeypatch.undo()

    assert main(["serve", "--store", str(tmp_path / "missing.db")]) == 2
    assert "no such store" in capsys.readouterr().err
    (tmp_path / "x.db").write_text("not sqlite")
    assert main(["serve", "--store", str(tmp_path / "x.db")]) == 2
    assert main(["serve", "--cache-maps", str(tmp_path / "nope")]) == 2
    assert "no such folder" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------- page 1
def test_explore_page_widgets_and_results_follow_the_settings(monkeypatch, ckpt):
    at = ok(app(EXPLORE, monkeypatch, model=str(ckpt)))
    assert by_key(at, "text_input", "model").value == str(ckpt)
    assert by_key(at, "radio", "source").options == ["bundled photo", "upload", "path"]
    assert by_key(at, "selectbox", "sample").value == "astronaut" or by_key(at, "selectbox", "sample").value
    assert by_key(at, "multiselect", "methods").value == ["saliency", "integrated_gradients", "gradcam"]
    assert len(by_key(at, "selectbox", "target").options) == 5
    scores = frame(at, "scores")
    assert list(scores["method"]) == ["saliency", "integrated_gradients", "gradcam"]
    assert {"deletion ↓", "insertion ↑"} <= set(scores.columns)
    assert len(at.image) >= 4  # the crop and three overlays
    assert frame(at, "ssim").shape == (3, 3)

    # another photo: its own top-5 and a class among them
    by_key(at, "selectbox", "sample").set_value("coffee")
    ok(at.run())
    target = by_key(at, "selectbox", "target")
    assert target.value in [int(o.split(" · ")[0]) for o in target.options] and not at.error

    # another method set: another table
    by_key(at, "multiselect", "methods").set_value(["saliency", "input_x_gradient"])
    ok(at.run())
    scores = frame(at, "scores")
    assert list(scores["method"]) == ["saliency", "input_x_gradient"]

    # regions, then another number of superpixels: other maps and region counts
    by_key(at, "selectbox", "regions").set_value("slic")
    ok(at.run())
    first = frame(at, "scores")
    assert first["regions"].notna().all()
    by_key(at, "slider", "s:slic:n_segments").set_value(8)
    ok(at.run())
    second = frame(at, "scores")
    assert int(second["regions"].max()) < int(first["regions"].min())
    assert not np.allclose(first["deletion ↓"], second["deletion ↓"])

    # a method parameter is a widget too
    by_key(at, "multiselect", "methods").set_value(["integrated_gradients", "smoothgrad"])
    by_key(at, "selectbox", "regions").set_value("none (pixel maps)")
    ok(at.run())
    assert by_key(at, "number_input", "m:integrated_gradients:n_steps").value == 16  # the demo's lighter default
    samples = by_key(at, "number_input", "m:smoothgrad:n_samples")
    assert samples.value == 16
    a = frame(at, "scores")["deletion ↓"].iloc[1]
    samples.set_value(2)
    ok(at.run())
    assert frame(at, "scores")["deletion ↓"].iloc[1] != a


def test_explore_unchanged_settings_are_not_recomputed(monkeypatch, ckpt):
    import spixel.serve.compute as c

    at = ok(app(EXPLORE, monkeypatch, model=str(ckpt)))
    calls = []
    real = c.explain_crop
    monkeypatch.setattr(c, "explain_crop", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    by_key(at, "radio", "mode").set_value("absolute")  # display only
    ok(at.run())
    assert calls == []


def test_explore_damaged_upload_and_bad_path_are_messages(monkeypatch, ckpt):
    at = ok(app(EXPLORE, monkeypatch, model=str(ckpt)))
    by_key(at, "radio", "source").set_value("upload")
    ok(at.run())
    assert any("upload" in i.value for i in at.info)
    at.file_uploader[0].set_value(("cat.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 50, "image/png"))
    ok(at.run())
    assert len(at.error) == 1 and "cat.png" in at.error[0].value and "Traceback" not in at.error[0].value

    img = np.random.default_rng(0).integers(0, 255, (80, 90, 3), dtype=np.uint8)
    at.file_uploader[0].set_value(("ok.png", png(img), "image/png"))
    ok(at.run())
    assert not at.error and len(frame(at, "scores")) == 3

    by_key(at, "radio", "source").set_value("path")
    ok(at.run())
    by_key(at, "text_input", "path").set_value("/no/such/file.jpg")
    ok(at.run())
    assert len(at.error) == 1 and "no such file" in at.error[0].value

    by_key(at, "radio", "source").set_value("bundled photo")
    by_key(at, "text_input", "model").set_value("no_such_model")
    ok(at.run())
    assert len(at.error) == 1 and at.error[0].value.startswith("model:")


# ------------------------------------------------------------------------------------------------- page 2
def _cells(text: str) -> list[str]:
    return [c.strip() for c in text.split("  ") if "±" in c]


def test_browse_page_shows_the_run_table_items_maps_and_failures(monkeypatch, run_store):
    store, cache = run_store
    at = ok(app(BROWSE, monkeypatch, store=str(store), cache_maps=str(cache)))
    assert "serve-test" in by_key(at, "selectbox", "run").value.name
    # the table of spixel report (bootstrap CIs, best ★ and tied ≈), cell for cell as its Markdown
    from spixel.experiments.report import build_run, render_markdown

    with Store(store) as s:
        rows = s.scores(1)
        md = render_markdown([build_run(s, s.run(1))], title="t")
    lines = [line for line in md.splitlines() if line.startswith("| ") and "n=" in line]
    want = [[c.strip().replace("**", "") for c in line.strip("|").split(" | ")] for line in lines]
    table = frame(at, "summary")
    assert list(table.columns) == ["deletion ↓", "insertion ↑"]
    assert [[name, *cells] for name, cells in zip(table.index, table.values.tolist(), strict=True)] == want
    assert table.map(lambda v: "★" in v).sum().tolist() == [1, 1]  # one best per column

    # the table of spixel run (Student t), cell for cell
    by_key(at, "radio", "ci").set_value("Student t (as spixel run)")
    ok(at.run())
    metrics = ["deletion", "insertion"]
    expected = format_table(summarise(rows), metrics, directions_of(metrics))  # what spixel run prints
    table = frame(at, "summary")
    assert list(table.columns) == ["deletion ↓", "insertion ↑"]
    assert list(table.index) == [line.split("  ")[0].strip() for line in expected.splitlines()[1:]]
    assert set(table.index) == {"saliency", "smoothgrad", "gradcam [slic:n_segments=20]"}
    shown = [c for _, r in table.iterrows() for c in r]
    want = [c for line in expected.splitlines()[1:] for c in _cells(line)]
    assert shown == want

    # items: sorted by the chosen score, worst first (deletion: lower is better, so the highest first)
    col = "saliency · deletion"
    by_key(at, "selectbox", "sort_by").set_value(col)
    items = frame(ok(at.run()), "items")
    assert len(items) == 4 and list(items[col]) == sorted(items[col], reverse=True)
    by_key(at, "radio", "order").set_value("best first")
    ok(at.run())
    assert list(frame(at, "items")[col]) == sorted(items[col])
    by_key(at, "text_input", "item_filter").set_value("img2")
    ok(at.run())
    assert list(frame(at, "items").index) == ["img2.png"]
    assert by_key(at, "selectbox", "item").value == "img2.png"

    # the item: its scores, its maps from the cache, its curves
    item_scores = frame(at, "item_scores")
    assert item_scores.loc["saliency", "deletion"] == pytest.approx(items.loc["img2.png", col])
    caps = " ".join(c.value for c in at.caption)
    assert "not cached" not in caps
    assert len(at.image) >= 4  # the crop + three cached maps
    failed = frame(at, "failed")
    assert set(failed["item"]) == {"truncated.png", "notes.jpg"} and failed["reason"].str.len().min() > 5


def test_browse_recomputes_maps_on_demand_like_the_run(monkeypatch, run_store, ckpt):
    store, cache = run_store
    at = ok(app(BROWSE, monkeypatch, store=str(store)))
    caps = " ".join(c.value for c in at.caption)
    assert "3 map(s) not cached" in caps
    n_before = len(at.image)
    by_key(at, "button", "recompute").click()
    ok(at.run())
    assert len(at.image) == n_before + 3

    # the recomputed maps are the run's (the cache holds them in float16)
    with Store(store) as s:
        run = s.run(1)
    exp = compute.experiment_of(run)
    model = compute.load(str(ckpt), device="cpu")
    p = compute.item_crop(model, run.dataset, "img1.png")
    with Store(store) as s:
        target = compute.item_info(s, 1, "img1.png")["target"]
    fresh = compute.item_maps(model, exp, p, target, None, compute=True)
    kept = compute.item_maps(model, exp, p, target, str(cache), compute=False)
    for k in ("saliency", "smoothgrad", "gradcam"):
        a, b = fresh[k].attribution, kept[k].attribution
        assert kept[k].cached and np.allclose(a, b, rtol=2e-3, atol=2e-3 * np.abs(a).max())
    assert fresh["gradcam"].num_regions == kept["gradcam"].num_regions


def test_browse_bad_store_is_a_message(monkeypatch, tmp_path):
    (tmp_path / "x.db").write_text("not sqlite at all")
    at = ok(app(BROWSE, monkeypatch, store=str(tmp_path / "x.db")))
    assert len(at.error) == 1 and at.error[0].value.startswith("store:")
    at = ok(app(BROWSE, monkeypatch))
    assert at.info and "store" in at.info[0].value


# ------------------------------------------------------------------------------------------------- the server
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None) -> int:
    end = time.monotonic() + timeout
    while time.monotonic() < end and (proc is None or proc.poll() is None):
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.status
        except OSError:
            time.sleep(0.3)
    return 0


def test_spixel_serve_starts_answers_and_renders(tmp_path, ckpt, run_store):
    store, cache = run_store
    port = _free_port()
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "spixel",
            "serve",
            "--model",
            str(ckpt),
            "--store",
            str(store),
            "--cache-maps",
            str(cache),
            "--device",
            "cpu",
            "--port",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        if _wait_http(base + "/_stcore/health", 120, proc) != 200:
            pytest.fail(f"the server did not answer in 120 s: {(tmp_path / 'serve.log').read_text()[-2000:]}")
        assert _wait_http(base + "/", 10) == 200
        if chromium() is None:
            if os.environ.get("CI") == "true":
                pytest.fail("chromium is required in CI (.ci/run installs it)")
            pytest.skip("chromium is not installed: apt-get install chromium")
        for page in ("", "browse"):
            out = screenshot(f"{base}/{page}", tmp_path / f"serve_{page or 'explore'}.png", timeout=120)
            a = np.asarray(Image.open(out).convert("RGB")).astype(float)
            assert a.shape[:2] == (1000, 1400)
            assert a.std() > 20, f"the screenshot of /{page} is blank"
            text = out.with_suffix(".txt").read_text()
            assert "--- error" not in text, text
            assert ("Explaining" if not page else "Methods × metrics") in text, text[:500]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()

"""The experiments engine: TOML experiments, the SQLite store, the batch step, resume after SIGKILL, batch
independence, failed and not-applicable items, the map cache, and ``spixel run`` / ``spixel runs``."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from spixel.data import SyntheticDataset
from spixel.data.synthetic import CLASSES
from spixel.errors import BadParameterError, UnknownNameError
from spixel.experiments import (
    SCHEMA_VERSION,
    Store,
    StoreError,
    from_dict,
    item_seed,
    load,
    load_experiment,
    run_local,
)
from spixel.models.adapter import ModelAdapter
from spixel.train.checkpoint import save_checkpoint
from spixel.train.nets import build_net, cam_layer, net_config

SPIXEL = [sys.executable, "-m", "spixel"]


def smooth_model(seed: int = 0) -> ModelAdapter:
    """A small ResNet-style net with global average pooling (no max-pool ties, so its gradients are continuous
    in the input and batched arithmetic changes them only by rounding)."""
    torch.manual_seed(seed)
    cfg = net_config("resnet", 7, widths=[8, 16], blocks=1, pool="avg")
    net = build_net(cfg).eval()
    return ModelAdapter(
        net, input_size=64, resize=64, labels=list(CLASSES), layers={"cam": cam_layer(cfg)}, name="smooth"
    )


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("model") / "smooth.pt"
    save_checkpoint(p, smooth_model())
    return p


def experiment(model: str, **extra) -> dict:
    d = {
        "experiment": {"name": "t", "model": model, "seed": 3},
        "method": [
            {"name": "saliency"},
            {"name": "smoothgrad", "params": {"n_samples": 3}},  # stochastic: seeded per item
            {"name": "gradcam", "regions": "slic:n_segments=20"},
            {"name": "integrated_gradients", "params": {"n_steps": 4}, "regions": "random:n_segments=9"},
        ],
        "metric": [
            {"name": "deletion", "params": {"n_steps": 8}},
            {"name": "pointing_game"},
            {"name": "faithfulness_correlation", "params": {"nr_runs": 4}},  # stochastic metric
        ],
    }
    d["experiment"].update(extra)
    return d


def rows_of(store: Path, run: int = 1) -> list[tuple]:
    con = sqlite3.connect(store)
    try:
        return con.execute(
            "SELECT item_id, method, regions, metric, value, status, curve FROM results WHERE run_id = ? "
            "ORDER BY item_id, method, regions, metric",
            (run,),
        ).fetchall()
    finally:
        con.close()


def items_of(store: Path, run: int = 1) -> list[tuple]:
    con = sqlite3.connect(store)
    try:
        return con.execute(
            "SELECT item_id, status, error, target, predicted FROM items WHERE run_id = ? ORDER BY item_id", (run,)
        ).fetchall()
    finally:
        con.close()


def assert_same_rows(a: list[tuple], b: list[tuple], tol: float = 1e-5) -> None:
    assert [(*r[:4], r[5]) for r in a] == [(*r[:4], r[5]) for r in b]
    for ra, rb in zip(a, b, strict=True):
        if ra[4] is None or rb[4] is None:
            assert ra[4] is None and rb[4] is None, ra
        else:
            # batched arithmetic differs from one image's by float rounding (~1e-7); a correlation over a few
            # perturbations can amplify that to ~1e-5
            assert ra[4] == pytest.approx(rb[4], rel=2 * tol, abs=tol), ra
        if ra[6] is not None:
            np.testing.assert_allclose(json.loads(ra[6]), json.loads(rb[6]), atol=tol)


# ----------------------------------------------------------------------------------------------- config
def test_experiment_from_toml_and_its_hash(tmp_path):
    p = tmp_path / "e.toml"
    p.write_text(
        '[experiment]\nname = "my-eval"\nmodel = "efficientnet_lite0"\nseed = 0\n'
        '[[method]]\nname = "integrated_gradients"\nparams = { n_steps = 16 }\n'
        '[[method]]\nname = "saliency"\nregions = "slic:n_segments=100"\n'
        '[[metric]]\nname = "deletion"\nparams = { n_steps = 28 }\n[[metric]]\nname = "pointing_game"\n'
    )
    e = load_experiment(p)
    assert e.name == "my-eval" and [m.key for m in e.methods] == ["integrated_gradients", "saliency"]
    assert e.methods[1].regions_key == "slic:n_segments=100" and e.metrics[0].params == {"n_steps": 28}
    same = from_dict({**experiment("x")}, "")
    assert same.hash == from_dict(experiment("x")).hash  # stable
    renamed = experiment("x")
    renamed["experiment"]["name"] = "other"
    assert from_dict(renamed).hash == same.hash  # the name does not decide rows
    assert e.with_overrides(seed=1).hash != e.hash and e.with_overrides(model="x.pt").hash != e.hash
    assert len(e.hash) == 16 and json.loads(json.dumps(e.to_dict()))["methods"][0]["params"] == {"n_steps": 16}


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda d: d["method"].append({"name": "salency"}), "Did you mean 'saliency'"),
        (lambda d: d["method"][0].update(params={"n_stepz": 2}), "no parameter 'n_stepz'"),
        (lambda d: d["method"][0].update(params={"seed": 2}), "seed once"),
        (lambda d: d["method"].append({"name": "saliency"}), "listed twice"),
        (lambda d: d["method"][0].update(regions="slic:n_segmentz=3"), "n_segmentz"),
        (lambda d: d["method"][0].update(colour="red"), "unknown key 'colour'"),
        (lambda d: d["metric"].append({"name": "ssim"}), "compares or regenerates"),
        (lambda d: d["metric"].append({"name": "convex_hull_ratio"}), "reference"),
        (lambda d: d["metric"].append({"name": "sparseness", "params": {"reference": "nope"}}), "no parameter"),
        (lambda d: d["metric"][1].update(params={"boxes": [1]}), "comes from the dataset"),
        (lambda d: d["experiment"].update(target="first"), "target must be"),
        (lambda d: d["experiment"].update(seed=-1), "seed must be"),
        (lambda d: d["experiment"].pop("model"), "needs model"),
        (lambda d: d.update(method=[]), "at least one"),
    ],
)
def test_experiment_errors_say_what_to_do(change, match):
    d = experiment("m.pt")
    change(d)
    with pytest.raises((BadParameterError, UnknownNameError), match=match):
        from_dict(d)


def test_bad_experiment_files(tmp_path):
    with pytest.raises(BadParameterError, match="not found"):
        load_experiment(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("[experiment\nname=")
    with pytest.raises(BadParameterError, match="not valid TOML"):
        load_experiment(tmp_path / "bad.toml")
    with pytest.raises(UnknownNameError, match="neither an experiment file"):
        load_experiment("no-such-protocol")


def test_item_seed_depends_on_seed_and_item_only():
    assert item_seed(0, "a/b.jpg") == item_seed(0, "a/b.jpg")
    assert len({item_seed(0, "a"), item_seed(1, "a"), item_seed(0, "b")}) == 3
    assert 0 <= item_seed(7, "x") < 2**31


# ----------------------------------------------------------------------------------------------- store
def test_store_schema_views_and_versions(tmp_path):
    p = tmp_path / "s.db"
    with Store(p, writer=True) as s:
        assert s.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert s.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        views = {r[0] for r in s.db.execute("SELECT name FROM sqlite_master WHERE type = 'view'")}
        assert views == {"scores", "item_status"}
        cols = [r[1] for r in s.db.execute("PRAGMA table_info(scores)")]
        assert cols == ["run", "item", "method", "regions", "metric", "value"]
        assert [r[1] for r in s.db.execute("PRAGMA table_info(item_status)")] == ["run", "item", "status", "error"]
    con = sqlite3.connect(p)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.close()
    with pytest.raises(StoreError, match="newer spixel"):
        Store(p)
    with pytest.raises(StoreError, match="no such store"):
        Store(tmp_path / "nope.db")
    (tmp_path / "junk.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="cannot use this file"):
        Store(tmp_path / "junk.db", writer=True)


def test_store_upserts_never_duplicate(tmp_path):
    from spixel.experiments.store import ItemRecord

    with Store(tmp_path / "s.db", writer=True) as s:
        run, resumed = s.open_run(name="n", config_hash="h", config={}, model="m", dataset="d", fingerprint=None)
        assert not resumed and s.open_run(
            name="n", config_hash="h", config={}, model="m", dataset="d", fingerprint=None
        ) == (run, True)
        rec = ItemRecord("a", "done", results=[("m", "", "deletion", 0.5, "ok", [1.0, 0.0], 0.1)])
        s.write(run, [rec])
        s.write(run, [ItemRecord("a", "done", results=[("m", "", "deletion", 0.25, "ok", None, 0.1)])])
        assert s.scores(run) == [("a", "m", "", "deletion", 0.25)]
        assert s.db.execute("SELECT COUNT(*) FROM items").fetchone()[0] == 1
        other, _ = s.open_run(name="n", config_hash="h2", config={}, model="m", dataset="d", fingerprint=None)
        assert other != run  # a changed config is a new run in the same store


def test_store_writer_lock_and_read_only(tmp_path):
    p = tmp_path / "s.db"
    with Store(p, writer=True):
        code = f"from spixel.experiments import Store\nStore({str(p)!r}, writer=True)"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert out.returncode != 0 and "another spixel process" in out.stderr and str(os.getpid()) in out.stderr
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        if os.access(ro, os.W_OK):  # root ignores permissions
            pytest.skip("running as root: a read-only folder is still writable")
        with pytest.raises(StoreError, match="writable"):
            Store(ro / "s.db", writer=True)
    finally:
        ro.chmod(0o755)


def test_store_in_a_path_that_cannot_exist(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="cannot write the store"):
        Store(tmp_path / "file" / "s.db", writer=True)


# ----------------------------------------------------------------------------------------------- the engine
def test_run_scores_every_item_and_resumes(tmp_path):
    model = smooth_model()
    exp = from_dict(experiment("smooth"))
    store = tmp_path / "s.db"
    r = run_local(exp, "synthetic:6", store, model=model, batch_size=4, progress=False)
    assert (r.total, r.done, r.failed, r.skipped, r.computed) == (6, 6, 0, 0, 6)
    rows = rows_of(store)
    assert len(rows) == 6 * 4 * 3 and all(v is not None for _, _, _, _, v, _, _ in rows)
    curves = [json.loads(c) for _, _, _, m, _, _, c in rows if m == "deletion"]
    assert all(len(c) == 9 for c in curves)  # n_steps + 1 points
    again = run_local(exp, "synthetic:6", store, model=model, batch_size=4, progress=False)
    assert again.resumed and again.computed == 0 and again.skipped == 6 and rows_of(store) == rows
    df = load(store)
    assert list(df.columns) == ["run", "name", "item", "method", "regions", "metric", "value"] and len(df) == len(rows)
    more = run_local(exp, "synthetic:8", store, model=model, batch_size=4, progress=False)
    assert more.run_id == 2  # another dataset is another run
    with Store(store) as s:
        assert [(x.run_id, x.status, x.done) for x in s.runs()] == [(1, "finished", 6), (2, "finished", 8)]


def test_rows_do_not_depend_on_batching_or_order(tmp_path):
    model = smooth_model()
    exp = from_dict(experiment("smooth"))
    base = tmp_path / "b7.db"
    run_local(exp, "synthetic:7", base, model=model, batch_size=7, progress=False)
    for name, kw in {"b1": {"batch_size": 1}, "b3-shuffled": {"batch_size": 3, "shuffle_seed": 5}}.items():
        other = tmp_path / f"{name}.db"
        run_local(exp, "synthetic:7", other, model=model, progress=False, **kw)
        assert_same_rows(rows_of(base), rows_of(other))
        assert items_of(base) == items_of(other)
    # the seed matters (the stochastic rows change), so the comparison above can fail
    reseeded = tmp_path / "seed.db"
    run_local(exp.with_overrides(seed=4), "synthetic:7", reseeded, model=model, batch_size=7, progress=False)
    sg = [r[4] for r in rows_of(base) if r[1] == "smoothgrad" and r[3] == "deletion"]
    sg2 = [r[4] for r in rows_of(reseeded) if r[1] == "smoothgrad" and r[3] == "deletion"]
    assert not np.allclose(sg, sg2, atol=1e-5)


def _folder_with_bad_files(root: Path) -> Path:
    root.mkdir()
    ds = SyntheticDataset(3, size=64, seed=1)
    for i in range(3):
        Image.fromarray(ds[i].image).save(root / f"img{i}.png")
    good = (root / "img0.png").read_bytes()
    (root / "truncated.png").write_bytes(good[: len(good) // 3])
    (root / "notes.jpg").write_text("not an image")
    Image.fromarray(np.zeros((3, 3, 3), np.uint8)).save(root / "tiny.png")
    return root


def test_bad_items_are_recorded_and_metrics_without_annotation_are_na(tmp_path):
    folder = _folder_with_bad_files(tmp_path / "imgs")
    exp = from_dict(experiment("smooth"))
    store = tmp_path / "s.db"
    r = run_local(exp, f"folder:{folder}", store, model=smooth_model(), batch_size=2, progress=False)
    assert (r.done, r.failed) == (3, 3)
    status = {i: (s, e) for i, s, e, _, _ in items_of(store)}
    assert {k for k, (s, _) in status.items() if s == "failed"} == {"truncated.png", "notes.jpg", "tiny.png"}
    assert all(e and "\n" not in e for s, e in status.values() if s == "failed")
    pg = [r for r in rows_of(store) if r[3] == "pointing_game"]
    assert pg and all(r[4] is None and r[5] == "na" for r in pg)  # no boxes in a plain folder
    dl = [r for r in rows_of(store) if r[3] == "deletion"]
    assert len(dl) == 3 * 4 and all(r[5] == "ok" for r in dl)
    with Store(store) as s:  # the views leave 'na' out
        assert {m for _, _, _, m, _ in s.scores(1)} == {"deletion", "faithfulness_correlation"}


def test_a_nan_map_fails_its_item_only(tmp_path, monkeypatch):
    import spixel.api

    real = spixel.api.explain

    def explain(model, x, method, target=None, **kw):
        e = real(model, x, method, target, **kw)
        if method == "saliency":
            a = e.attribution.clone()
            bad = model.to_rgb01(x)[:, 0, 0, 0] > 0.5  # images whose corner is bright
            a[bad] = float("nan")
            from dataclasses import replace

            e = replace(e, attribution=a)
        return e

    monkeypatch.setattr(spixel.api, "explain", explain)
    exp = from_dict(experiment("smooth"))
    ds = SyntheticDataset(6, size=64, seed=0)
    bright = {f"synthetic/{i:06d}" for i in range(6) if ds[i].image[0, 0, 0] > 127}
    assert 0 < len(bright) < 6
    store = tmp_path / "s.db"
    run_local(exp, "synthetic:6", store, model=smooth_model(), batch_size=6, progress=False)
    failed = {i: e for i, s, e, _, _ in items_of(store) if s == "failed"}
    assert set(failed) == bright and all("saliency" in e and "NaN" in e for e in failed.values())
    assert {r[0] for r in rows_of(store)} == {f"synthetic/{i:06d}" for i in range(6)} - bright


def test_map_cache_reuses_explanations(tmp_path, monkeypatch):
    import spixel.api

    calls = []
    real = spixel.api.explain

    def explain(model, x, method, target=None, **kw):
        calls.append((method, x.shape[0]))
        return real(model, x, method, target, **kw)

    monkeypatch.setattr(spixel.api, "explain", explain)
    d = experiment("smooth")
    d["metric"] = [{"name": "deletion", "params": {"n_steps": 8}}]
    cache = tmp_path / "maps"
    run_local(from_dict(d), "synthetic:4", tmp_path / "a.db", model=smooth_model(), cache_maps=cache, progress=False)
    assert calls and len(list(cache.rglob("*.npz"))) == 4 * 4
    calls.clear()
    d["metric"].append({"name": "insertion", "params": {"n_steps": 8}})  # a new metric: a new run, same maps
    run_local(from_dict(d), "synthetic:4", tmp_path / "a.db", model=smooth_model(), cache_maps=cache, progress=False)
    assert calls == []
    a = {r[:4]: r[4] for r in rows_of(tmp_path / "a.db", 1)}
    b = {r[:4]: r[4] for r in rows_of(tmp_path / "a.db", 2)}
    assert set(b) - set(a) and all(abs(b[k] - v) < 2e-3 for k, v in a.items())  # float16 maps: same order


def test_label_rule_and_out_of_range_labels(tmp_path):
    d = experiment("smooth")
    d["metric"] = [{"name": "sparseness"}]
    exp = from_dict(d)
    store = tmp_path / "s.db"
    run_local(exp, "synthetic:5", store, model=smooth_model(), progress=False)
    ds = SyntheticDataset(5, size=64, seed=0)
    model = smooth_model()
    pred = model.predict(model.preprocess([ds[i].image for i in range(5)])).argmax(1).tolist()
    got = {i: (t, p) for i, _, _, t, p in items_of(store)}
    for i in range(5):
        t, p = got[f"synthetic/{i:06d}"]
        assert p == pred[i] and t == ds[i].label  # "label": the annotation when the prediction is not it
    pr = tmp_path / "p.db"
    run_local(
        from_dict({**d, "experiment": {**d["experiment"], "target": "predicted"}}),
        "synthetic:5",
        pr,
        model=model,
        progress=False,
    )
    assert all(t == p for _, _, _, t, p in items_of(pr))
    eight = smooth_model()
    eight.labels = None  # 7 outputs, labels 0..6: a dataset label 7+ cannot be explained
    from spixel.data.items import Item
    from spixel.experiments.loop import BatchStep, geometry_of, prepare

    img = SyntheticDataset(1, size=64)[0].image
    step = BatchStep(eight, exp)
    recs = step([prepare(Item("x", img, labels=(9,)), geometry_of(eight))])
    assert recs[0].status == "failed" and "label 9 is not a class" in recs[0].error


# ----------------------------------------------------------------------------------------------- the CLI
def _toml(path: Path, model: Path, methods: str = "") -> Path:
    path.write_text(
        f'[experiment]\nname = "cli"\nmodel = "{model}"\nseed = 0\n'
        '[[method]]\nname = "integrated_gradients"\nparams = { n_steps = 48 }\n'
        '[[method]]\nname = "saliency"\nregions = "slic:n_segments=30"\n' + methods + '[[metric]]\nname = "deletion"\n'
        'params = { n_steps = 16 }\n[[metric]]\nname = "pointing_game"\n'
    )
    return path


def test_cli_run_survives_sigkill_and_resumes_to_the_same_rows(tmp_path, ckpt):
    exp = _toml(tmp_path / "e.toml", ckpt)
    full = tmp_path / "full.db"
    args = [str(exp), "--data", "synthetic:48", "--batch-size", "4"]
    out = subprocess.run([*SPIXEL, "run", *args, "--store", str(full)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "48 done, 0 failed" in out.stdout and "deletion ↓" in out.stdout

    killed = tmp_path / "killed.db"
    proc = subprocess.Popen(
        [*SPIXEL, "run", *args, "--store", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    n = 0
    while time.time() < deadline and proc.poll() is None:
        if killed.exists():
            try:
                con = sqlite3.connect(killed, timeout=0.1)
                n = con.execute("SELECT COUNT(*) FROM items").fetchone()[0]
                con.close()
            except sqlite3.OperationalError:
                n = 0
            if n >= 4:
                break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 4 <= n < 48, f"the run was not interrupted mid-way (n={n})"
    partial = items_of(killed)
    assert len(partial) % 4 == 0 and len(partial) < 48  # whole batches only
    again = subprocess.run([*SPIXEL, "run", *args, "--store", str(killed)], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert f"{len(partial)} skipped" in again.stdout
    assert_same_rows(rows_of(full), rows_of(killed))
    assert items_of(full) == items_of(killed)

    runs = subprocess.run([*SPIXEL, "runs", str(killed)], capture_output=True, text=True)
    assert runs.returncode == 0 and "finished" in runs.stdout and " 48 " in runs.stdout


def test_cli_run_exit_codes(tmp_path, ckpt):
    exp = _toml(tmp_path / "e.toml", ckpt)
    folder = _folder_with_bad_files(tmp_path / "imgs")
    store = tmp_path / "s.db"
    out = subprocess.run(
        [*SPIXEL, "run", str(exp), "--data", f"folder:{folder}", "--store", str(store)], capture_output=True, text=True
    )
    assert out.returncode == 3, out.stderr
    assert "3 item(s) failed" in out.stderr and "item_status" in out.stderr
    for argv, match in [
        ([str(exp), "--data", "nowhere:x", "--store", str(store)], "unknown dataset"),
        (
            [str(exp), "--data", "synthetic:3", "--store", str(tmp_path / "imgs" / "img0.png" / "s.db")],
            "cannot write the store",
        ),
        ([str(tmp_path / "none.toml"), "--data", "synthetic:3", "--store", str(store)], "not found"),
    ]:
        r = subprocess.run([*SPIXEL, "run", *argv], capture_output=True, text=True)
        assert r.returncode == 2, (argv, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and match in lines[0].lower(), r.stderr


def test_cli_evaluate_takes_a_dataset_and_keeps_the_store(tmp_path, ckpt):
    """``spixel evaluate --data csv:FILE``: boxes come from the CSV; the scores equal the store's rows."""
    ds = SyntheticDataset(3, size=64, seed=2)
    lines = ["path,label,x0,y0,x1,y1"]
    for i in range(3):
        Image.fromarray(ds[i].image).save(tmp_path / f"s{i}.png")
        x0, y0, x1, y1 = ds[i].box
        lines.append(f"s{i}.png,{CLASSES[ds[i].label]},{x0},{y0},{x1},{y1}")
    (tmp_path / "boxes.csv").write_text("\n".join(lines) + "\n")
    out, store = tmp_path / "o", tmp_path / "e.db"
    argv = [
        "evaluate",
        "--data",
        f"csv:{tmp_path / 'boxes.csv'}",
        "--model",
        str(ckpt),
        "--method",
        "saliency",
        "--metric",
        "pointing_game,deletion",
        "--metric-param",
        "n_steps=8",
        "--out",
        str(out),
        "--store",
        str(store),
    ]
    r = subprocess.run([*SPIXEL, *argv], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    import csv

    with open(out / "scores.csv", newline="") as f:
        got = list(csv.DictReader(f))
    assert [g["image"] for g in got] == ["s0.png", "s1.png", "s2.png"]
    assert [int(g["explained"]) for g in got] == [ds[i].label for i in range(3)]  # the CSV's labels
    stored = {(i, m): v for i, _, _, m, v, _, _ in rows_of(store)}
    for g in got:
        assert float(g["pointing_game"]) == stored[(g["image"], "pointing_game")]
        assert float(g["deletion"]) == pytest.approx(stored[(g["image"], "deletion")], rel=1e-5)
    assert (out / "curves_deletion.png").is_file() and json.loads((out / "summary.json").read_text())["images"] == 3


def test_ctrl_c_keeps_whole_batches_and_resumes(tmp_path):
    """A KeyboardInterrupt after the first committed batch: the run is 'interrupted', the store holds that batch
    only, and re-running completes it to the rows of an uninterrupted run."""
    d = experiment("smooth")
    d["metric"] = [{"name": "deletion", "params": {"n_steps": 8}}]
    exp = from_dict(d)

    def stop(_n: int) -> None:
        raise KeyboardInterrupt

    store = tmp_path / "s.db"
    r = run_local(exp, "synthetic:6", store, model=smooth_model(), batch_size=2, progress=False, on_batch=stop)
    assert r.interrupted and (r.done, r.computed) == (2, 2)
    with Store(store) as s:
        assert s.run(1).status == "interrupted"
    assert len(items_of(store)) == 2
    again = run_local(exp, "synthetic:6", store, model=smooth_model(), batch_size=2, progress=False)
    assert again.resumed and again.skipped == 2 and again.done == 6
    full = tmp_path / "full.db"
    run_local(exp, "synthetic:6", full, model=smooth_model(), batch_size=2, progress=False)
    assert_same_rows(rows_of(full), rows_of(store))

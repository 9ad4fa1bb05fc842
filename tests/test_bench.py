"""The stability bench (issue 5): protocol mechanics checked on cases whose answer is known without the code."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import torch

import spixel
from spixel.bench import stability as B
from spixel.bench.report import write_stability_report
from spixel.data import SyntheticDataset
from spixel.errors import SpixelError
from spixel.train import fit, save_checkpoint

SIZE = 32


@pytest.fixture(scope="module")
def data():
    ds = SyntheticDataset(8, size=SIZE, seed=1)
    images, labels, masks = ds.arrays()
    return ds, images, labels, masks


@pytest.fixture(scope="module")
def nets():
    """Two barely trained tiny nets (the protocols' mechanics do not need accurate models)."""
    torch.set_num_threads(1)
    train = SyntheticDataset(64, size=SIZE, seed=0)
    kw = dict(widths=[4, 8, 8], epochs=1, progress=False)
    return fit(train, seed=0, **kw), fit(train, seed=1, **kw)


@pytest.fixture(scope="module")
def xy(nets, data):
    _, images, labels, _ = data
    return nets[0].preprocess(list(images)), torch.as_tensor(labels)


@pytest.fixture(scope="module")
def parts(nets, xy):
    return B.make_partitions(nets[0], xy[0])


def test_partitions_follow_spec(parts, xy) -> None:
    assert set(parts.segs) == {"slic", "quickshift", "square", "random"}
    k = round(parts.counts["slic"])
    assert parts.params["random"][1]["n_segments"] == k
    side = parts.params["square"][1]["size"]
    assert abs((SIZE / side) ** 2 - k) <= abs((SIZE / (side + 1)) ** 2 - k) + 1e-9  # the closest block count
    for seg in parts.segs.values():
        assert seg.labels.shape == (xy[0].shape[0], SIZE, SIZE)


def test_background_control_same_shape_elsewhere(data) -> None:
    _, _, _, masks = data
    rng = np.random.default_rng(0)
    for m in masks:
        moved = B.background_control(m, rng)
        assert moved is not None
        assert moved.sum() == m.sum() and not (moved & m).any()
        shifts = [
            (dy, dx) for dy in range(SIZE) for dx in range(SIZE) if np.array_equal(np.roll(m, (dy, dx), (0, 1)), moved)
        ]
        assert shifts, "the control is the same shape, moved"
    full = np.ones((SIZE, SIZE), bool)
    assert B.background_control(full, rng) is None


def test_grouped_shortcut_equals_explain_with_regions(nets, xy, parts) -> None:
    """The bench groups linear methods' pixel maps afterwards; that must be exactly what explain(regions=) gives."""
    x, y = xy
    for method in ("simple_gradient", "integrated_gradients"):
        maps = B._maps(nets[0], x, y, method, parts, seed=0)
        name, params = B.METHODS[method]
        for g, seg in parts.segs.items():
            ref = spixel.explain(nets[0], x, name, target=y, regions=seg, **params)
            torch.testing.assert_close(maps[g].attribution, ref.attribution)
            torch.testing.assert_close(maps[g].raw, ref.raw)


def test_identical_models_are_perfectly_stable(nets, xy, parts) -> None:
    x, y = xy
    rows = B.stability_rows(nets[0], nets[0], x, y, parts, ["simple_gradient", "integrated_gradients"])
    assert {(r["method"], r["grouping"]) for r in rows} == {
        (m, g) for m in ("simple_gradient", "integrated_gradients") for g in ("pixel", *parts.segs)
    }
    for r in rows:
        assert r["ssim"] == pytest.approx(1.0, abs=1e-5) and r["topk"] == pytest.approx(1.0), r
        assert r["l2_unit"] == pytest.approx(0.0, abs=1e-9), r
    other = B.stability_rows(nets[0], nets[1], x, y, parts, ["simple_gradient"])
    assert all(r["ssim"] < 0.99 and r["l2_unit"] > 0.01 for r in other)


def test_mege_of_identical_models_is_one(nets, xy, parts) -> None:
    x, _ = xy
    pred = nets[0].predict(x).argmax(1)  # explain the prediction: every sample counts as correct
    folds = np.arange(x.shape[0]) % 2
    rows = B.mege_rows([nets[0], nets[0]], folds, x, pred, parts, ["simple_gradient"])
    assert len(rows) == 5
    for r in rows:
        assert r["mege"] == pytest.approx(1.0, abs=1e-9)


def test_centre_baseline_pointing_game_by_hand(nets, xy, data, parts) -> None:
    ds, _, _, masks = data
    x, y = xy
    rows = B.localization_rows(nets[0], x, y, torch.as_tensor(masks), [[b] for b in ds.boxes()], parts)
    assert [r["method"] for r in rows][-1] == "centre baseline" and len(rows) == len(B.LOCALIZATION) + 1
    tol = 15 * SIZE / 224
    c = (SIZE - 1) // 2  # the first arg-max in row-major order of the distance-to-centre map
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    near = ((yy - c) ** 2 + (xx - c) ** 2) < tol**2
    expected = np.mean([(m & near).any() for m in masks])
    assert rows[-1]["pointing_game"] == pytest.approx(expected)
    for r in rows:
        assert 0 <= r["pointing_game"] <= 1 and 0 <= r["max_box_acc_v2"] <= 1


def _models_dir(tmp_path, nets) -> None:
    tmp_path.mkdir(parents=True, exist_ok=True)
    rows = []
    info = {"generator": "spixel.data.synthetic.SyntheticDataset", "size": SIZE, "distractors": 2}
    for recipe, names in (("one", ["single"]), ("halves", ["h0", "h1"]), ("folds", ["f0", "f1"])):
        for j, name in enumerate(names):
            save_checkpoint(tmp_path / f"{name}.pt", nets[j])
            rows.append({"recipe": recipe, "name": name, "path": f"{name}.pt", "accuracy": 0.5, "fold": j})
    manifest = {"data": {"train": info | {"n": 40, "seed": 0}, "test": info | {"n": 20, "seed": 1}}, "models": rows}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))


def test_run_stability_and_report(tmp_path, nets) -> None:
    _models_dir(tmp_path, nets)
    res = B.run_stability(tmp_path, n_test=6, n_mege=6, methods=["simple_gradient"], progress=False)
    assert res["settings"]["n_test"] == 6 and res["settings"]["k_folds"] == 2
    assert len(res["ssim"]) == 5 and len(res["mege"]) == 5 and len(res["evidence"]) == 3
    paths = write_stability_report(res, tmp_path / "report")
    md = paths["markdown"].read_text()
    for word in ("SSIM", "MeGe", "pointing game", "MaxBoxAccV2", "evidence occluded", "quickshift", "random"):
        assert word in md
    assert paths["figure"].stat().st_size > 1000
    assert json.loads(paths["json"].read_text())["settings"]["n_test"] == 6
    page = paths["html"].read_text()
    assert base64.b64encode(paths["figure"].read_bytes()).decode() in page  # the figure itself, embedded
    assert page.count("<table>") == md.count("| method |") + md.count("| condition |") > 0
    # the report names the architectures the checkpoints record (both nets here are ResNet-style)
    assert res["settings"]["archs"] == {"single": "resnet", "halves": "resnet", "folds": "resnet"}
    assert "two ResNet-style models trained on disjoint halves" in md and "VGG" not in md


def test_run_stability_without_models_says_what_to_do(tmp_path) -> None:
    with pytest.raises(SpixelError, match="spixel train benchmark"):
        B.run_stability(tmp_path)
    with pytest.raises(SpixelError, match="unknown stability method"):
        (tmp_path / "manifest.json").write_text(
            json.dumps({"models": [{"recipe": r} for r in ("one", "halves", "halves", "folds", "folds")], "data": {}})
        )
        B.run_stability(tmp_path, methods=["nope"])


def test_cli_bench_stability(tmp_path, nets, capsys) -> None:
    from spixel.cli import main

    _models_dir(tmp_path / "models", nets)
    args = ["bench", "stability", "--models", str(tmp_path / "models"), "--out", str(tmp_path / "rep")]
    assert main([*args, "--methods", "simple_gradient", "--n-test", "4", "--n-mege", "4", "--quick"]) == 0
    assert {p.name for p in (tmp_path / "rep").iterdir()} >= {"stability.md", "stability.json", "stability.png"}
    assert main([*args, "--methods", "simple_gradient,nope"]) == 2
    assert "unknown stability method" in capsys.readouterr().err
    assert main(["bench", "stability", "--models", str(tmp_path / "none"), "--out", str(tmp_path / "r2")]) == 2
    assert "spixel train benchmark" in capsys.readouterr().err


def test_markdown_html_renders_our_subset_and_escapes() -> None:
    from spixel.bench.report import markdown_html

    md = "## A <b> & `x<1`\n\ntext **bold** and `code`\n\n| a | b |\n|---|---|\n| 1 | <2> |\n"
    assert markdown_html(md) == (
        "<h2>A &lt;b&gt; &amp; <code>x&lt;1</code></h2>\n"
        "<p>text <b>bold</b> and <code>code</code></p>\n"
        "<table><tr><th>a</th><th>b</th></tr>\n<tr><td>1</td><td>&lt;2&gt;</td></tr>\n</table>"
    )

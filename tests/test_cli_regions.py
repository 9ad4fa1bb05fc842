"""``spixel explain --regions/--channels``, ``spixel segment`` and ``spixel list segmenters``, run in-process.

Independent references: the grouped saliency map against a plain ``torch.autograd`` gradient of the real
EfficientNet-Lite0 averaged over 16×16 blocks by hand; ``grid`` labels against the block formula; ``slic``
labels against ``skimage.segmentation.slic`` called directly on the same crop; overlay boundaries against the
block edges computed by hand. Tests of segmenters or methods that are not registered skip.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spixel import cli
from spixel.registry import METHODS
from spixel.segmentation import segment

MODEL = ["--model", "efficientnet_lite0"]


def _segmenters():
    return cli.common.segmenters()


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from skimage import data

    d = tmp_path_factory.mktemp("photos")
    p = {"cat": d / "chelsea.png", "coffee": d / "coffee.png", "empty": d / "empty.png"}
    Image.fromarray(data.chelsea()).save(p["cat"])
    Image.fromarray(data.coffee()).save(p["coffee"])
    p["empty"].write_bytes(b"")
    return p


def _err_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("spixel: error: ") and "Traceback" not in err, err
    return lines[0]


def _blocks(a: np.ndarray, s: int) -> np.ndarray:
    """``(H, W)`` → ``(H/s, s, W/s, s)``."""
    h, w = a.shape[:2]
    return a.reshape(h // s, s, w // s, s, *a.shape[2:])


# ---------------------------------------------------------------------------------------------- explain --regions
def test_grid_regions_saliency_on_a_real_photo(photos, tmp_path, capsys):
    out = tmp_path / "out"
    code = cli.main(
        ["explain", str(photos["cat"]), *MODEL, "--method", "saliency", "--regions", "grid:size=16", "--out", str(out)]
    )
    assert code == 0, capsys.readouterr().err
    d = out / "chelsea"
    a = np.load(d / "saliency.npy")
    assert a.shape == (224, 224) and np.isfinite(a).all()
    b = _blocks(a, 16)
    assert np.ptp(b, axis=(1, 3)).max() <= 1e-6 * np.abs(a).max()  # constant on every 16×16 block
    assert len(np.unique(b[:, 0, :, 0])) > 50  # and the blocks differ

    # reference: the plain gradient of the real model, averaged over each block and the 3 channels by hand;
    # the grouped map is |that mean| up to a constant factor (the channel reduction's)
    lite0 = cli.get_model("efficientnet_lite0", None, "cpu")
    x = lite0.preprocess(np.asarray(Image.open(photos["cat"]))).requires_grad_(True)
    logits = lite0.module(x)
    logits[0, int(logits.argmax())].backward()
    g = x.grad[0].permute(1, 2, 0).numpy()  # (H, W, 3)
    ref = np.abs(_blocks(g, 16).mean(axis=(1, 3, 4)))  # (14, 14)
    got = np.abs(b[:, 0, :, 0])
    c = float((got * ref).sum() / (ref * ref).sum())
    assert c > 0
    np.testing.assert_allclose(got, c * ref, rtol=2e-3, atol=1e-5 * got.max())

    png = np.asarray(Image.open(d / "saliency.png"))
    assert png.ndim == 3 and png.shape[1] >= 2 * 224  # region overlays are drawn enlarged
    info = json.loads((d / "explanation.json").read_text())
    assert info["regions"]["segmenter"] == "grid"
    assert info["regions"]["params"] == {"size": 16}
    assert info["regions"]["num_segments"] == 14 * 14 and info["regions"]["seconds"] >= 0
    m = info["methods"]["saliency"]
    assert m["num_segments"] == 196 and m["channels"] == "joint"


def test_nas_regions_cluster_the_explained_model(photos, tmp_path, capsys):
    out = tmp_path / "out"
    regions = "nas:n_segments=4,out_size=14,n_init=2"
    argv = ["explain", str(photos["cat"]), *MODEL, "--method", "gradcam", "--regions", regions, "--out", str(out)]
    assert cli.main([*argv, "--seed", "1"]) == 0, capsys.readouterr().err
    a = np.load(out / "chelsea" / "gradcam.npy")
    info = json.loads((out / "chelsea" / "explanation.json").read_text())["regions"]
    assert info["segmenter"] == "nas" and info["params"]["model"] == "efficientnet_lite0"
    assert info["params"]["seed"] == 1 and 2 <= info["num_segments"] <= 4
    # the same partition from the library, on the model the command loaded
    lite0 = cli.get_model("efficientnet_lite0", None, "cpu")
    x = lite0.preprocess(np.asarray(Image.open(photos["cat"])))
    seg = segment(lite0.to_rgb01(x), "nas", model=lite0, n_segments=4, out_size=14, n_init=2, seed=1)
    lab = seg.labels[0].numpy()
    assert len(np.unique(a)) == info["num_segments"] == int(seg.num_segments[0])
    for k in range(int(seg.num_segments[0])):
        assert np.ptp(a[lab == k]) <= 1e-6 * max(np.abs(a).max(), 1e-12)  # constant on each NAS region
    assert cli.main([*argv[:-2], "--regions", "nas:model=x", "--out", str(out)]) == 2
    assert "drop model=" in _err_line(capsys)


def test_without_regions_the_json_says_so(photos, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["explain", str(photos["cat"]), *MODEL, "--method", "saliency", "--out", str(out)]) == 0
    info = json.loads((out / "chelsea" / "explanation.json").read_text())
    assert info["regions"] is None and "num_segments" not in info["methods"]["saliency"]
    capsys.readouterr()


def test_per_channel_and_a_stochastic_segmenter_seeded_by_seed(photos, tmp_path, capsys):
    out = tmp_path / "out"
    code = cli.main(
        [
            "explain",
            str(photos["cat"]),
            *MODEL,
            "--method",
            "input_x_gradient",
            "--regions",
            "random:n_segments=40",
            "--channels",
            "per_channel",
            "--seed",
            "5",
            "--out",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    info = json.loads((out / "chelsea" / "explanation.json").read_text())
    assert info["regions"]["params"]["seed"] == 5 and info["regions"]["params"]["n_segments"] == 40
    assert info["regions"]["num_segments"] == 40
    assert info["methods"]["input_x_gradient"]["channels"] == "per_channel"
    a = np.load(out / "chelsea" / "input_x_gradient.npy")
    # the random regions are scattered pixels: the grouped map takes at most 40 values
    assert len(np.unique(a)) <= 40


@pytest.mark.skipif("lime" not in METHODS, reason="lime is not registered yet")
def test_regions_feed_a_method_that_uses_them(photos, tmp_path, capsys):
    out = tmp_path / "out"
    code = cli.main(
        [
            "explain",
            str(photos["cat"]),
            *MODEL,
            "--method",
            "lime",
            "--regions",
            "grid:size=32",
            "--param",
            "n_samples=16",
            "--out",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    a = np.load(out / "chelsea" / "lime.npy")
    assert np.ptp(_blocks(a, 32), axis=(1, 3)).max() == 0  # one weight per 32×32 block
    info = json.loads((out / "chelsea" / "explanation.json").read_text())
    assert info["regions"]["num_segments"] == 49 and info["methods"]["lime"]["num_segments"] == 49
    assert "channels" not in info["methods"]["lime"]  # lime is not grouped: it uses the regions itself


@pytest.mark.skipif("swag" not in METHODS, reason="swag is not registered yet")
def test_a_method_with_its_own_regions_gets_boundaries(photos, tmp_path, capsys):
    out = tmp_path / "out"
    code = cli.main(
        ["explain", str(photos["cat"]), *MODEL, "--method", "swag", "--param", "n_segments=50", "--out", str(out)]
    )
    assert code == 0, capsys.readouterr().err
    info = json.loads((out / "chelsea" / "explanation.json").read_text())
    assert info["regions"] is None  # no --regions: SWAG made its own
    assert 10 <= info["methods"]["swag"]["num_segments"] <= 100
    assert np.asarray(Image.open(out / "chelsea" / "swag.png")).shape[1] >= 448


def test_region_overlay_draws_thin_white_boundaries():
    """One output pixel wide at scale 2, exactly on the block edges (computed by hand), nowhere else."""
    from spixel.viz.overlay import overlay

    h = w = 64
    photo = np.full((h, w, 3), 0.5, np.float32)
    amap = np.zeros((h, w), np.float32)
    labels = (np.arange(h)[:, None] // 16) * 4 + np.arange(w)[None, :] // 16
    out = overlay(photo, amap, colorbar=False, boundaries=labels, scale=2)
    assert out.shape == (2 * h, 2 * w, 3)
    bright = out.mean(-1) > out.mean(-1).min() + 20
    edge = np.zeros((2 * h, 2 * w), bool)
    for k in range(1, 4):  # the last output column/row of each enlarged block, before the next one
        edge[:, 32 * k - 1] = True
        edge[32 * k - 1, :] = True
    np.testing.assert_array_equal(bright, edge)
    # a boolean mask keeps its old meaning: drawn in white at the image's pixels
    mask = np.zeros((h, w), bool)
    mask[:, 10] = True
    out = overlay(photo, amap, colorbar=False, boundaries=mask)
    assert (out[mask] == 255).all() and not (out[~mask] == 255).all(-1).any()


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (["--regions", "grid:"], r"--regions 'grid:' is malformed.*NAME:KEY=VALUE"),
        (["--regions", ":size=3"], r"malformed"),
        (["--regions", "grid:size"], r"'size' is malformed: write KEY=VALUE"),
        (["--regions", "grid:size=8,,"], r"malformed"),
        (["--regions", "nope"], r"unknown segmenter 'nope'.*grid"),
        (["--regions", "gird"], r"Did you mean 'grid'"),
        (["--regions", "grid:n_segments=3"], r"segmenter grid has no parameter 'n_segments'.*size"),
        (["--regions", "grid:size=0"], r"--regions grid: size"),
        (["--channels", "per_channel"], r"--channels only applies with --regions"),
        (["--regions", "grid", "--channels", "sideways"], r"--channels"),
    ],
    ids=[
        "empty-params",
        "no-name",
        "no-value",
        "empty-item",
        "unknown",
        "typo",
        "unknown-param",
        "bad-value",
        "channels-alone",
        "bad-channels",
    ],
)
def test_bad_regions_exit_2_with_one_line(args, pattern, photos, tmp_path, capsys):
    argv = ["explain", str(photos["cat"]), *MODEL, "--method", "saliency", "--out", str(tmp_path / "o"), *args]
    assert cli.main(argv) == 2
    assert re.search(pattern, _err_line(capsys)), pattern
    assert not any((tmp_path / "o").rglob("*.npy"))


def test_regions_that_do_not_apply_exit_2(photos, tmp_path, capsys):
    base = ["explain", str(photos["cat"]), *MODEL, "--out", str(tmp_path / "o")]
    if "swag" in METHODS:
        assert cli.main([*base, "--method", "saliency,swag", "--regions", "grid"]) == 2
        assert "swag makes its own superpixels" in _err_line(capsys)
    if "guided_slic" in _segmenters():
        assert cli.main([*base, "--method", "saliency", "--regions", "guided_slic"]) == 2
        assert "needs gradient" in _err_line(capsys)
    if "lime" in METHODS:
        assert cli.main([*base, "--method", "lime", "--regions", "grid", "--channels", "per_channel"]) == 2
        assert "--channels applies to grouped methods" in _err_line(capsys)


def test_parse_regions():
    assert cli.parse_regions("grid") == ("grid", {})
    assert cli.parse_regions(" grid : size = 8 ") == ("grid", {"size": 8})
    assert cli.parse_regions("random:n_segments=5", seed=3) == ("random", {"n_segments": 5, "seed": 3})
    assert cli.parse_regions("random:seed=1", seed=3) == ("random", {"seed": 1})  # the spec wins
    assert cli.parse_regions("grid", seed=3) == ("grid", {})  # grid takes no seed
    if "slic" in _segmenters():
        assert cli.parse_regions("slic:n_segments=100,compactness=20,enforce_connectivity=false") == (
            "slic",
            {"n_segments": 100, "compactness": 20, "enforce_connectivity": False},
        )


# ---------------------------------------------------------------------------------------------- segment
def test_segment_grid_writes_labels_overlay_and_json(photos, tmp_path, capsys):
    out = tmp_path / "seg"
    code = cli.main(
        [
            "segment",
            str(photos["cat"]),
            str(photos["coffee"]),
            "--segmenter",
            "grid",
            "--param",
            "size=32",
            "--out",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    rows, cols = np.mgrid[0:224, 0:224]
    expected = (rows // 32) * 7 + cols // 32
    for stem in ("chelsea", "coffee"):
        lab = np.load(out / stem / "grid.npy")
        assert lab.dtype == np.int64 and lab.shape == (224, 224)
        np.testing.assert_array_equal(lab, expected)
        png = np.asarray(Image.open(out / stem / "grid.png"))
        assert png.shape == (448, 448, 3)  # the 224-px crop drawn twice as large
        info = json.loads((out / stem / "grid.json").read_text())
        assert info["num_segments"] == 49 and info["params"] == {"size": 32}
        assert info["segmenter"] == "grid" and info["crop"]["model"] == "efficientnet_lite0"
        assert info["size"] == [224, 224]
    # the boundaries are drawn where the blocks meet, and the photo is kept elsewhere
    png = np.asarray(Image.open(out / "chelsea" / "grid.png")).astype(int)
    yellow = (png[..., 0] > 200) & (png[..., 1] > 180) & (png[..., 2] < 120)
    assert yellow[:, 63].mean() > 0.9 and yellow[:, 64:126].mean() < 0.2


@pytest.mark.skipif("slic" not in cli.common.segmenters(), reason="slic is not registered yet")
def test_segment_slic_matches_skimage_and_no_crop_keeps_the_photo(photos, tmp_path, capsys):
    from skimage.segmentation import slic

    out = tmp_path / "seg"
    code = cli.main(
        [
            "segment",
            str(photos["cat"]),
            "--segmenter",
            "slic",
            "--param",
            "n_segments=50",
            "--param",
            "backend=skimage",
            "--out",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    lab = np.load(out / "chelsea" / "slic.npy")
    assert lab.dtype == np.int64 and lab.shape == (224, 224)
    crop = cli.get_model("efficientnet_lite0", None, "cpu").crop(np.asarray(Image.open(photos["cat"])))
    ref = slic(
        crop.astype(np.float64) / 255.0,
        n_segments=50,
        compactness=10.0,
        sigma=0,
        max_num_iter=10,
        start_label=0,
        enforce_connectivity=True,
    )
    # the same partition (ids may be numbered differently): every (ours, ref) pair of ids is one-to-one
    pairs = np.unique(np.stack([lab.ravel(), ref.ravel()]), axis=1)
    assert pairs.shape[1] == len(np.unique(lab)) == len(np.unique(ref))
    info = json.loads((out / "chelsea" / "slic.json").read_text())
    assert info["num_segments"] == len(np.unique(lab)) == lab.max() + 1

    full = tmp_path / "full"
    assert (
        cli.main(
            [
                "segment",
                str(photos["coffee"]),
                "--segmenter",
                "slic",
                "--no-crop",
                "--fill",
                "colors",
                "--out",
                str(full),
            ]
        )
        == 0
    )
    lab = np.load(full / "coffee" / "slic.npy")
    assert lab.shape == (400, 600) and lab.dtype == np.int64
    assert np.asarray(Image.open(full / "coffee" / "slic.png")).shape == (400, 600, 3)  # large: not enlarged
    assert json.loads((full / "coffee" / "slic.json").read_text())["crop"] is None
    capsys.readouterr()


def test_segment_bad_file_among_good_ones(photos, tmp_path, capsys):
    out = tmp_path / "seg"
    code = cli.main(
        [
            "segment",
            str(photos["cat"]),
            str(photos["empty"]),
            str(tmp_path / "missing.png"),
            "--segmenter",
            "grid,random",
            "--out",
            str(out),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    bad = [ln for ln in err.splitlines() if ln.startswith("spixel: error:")]
    assert any(str(photos["empty"]) in ln for ln in bad) and any("missing.png" in ln for ln in bad)
    assert "Traceback" not in err
    for name in ("grid", "random"):
        assert np.load(out / "chelsea" / f"{name}.npy").shape == (224, 224)
    assert sorted(p.name for p in out.iterdir()) == ["chelsea"]


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (["--segmenter", "nope"], r"unknown segmenter 'nope'"),
        (["--segmenter", "grid", "--param", "n_segments=3"], r"no listed segmenter \(grid\).*'n_segments'"),
        (["--segmenter", "random", "--param", "seed=3"], r"--seed"),
        (["--segmenter", "grid", "--param", "size=-2"], r"grid: size"),
        (["--segmenter", "grid", "--no-crop", "--model", "efficientnet_lite0"], r"not allowed with"),
        (["--segmenter", "grid", "--fill", "plaid"], r"--fill"),
        (["--segmenter", " , "], r"--segmenter needs"),
    ],
    ids=["unknown", "unknown-param", "seed-as-param", "bad-value", "crop-and-no-crop", "bad-fill", "empty"],
)
def test_segment_bad_arguments_exit_2(args, pattern, photos, tmp_path, capsys):
    assert cli.main(["segment", str(photos["cat"]), "--out", str(tmp_path / "o"), *args]) == 2
    assert re.search(pattern, _err_line(capsys)), pattern


def test_segment_nas_needs_a_model_and_clusters_its_activations(photos, tmp_path, capsys):
    base = ["segment", str(photos["cat"]), "--segmenter", "nas", "--out", str(tmp_path / "o")]
    for extra in ([], ["--no-crop"]):
        assert cli.main([*base, *extra]) == 2
        assert re.search(r"segmenter nas clusters a classifier's activations.*--model NAME", _err_line(capsys))
    assert cli.main([*base, *MODEL, "--param", "model=x"]) == 2
    assert "not --param model=" in _err_line(capsys)
    params = ["--param", "n_segments=5", "--param", "out_size=14", "--param", "n_init=2"]
    assert cli.main([*base, *MODEL, *params, "--seed", "3"]) == 0, capsys.readouterr().err
    lab = np.load(tmp_path / "o" / "chelsea" / "nas.npy")
    assert lab.shape == (224, 224) and 2 <= lab.max() + 1 <= 5
    np.testing.assert_array_equal(np.unique(lab), np.arange(lab.max() + 1))
    # nearest-upsampled from the 14×14 grid: constant 16×16 blocks
    np.testing.assert_array_equal(lab, np.kron(lab[::16, ::16], np.ones((16, 16), lab.dtype)))
    info = json.loads((tmp_path / "o" / "chelsea" / "nas.json").read_text())
    assert info["params"]["model"] == "efficientnet_lite0" and info["params"]["seed"] == 3
    assert info["params"]["n_segments"] == 5 and info["num_segments"] == lab.max() + 1
    capsys.readouterr()


def test_segment_random_is_seeded(photos, tmp_path, capsys):
    runs = []
    for i, seed in enumerate((4, 4, 5)):
        out = tmp_path / f"r{i}"
        assert (
            cli.main(
                [
                    "segment",
                    str(photos["cat"]),
                    "--segmenter",
                    "random",
                    "--param",
                    "n_segments=8",
                    "--seed",
                    str(seed),
                    "--no-crop",
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
        runs.append(np.load(out / "chelsea" / "random.npy"))
        assert json.loads((out / "chelsea" / "random.json").read_text())["params"]["seed"] == seed
    np.testing.assert_array_equal(runs[0], runs[1])
    assert (runs[0] != runs[2]).any()
    assert runs[0].shape == (300, 451) and runs[0].max() == 7
    capsys.readouterr()


# ---------------------------------------------------------------------------------------------- list
def test_list_segmenters(capsys):
    assert cli.main(["list", "segmenters"]) == 0
    out = capsys.readouterr().out
    for name, backend in (("grid", "torch"), ("random", "torch")):
        assert re.search(rf"^\s+{name}\s+{backend}\s", out, re.M), name
    assert "size=16" in out and "METHODS" not in out
    for e in _segmenters():
        assert re.search(rf"^\s+{e.name}\s", out, re.M), e.name
    assert cli.main(["list"]) == 0
    everything = capsys.readouterr().out
    assert "SEGMENTERS" in everything and "METHODS" in everything and "MODELS" in everything
    assert cli.main(["list", "models"]) == 0
    assert "SEGMENTERS" not in capsys.readouterr().out


def test_draw_regions_fills():
    from spixel.viz.regions import draw_regions

    img = np.zeros((20, 30, 3), np.uint8)
    img[:, 15:] = 200
    lab = np.zeros((20, 30), np.int64)
    lab[:, 10:] = 1
    mean = draw_regions(img, lab, fill="mean", line_opacity=0.0)
    np.testing.assert_array_equal(mean[:, :10], 0)
    np.testing.assert_allclose(mean[:, 10:], round(200 * 15 / 20), atol=1)  # region 1: 5 black + 15 grey columns
    lines = draw_regions(img, lab, line_opacity=1.0)
    np.testing.assert_array_equal(lines[:, 9], np.broadcast_to((255, 230, 0), (20, 3)))
    assert (lines[:, :9] == 0).all() and (lines[:, 10:15] == 0).all()
    colors = draw_regions(img, lab, fill="colors", scale=2)
    assert colors.shape == (40, 60, 3) and not np.array_equal(colors[0, 0], colors[0, 25])
    with pytest.raises(Exception, match="fill"):
        draw_regions(img, lab, fill="plaid")


def test_console_help_mentions_the_new_options(capsys):
    assert cli.main(["explain", "--help"]) == 0
    h = capsys.readouterr().out
    assert "--regions" in h and "--channels" in h
    assert cli.main(["segment", "--help"]) == 0
    assert "--segmenter" in capsys.readouterr().out

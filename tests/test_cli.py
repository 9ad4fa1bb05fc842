"""The ``spixel`` command line, run in-process through ``spixel.cli.main`` (plus one real console-script run).

Outputs are checked against independent references: the saliency map against a plain ``torch.autograd``
gradient of the real EfficientNet-Lite0, the predicted class against the model's own forward pass.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from spixel import cli
from spixel.errors import SpixelError
from spixel.registry import METHODS, MODELS

MODEL = ["--model", "efficientnet_lite0"]


def _chelsea() -> np.ndarray:
    from skimage import data

    return data.chelsea()  # a real photo of a tabby cat (scikit-image's bundled test data)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real photos and every kind of odd or broken file, written once."""
    d = tmp_path_factory.mktemp("images")
    from skimage import data

    cat, coffee = _chelsea(), data.coffee()
    p: dict[str, Path] = {}
    p["cat"] = d / "chelsea.png"
    Image.fromarray(cat).save(p["cat"])
    p["coffee"] = d / "coffee.jpg"
    Image.fromarray(coffee).save(p["coffee"], quality=90)
    p["empty"] = d / "empty.png"
    p["empty"].write_bytes(b"")
    p["text"] = d / "notes.jpg"
    p["text"].write_text("this is not a picture\n")
    full = p["coffee"].read_bytes()
    p["truncated"] = d / "truncated.jpg"
    p["truncated"].write_bytes(full[: len(full) // 2])
    p["tiny"] = d / "tiny.png"
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(p["tiny"])
    p["gray"] = d / "gray.png"
    Image.fromarray(cat.mean(-1).astype(np.uint8)).save(p["gray"])
    p["rgba"] = d / "rgba.png"
    alpha = np.full((*cat.shape[:2], 1), 200, np.uint8)
    Image.fromarray(np.concatenate([cat, alpha], -1)).save(p["rgba"])
    p["gray16"] = d / "gray16.png"
    Image.fromarray((cat.mean(-1) * 257).astype(np.uint16)).save(p["gray16"])
    assert Image.open(p["gray16"]).mode.startswith("I")
    # a 6000×4000 JPEG: a smooth gradient compresses (and decodes in draft mode) cheaply
    yy, xx = np.mgrid[0:4000, 0:6000]
    big = np.stack([(xx * 255 // 6000), (yy * 255 // 4000), np.full_like(xx, 128)], -1).astype(np.uint8)
    p["huge"] = d / "huge.jpg"
    Image.fromarray(big).save(p["huge"], quality=60)
    return p


def _err_line(capsys: pytest.CaptureFixture[str]) -> str:
    """stderr must be exactly one line ``spixel: error: …`` with no traceback; returns it."""
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("spixel: error: "), err
    assert "Traceback" not in err
    return lines[0]


# ---------------------------------------------------------------------------------------------- explain
def test_explain_two_methods_on_a_real_photo(photos, tmp_path, capsys):
    out = tmp_path / "out"
    code = cli.main(
        [
            "explain",
            str(photos["cat"]),
            *MODEL,
            "--method",
            "saliency,integrated_gradients",
            "--param",
            "n_steps=4",
            "--out",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    d = out / "chelsea"
    for m in ("saliency", "integrated_gradients"):
        assert (d / f"{m}.png").is_file()
        png = np.asarray(Image.open(d / f"{m}.png"))
        assert png.ndim == 3 and png.shape[2] in (3, 4) and png.shape[1] >= 224
        a = np.load(d / f"{m}.npy")
        assert a.shape == (224, 224) and a.dtype == np.float32 and np.isfinite(a).all()

    # independent reference: the predicted class and the plain autograd gradient of the real model
    lite0 = cli.get_model("efficientnet_lite0", None, "cpu")  # the same weights, loaded once
    x = lite0.preprocess(_chelsea())
    with torch.no_grad():
        probs = lite0.module(x).softmax(-1)[0]
    k = int(probs.argmax())
    xg = x.clone().requires_grad_(True)
    lite0.module(xg)[0, k].backward()
    ref = xg.grad[0].abs().amax(0).numpy()
    np.testing.assert_allclose(np.load(d / "saliency.npy"), ref, rtol=1e-4, atol=1e-6)

    info = json.loads((d / "explanation.json").read_text())
    assert info["model"] == "efficientnet_lite0"
    assert info["image"] == str(photos["cat"])
    assert info["image_size"] == [451, 300]
    assert info["predicted"]["class"] == k
    assert info["predicted"]["label"] == lite0.labels[k]
    assert info["predicted"]["probability"] == pytest.approx(float(probs[k]), rel=1e-4)
    assert info["explained"] == info["predicted"]  # no --target: the predicted class is explained
    assert info["predicted"]["label"] in ("tabby", "tiger cat", "Egyptian cat")
    assert set(info["methods"]) == {"saliency", "integrated_gradients"}
    ig = info["methods"]["integrated_gradients"]
    assert ig["params"]["n_steps"] == 4 and ig["seed"] is None and ig["seconds"] > 0
    assert "n_steps" not in info["methods"]["saliency"]["params"]  # params go only where accepted
    assert "wrote 1 image" in capsys.readouterr().out


def test_explain_target_by_label(photos, tmp_path, capsys):
    out = tmp_path / "out"
    assert (
        cli.main(
            [
                "explain",
                str(photos["cat"]),
                *MODEL,
                "--method",
                "saliency",
                "--target",
                "Egyptian cat",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    info = json.loads((out / "chelsea" / "explanation.json").read_text())
    assert info["explained"]["class"] == 285 and info["explained"]["label"] == "Egyptian cat"
    assert info["target_given"] == "Egyptian cat"
    capsys.readouterr()


def test_resolve_target():
    model = cli.get_model("efficientnet_lite0", None, "cpu")  # the CLI's cached model: no forward pass here
    assert cli.resolve_target(None, model) is None
    assert cli.resolve_target("281", model) == 281
    assert cli.resolve_target("tabby", model) == 281
    assert cli.resolve_target("  TIGER cat ", model) == 282
    assert cli.resolve_target("Cardigan", model) == 264  # the corgi: an exact match wins over case folding
    with pytest.raises(SpixelError, match="several classes"):
        cli.resolve_target("CARDIGAN", model)  # the corgi (264) and the sweater (474)
    with pytest.raises(SpixelError, match="out of range"):
        cli.resolve_target("-1", model)
    with pytest.raises(SpixelError, match="Close: 'tabby'"):
        cli.resolve_target("tabbby", model)


def test_explain_stochastic_seed_recorded_and_reproducible(photos, tmp_path):
    runs = []
    for i in range(2):
        out = tmp_path / f"run{i}"
        assert (
            cli.main(
                [
                    "explain",
                    str(photos["cat"]),
                    *MODEL,
                    "--method",
                    "smoothgrad",
                    "--param",
                    "n_samples=2",
                    "--seed",
                    "7",
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
        info = json.loads((out / "chelsea" / "explanation.json").read_text())
        assert info["methods"]["smoothgrad"]["seed"] == 7
        assert info["methods"]["smoothgrad"]["params"]["n_samples"] == 2
        runs.append(np.load(out / "chelsea" / "smoothgrad.npy"))
    np.testing.assert_array_equal(runs[0], runs[1])


def test_odd_but_valid_images_are_handled(photos, tmp_path, capsys):
    names = ["gray", "rgba", "gray16", "huge"]
    out = tmp_path / "out"
    code = cli.main(["explain", *(str(photos[n]) for n in names), *MODEL, "--method", "saliency", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    for n in names:
        stem = photos[n].stem
        a = np.load(out / stem / "saliency.npy")
        assert a.shape == (224, 224) and np.isfinite(a).all() and a.max() > 0
    big = json.loads((out / "huge" / "explanation.json").read_text())
    assert max(big["image_size"]) <= 4096  # downscaled on load, not refused


def test_one_bad_file_among_good_ones(photos, tmp_path, capsys):
    out = tmp_path / "out"
    code = cli.main(
        [
            "explain",
            str(photos["cat"]),
            str(photos["empty"]),
            str(photos["coffee"]),
            *MODEL,
            "--method",
            "saliency",
            "--out",
            str(out),
            "--batch-size",
            "3",
        ]
    )  # all in one batch
    assert code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    bad = [ln for ln in err.splitlines() if ln.startswith("spixel: error:")]
    assert any(str(photos["empty"]) in ln and "empty" in ln for ln in bad)
    for stem in ("chelsea", "coffee"):
        assert (out / stem / "saliency.npy").is_file() and (out / stem / "explanation.json").is_file()
    assert not (out / "empty").exists()


def test_duplicate_stems_do_not_overwrite(photos, tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    Image.open(photos["cat"]).save(a / "cat.png")
    Image.open(photos["coffee"]).save(b / "cat.png")
    out = tmp_path / "out"
    assert (
        cli.main(["explain", str(a / "cat.png"), str(b / "cat.png"), *MODEL, "--method", "saliency", "--out", str(out)])
        == 0
    )
    dirs = sorted(p.name for p in out.iterdir())
    assert len(dirs) == 2 and "cat" in dirs
    images = {json.loads((out / n / "explanation.json").read_text())["image"] for n in dirs}
    assert images == {str(a / "cat.png"), str(b / "cat.png")}
    capsys.readouterr()


# ---------------------------------------------------------------------------------------------- bad input
BAD_FILES = ["missing", "empty", "text", "truncated", "tiny"]


@pytest.mark.parametrize("kind", BAD_FILES)
def test_bad_image_files_exit_2_with_one_line(kind, photos, tmp_path, capsys):
    path = tmp_path / "nope.jpg" if kind == "missing" else photos[kind]
    code = cli.main(["explain", str(path), *MODEL, "--method", "saliency", "--out", str(tmp_path / "o")])
    assert code == 2
    line = _err_line(capsys)
    assert str(path) in line
    assert not any((tmp_path / "o").rglob("*.npy"))


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (["--method", "nope"], r"unknown method 'nope'"),
        (["--method", "saliency,integrated_gradient"], r"Did you mean 'integrated_gradients'"),
        (["--model", "nope", "--method", "saliency"], r"unknown model 'nope'"),
        (["--method", "saliency", "--target", "5000"], r"--target 5000 is out of range.*1000 classes"),
        (["--method", "saliency", "--target", "not a class"], r"is not a class"),
        (["--method", "saliency", "--param", "n_steps"], r"malformed.*KEY=VALUE"),
        (["--method", "saliency,smoothgrad", "--param", "n_steps=4"], r"no listed method.*'n_steps'"),
        (["--method", "saliency", "--param", "seed=3"], r"--seed"),
        (["--method", "integrated_gradients", "--param", "n_steps=-1"], r"integrated_gradients: n_steps"),
        (["--method", "saliency", "--seed", "-1"], r"--seed"),
        (["--method", "saliency", "--device", "tpu9"], r"--device"),
        ([], r"--method"),  # argparse's own error, also on one line
    ],
    ids=[
        "unknown-method",
        "typo-hint",
        "unknown-model",
        "target-5000",
        "target-name",
        "malformed-param",
        "unknown-param",
        "seed-as-param",
        "bad-param-value",
        "negative-seed",
        "bad-device",
        "missing-option",
    ],
)
def test_bad_arguments_exit_2_with_one_line(args, pattern, photos, tmp_path, capsys):
    argv = ["explain", str(photos["cat"]), "--out", str(tmp_path / "o"), *args]
    if "--model" not in args:
        argv += MODEL
    assert cli.main(argv) == 2
    assert re.search(pattern, _err_line(capsys)), pattern


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_a_clear_error(photos, tmp_path, capsys):
    code = cli.main(
        ["explain", str(photos["cat"]), *MODEL, "--method", "saliency", "--device", "cuda", "--out", str(tmp_path)]
    )
    assert code == 2
    assert "CUDA is not available" in _err_line(capsys)


def test_console_script_subprocess(tmp_path):
    """The installed ``spixel`` script: a user error exits 2 with one line and no traceback."""
    exe = Path(sys.executable).with_name("spixel")
    if not exe.exists():
        pytest.skip("the spixel console script is not installed (pip install -e .)")
    r = subprocess.run(
        [
            str(exe),
            "explain",
            str(tmp_path / "missing.jpg"),
            *MODEL,
            "--method",
            "saliency",
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert lines == [f"spixel: error: {tmp_path / 'missing.jpg'}: no such file"], r.stderr


# ---------------------------------------------------------------------------------------------- list, version
def test_list(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for e in METHODS:
        assert re.search(rf"^\s+{e.name}\s+{e.info['family']}", out, re.M), e.name
    for e in MODELS:
        assert e.name in out
    assert "n_steps=50" in out  # default parameters are shown
    assert cli.main(["list", "models"]) == 0
    only = capsys.readouterr().out
    assert "efficientnet_lite0" in only and "saliency" not in only
    assert cli.main(["list", "nonsense"]) == 2
    _err_line(capsys)


def test_version_and_help(capsys):
    import spixel

    assert cli.main(["--version"]) == 0
    assert spixel.__version__ in capsys.readouterr().out
    assert cli.main(["explain", "--help"]) == 0
    assert "--param" in capsys.readouterr().out


def test_parse_value():
    assert cli.parse_value("20") == 20 and isinstance(cli.parse_value("20"), int)
    assert cli.parse_value("0.5") == 0.5 and cli.parse_value("1e-3") == 0.001 and cli.parse_value("-2") == -2
    assert cli.parse_value("true") is True and cli.parse_value("False") is False
    assert cli.parse_value("none") is None
    assert cli.parse_value("riemann_trapezoid") == "riemann_trapezoid"
    assert cli.parse_params(["a=1", "b = x=y"]) == {"a": 1, "b": "x=y"}


# ---------------------------------------------------------------------------------------------- demo
@dataclass
class _Sample:
    name: str
    image: np.ndarray
    classes: list[int]
    box: tuple[int, int, int, int]
    source: str


def test_demo_with_stand_in_samples(tmp_path, monkeypatch, capsys):
    from skimage import data

    fake = [
        _Sample("chelsea", _chelsea(), [281, 282, 285], (140, 20, 380, 300), "scikit-image"),
        _Sample("coffee", data.coffee(), [967], (60, 20, 500, 330), "scikit-image"),
    ]
    monkeypatch.setattr(cli.demo, "_load_samples", lambda: fake)
    out = tmp_path / "demo"
    methods = [m for m in ("saliency", "gradcam") if m in METHODS]
    assert cli.main(["demo", "--out", str(out), "--methods", ",".join(methods)]) == 0, capsys.readouterr().err
    page = (out / "index.html").read_text()
    srcs = re.findall(r'<img[^>]* src="([^"]+)"', page)
    assert len(srcs) == len(fake) * (1 + len(methods))
    for s in srcs:
        assert not s.startswith("/") and (out / s).is_file(), s  # relative and present
    for m in methods:
        assert m.replace("_", " ") in page
    summary = json.loads((out / "demo.json").read_text())
    assert [p["name"] for p in summary["photos"]] == ["chelsea", "coffee"]
    assert summary["photos"][0]["predicted"]["label"] in ("tabby", "tiger cat", "Egyptian cat")


def test_demo_states_its_cheaper_settings():
    ig = METHODS.get("integrated_gradients")
    assert cli.demo._demo_note(ig, cli.DEMO_PARAMS["integrated_gradients"]) == (
        "Demo setting, for speed: n_steps=16 (default 50)."
    )
    assert cli.demo._demo_note(METHODS.get("saliency"), {}) == ""


def test_demo_with_the_bundled_photos(tmp_path, capsys):
    data = pytest.importorskip("spixel.data")
    if not hasattr(data, "samples"):
        pytest.skip("spixel.data.samples() is not there yet")
    n = len(data.samples())
    out = tmp_path / "demo"
    assert cli.main(["demo", "--out", str(out), "--methods", "saliency"]) == 0, capsys.readouterr().err
    page = (out / "index.html").read_text()
    assert page.count('class="row"') == n

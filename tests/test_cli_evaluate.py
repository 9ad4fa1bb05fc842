"""``spixel evaluate`` (and ``sample:NAME`` images), run in-process through ``spixel.cli.main``.

Real photos (the bundled ``sample:chelsea`` and ``sample:coffee``) with the real EfficientNet-Lite0. The CSV is
checked against ``spixel.evaluate`` called directly on the same input, the sparseness column against a hand-written
Gini index and the pointing game against a hand-written hit test on the annotated box.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import spixel
from spixel import cli
from spixel.data import sample
from spixel.registry import METRICS

MODEL = ["--model", "efficientnet_lite0", "--device", "cpu"]
METHODS = ["saliency", "gradcam"]
METRIC_NAMES = ["deletion", "insertion", "pointing_game", "sparseness"]
SAMPLES = ["chelsea", "coffee"]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One evaluation of 2 photos × 2 methods × 4 metrics, shared by the tests of this module."""
    out = tmp_path_factory.mktemp("eval")
    capture: dict[str, Any] = {}
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = cli.main(
            [
                "evaluate",
                *(f"sample:{s}" for s in SAMPLES),
                *MODEL,
                "--method",
                ",".join(METHODS),
                "--metric",
                ",".join(METRIC_NAMES),
                "--metric-param",
                "n_steps=16",
                "--out",
                str(out),
            ]
        )
    capture.update(rc=rc, out=out, stdout=buf.getvalue())
    with open(out / "scores.csv", newline="") as f:
        capture["rows"] = list(csv.DictReader(f))
    return capture


@pytest.fixture(scope="module")
def direct() -> dict[str, Any]:
    """The same photos explained through the Python API."""
    model = cli.get_model("efficientnet_lite0", None, "cpu")
    smp = [sample(s) for s in SAMPLES]
    x = model.preprocess([s.image for s in smp])
    expl = {m: spixel.explain(model, x, m, seed=0) for m in METHODS}
    return {"model": model, "x": x, "expl": expl, "samples": smp}


def _err_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip() and ln.startswith("spixel: error: ")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_files_rows_and_columns(run: dict[str, Any]) -> None:
    assert run["rc"] == 0
    out: Path = run["out"]
    for name in ("scores.csv", "summary.json", "curves_deletion.png", "curves_insertion.png"):
        assert (out / name).is_file(), name
    assert not (out / "curves_sparseness.png").exists() and not (out / "curves_pointing_game.png").exists()
    with Image.open(out / "curves_deletion.png") as im:
        assert im.size[0] > 200 and im.size[1] > 150
    rows = run["rows"]
    assert len(rows) == len(SAMPLES) * len(METHODS)
    assert [(r["image"], r["method"]) for r in rows] == [(f"sample:{s}", m) for s in SAMPLES for m in METHODS]
    for col in ("predicted", "predicted_label", "explained", "explained_label", "probability", *METRIC_NAMES):
        assert col in rows[0], col
    for r in rows:
        for m in METRIC_NAMES:
            assert np.isfinite(float(r[m]))
    # the explained class is the model's own prediction (no --target)
    assert rows[0]["explained"] == rows[0]["predicted"]


def test_deletion_matches_python_api(run: dict[str, Any], direct: dict[str, Any]) -> None:
    for m in METHODS:
        for metric in ("deletion", "insertion"):
            ref = spixel.evaluate(direct["model"], direct["x"], direct["expl"][m], metric, n_steps=16)
            got = [float(r[metric]) for r in run["rows"] if r["method"] == m]
            np.testing.assert_allclose(got, ref.scores.double().numpy(), rtol=1e-4, atol=1e-6)


def test_predicted_class_matches_forward(run: dict[str, Any], direct: dict[str, Any]) -> None:
    pred = direct["model"].predict(direct["x"]).argmax(1).tolist()
    got = [int(r["predicted"]) for r in run["rows"] if r["method"] == METHODS[0]]
    assert got == pred


def _gini(a: np.ndarray) -> float:
    """Gini index of |a| (Hurley & Rickard; Quantus Sparseness), written out by hand."""
    v = np.sort(np.abs(a.astype(np.float64).ravel()))
    n = v.size
    i = np.arange(1, n + 1)
    return float(np.sum((2 * i - n - 1) * v) / (n * np.sum(v)))


def test_sparseness_and_pointing_game_by_hand(run: dict[str, Any], direct: dict[str, Any]) -> None:
    model = direct["model"]
    for m in METHODS:
        amaps = direct["expl"][m].numpy()
        rows = [r for r in run["rows"] if r["method"] == m]
        for i, smp in enumerate(direct["samples"]):
            assert float(rows[i]["sparseness"]) == pytest.approx(_gini(amaps[i]), rel=1e-4, abs=1e-6)
            ((x0, y0, x1, y1),) = model.map_boxes([smp.box], smp.image.shape)
            yy, xx = np.nonzero(amaps[i] == amaps[i].max())
            # a hit when the maximum (within 15 px) touches the box
            near = (np.clip(xx, x0, x1 - 1) - xx) ** 2 + (np.clip(yy, y0, y1 - 1) - yy) ** 2 <= 15**2
            assert float(rows[i]["pointing_game"]) == float(near[0])


def test_summary_and_table(run: dict[str, Any]) -> None:
    summary = json.loads((run["out"] / "summary.json").read_text())
    assert summary["images"] == len(SAMPLES)
    for metric in METRIC_NAMES:
        assert summary["metrics"][metric]["higher_is_better"] == METRICS.get(metric).info["higher_is_better"]
        for m in METHODS:
            vals = [float(r[metric]) for r in run["rows"] if r["method"] == m]
            assert summary["mean"][m][metric] == pytest.approx(np.mean(vals), rel=1e-5, abs=1e-6)
    assert summary["metrics"]["deletion"]["params"]["n_steps"] == 16
    head = run["stdout"].splitlines()[0]
    assert "deletion ↓" in head and "insertion ↑" in head and "pointing_game ↑" in head
    assert all(any(line.startswith(m) for line in run["stdout"].splitlines()) for m in METHODS)


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--metric", "delet"], "unknown metric"),
        (["--metric", "ssim"], "Python API"),
        (["--metric", "sparseness,randomization"], "spixel.metrics.randomization"),
        (["--metric", "sparseness", "--metric-param", "boxes=1"], "sample:NAME"),
        (["--metric", "sparseness", "--metric-param", "n_steps=3"], "no listed metric"),
        (["--metric", "convex_hull_ratio"], "reference=METHOD"),
        (["--metric", "deletion", "--box", "1,2,3"], "--box"),
    ],
)
def test_bad_arguments_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], needle: str
) -> None:
    rc = cli.main(["evaluate", "sample:chelsea", *MODEL, "--method", "saliency", "--out", str(tmp_path), *extra])
    assert rc == 2
    assert needle in _err_line(capsys)


def test_localisation_needs_ground_truth(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    img = tmp_path / "cat.png"
    Image.fromarray(sample("chelsea").image).save(img)
    rc = cli.main(
        [
            "evaluate",
            str(img),
            *MODEL,
            "--method",
            "saliency",
            "--metric",
            "sparseness,pointing_game",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert rc == 2
    line = _err_line(capsys)
    assert "pointing_game" in line and "sample:NAME" in line and "--box" in line
    assert not (tmp_path / "o" / "scores.csv").exists()


def test_bad_image_does_not_stop_others(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_text("not a picture")
    out = tmp_path / "o"
    rc = cli.main(
        [
            "evaluate",
            str(bad),
            "sample:coffee",
            "sample:nope",
            *MODEL,
            "--method",
            "saliency",
            "--metric",
            "sparseness",
            "--out",
            str(out),
        ]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert "broken.jpg" in err and "sample:nope" in err and "Traceback" not in err
    with open(out / "scores.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["image"] for r in rows] == ["sample:coffee"]


def test_explain_accepts_samples(tmp_path: Path) -> None:
    rc = cli.main(["explain", "sample:coffee", *MODEL, "--method", "saliency", "--out", str(tmp_path)])
    assert rc == 0
    info = json.loads((tmp_path / "coffee" / "explanation.json").read_text())
    assert info["image"] == "sample:coffee"
    assert np.load(tmp_path / "coffee" / "saliency.npy").shape == (224, 224)


def test_list_marks_python_only_metrics(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["list", "metrics"]) == 0
    out = capsys.readouterr().out
    lines = {ln.split()[0]: ln for ln in out.splitlines() if ln.startswith("  ") and ln.split()[0] in METRICS.names()}
    assert "[python only]" in lines["ssim"] and "[python only]" not in lines["deletion"]

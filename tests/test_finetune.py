"""``spixel train finetune`` (issue 15): a pretrained backbone fine-tuned on an ImageFolder written to disk, the
held-out accuracy, resume after a kill (in process and a real ``SIGKILL``), and the result as ``--model``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import spixel
from spixel import cli
from spixel.data import SyntheticDataset
from spixel.errors import SpixelError
from spixel.train import load_checkpoint
from spixel.train.finetune import finetune, split_holdout

#: A small net pretrained by us: ``spixel train tiny`` (VGG-style 16-32-64 on 32×32 synthetic images, 10 epochs
#: on 8000 images, 89.1 % held-out). Regenerate with ``spixel train tiny --out DIR --threads 1`` and copy
#: ``DIR/tiny.pt`` here (``torch.load(weights_only=True)`` reads it; 105 kB).
BASE = Path(__file__).parent / "data" / "tiny_vgg32.pt"
CLASSES = ("disk", "square", "ring")  # 3 of the base's 7 classes: a new head


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic dataset as an ImageFolder: ``DIR/<class>/<i>.png`` for three classes (an unreadable file
    too, which is skipped)."""
    root = tmp_path_factory.mktemp("imagefolder")
    ds = SyntheticDataset(420, 32, seed=11, distractors=0)
    images, labels = ds.arrays()[:2]
    for i, (im, k) in enumerate(zip(images, labels, strict=True)):
        name = ds.classes[int(k)]
        if name in CLASSES:
            (root / name).mkdir(exist_ok=True)
            Image.fromarray(np.asarray(im)).save(root / name / f"{i:04d}.png")
    (root / "disk" / "broken.png").write_bytes(b"not a png")
    return root


def _state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def test_split_holdout_is_stratified_and_seeded() -> None:
    labels = [0] * 10 + [1] * 5 + [2] * 2
    tr, te = split_holdout(labels, 0.2, seed=3)
    assert sorted(tr + te) == list(range(17)) and not set(tr) & set(te)
    assert [sum(labels[i] == c for i in te) for c in range(3)] == [2, 1, 1]
    assert split_holdout(labels, 0.2, seed=3) == (tr, te) and split_holdout(labels, 0.2, seed=4) != (tr, te)


def test_finetune_beats_start_and_loads(folder: Path, tmp_path: Path) -> None:
    res = finetune(str(BASE), str(folder), tmp_path, epochs=2, batch_size=16, lr=0.01, progress=False)
    assert res.start_accuracy < 0.6 and res.accuracy > res.start_accuracy + 0.2, (res.start_accuracy, res.accuracy)
    assert res.skipped == 1 and [h["epoch"] for h in res.history] == [1, 2]
    model = spixel.load_model(str(tmp_path / "model.pt"))
    assert model.labels == sorted(CLASSES) and model.input_size == 32 and model.layers["cam"] == "stages.2"
    cfg = model.module.checkpoint
    assert cfg["accuracy"] == res.accuracy and cfg["start_accuracy"] == res.start_accuracy
    assert cfg["recipe"]["name"] == "finetune" and cfg["recipe"]["fresh_head"] == ["fc.weight", "fc.bias"]
    x = model.preprocess(str(folder / "ring" / sorted(os.listdir(folder / "ring"))[0]))
    assert spixel.explain(model, x, "gradcam").attribution.shape == (1, 32, 32)
    # a re-run with other settings is refused in one line
    with pytest.raises(SpixelError, match=r"other settings \(lr\)"):
        finetune(str(BASE), str(folder), tmp_path, epochs=2, batch_size=16, lr=0.02, progress=False)


def test_resume_ends_where_an_uninterrupted_run_ends(folder: Path, tmp_path: Path) -> None:
    kw = {"batch_size": 32, "lr": 0.01, "progress": False}
    whole = finetune(str(BASE), str(folder), tmp_path / "whole", epochs=2, **kw)
    first = finetune(str(BASE), str(folder), tmp_path / "split", epochs=1, **kw)
    assert first.resumed_after == 0
    second = finetune(str(BASE), str(folder), tmp_path / "split", epochs=2, **kw)
    assert second.resumed_after == 1 and second.history == whole.history
    a, b = _state(tmp_path / "whole" / "model.pt"), _state(tmp_path / "split" / "model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_sigkill_mid_epoch_then_rerun_resumes(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "spixel", "train", "finetune", "--arch", str(BASE), "--data", str(folder),
        "--out", str(out), "--epochs", "30", "--batch-size", "4", "--lr", "0.01", "--threads", "1", "--no-progress",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(spixel.__file__).parents[1])}
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 120
        while not (out / "last.pt").exists() and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)  # into the next epoch
        p.send_signal(signal.SIGKILL)
        p.wait(30)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == -signal.SIGKILL, p.stderr.read().decode()[-500:]
    done = torch.load(out / "last.pt", map_location="cpu", weights_only=True)["epoch"]
    assert 1 <= done < 30 and not (out / "model.pt").exists()
    # the re-run (fewer epochs than planned is fine: only the epoch count may change) resumes after `done`
    more = done + 1
    cmd[cmd.index("--epochs") + 1] = str(more)
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180)
    assert r.returncode == 0, r.stderr[-800:]
    assert f"resuming after epoch {done} of {more}" in r.stdout + r.stderr
    assert load_checkpoint(out / "model.pt").module.checkpoint["epochs"] == more
    # the fine-tuned model works with the CLI as --model
    img = folder / "square" / sorted(os.listdir(folder / "square"))[0]
    assert cli.main(["explain", str(img), "--model", str(out / "model.pt"), "--method", "gradcam",
                     "--out", str(tmp_path / "maps"), "--device", "cpu"]) == 0  # fmt: skip
    assert any((tmp_path / "maps").rglob("*.npy"))


def test_torchvision_backbone_new_head(folder: Path, tmp_path: Path) -> None:
    import torchvision

    torch.manual_seed(0)
    w = tmp_path / "r18.pt"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), w)  # an ImageNet-shaped (1000) head
    res = finetune("torchvision:resnet18", str(folder), tmp_path / "ft", weights=w, epochs=1, batch_size=32,
                   input_size=32, progress=False)  # fmt: skip
    cfg = res.model.module.checkpoint
    assert cfg["recipe"]["fresh_head"] == ["fc.weight", "fc.bias"] and cfg["arch"] == "torchvision:resnet18"
    m = spixel.load_model(str(tmp_path / "ft" / "model.pt"))
    assert m.name == "resnet18-finetuned" and m.labels == sorted(CLASSES)
    assert m.layers["cam"] == "layer3"  # found again at 32 px, where layer4's output is 1×1
    assert (m.input_size, m.resize, m.mean) == (32, 37, (0.485, 0.456, 0.406))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(m.module(x), res.model.module(x))


def test_cli_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert cli.main(["train", "finetune", "--out", str(tmp_path), "--arch", "torchvision:resnet18"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--data" in err[0]
    assert cli.main(["train", "finetune", "--out", str(tmp_path), "--arch", "torchvision:resnet18",
                     "--data", str(tmp_path)]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--weights" in err[0]
    assert cli.main(["train", "one", "--out", str(tmp_path), "--arch", "timm:resnet18"]) == 2
    assert "resnet or vgg" in capsys.readouterr().err


def test_gad_and_roar_on_the_finetuning_data(folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    finetune(str(BASE), str(folder), tmp_path / "ft", epochs=1, batch_size=32, lr=0.01, progress=False)
    base = tmp_path / "ft" / "model.pt"
    argv = ["train", "gad", "--base", str(base), "--data", str(folder), "--out", str(tmp_path / "gad"),
            "--pair", "0,2", "--alphas", "0,4", "--epochs", "1", "--no-progress"]  # fmt: skip
    assert cli.main(argv) == 0
    sups = sorted((tmp_path / "gad").glob("*.pt"))
    assert [p.name for p in sups] == [
        "tiny_vgg32-finetuned-gad-0-2-alpha0.pt",
        "tiny_vgg32-finetuned-gad-0-2-alpha4.pt",
    ]
    s = load_checkpoint(sups[1])
    assert s.labels == sorted(CLASSES) and s.module.checkpoint["recipe"]["name"] == "gad"
    assert cli.main(["train", "gad", "--data", str(folder), "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    assert "--base" in capsys.readouterr().err
    # ROAR on the same data retrains the base's (small) architecture
    argv = ["train", "roar", "--base", str(base), "--data", str(folder), "--out", str(tmp_path / "roar"),
            "--levels", "0.5", "--epochs", "1", "--no-progress"]  # fmt: skip
    assert cli.main(argv) == 0
    r = load_checkpoint(tmp_path / "roar" / "vgg-roar-saliency-50.pt")
    assert r.labels == sorted(CLASSES) and r.module.checkpoint["data"]["roar"]["level"] == 0.5

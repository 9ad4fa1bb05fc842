"""The Ray engine (``spixel run --engine ray``): the local engine's rows, a killed actor replaced with nothing lost
or duplicated, resume after SIGKILL of the driver, Ctrl-C, a worker that cannot read the dataset, and the CLI.

One local Ray instance (2 CPUs, no dashboard) serves the whole module; a file lock keeps a second pytest-xdist
worker from starting another one at the same time (``--dist load`` may split this module between workers; under
``--dist loadgroup`` the ``xdist_group`` mark keeps it on one)."""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spixel.cli import main
from spixel.data import SyntheticDataset, open_dataset
from spixel.experiments import Store, load_experiment, run_local
from spixel.train.checkpoint import save_checkpoint
from test_experiments import assert_same_rows, items_of, rows_of, smooth_model

pytestmark = [pytest.mark.xdist_group("ray"), pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*")]

SPIXEL = [sys.executable, "-m", "spixel"]
N_ITEMS = 12  # 11 images and one corrupt file

EXPERIMENT = """
[experiment]
name = "ray"
model = "{model}"
seed = 5
[[method]]
name = "saliency"
[[method]]
name = "smoothgrad"            # stochastic: seeded per item
params = {{ n_samples = 3 }}
[[method]]
name = "gradcam"
[[metric]]
name = "deletion"
params = {{ n_steps = 8 }}
[[metric]]
name = "faithfulness_correlation"   # stochastic metric
params = {{ nr_runs = 4 }}
[[metric]]
name = "sparseness"
"""


@pytest.fixture(scope="module")
def cluster():
    """A local Ray instance for this module: ``(ray, address)``; shut down after the module's tests."""
    ray = pytest.importorskip("ray")
    lock = open(os.path.join(tempfile.gettempdir(), "spixel-ray-tests.lock"), "w")  # noqa: SIM115
    fcntl.flock(lock, fcntl.LOCK_EX)  # one Ray instance at a time on this machine
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        try:
            yield ray, ray.get_runtime_context().gcs_address
        finally:
            ray.shutdown()
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    """The folder (11 images, one corrupt), the checkpoint and the experiment file."""
    root = tmp_path_factory.mktemp("ray")
    images = root / "imgs"
    images.mkdir()
    ds = SyntheticDataset(N_ITEMS - 1, size=64, seed=3)
    for i in range(N_ITEMS - 1):
        Image.fromarray(ds[i].image).save(images / f"img{i:02d}.png")
    good = (images / "img00.png").read_bytes()
    (images / "img05b.png").write_bytes(good[: len(good) // 3])  # truncated: a failed item
    ckpt = root / "smooth.pt"
    save_checkpoint(ckpt, smooth_model())
    toml = root / "e.toml"
    toml.write_text(EXPERIMENT.format(model=ckpt))
    return {"root": root, "data": f"folder:{images}", "images": images, "toml": toml}


@pytest.fixture(scope="module")
def setup(files) -> dict:
    """``files`` and the local engine's rows (``local``: its store)."""
    local = files["root"] / "local.db"
    r = run_local(load_experiment(files["toml"]), files["data"], local, batch_size=5, progress=False)
    assert (r.done, r.failed) == (N_ITEMS - 1, 1)
    return {**files, "local": local}


def _wait_released(ray, cpus: float = 2.0, timeout: float = 30.0) -> float:
    """The CPUs free in the cluster once the pool is gone (waits up to ``timeout`` for them to come back)."""
    deadline = time.time() + timeout
    free = 0.0
    while time.time() < deadline:
        free = ray.available_resources().get("CPU", 0.0)
        if free >= cpus:
            break
        time.sleep(0.2)
    return free


def test_ray_gives_the_local_rows_through_ctrl_c_and_resume(cluster, setup, tmp_path):
    from spixel.experiments.engines.ray import run_ray

    ray, _ = cluster
    store = tmp_path / "ray.db"
    exp = load_experiment(setup["toml"])

    def interrupt(n: int) -> None:
        raise KeyboardInterrupt  # as Ctrl-C would, right after the first committed batch

    r = run_ray(exp, setup["data"], store, batch_size=2, workers=2, progress=False, on_batch=interrupt)
    assert r.interrupted and r.computed == 2 and len(items_of(store)) == 2  # whole batches only
    with Store(store) as st:
        assert st.runs()[0].status == "interrupted"
    assert _wait_released(ray) == 2.0  # the pool was stopped
    r = run_ray(exp, setup["data"], store, batch_size=2, workers=2, progress=False)
    assert r.resumed and (r.total, r.done, r.failed, r.computed, r.skipped) == (N_ITEMS, N_ITEMS - 1, 1, 10, 2)
    assert_same_rows(rows_of(setup["local"]), rows_of(store))
    assert items_of(setup["local"]) == items_of(store)
    stochastic = [row for row in rows_of(store) if row[1] == "smoothgrad" or row[3] == "faithfulness_correlation"]
    assert len(stochastic) == (N_ITEMS - 1) * 5 and all(row[4] is not None for row in stochastic)
    failed = [i for i in items_of(store) if i[1] == "failed"]
    assert [f[0] for f in failed] == ["img05b.png"] and "\n" not in failed[0][2]
    with Store(store) as st:
        (run,) = st.runs()
        assert (run.engine, run.workers, run.status) == ("ray", 2, "finished")
    assert _wait_released(ray) == 2.0
    again = run_ray(exp, setup["data"], store, batch_size=2, workers=2, progress=False)
    assert again.resumed and again.computed == 0 and again.skipped == N_ITEMS


def _kill_once(marker: str, after: int):
    """A forward pre-hook that SIGKILLs its own process at its ``after``-th call — in the first process to get
    there (``marker`` is created exclusively), so exactly one actor dies, in the middle of a batch."""
    calls = [0]

    def hook(module, args):
        calls[0] += 1
        if calls[0] == after:
            try:
                fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return None
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            os.kill(os.getpid(), signal.SIGKILL)
        return None

    return hook


def test_a_killed_actor_is_replaced_and_its_batch_retried(cluster, setup, tmp_path):
    from spixel.experiments.engines.ray import run_ray

    ray, _ = cluster
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the hook travels with the model
    model = smooth_model()  # the checkpoint's weights
    marker = tmp_path / "killed"
    model.module.register_forward_pre_hook(_kill_once(str(marker), after=4))
    store = tmp_path / "ray.db"
    batches: list[int] = []
    r = run_ray(
        load_experiment(setup["toml"]),
        setup["data"],
        store,
        model=model,
        batch_size=3,
        workers=2,
        progress=False,
        on_batch=batches.append,
    )
    assert marker.is_file() and int(marker.read_text()) != os.getpid()  # an actor did die
    assert (r.done, r.failed, r.computed) == (N_ITEMS - 1, 1, N_ITEMS) and sum(batches) == N_ITEMS
    assert items_of(store) == items_of(setup["local"])  # every item once
    assert_same_rows(rows_of(setup["local"]), rows_of(store))  # every row once, the same values


def test_a_worker_that_cannot_read_the_dataset_stops_the_run_in_one_line(cluster, files, tmp_path):
    from spixel.experiments.engines.ray import RayEngineError, run_ray

    copy = tmp_path / "gone"
    shutil.copytree(files["images"], copy)
    ds = open_dataset(f"folder:{copy}")
    shutil.rmtree(copy)  # listed here, absent where the workers look
    with pytest.raises(RayEngineError) as err:
        run_ray(load_experiment(files["toml"]), ds, tmp_path / "s.db", workers=1, progress=False)
    msg = str(err.value)
    assert "cannot read the dataset" in msg and "storage every node sees" in msg and "\n" not in msg


def test_pool_size(cluster):
    from spixel.experiments.engines.ray import RayEngineError, pool_size

    assert pool_size(0, 1.0, 0.0, 10) == 2  # the cluster's 2 CPUs
    assert pool_size(0, 0.5, 0.0, 3) == 3  # 4 fit, 3 batches
    assert pool_size(2, 1.0, 0.0, 1) == 1
    with pytest.raises(RayEngineError, match="do not fit"):
        pool_size(3, 1.0, 0.0, 10)
    with pytest.raises(RayEngineError, match="0 GPU"):
        pool_size(1, 1.0, 0.5, 10)


def _count(store: Path) -> int:
    try:
        con = sqlite3.connect(store, timeout=0.1)
        try:
            return con.execute("SELECT COUNT(*) FROM items").fetchone()[0]
        finally:
            con.close()
    except sqlite3.OperationalError:
        return 0


def test_cli_ray_resumes_after_sigkill_of_the_driver(cluster, setup, tmp_path, capsys):
    _, address = cluster
    store = tmp_path / "killed.db"
    argv = [
        *SPIXEL,
        "run",
        str(setup["toml"]),
        "--data",
        setup["data"],
        "--store",
        str(store),
        "--engine",
        "ray",
        "--address",
        address,
        "--workers",
        "2",
        "--batch-size",
        "2",
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    n = 0
    while time.time() < deadline and proc.poll() is None:
        n = _count(store) if store.exists() else 0
        if n >= 2:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 2 <= n < N_ITEMS, f"the run was not interrupted mid-way (n={n})"
    partial = items_of(store)
    assert len(partial) % 2 == 0 and len(partial) < N_ITEMS  # whole batches only
    again = subprocess.run(argv, capture_output=True, text=True, timeout=180)
    assert again.returncode == 3, again.stderr  # one corrupt image: exit 3, as a local run
    assert f"{len(partial)} skipped" in again.stdout and "deletion ↓" in again.stdout
    assert_same_rows(rows_of(setup["local"]), rows_of(store))
    assert items_of(setup["local"]) == items_of(store)
    assert main(["runs", str(store)]) == 0 and "ray×2" in capsys.readouterr().out


def test_an_address_where_nothing_listens_fails_at_once():
    from spixel.experiments.engines.ray import RayEngineError, _check_reachable

    t0 = time.perf_counter()
    with pytest.raises(RayEngineError, match="nothing answers there"):
        _check_reachable("127.0.0.1:1")
    assert time.perf_counter() - t0 < 5
    _check_reachable("auto")  # left to Ray


def test_cli_without_ray_says_how_to_install(files, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails, as where it is not installed
    argv = ["run", str(files["toml"]), "--data", files["data"], "--store", str(tmp_path / "s.db"), "--engine", "ray"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'pip install "spixel[ray]"' in err[0]
    assert not (tmp_path / "s.db").exists()


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--address", "auto"], "--address: only with --engine ray"),
        (["--gpus-per-worker", "0.5"], "--gpus-per-worker: only with --engine ray"),
        (["--engine", "ray", "--cpus-per-worker", "0"], "a number > 0"),
        (["--engine", "ray", "--gpus-per-worker", "nan"], "a number >= 0"),
        (["--engine", "spark"], "invalid choice"),
    ],
)
def test_cli_engine_options(files, tmp_path, capsys, extra, match):
    argv = ["run", str(files["toml"]), "--data", files["data"], "--store", str(tmp_path / "s.db"), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and match in err[0], err


def test_probe_paths_name_the_files_this_machine_reads(files):
    from spixel.experiments.engines.ray import probe_paths

    ds = open_dataset(files["data"])
    root, probes = probe_paths(ds, list(range(len(ds))))
    assert root == str(files["images"]) and len(probes) == 3 and all(os.path.isabs(f) for f in probes)
    assert np.all([Path(f).is_file() for f in probes])

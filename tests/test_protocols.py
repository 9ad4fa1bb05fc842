"""Every shipped protocol runs end to end (fast settings, 2 synthetic items, a small ReLU ResNet), its metadata is
well formed, and its published numbers and claims name methods and metrics of its own experiment."""

from __future__ import annotations

import sqlite3

import pytest

from spixel.experiments import fast, load_experiment, run_local
from spixel.registry import PROTOCOLS
from test_experiments import smooth_model

#: the names issue 13 asks for that are built so far (the others need model sets or pieces still missing)
BUILT = {
    "p000-fidelity",
    "p001-deletion",
    "p001-weak-loc",
    "p002-lerf",
    "p002-wsol",
    "p004-insertion-blur",
    "p004-pointing",
    "p004-segmentation",
}


def test_the_protocols_are_registered():
    assert set(PROTOCOLS.names()) >= BUILT


@pytest.mark.parametrize("name", sorted(BUILT))
def test_protocol_metadata(name):
    exp = load_experiment(name)
    p = exp.protocol
    assert p["name"] == name == exp.name and p["paper"] in {"000", "001", "002", "003", "004"}
    assert p["data"] in {"photos", "synthetic"} and p["description"] and p["table"]
    methods = {m.key for m in exp.methods}
    metrics = {m.key for m in exp.metrics}
    for row in p.get("published", []):
        assert row["method"] in methods and row["metric"] in metrics and 0 <= row["value"] <= 1, row
    assert p.get("claims"), "every protocol states the claims its report judges"
    for c in p["claims"]:
        assert c["better"] in methods and c["worse"] in methods and c["metric"] in metrics, c
    f = fast(exp)
    assert f.hash != exp.hash or not (p.get("fast") or p.get("fast_metrics"))
    assert f.name == name + "-fast"


@pytest.mark.parametrize("name", sorted(BUILT))
def test_protocol_runs_end_to_end(name, tmp_path):
    exp = fast(load_experiment(name))
    store = tmp_path / "s.db"
    r = run_local(exp, "synthetic:2", store, model=smooth_model(), batch_size=2, progress=False)
    con = sqlite3.connect(store)
    errors = con.execute("SELECT item_id, error FROM items WHERE status = 'failed'").fetchall()
    assert (r.done, r.failed) == (2, 0), errors
    n = con.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    refs = sum(1 for m in exp.metrics if m.params.get("reference"))
    assert n == 2 * (len(exp.methods) * len(exp.metrics) - refs)
    con.close()


def test_cli_lists_protocols_and_datasets(capsys):
    from spixel import cli

    assert cli.main(["list", "protocols"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in BUILT) and "paper 001 Table 1" in out
    assert cli.main(["list", "datasets"]) == 0
    out = capsys.readouterr().out
    assert all(f"  {form} " in out for form in ("folder", "voc", "imagenet", "csv", "masks", "photos", "synthetic"))


def test_fast_needs_a_protocol_and_data_defaults_to_the_protocols(tmp_path, capsys):
    from spixel import cli

    toml = tmp_path / "e.toml"
    toml.write_text('[experiment]\nmodel = "x.pt"\n[[method]]\nname = "saliency"\n')
    assert cli.main(["run", str(toml), "--fast", "--store", str(tmp_path / "s.db")]) == 2
    assert "--fast applies to protocols" in capsys.readouterr().err
    assert cli.main(["run", str(toml), "--store", str(tmp_path / "s.db")]) == 2
    assert "give --data" in capsys.readouterr().err

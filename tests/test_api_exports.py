"""The top-level names a new user reaches for, and the import graph under them (issue 11, frictions)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import torch

import spixel
from spixel.registry import METRICS, SEGMENTERS

SRC = Path(spixel.__file__).resolve().parent


def test_segment_is_the_segmentation_entry_point():
    import spixel.segmentation

    assert spixel.segment is spixel.segmentation.segment
    rgb = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    seg = spixel.segment(rgb, "grid", size=8)
    assert seg.labels.shape == (2, 16, 16)
    assert seg.num_segments.tolist() == [4, 4]


def test_list_segmenters_and_metrics_are_the_sorted_registries():
    segs, mets = spixel.list_segmenters(), spixel.list_metrics()
    assert segs == sorted(segs) == SEGMENTERS.names()
    assert mets == sorted(mets) == METRICS.names()
    assert {"slic", "grid", "nas", "guided_slic"} <= set(segs)
    assert {"deletion", "insertion", "pointing_game"} <= set(mets)


def test_all_lists_the_new_names():
    for name in ("segment", "list_segmenters", "list_metrics", "list_methods", "explain", "evaluate"):
        assert name in spixel.__all__
        assert hasattr(spixel, name)


def test_importing_spixel_registers_the_segmenters():
    # a fresh interpreter: only `import spixel`, nothing from spixel.segmentation by hand
    code = "import spixel; from spixel.registry import SEGMENTERS; print(','.join(SEGMENTERS.names()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=_env())
    assert {"slic", "grid", "nas"} <= set(out.stdout.strip().split(","))


# ---------------------------------------------------------------- the models ↔ attribution circle is gone


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC.parent), os.environ.get("PYTHONPATH", "")])}


def _imported_modules(path: Path) -> set[str]:
    """Every module named by an import statement anywhere in ``path`` (function-local ones included), with
    relative imports resolved against the spixel package."""
    rel = path.relative_to(SRC.parent).with_suffix("")
    package = list(rel.parts[:-1])
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            mod = ".".join([*base, *(node.module.split(".") if node.module else [])])
            found.add(mod)
            found.update(f"{mod}.{a.name}" for a in node.names)
    return found


def test_models_sources_do_not_import_attribution():
    # a function-local import would hide the circle from an import-time check: read the sources instead
    for path in sorted((SRC / "models").glob("*.py")):
        bad = {m for m in _imported_modules(path) if m.startswith("spixel.attribution")}
        assert not bad, f"{path.name} imports {sorted(bad)}"
    assert "spixel.models.state.frozen" in _imported_modules(SRC / "models" / "adapter.py")


def test_importing_the_adapter_does_not_load_attribution():
    # spixel/__init__ imports attribution itself, so bypass it: a bare `spixel` package object whose submodules
    # load normally; then importing the adapter loads only what the adapter's own graph needs
    code = (
        "import sys, types; "
        f"p = types.ModuleType('spixel'); p.__path__ = [{str(SRC)!r}]; sys.modules['spixel'] = p; "
        "import spixel.models.adapter, spixel.models.state; "
        "bad = sorted(m for m in sys.modules if m.startswith('spixel.attribution')); "
        "assert not bad, bad; "
        "import torch; net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4)).train(); "
        "p = spixel.models.adapter.ModelAdapter(net, input_size=8).predict(torch.zeros(2, 3, 8, 8)); "
        "assert p.shape == (2, 4) and net.training; "
        "bad = sorted(m for m in sys.modules if m.startswith('spixel.attribution')); "
        "assert not bad, bad"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env())
    assert r.returncode == 0, r.stderr


def test_frozen_lives_in_models_and_is_reexported():
    from spixel.attribution import _core
    from spixel.models import adapter, state

    assert _core.frozen is state.frozen is adapter.frozen
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout()).train()
    net[0].bias.requires_grad_(False)
    with state.frozen(net):
        assert not net.training and not any(p.requires_grad for p in net.parameters())
    assert net.training and net[0].weight.requires_grad and not net[0].bias.requires_grad

"""Every ``python`` code block of the README and of docs/*.md runs as written (in a scratch folder)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _blocks() -> list[tuple[str, str]]:
    out = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for k, m in enumerate(BLOCK.finditer(path.read_text(encoding="utf-8"))):
            out.append((f"{path.relative_to(ROOT)}#{k}", m.group(1)))
    return out


BLOCKS = _blocks()


def test_the_readme_has_runnable_examples():
    assert sum(name.startswith("README.md") for name, _ in BLOCKS) >= 2


@pytest.mark.parametrize("code", [c for _, c in BLOCKS], ids=[n for n, _ in BLOCKS])
def test_doc_example_runs(code, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "<doc example>", "exec"), {"__name__": "__doc_example__"})

"""``spixel.progress``: a bar with a rate and an ETA on a terminal, nothing when not one, ``$SPIXEL_PROGRESS``."""

from __future__ import annotations

import io
import re
import sys

import pytest

from spixel.errors import BadParameterError
from spixel.progress import ENV_VAR, progress, progress_enabled, write


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)


def _run(bar, n: int = 5) -> None:
    for _ in range(n):
        bar.update(1)
    bar.close()


def test_forced_on_bar_shows_rate_and_eta():
    buf = io.StringIO()  # not a terminal: enabled=True forces the bar anyway
    bar = progress(5, "explaining", enabled=True, file=buf)
    bar.update(2)
    bar.refresh()
    mid = buf.getvalue()
    assert "explaining" in mid and "2/5" in mid
    assert re.search(r"\d\d:\d\d<\d\d:\d\d", mid), mid  # elapsed<remaining: the ETA
    assert re.search(r"[\d.]+\s*img/s", mid), mid  # the rate, in the bar's unit
    _run(bar, 3)
    assert "5/5" in buf.getvalue()


def test_the_unit_names_the_rate():
    buf = io.StringIO()
    _run(progress(4, "demo", "map", enabled=True, file=buf), 4)
    assert re.search(r"[\d.]+\s*map/s", buf.getvalue())


def test_not_a_terminal_writes_nothing():
    buf = io.StringIO()
    bar = progress(5, "explaining", file=buf)
    assert bar.disable
    _run(bar)
    assert buf.getvalue() == ""


def test_a_terminal_gets_the_bar():
    tty = FakeTTY()
    bar = progress(3, "explaining", file=tty)
    assert not bar.disable
    _run(bar, 3)
    assert "3/3" in tty.getvalue()


def test_default_stream_is_stderr(monkeypatch):
    err = FakeTTY()
    monkeypatch.setattr(sys, "stderr", err)
    _run(progress(2, "explaining"), 2)
    assert "2/2" in err.getvalue()
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    _run(progress(2, "explaining"), 2)
    assert sys.stderr.getvalue() == ""


@pytest.mark.parametrize("value", ["1", "true", "ON"])
def test_env_var_forces_the_bar_on(monkeypatch, value):
    monkeypatch.setenv(ENV_VAR, value)
    buf = io.StringIO()  # not a terminal
    _run(progress(5, "explaining", file=buf))
    assert "5/5" in buf.getvalue() and "img/s" in buf.getvalue()


@pytest.mark.parametrize("value", ["0", "false", "off"])
def test_env_var_forces_the_bar_off(monkeypatch, value):
    monkeypatch.setenv(ENV_VAR, value)
    tty = FakeTTY()
    _run(progress(5, "explaining", file=tty))
    assert tty.getvalue() == ""


def test_explicit_argument_beats_the_env_var(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "0")
    assert progress_enabled(True) is True
    monkeypatch.setenv(ENV_VAR, "1")
    assert progress_enabled(False) is False
    assert progress_enabled(None, io.StringIO()) is True


def test_bad_env_value_says_what_to_set(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "maybe")
    with pytest.raises(BadParameterError, match=ENV_VAR):
        progress(1, "x", file=io.StringIO())


def test_unknown_total_still_counts():
    buf = io.StringIO()
    _run(progress(None, "reading", enabled=True, file=buf), 3)
    assert "3" in buf.getvalue() and "img/s" in buf.getvalue()


def test_write_prints_above_the_bar():
    buf = io.StringIO()
    bar = progress(4, "explaining", enabled=True, file=buf)
    bar.update(1)
    write("spixel: error: a.jpg: not an image", file=buf)
    _run(bar, 3)
    out = buf.getvalue()
    assert "spixel: error: a.jpg: not an image\n" in out
    assert out.index("not an image") < out.rindex("4/4")
    quiet = io.StringIO()
    write("plain", file=quiet)  # no bar: just the line
    assert quiet.getvalue() == "plain\n"

"""Streamlit pieces shared by both pages: the cached model, parameter widgets, errors as messages."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import streamlit as st

from ..errors import SpixelError
from . import compute


def one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    if isinstance(e, SpixelError):
        return text or type(e).__name__
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


@contextlib.contextmanager
def shown_errors(what: str) -> Iterator[None]:
    """Run a block; any exception becomes a one-line ``st.error`` (never a traceback on the page) and stops the page."""
    try:
        yield
    except SpixelError as e:
        st.error(f"{what}: {one_line(e)}")
        st.stop()
    except Exception as e:  # a bug or an odd input: still a message, not a traceback
        st.error(f"{what} failed: {one_line(e)}")
        st.stop()


@st.cache_resource(show_spinner="loading the model …", max_entries=4)
def model(name: str, weights: str | None, device: str | None) -> Any:
    """The model, loaded once per (name, weights, device) for every session of the server."""
    return compute.load(name, weights, device)


def device() -> str | None:
    return compute.env("device")


def param_widgets(prefix: str, defaults: dict[str, Any], *, sliders: dict[str, tuple[int, int]] | None = None) -> dict:
    """One widget per editable parameter (bool → checkbox, int / float → number, str → text; ``sliders``: ints
    shown as sliders ``(lo, hi)``); returns the values."""
    out: dict[str, Any] = {}
    sliders = sliders or {}
    for k, v in compute.editable_params(defaults).items():
        key = f"{prefix}:{k}"
        if isinstance(v, bool):
            out[k] = st.checkbox(k, value=v, key=key)
        elif isinstance(v, int) and k in sliders:
            lo, hi = sliders[k]
            out[k] = st.slider(k, lo, max(hi, v), v, key=key)
        elif isinstance(v, int):
            out[k] = int(st.number_input(k, value=v, step=1, key=key))
        elif isinstance(v, float):
            out[k] = float(st.number_input(k, value=v, format="%g", key=key))
        else:
            out[k] = st.text_input(k, value=v, key=key)
    return out


def canonical(d: dict[str, Any]) -> str:
    """A stable text key of parameters (for the caches)."""
    return json.dumps(d, sort_keys=True, default=str)

"""The browser explorer behind ``spixel serve``: a Streamlit app of two pages (pure Python, no Node build).

* **Explore one image** (:mod:`.explore`): a bundled photo, an upload (size-limited, decoded as an image only) or a
  path; a model (bundled, a checkpoint, a torchvision/timm architecture with local weights, all read with
  ``weights_only=True``); its top-5 and the class to explain; several methods over optional regions (segmenter and
  its parameters, e.g. the number of superpixels); overlays side by side with region boundaries, signed or
  absolute, with a colour bar; deletion / insertion curves with their AUCs; SSIM between every two maps.
* **Browse a results store** (:mod:`.browse`): a run of ``spixel run``; its method × metric table with 95 %
  confidence intervals; items sorted and filtered by any score; one item's image, maps (from the run's map cache,
  else recomputed on demand exactly as the run computed them) and curves; the failed items with their reasons.

The model is loaded once per server (``st.cache_resource``); maps, curves and overlays for unchanged settings come
from ``st.cache_data``. What can go wrong because of the user is a one-line message on the page, never a traceback.
:func:`command` builds the ``streamlit run`` command line that :func:`spixel.cli.serve.cmd_serve` starts.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .compute import MAX_UPLOAD_MB

#: The Streamlit script.
APP = Path(__file__).with_name("app.py")


def command(host: str = "127.0.0.1", port: int = 8501) -> list[str]:
    """The ``python -m streamlit run app.py …`` command line: bound to ``host`` (127.0.0.1 unless told otherwise),
    headless, no usage statistics, no file watcher, uploads capped at :data:`MAX_UPLOAD_MB` MB, XSRF protection."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        "--server.address",
        host,
        "--server.port",
        str(int(port)),
        "--server.headless",
        "true",
        "--server.fileWatcherType",
        "none",
        "--server.maxUploadSize",
        str(MAX_UPLOAD_MB),
        "--server.enableXsrfProtection",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--global.developmentMode",
        "false",
        "--client.showErrorDetails",
        "none",
        "--client.toolbarMode",
        "minimal",
        "--theme.base",
        "light",
    ]


def is_loopback(host: str) -> bool:
    """Whether ``host`` only reaches this machine (``127.0.0.0/8``, ``::1``, ``localhost``)."""
    import ipaddress

    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def environment(
    *,
    store: str | None = None,
    model: str | None = None,
    weights: str | None = None,
    cache_maps: str | None = None,
    device: str | None = None,
    host: str = "127.0.0.1",
) -> dict[str, str]:
    """The ``SPIXEL_SERVE_*`` variables the app reads (absolute paths), on top of this process's environment;
    ``SPIXEL_SERVE_REMOTE=1`` when ``host`` is not a loopback address (the page then reads no typed paths)."""
    env = dict(os.environ)
    env["SPIXEL_SERVE_REMOTE"] = "0" if is_loopback(host) else "1"
    for k, v in {
        "store": store,
        "model": model,
        "weights": weights,
        "cache_maps": cache_maps,
        "device": device,
    }.items():
        key = f"SPIXEL_SERVE_{k.upper()}"
        if v is None:
            env.pop(key, None)
            continue
        if k in ("store", "cache_maps", "weights") or (k == "model" and os.path.exists(v)):
            v = str(Path(v).expanduser().resolve())
        env[key] = v
    return env


__all__ = ["APP", "MAX_UPLOAD_MB", "command", "environment", "is_loopback"]

"""Screenshots of the running explorer with headless Chromium (Debian ``chromium``), for the smoke test and the README.

Chromium's own ``--screenshot`` fires at the page's load event, before Streamlit has rendered anything over its
websocket; so this drives Chromium through the DevTools protocol instead (the ``websockets`` client, which comes
with Streamlit): open the page, wait until the app has finished running and every image has loaded, then capture.

    python -m spixel.serve.screenshot http://127.0.0.1:8501/explore docs/images/serve_explore.png --height 1500
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

#: Flags that work in a bare container (no sandbox, no GPU, nothing fetched from outside).
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--mute-audio",
)

#: True once Streamlit has rendered the page, finished running the script and loaded every image.
_READY = """(() => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app) return false;
  if (app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  if (document.querySelector('[data-testid="stSkeleton"], [data-testid="stSpinner"]')) return false;
  if (!document.querySelector('[data-testid="stMainBlockContainer"] h1')) return false;
  return Array.from(document.images).every(i => i.complete && i.naturalWidth > 0);
})()"""


#: The page's text, then the text of every error box and exception on it (each after a line ``--- error``).
_TEXT = """(() => {
  const main = document.querySelector('[data-testid="stApp"]');
  const errs = Array.from(document.querySelectorAll(
      '[data-testid="stException"], [data-testid="stAlertContentError"]')).map(e => '--- error\\n' + e.innerText);
  return [main ? main.innerText : '', ...errs].join('\\n');
})()"""


def chromium() -> str | None:
    """The Chromium executable, or ``None``."""
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


async def _capture(ws_url: str, url: str, out: Path, width: int, height: int, timeout: float, settle: float) -> None:
    from websockets.asyncio.client import connect

    async with connect(ws_url, max_size=256 * 1024 * 1024) as ws:
        await _drive(ws, url, out, width, height, timeout, settle)


async def _drive(ws: object, url: str, out: Path, width: int, height: int, timeout: float, settle: float) -> None:
    counter = 0

    async def call(method: str, **params: object) -> dict:
        nonlocal counter
        counter += 1
        mid = counter
        await ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        while True:
            d = json.loads(await ws.recv())  # type: ignore[attr-defined]
            if d.get("id") == mid:
                if "error" in d:
                    raise RuntimeError(f"{method}: {d['error']}")
                return d.get("result", {})

    await call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
    await call("Page.navigate", url=url)
    end = time.monotonic() + timeout
    ready_since: float | None = None
    while True:
        r = await call("Runtime.evaluate", expression=_READY, returnByValue=True)
        ok = bool(r.get("result", {}).get("value"))
        now = time.monotonic()
        if ok:
            ready_since = ready_since or now
            if now - ready_since >= settle:  # ready and still ready: the script has really finished
                break
        else:
            ready_since = None
        if now > end:
            raise TimeoutError(f"{url} was not rendered within {timeout:.0f} s")
        await asyncio.sleep(0.25)
    shot = await call("Page.captureScreenshot", format="png", captureBeyondViewport=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(base64.b64decode(shot["data"]))
    r = await call("Runtime.evaluate", expression=_TEXT, returnByValue=True)
    out.with_suffix(".txt").write_text(str(r.get("result", {}).get("value", "")))


def screenshot(
    url: str,
    out: str | Path,
    *,
    width: int = 1400,
    height: int = 1000,
    timeout: float = 120.0,
    settle: float = 1.5,
) -> Path:
    """A ``width × height`` PNG of ``url`` once the explorer has rendered it, and the page's text beside it
    (``OUT.txt``; each error box or exception after a line ``--- error``); raises ``TimeoutError`` after ``timeout``
    seconds and ``FileNotFoundError`` without Chromium."""
    exe = chromium()
    if exe is None:
        raise FileNotFoundError("chromium is not installed (apt-get install chromium)")
    out = Path(out)
    # Chromium's helper processes may still be writing the profile while it is removed: never an error
    with tempfile.TemporaryDirectory(prefix="spixel-chromium-", ignore_cleanup_errors=True) as profile:
        proc = subprocess.Popen(
            [exe, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stopped with every helper process
        )
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            end = time.monotonic() + 60
            ws_url = None
            while ws_url is None:  # the port file, then the DevTools server, then a page: each may lag
                if time.monotonic() > end or proc.poll() is not None:
                    raise RuntimeError("chromium did not start its DevTools server")
                try:
                    port = int(port_file.read_text().split()[0])
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
                        pages = [t for t in json.load(r) if t.get("type") == "page"]
                    ws_url = pages[0]["webSocketDebuggerUrl"] if pages else None
                except (OSError, ValueError, IndexError, KeyError):
                    pass
                if ws_url is None:
                    time.sleep(0.2)
            asyncio.run(_capture(ws_url, url, out, width, height, timeout, settle))
        finally:
            _stop(proc)
    return out


def _stop(proc: subprocess.Popen) -> None:
    """Stop Chromium and its helpers (its process group): SIGTERM, then SIGKILL after 10 s."""
    import os
    import signal

    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError, PermissionError):  # helpers that outlived the browser process
        os.killpg(proc.pid, signal.SIGKILL)
    time.sleep(0.2)  # let them leave before the profile is removed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="screenshot a page of the running spixel explorer")
    p.add_argument("url")
    p.add_argument("out")
    p.add_argument("--width", type=int, default=1400)
    p.add_argument("--height", type=int, default=1000)
    p.add_argument("--timeout", type=float, default=300.0)
    a = p.parse_args(argv)
    print(screenshot(a.url, a.out, width=a.width, height=a.height, timeout=a.timeout))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

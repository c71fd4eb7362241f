"""A real browser for the report tests: headless Chromium driven over the DevTools protocol on a pipe.

No driver package and no network: Chromium's ``--remote-debugging-pipe`` reads NUL-separated JSON commands on
its fd 3 and answers on fd 4. ``open_page`` loads a file, collects console messages, uncaught exceptions and
log entries (failed loads), and hands back the page to evaluate JavaScript in and to screenshot.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


def chromium() -> str | None:
    """The Chromium executable (Debian's ``chromium``, which ``make test`` installs), or None."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class Page:
    """A loaded page: what the console said, and a channel to evaluate and screenshot."""

    process: subprocess.Popen
    send_fd: int
    receive_fd: int
    session: str = ""
    problems: list[str] = field(default_factory=list)  # console errors/warnings, exceptions, failed loads
    _next: int = 0
    _buffer: bytes = b""

    def _write(self, method: str, params: dict | None = None, session: bool = True) -> int:
        self._next += 1
        message: dict[str, Any] = {"id": self._next, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self.send_fd, json.dumps(message).encode() + b"\0")
        return self._next

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self.receive_fd, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed its DevTools pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message = json.loads(raw)
        self._note(message)
        return message

    def _note(self, message: dict) -> None:
        method, params = message.get("method"), message.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "warning", "assert"):
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            self.problems.append(f"console.{params['type']}: {text}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            self.problems.append(f"exception: {details.get('exception', {}).get('description', details.get('text'))}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") in ("error", "warning"):
            self.problems.append(f"log: {params['entry'].get('text')} {params['entry'].get('url', '')}")

    def call(self, method: str, params: dict | None = None, session: bool = True, timeout: float = 60) -> dict:
        wanted = self._write(method, params, session)
        deadline = time.monotonic() + timeout
        while True:
            message = self._read(deadline)
            if message.get("id") == wanted:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def wait_for(self, event: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            message = self._read(deadline)
            if message.get("method") == event:
                return message.get("params", {})

    def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression in the page."""
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, width: int = 1400) -> np.ndarray:
        """The whole page (not just the window) as an (H, W, 3) uint8 array."""
        from PIL import Image

        height = int(self.evaluate("document.documentElement.scrollHeight"))
        self.call("Emulation.setDeviceMetricsOverride", {"width": width, "height": min(height, 16000),
                                                         "deviceScaleFactor": 1, "mobile": False})
        shot = self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        return np.asarray(Image.open(io.BytesIO(base64.b64decode(shot["data"]))).convert("RGB"))


@contextmanager
def open_page(path: Path, profile: Path, width: int = 1400) -> Iterator[Page]:
    """Load ``path`` in a fresh headless Chromium (its profile in ``profile``, a test's temporary folder; any
    network name resolves to nothing, so a page that reaches out logs a failed load)."""
    exe = chromium()
    if exe is None:
        raise RuntimeError("no Chromium found (make test installs Debian's chromium package)")
    to_browser_r, to_browser_w = os.pipe()
    from_browser_r, from_browser_w = os.pipe()
    # file access from files: a page's own linked pictures (capture index) can be read back by a canvas
    args = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe", "--no-first-run",
            "--allow-file-access-from-files",
            f"--user-data-dir={profile}", "--host-resolver-rules=MAP * ~NOTFOUND", f"--window-size={width},1000",
            "about:blank"]
    command = f"exec \"$@\" 3<&{to_browser_r} 4>&{from_browser_w}"
    process = subprocess.Popen(["bash", "-c", command, "chromium", *args], pass_fds=(to_browser_r, from_browser_w),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(to_browser_r)
    os.close(from_browser_w)
    page = Page(process, to_browser_w, from_browser_r)
    try:
        target = page.call("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        page.session = page.call("Target.attachToTarget", {"targetId": target, "flatten": True},
                                 session=False)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            page.call(f"{domain}.enable")
        page.call("Page.navigate", {"url": path.resolve().as_uri()})
        page.wait_for("Page.loadEventFired")
        yield page
    finally:
        try:
            page.call("Browser.close", session=False, timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        os.close(to_browser_w)
        os.close(from_browser_r)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# Every <img> decoded and drawn, with its size and a few pixel statistics from a canvas (data: URIs are
# same-origin, so the canvas can be read back).
IMAGES_JS = """
Array.from(document.images).map(function (img) {
  var c = document.createElement('canvas');
  c.width = Math.min(img.naturalWidth, 400); c.height = Math.min(img.naturalHeight, 400);
  var stats = null;
  if (img.complete && img.naturalWidth > 0) {
    var g = c.getContext('2d'); g.drawImage(img, 0, 0, c.width, c.height);
    var d = g.getImageData(0, 0, c.width, c.height).data, sum = 0, sq = 0, n = d.length / 4;
    for (var i = 0; i < d.length; i += 4) { var v = (d[i] + d[i + 1] + d[i + 2]) / 3; sum += v; sq += v * v; }
    stats = {mean: sum / n, std: Math.sqrt(Math.max(sq / n - (sum / n) * (sum / n), 0))};
  }
  return {alt: img.alt, src: img.src.slice(0, 30), complete: img.complete, width: img.naturalWidth,
          height: img.naturalHeight, stats: stats};
})
"""

# data-key -> text of every marked number
KEYS_JS = """
Object.fromEntries(Array.from(document.querySelectorAll('[data-key]')).filter(function (e) {
  return e.dataset.key; }).map(function (e) { return [e.dataset.key, e.textContent.trim()]; }))
"""

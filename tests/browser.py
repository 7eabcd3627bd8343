"""A real headless Chromium (Debian's `chromium`), driven over the DevTools protocol on a pipe: no network port,
no extra Python package. Nothing here uses emojicam."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import subprocess
import tempfile
import time

import cv2
import numpy as np
from conftest import need_tool

# WebGPU on SwiftShader (software) for tests/test_web.py: compute works beside --disable-gpu, but a WebGPU canvas
# needs the GPU process, Vulkan on SwiftShader to render and ANGLE on SwiftShader to composite (without them
# getCurrentTexture() loses the device: "Could not find SharedImageBackingFactory")
WEBGPU_FLAGS = ["--enable-unsafe-webgpu", "--enable-gpu", "--ignore-gpu-blocklist", "--enable-features=Vulkan",
                "--use-vulkan=swiftshader", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"]


def fake_camera_flags(clip: str | os.PathLike) -> list[str]:
    """A camera that plays clip (.y4m or .mjpeg) over and over, allowed without asking."""
    return ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-video-capture={os.fspath(clip)}"]


FLAGS = ["--headless", "--no-sandbox", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         "--remote-debugging-pipe"]


def chromium_binary() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def need_chromium() -> None:
    """The test needs Chromium: skipped without it, failed under CI (conftest.need_tool)."""
    need_tool("chromium", "the pages are tested in a real browser (apt-get install chromium; ./setup.sh test "
              "installs it)", chromium_binary() is not None)


class Chromium:
    """One browser with a fresh profile; `open(url)` gives a page session to call DevTools methods on."""

    def __init__(self, timeout: float = 60, flags: list[str] | tuple[str, ...] = (), webgpu: bool = False):
        """flags: more command-line switches; webgpu: WEBGPU_FLAGS instead of --disable-gpu."""
        self.timeout, self.profile = timeout, tempfile.mkdtemp(prefix="emojicam-chromium-")
        self.events: list[dict] = []  # DevTools events (messages without an id) as they came, in every session
        to_browser, self._out = os.pipe()
        self._in, from_browser = os.pipe()

        def fds_3_and_4():  # the browser reads commands on fd 3 and writes answers on fd 4
            a, b = os.dup(to_browser), os.dup(from_browser)
            os.dup2(a, 3)
            os.dup2(b, 4)

        gpu = WEBGPU_FLAGS if webgpu else ["--disable-gpu"]
        command = [chromium_binary(), *FLAGS, *gpu, *flags, f"--user-data-dir={self.profile}", "about:blank"]
        self.proc = subprocess.Popen(command, preexec_fn=fds_3_and_4, close_fds=False, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        os.close(to_browser)
        os.close(from_browser)
        self._buf, self._id = b"", 0

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            while b"\0" in self._buf:
                raw, self._buf = self._buf.split(b"\0", 1)
                answer = json.loads(raw)
                if "id" not in answer:
                    self.events.append(answer)
                elif answer["id"] == self._id:
                    if "error" in answer:
                        raise RuntimeError(f"{method}: {answer['error']}")
                    return answer["result"]
            if not select.select([self._in], [], [], max(0.0, deadline - time.monotonic()))[0]:
                raise TimeoutError(f"chromium gave no answer to {method} in {self.timeout} s")
            chunk = os.read(self._in, 1 << 20)
            if not chunk:
                raise RuntimeError(f"chromium exited (rc {self.proc.poll()}) during {method}")
            self._buf += chunk

    def open(self, url: str, size: tuple[int, int] = (1400, 1100), watch: bool = False, phone: bool = False) -> str:
        """A page with url loaded (load event fired), at size (width, height) CSS pixels; returns its session.
        watch: record its requests, console messages, log entries and exceptions from the start (events());
        phone: a mobile viewport with touch, as a phone's browser (taps by tap())."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Network", "Runtime", "Log") if watch else ():
            self.call(f"{domain}.enable", {}, session)
        self.call("Emulation.setDeviceMetricsOverride", {"width": size[0], "height": size[1], "deviceScaleFactor": 1,
                                                         "mobile": phone}, session)
        if phone:
            self.call("Emulation.setTouchEmulationEnabled", {"enabled": True, "maxTouchPoints": 5}, session)
        self.call("Page.navigate", {"url": url}, session)
        deadline = time.monotonic() + self.timeout
        while self.evaluate("document.readyState", session) != "complete":
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not finish loading")
            time.sleep(0.05)
        return session

    def evaluate(self, expression: str, session: str, gesture: bool = False):
        """The value of a JavaScript expression in the page (promises awaited); raises on a JavaScript error."""
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True,
                                                "userGesture": gesture}, session)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def events_of(self, session: str, *methods: str) -> list[dict]:
        """The params of the events of these methods that one page's session sent so far."""
        return [e["params"] for e in self.events if e.get("sessionId") == session and e["method"] in methods]

    def press(self, key: str, session: str) -> None:
        """One key typed into the page (down, then up), as a user types it: `+`, `m`, ` `, ..."""
        self.call("Input.dispatchKeyEvent", {"type": "keyDown", "key": key, "text": key}, session)
        self.call("Input.dispatchKeyEvent", {"type": "keyUp", "key": key}, session)

    def tap(self, x: float, y: float, session: str) -> None:
        """A finger's tap at (x, y) CSS pixels of the viewport (on a phone page: the browser makes it a click)."""
        for kind, points in (("touchStart", [{"x": x, "y": y}]), ("touchEnd", [])):
            self.call("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points}, session)

    def wait_for(self, expression: str, session: str, timeout: float | None = None, every: float = 0.1):
        """Evaluate expression until it is truthy; its value, or TimeoutError with the last one."""
        deadline, value = time.monotonic() + (timeout or self.timeout), None
        while time.monotonic() < deadline:
            value = self.evaluate(expression, session)
            if value:
                return value
            time.sleep(every)
        raise TimeoutError(f"{expression} stayed {value!r} for {timeout or self.timeout} s")

    def screenshot(self, session: str) -> np.ndarray:
        """The page's viewport as a BGR image."""
        data = base64.b64decode(self.call("Page.captureScreenshot", {"format": "png"}, session)["data"])
        return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.call("Browser.close")
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._in, self._out):
            os.close(fd)
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

"""The browser page (`emojicam web`) measured in the tests' headless Chromium: fps of the mirror per grid on a fake
camera, time to the first frame, flicker on a still picture, the benchmark mode's forward / classify / end-to-end
fps, the site's size and the kernels per frame; and the README's screenshot.

    .venv/bin/python benchmarks/web_page.py [--grids 32x18,...] [--label swiftshader] [--screenshot docs/web.png]

Chromium runs with tests/browser.py's WebGPU flags: on a machine without a GPU that is SwiftShader, software
WebGPU on the CPU cores, which says nothing about a GPU. The fake camera plays the first 0.5 s of
samples/sample.mp4 (1280x720, a still photo with a little sensor-like noise) in a loop. Writes
benchmarks/results/<date>-web-<label>.{json,md}.
"""

from __future__ import annotations

import argparse
import itertools
import json
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from browser import Chromium, fake_camera_flags  # noqa: E402
from media import ffmpeg  # noqa: E402
from web_results import table  # noqa: E402

from emojicam.bench.machine import machine_line  # noqa: E402
from emojicam.web.site import DEFAULT_GRIDS, SITE_FILES  # noqa: E402

MIRROR_S = 20.0  # how long the mirror's fps is counted per grid (at least 3 frames)


def serve(out: Path, grids: str) -> tuple[subprocess.Popen, str, float]:
    """`emojicam web OUT --grids GRIDS --serve --port 0`: the process, its URL, the seconds the export took."""
    t0 = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "emojicam", "web", str(out), "--grids", grids, "--serve",
                                "--port", "0"], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    export_s = None
    while True:
        line = lines.get(timeout=1800)
        if line.startswith("wrote "):
            export_s = time.perf_counter() - t0
        if " at http://" in line:
            return process, line.split(" at ")[1].split()[0], export_s


def read_js(path: Path) -> object:
    return json.loads(path.read_text().splitlines()[1].split(" = ", 1)[1].rstrip(";"))


def mirror_grid(browser: Chromium, url: str, model: str, grid: str) -> dict:
    """A fresh page on this network and grid: its first frame, then fps, stages and flicker over MIRROR_S
    seconds."""
    tab = browser.open(f"{url}#model={model}&grid={grid}")
    browser.wait_for("window.emojicam.state().frames >= 1", tab, timeout=900, every=0.5)
    first = browser.evaluate("window.emojicam.state()", tab)
    frames0, t0 = first["frames"], time.monotonic()
    time.sleep(MIRROR_S)
    browser.wait_for(f"window.emojicam.state().frames >= {frames0 + 3}", tab, timeout=900, every=0.2)
    state = browser.evaluate("window.emojicam.state()", tab)
    seconds = time.monotonic() - t0
    picks = [browser.evaluate("window.emojicam.frame()", tab)["picks"] for _ in range(4)]  # consecutive frames
    changed = [float(np.mean(np.array(a) != np.array(b))) for a, b in itertools.pairwise(picks)]
    browser.call("Page.close", {}, tab)
    return {"model": model, "grid": grid, "first_frame_s": first["firstFrameMs"] / 1e3,
            "frames": state["frames"] - frames0, "seconds": seconds, "fps": (state["frames"] - frames0) / seconds,
            "stage_ms": state["stages"],
            "cells_changed_per_frame": float(np.mean(changed)), "adapter": state["adapter"]}


def screenshot(browser: Chromium, url: str, grid: str, path: Path) -> None:
    """The page as a visitor sees it: the picture beside its emoji (keys o, m: side by side, not mirrored)."""
    tab = browser.open(f"{url}#grid={grid}", size=(1280, 420))
    browser.wait_for("window.emojicam.state().frames >= 1", tab, timeout=600, every=0.5)
    for key in "om":
        browser.press(key, tab)
    start = browser.evaluate("window.emojicam.state().frames", tab)
    browser.wait_for(f"window.emojicam.state().frames >= {start + 2}", tab, timeout=600, every=0.5)
    cv2.imwrite(str(path), browser.screenshot(tab))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grids", default=",".join(f"{c}x{r}" for c, r in DEFAULT_GRIDS))
    parser.add_argument("--label", default="swiftshader", help="names the results files: <date>-web-LABEL")
    parser.add_argument("--screenshot", type=Path, default=None, help="also save the README's screenshot here")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--markdown-from", type=Path, default=None, metavar="JSON",
                        help="only write the Markdown of an earlier run's JSON beside it")
    args = parser.parse_args()
    if args.markdown_from:
        args.markdown_from.with_suffix(".md").write_text(
            results_markdown(json.loads(args.markdown_from.read_text()), args.markdown_from.name))
        return 0
    machine = machine_line()
    with tempfile.TemporaryDirectory(prefix="emojicam-web-bench-") as work:
        work = Path(work)
        camera = work / "camera.mjpeg"
        ffmpeg("-i", ROOT / "samples" / "sample.mp4", "-t", "0.5", "-an", "-c:v", "mjpeg", "-q:v", "3", camera)
        process, url, export_s = serve(work / "site", args.grids)
        try:
            site = work / "site"
            manifest = read_js(site / "manifest.js")
            sizes = {name: (site / name).stat().st_size for name in SITE_FILES}
            # keyed by network and grid: a site carries both networks at every grid
            kernels = {f"{g['model']} {g['name']}": {"compute": len(g["programs"]["pick"]), "draw": 2, "copies": 3,
                                   "forward": g["network"],
                                   "kernel_bytes": sum(d["bytes"] for d in g["programs"]["pick"]),
                                   "input_bytes": g["input"][0] * g["input"][1] * 4,
                                   "read_back_bytes": 0} for g in manifest["grids"]}
            with Chromium(timeout=900, webgpu=True, flags=fake_camera_flags(camera)) as browser:
                version = browser.call("Browser.getVersion")["product"]
                mirror = []
                for key in kernels:
                    mirror.append(mirror_grid(browser, url, *key.split(" ")))
                    print(json.dumps(mirror[-1]), flush=True)
                if args.screenshot:
                    screenshot(browser, url, "64x36" if any(k.endswith(" 64x36") for k in kernels)
                               else next(iter(kernels)).split(" ")[1], args.screenshot)
                tab = browser.open(f"{url}#bench")
                bench = json.loads(browser.wait_for(
                    "document.getElementById('status').textContent.startsWith('benchmark done') && "
                    "document.getElementById('json').value", tab, timeout=3600, every=2))
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
    date = time.strftime("%Y-%m-%d")
    note = ("SwiftShader: software WebGPU on this machine's CPU cores (2 here), not a GPU figure"
            if mirror[0]["adapter"]["architecture"] == "swiftshader" else f"WebGPU adapter: {mirror[0]['adapter']}")
    report = {"date": date, "machine": machine, "chromium": version, "note": note, "export_s": export_s,
              "site_bytes": sizes, "kernels_per_frame": kernels, "models": manifest["models"],
              "settings": manifest["settings"], "mirror": mirror, "benchmark": bench}
    stem = args.out / f"{date}-web-{args.label}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    stem.with_suffix(".md").write_text(results_markdown(report, stem.name + ".json"))
    print(f"wrote {stem}.json and .md")
    return 0


def results_markdown(report: dict, name: str) -> str:
    """The results file's Markdown, from its JSON (--markdown-from regenerates it)."""
    mirror, sizes, kernels = report["mirror"], report["site_bytes"], report["kernels_per_frame"]
    nets = report["models"]
    models = ", ".join(f"{m['name']} = {m['weights']} ({m['patch_px']} px, {m['flops_per_patch'] / 1e6:.2f} MFLOP a "
                       f"patch)" for m in nets)
    lines = [f"# The browser page on {mirror[0]['adapter']['name']}, {report['date']}", "",
             f"**{report['note']}.** Machine: {report['machine']} (when the run began: shared with other work). "
             f"Browser: {report['chromium']}, headless, tests/browser.py's WebGPU flags. Networks: {models}, settings "
             f"{report['settings']}.", "",
             f"Site: {sum(sizes.values()) / 1e6:.2f} MB in {len(sizes)} files ("
             + ", ".join(f"{n} {b / 1e3:.0f} kB" for n, b in sizes.items())
             + f"), written by `emojicam web` in {report['export_s']:.0f} s for {len(kernels)} grids.", "",
             "## The mirror (fake camera: a still 1280x720 photo with noise, looped)", "",
             "| network and grid | first frame (s, from page load) | fps | frames | main thread ms a frame "
             "| submit to done ms | classify ms (GPU) | draw ms (GPU) | cells changed a frame | GPU work a frame |",
             "|" + "---|" * 10]
    for m in mirror:
        key = f"{m.get('model', nets[-1]['name'])} {m['grid']}"
        k, s = kernels.get(key, kernels.get(m["grid"])), m["stage_ms"]
        lines.append(f"| {key} | {m['first_frame_s']:.1f} | {m['fps']:.3g} | {m['frames']} | {s['main']:.1f} | "
                     f"{s['latency']:.0f} | {s.get('classify') or 0:.0f} | {s.get('draw') or 0:.1f} | "
                     f"{m['cells_changed_per_frame']:.2%} | {k['compute']} dispatches + {k['draw']} draws + "
                     f"{k['copies']} copies, {k['kernel_bytes'] / 1e6:.1f} MB in kernels, no read-back |")
    lines += ["", "First frame: from the start of the page's loading to its first emoji frame (the site's scripts, "
              "the weights, the pipelines of the grid, the camera). Kernels a frame: the frame function's compute "
              "dispatches (tinygrad's WGSL), two draws (the cut and the render pass) and three copies (the camera "
              "picture into a texture, the cut into the input buffer, the picks into the previous picks); at most "
              "2 frames in flight, one wait a frame only when 2 are. Main thread: what encoding and submitting a "
              "frame cost JavaScript. Cells changed a frame: the share of cells whose emoji "
              "changed between consecutive frames of the still picture.", "",
              "## The benchmark mode (index.html#bench, the built-in 1280x720 frame)", "",
              table([(name, report["benchmark"])]).rstrip(), "",
              "Same emoji as Python: tests/test_web.py gives the page and the Python engine on the CPU device the "
              "same RGBA bytes (a photo at 16x9 and 32x18, then a changed frame against those picks); on this "
              "machine 100% of cells agreed, with both shipped 256-emoji models.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

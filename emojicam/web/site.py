"""`emojicam web`: the browser page, a static site that runs emojicam's network and scoring on the visitor's own GPU
through WebGPU (the live mirror and a GPU benchmark), and a small local server for it.

    OUT_DIR/index.html   the page                                     (emojicam/web/page/index.html)
            app.js       its code: camera, WebGPU, keys, HUD, benchmark (emojicam/web/page/app.js)
            manifest.js  the networks (the fast 18 px and the default 36 px one, or the one asked for), their
                         grids, each with its buffers and the dispatches of its frame function; the settings
                         and each emoji's text
            kernels.js   the WGSL kernels tinygrad generated (web/kernels.py) and the page's own two shaders:
                         the cut (emojicam/web/page/cut.wgsl) and the render pass (emojicam/web/page/render.wgsl)
            weights.js   the bytes of every buffer the kernels hold (weights, scorer constants, cell indices)
            atlas.js     the emoji tiles at the tile size, one PNG

A frame: WebGPU copies the camera's picture into a texture (copyExternalImageToTexture: on the GPU), a render pass
crops it to the grid's aspect ratio, mirrors it and area-resizes it to the grid's patch resolution (cut.wgsl), a
copy puts that into the frame function's input buffer, tinygrad's kernels cut patches,
run the network, score and pick each cell's emoji with hysteresis, and a render pass draws the tiles from the atlas
over each cell's background. Nothing comes back to JavaScript per frame.

The data is in script files rather than fetched, so the page also works opened straight from a folder (a USB
stick: browsers load scripts beside a page opened from a file, but refuse to fetch files for it).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, replace
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from emojicam import __version__
from emojicam.atomic import check_writable, hidden_temp, write_error
from emojicam.errors import EmojicamError
from emojicam.grid import MAX_COLS
from emojicam.settings import Settings

if TYPE_CHECKING:
    from emojicam.emoji_set import EmojiSet
    from emojicam.settings import ModelChoice

DEFAULT_GRIDS = ((32, 18), (48, 27), (64, 36), (96, 54), (128, 72))  # 16:9, as laptop cameras give
START_COLS = 64  # the grid the page starts on: the exported one nearest this many columns (as `live`'s default)
TEMPLATES = ("index.html", "app.js")  # copied as they are
SITE_FILES = (*TEMPLATES, "manifest.js", "kernels.js", "weights.js", "atlas.js")
MAX_TEXTURE_PX = 8192        # WebGPU's guaranteed maxTextureDimension2D: the input and the canvas are textures
EXPORT_TIMEOUT_S = 3600


def parse_grids(text: str) -> tuple[tuple[int, int], ...]:
    """'32x18,64x36' -> ((32, 18), (64, 36)), fewest cells first, each once; a one-line EmojicamError otherwise."""
    grids = set()
    for part in (p.strip() for p in text.split(",")):
        cols, _, rows = part.lower().partition("x")
        if not (cols.isdigit() and rows.isdigit() and 1 <= int(cols) <= MAX_COLS and 1 <= int(rows) <= MAX_COLS):
            raise EmojicamError(f"--grids: expected COLSxROWS,... with 1..{MAX_COLS} each, such as 32x18,64x36, "
                                f"got {text!r}")
        grids.add((int(cols), int(rows)))
    return tuple(sorted(grids, key=lambda g: (g[0] * g[1], g)))


@dataclass(frozen=True)
class Site:
    """What `emojicam web` wrote: the folder, its files' sizes, and per grid the GPU work of one mirror frame."""

    path: Path
    file_bytes: dict[str, int]
    kernels_per_frame: dict[str, int]  # "model grid" -> the frame function's compute dispatches + the 2 draws
    kept: bool = False  # the folder already held this very site (site_key): nothing was written

    @property
    def bytes(self) -> int:
        return sum(self.file_bytes.values())


def template(name: str) -> bytes:
    """A file of the page as shipped in the package (emojicam/web/page/)."""
    return (files("emojicam.web") / "page" / name).read_bytes()


def script(key: str, value) -> str:
    """A data file of the site: one JavaScript statement that hangs value on the page's EMOJICAM_SITE."""
    return (f"// written by emojicam {__version__} (`emojicam web`); read by app.js\n"
            f"(globalThis.EMOJICAM_SITE ??= {{}}).{key} = {json.dumps(value, separators=(',', ':'))};\n")


def check_out_dir(out_dir: Path) -> None:
    """OUT_DIR may be new, empty, or an earlier site (then replaced whole); anything else is left alone."""
    if out_dir.exists() and not out_dir.is_dir():
        raise EmojicamError(f"OUT_DIR: expected a folder for the site, got a file {out_dir}")
    if out_dir.is_dir():
        others = sorted(p.name for p in out_dir.iterdir() if p.name not in SITE_FILES)
        if others:
            raise EmojicamError(f"OUT_DIR: expected a new or empty folder or an earlier `emojicam web` site, got "
                                f"{out_dir} with other files in it ({', '.join(others[:3])})")


def build_kernels(models: tuple[tuple[str, Path], ...], set_dir: Path, grids: tuple[tuple[int, int], ...],
                  settings: Settings, out: Path) -> dict:
    """Run web/kernels.py in a child process on tinygrad's NULL device with the WGSL renderer; its programs.json."""
    spec = {"models": [(name, str(weights)) for name, weights in models], "emoji_set": str(set_dir),
            "grids": grids, "out": str(out),
            "settings": {k: v for k, v in asdict(settings).items() if k != "device"}}
    env = {**os.environ, "DEV": "NULL:WGSL", "NO_MEMORY_PLANNER": "1"}
    done = subprocess.run([sys.executable, "-m", "emojicam.web.kernels", json.dumps(spec)], env=env,
                          capture_output=True, text=True, timeout=EXPORT_TIMEOUT_S)
    if done.returncode != 0:
        raise RuntimeError(f"emojicam.web.kernels failed (exit {done.returncode}): {done.stderr[-3000:]}")
    return json.loads((out / "programs.json").read_text())


def atlas_png(emoji_set, tile_px: int) -> tuple[bytes, int]:
    """The tiles (straight alpha) in rows of ceil(sqrt(K)) as one PNG, and that many columns."""
    import cv2
    import numpy as np

    tiles = emoji_set.tiles(tile_px)
    cols = math.ceil(math.sqrt(len(tiles)))
    rows = -(-len(tiles) // cols)
    padded = np.zeros((rows * cols, tile_px, tile_px, 4), np.uint8)
    padded[:len(tiles)] = tiles
    sheet = padded.reshape(rows, cols, tile_px, tile_px, 4).transpose(0, 2, 1, 3, 4)
    ok, png = cv2.imencode(".png", sheet.reshape(rows * tile_px, cols * tile_px, 4))
    if not ok:
        raise RuntimeError("OpenCV could not encode the atlas as PNG")
    return png.tobytes(), cols


def site_key(networks: list[dict], models: tuple[tuple[str, Path], ...], set_fingerprint: str,
             grids: tuple[tuple[int, int], ...], settings: dict) -> str:
    """What a site is made of: emojicam's and tinygrad's versions, each network's weights (their bytes), the set,
    the grids, the settings and the page's own files. A folder whose manifest holds the same key is that site."""
    from importlib.metadata import version

    digest = hashlib.sha256(json.dumps({
        "emojicam": __version__, "tinygrad": version("tinygrad"), "set": set_fingerprint, "grids": grids,
        "settings": settings, "networks": networks,
        "weights": [hashlib.sha256(weights.read_bytes()).hexdigest() for _, weights in models]}).encode())
    for name in (*TEMPLATES, "render.wgsl", "cut.wgsl"):
        digest.update(template(name))
    return digest.hexdigest()[:32]


def read_script(path: Path):
    """The value a data file of the site (script()) hangs on EMOJICAM_SITE."""
    return json.loads(path.read_text().splitlines()[1].split(" = ", 1)[1].rstrip(";"))


def current_site(out_dir: Path, key: str) -> Site | None:
    """The site in out_dir if it is complete and its manifest holds key, else None."""
    try:
        manifest = read_script(out_dir / "manifest.js")
        sizes = {name: (out_dir / name).stat().st_size for name in SITE_FILES}
    except (OSError, ValueError, IndexError):
        return None
    if manifest.get("build") != key:
        return None
    return Site(out_dir, sizes, {f"{g['model']} {g['name']}": len(g["programs"]["pick"]) + 2
                                 for g in manifest["grids"]}, kept=True)


def over_webgpu_defaults(grid: dict) -> list[str]:
    """What a grid of the site asks beyond WebGPU's default limits (gpu_kernels.LIMITS['WEBGPU']): each dispatch's
    launch, bindings and work-group memory, each buffer's size; empty where every WebGPU device runs it."""
    from emojicam.gpu_kernels import LIMITS

    webgpu = LIMITS["WEBGPU"]
    found = sorted({v for d in grid["programs"]["pick"] for v in d["over_webgpu_defaults"]})
    biggest = max(b["bytes"] for b in grid["buffers"])
    for most, what in ((webgpu.binding_bytes, "binding"), (webgpu.buffer_bytes, "buffer")):
        if biggest > most:
            found.append(f"a {biggest / 2**20:.0f} MiB {what} (at most {most / 2**20:.0f} MiB)")
    return list(dict.fromkeys(found))


def check_grids(grids: tuple[tuple[int, int], ...], patch_px: int, tile_px: int) -> None:
    for cols, rows in grids:
        side = max(cols * max(patch_px, 2 * tile_px), rows * max(patch_px, tile_px))
        if side > MAX_TEXTURE_PX:
            raise EmojicamError(f"--grids: expected grids whose input ({patch_px} px a cell) and emoji frame fit "
                                f"WebGPU's {MAX_TEXTURE_PX} px textures, got {cols}x{rows} ({side} px)")


def site_models(choice: ModelChoice) -> tuple[Path, tuple[tuple[str, Path], ...]]:
    """The emoji set folder and the (name, weights) of each network the page carries for choice: both shipped
    networks, smallest first, for --model auto with the shipped weights (the page picks by the device's speed),
    else the one named. The page runs on the visitor's GPU: auto is chosen as for a GPU."""
    from emojicam.engine import model_files

    set_dir, weights = model_files(choice, on_cpu=False)
    if choice.model == "auto" and choice.weights is None and choice.emoji_set is None:
        return set_dir, tuple((name, model_files(replace(choice, model=name), on_cpu=False)[1])
                              for name in ("fast", "default"))
    return set_dir, ((choice.model, weights),)


def describe_networks(models: tuple[tuple[str, Path], ...], emoji_set: EmojiSet, grids: tuple[tuple[int, int], ...],
                      tile_px: int) -> list[dict]:
    """Each network's entry in the manifest, once its weights are known to fit the set and the grids to fit
    WebGPU's textures at its patch size."""
    from emojicam import model

    networks = []
    for name, weights in models:
        meta = model.read_metadata(weights)
        emoji_set.check_trained_on(meta["set_fingerprint"], json.loads(meta["class_names"]))
        config = json.loads(meta["config"])
        check_grids(grids, config["patch_px"], tile_px)
        networks.append({"name": name, "weights": weights.name, "patch_px": config["patch_px"],
                         "channels": config["channels"], "classes": config["classes"],
                         "flops_per_patch": model.ModelConfig(config["classes"], tuple(config["channels"]),
                                                              config["patch_px"]).flops_per_patch()})
    return networks


def export_site(out_dir: Path, models: tuple[tuple[str, Path], ...], set_dir: Path,
                grids: tuple[tuple[int, int], ...], settings: Settings, log=print) -> Site:
    """Write the site into a hidden folder beside out_dir and rename it into place once complete; a folder that
    already holds the same site is kept as it is. models: (name, weights) of each network the page carries,
    smallest first (the page picks one by the device's speed)."""
    from emojicam.emoji_set import EmojiSet

    check_out_dir(out_dir)
    emoji_set = EmojiSet.load(set_dir)
    networks = describe_networks(models, emoji_set, grids, settings.tile_px)
    site_settings = {k: getattr(settings, k) for k in ("tile_px", "background", "stability", "variety",
                                                        "colour_weight", "coverage_weight")}
    key = site_key(networks, models, emoji_set.fingerprint, grids, site_settings)
    if (kept := current_site(out_dir, key)) is not None:
        return kept
    check_writable(out_dir)  # now, not after the kernels are built
    log(f"web: tinygrad renders the kernels of {len(grids)} grid(s) of {len(models)} network(s) as WGSL "
        f"(about 10 s each)")
    staging = hidden_temp(out_dir, "site")
    try:
        with tempfile.TemporaryDirectory(prefix="emojicam-web-") as work:
            programs = build_kernels(models, set_dir, grids, settings, Path(work))
            data = {key: base64.b64encode((Path(work) / "data" / f"{key}.bin").read_bytes()).decode()
                    for key in programs["data"]}
        for grid in programs["grids"]:  # the page leaves such a grid out where the adapter allows less
            if over := over_webgpu_defaults(grid):
                log(f"web: grid {grid['name']} of the {grid['model']} network asks for more than every WebGPU "
                    f"device allows ({'; '.join(over)}): it runs only on GPUs that allow more")
        manifest = {"emojicam": __version__, "models": networks,
                    "set": {"fingerprint": emoji_set.fingerprint, "size": len(emoji_set)},
                    "settings": site_settings, "build": key}
        contents = site_files(manifest, programs, data, emoji_set, settings.tile_px)
        staging.mkdir()
        for name, blob in contents.items():
            (staging / name).write_bytes(blob)
        replace_folder(staging, out_dir)
    except OSError as e:
        raise write_error(out_dir, e) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Site(out_dir, {name: len(blob) for name, blob in contents.items()},
                {f"{g['model']} {g['name']}": len(g["programs"]["pick"]) + 2 for g in programs["grids"]})


def site_files(manifest: dict, programs: dict, data: dict, emoji_set: EmojiSet, tile_px: int) -> dict[str, bytes]:
    """The site's files by name: the manifest (with the atlas, the emoji as text, the grids and the starting one),
    the kernels and shaders, the weights, the atlas and the page's templates."""
    png, atlas_cols = atlas_png(emoji_set, tile_px)
    start = min(programs["grids"], key=lambda g: (abs(g["cols"] - START_COLS), g["cols"]))["name"]
    manifest = {**manifest, "atlas": {"tile_px": tile_px, "cols": atlas_cols},
                "emoji": emoji_set.strings() if emoji_set.codepoints is not None else None, "start": start,
                "grids": programs["grids"]}
    return {"manifest.js": script("manifest", manifest).encode(),
            "kernels.js": (script("kernels", programs["kernels"])
                           + script("render", template("render.wgsl").decode())
                           + script("cut", template("cut.wgsl").decode())).encode(),
            "weights.js": script("weights", data).encode(),
            "atlas.js": script("atlas", base64.b64encode(png).decode()).encode(),
            **{name: template(name) for name in TEMPLATES}}


def replace_folder(new: Path, out_dir: Path) -> None:
    """Rename new onto out_dir; an earlier folder there (empty, or a site: check_out_dir) goes once new is in."""
    if not out_dir.exists():
        os.replace(new, out_dir)
        return
    old = hidden_temp(out_dir, "old")
    os.replace(out_dir, old)
    try:
        os.replace(new, out_dir)
    except OSError:
        os.replace(old, out_dir)  # put the earlier site back
        raise
    shutil.rmtree(old, ignore_errors=True)


class SiteHandler(SimpleHTTPRequestHandler):
    """Files of one folder (SimpleHTTPRequestHandler keeps requests inside it), quietly, never cached."""

    extensions_map: ClassVar[dict[str, str]] = {**SimpleHTTPRequestHandler.extensions_map,
                                                ".js": "text/javascript; charset=utf-8",
                                                ".html": "text/html; charset=utf-8"}

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, format: str, *args) -> None:
        pass


def check_port(port: int) -> None:
    if not 0 <= port <= 65535:
        raise EmojicamError(f"--port: expected 0..65535 (0 = any free port), got {port}")


def serve(site: Path, port: int, announce=print) -> None:
    """Serve the site on 127.0.0.1:port (0: a free one) until Ctrl-C or SIGTERM; announce(url) once listening.
    localhost is a secure context, where browsers allow the camera and WebGPU."""
    check_port(port)
    handler = functools.partial(SiteHandler, directory=str(site))
    try:
        server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError as e:
        raise EmojicamError(f"--port: expected a free port on 127.0.0.1, got {port} ({e.strerror or e})") from None
    server.daemon_threads = True
    with server:
        announce(f"http://127.0.0.1:{server.server_port}/")
        server.serve_forever()

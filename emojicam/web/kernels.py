"""The browser page's kernels: per grid, the frame function, built on tinygrad's NULL device with its WGSL renderer
and captured, then written out as WGSL sources, dispatches and buffer bindings, with the bytes of every buffer it
holds (weights, the scorer's per-emoji constants, cell indices). A grid's `network` counts the frame's leading
dispatches up to the last that reads a weight of the network: the benchmark's `forward` times those dispatches of
the frame itself (tinygrad fuses the last layer with the colour score, so a network captured alone would run
other kernels than a frame does).

The frame function takes what the page copies from its canvas, RGBA bytes (rows*P, width, 4) with P the model's
patch size and width cols*P padded to a multiple of 64 pixels (WebGPU copies a texture into a buffer in rows of a
multiple of 256 bytes), and does on the GPU what the Python engine does after its resize: the cut into patches,
the network, the scores and the pick with hysteresis (Scorer.pick), and each cell's background behind the tile
(`auto`: scoring.auto_background of the cell's mean colour). It runs here as a child process, so the renderer is
chosen before tinygrad starts and no capture shares the process with anything else:

    DEV=NULL:WGSL NO_MEMORY_PLANNER=1 python -m emojicam.web.kernels SPEC_JSON   (SPEC_JSON from web.build_kernels)

and writes OUT/programs.json and OUT/data/*.bin (SPEC_JSON names OUT).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
from tinygrad import Tensor, TinyJit, dtypes
from tinygrad.nn.state import get_state_dict
from tinygrad.uop.ops import Ops

from emojicam.builder import capture
from emojicam.gpu_kernels import LIMITS, calls, launches, violations
from emojicam.grid import Grid
from emojicam.scoring import Scorer, auto_background

DEVICE = "NULL"
ROW_PX = 64  # the input's width is padded to this: 64 RGBA pixels = 256 bytes, WebGPU's bytesPerRow alignment
INPUTS = ("rgba", "prev", "margin")  # the frame function's inputs, in argument order
OUTPUTS = ("picks", "back")          # and its outputs


def input_width(grid: Grid, patch_px: int) -> int:
    """The width in pixels of the frame function's RGBA input: the grid's, padded to a multiple of ROW_PX."""
    return -(-grid.cols * patch_px // ROW_PX) * ROW_PX


def cut(rgba: Tensor, grid: Grid, patch_px: int) -> Tensor:
    """(rows*P, width, 4) uint8 RGBA -> (N, P, P, 3) uint8 RGB patches in row-major cell order (alpha and the
    padding dropped), as grid.cut_patches cuts a resized frame."""
    p = patch_px
    x = rgba[:, :grid.cols * p, :3].reshape(grid.rows, p, grid.cols, p, 3)
    return x.permute(0, 2, 1, 3, 4).reshape(grid.count, p, p, 3)


def frame_function(scorer: Scorer, grid: Grid, patch_px: int, background: str, cells: Tensor):
    """rgba, prev (N,) int32, margin (1,) float32 -> each cell's emoji (N,) int32 and the colour behind its
    tile's transparent pixels (N, 3) float32 RGB 0..255."""
    def run(rgba: Tensor, prev: Tensor, margin: Tensor) -> tuple[Tensor, Tensor]:
        patches = cut(rgba, grid, patch_px)
        picks = scorer.pick(patches, cells, prev, margin)
        if background == "auto":
            emoji = scorer.emoji[picks]  # (N, 4): the tile's mean RGB (premultiplied) and its coverage
            back = auto_background(scorer.net.mean_colours(patches), emoji[:, :3], 1 - emoji[:, 3:])
        else:
            back = Tensor.full((grid.count, 3), 0.0 if background == "black" else 255.0, device=DEVICE)
        back = back.contiguous()
        Tensor.realize(picks, back)
        return picks, back
    return run


class Buffers:
    """One grid's buffers, shared by its programs: inputs and outputs by name, constants by their data, temporaries
    reused by a later program (programs run one after another, and nothing in a temporary outlives its program)."""

    def __init__(self) -> None:
        self.entries: list[dict] = []
        self._named: dict[str, int] = {}
        self._temps: list[int] = []

    def named(self, entry: dict, key: str) -> int:
        if key not in self._named:
            self._named[key] = len(self.entries)
            self.entries.append(entry)
        return self._named[key]

    def temp(self, size: int, taken: set[int]) -> int:
        index = next((i for i in self._temps if i not in taken and self.entries[i]["bytes"] >= size), None)
        if index is None:
            index = len(self.entries)
            self.entries.append({"kind": "temp", "bytes": size})
            self._temps.append(index)
        taken.add(index)
        return index


class Exporter:
    """Collects kernels and data across grids: identical WGSL sources and identical data stored once."""

    def __init__(self, out: Path):
        self.out, self.kernels, self.data = out, {}, {}
        (out / "data").mkdir(parents=True, exist_ok=True)

    def kernel(self, name: str, source: str) -> str:
        key = f"{name}_{hashlib.sha256(source.encode()).hexdigest()[:10]}"
        self.kernels[key] = {"name": name, "source": source}
        return key

    def blob(self, array: np.ndarray) -> str:
        raw = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        key = hashlib.sha256(raw).hexdigest()[:16]
        if key not in self.data:
            (self.out / "data" / f"{key}.bin").write_bytes(raw)
            self.data[key] = len(raw)
        return key

    def program(self, jit: TinyJit, inputs: tuple[str, ...], outputs: tuple[str, ...], consts: dict[int, np.ndarray],
                buffers: Buffers) -> list[dict]:
        """The dispatches of a captured function in run order, each with its kernel, work-group counts and
        buffer bindings (indices into buffers)."""
        rets = jit.captured.ret if isinstance(jit.captured.ret, tuple) else (jit.captured.ret,)
        out_ids = {id(t.uop.base): name for t, name in zip(rets, outputs, strict=True)}
        seen: dict[int, int] = {}
        taken: set[int] = set()

        def buffer(u) -> int:
            if id(u) not in seen:
                size = -(-int(np.prod(u.shape)) * u.dtype.itemsize // 4) * 4  # whole 32-bit words: uint8 is packed
                if u.op is Ops.PARAM:
                    name = inputs[u.arg.slot]
                    seen[id(u)] = buffers.named({"kind": "input", "name": name, "bytes": size}, name)
                elif id(u) in out_ids:
                    name = out_ids[id(u)]
                    seen[id(u)] = buffers.named({"kind": "output", "name": name, "bytes": size}, name)
                elif id(u) in consts:
                    key = self.blob(consts[id(u)])
                    seen[id(u)] = buffers.named({"kind": "const", "data": key, "bytes": size}, key)
                elif u.op is Ops.BUFFER:
                    seen[id(u)] = buffers.temp(size, taken)
                else:  # an arena view: the child runs without tinygrad's memory planner, which makes these
                    raise ValueError(f"expected a buffer or an input, got {u.op} (run with NO_MEMORY_PLANNER=1)")
            return seen[id(u)]

        kernels = launches(jit)
        if kernels.copies:
            raise ValueError(f"expected kernels only, got {len(kernels.copies)} copies in the captured function")
        programs = [call for call in calls(jit.captured.linear) if call.src[0].op is Ops.PROGRAM]
        dispatches = []
        for kernel, call in zip(kernels.kernels, programs, strict=True):
            args = call.src[1:]
            dispatches.append({"kernel": self.kernel(kernel.name, kernel.source),
                               "workgroups": list(kernel.global_size), "threads": list(kernel.local_size),
                               "bindings": [buffer(args[g]) for g in call.src[0].arg.globals],
                               "flops": kernel.ops, "bytes": kernel.bytes, "workgroup_bytes": kernel.workgroup_bytes,
                               "over_webgpu_defaults": violations(kernel, LIMITS["WEBGPU"])})
        return dispatches


def export(spec: dict) -> None:
    """Build and capture every network's grids; write programs.json and the data files into spec['out']."""
    from emojicam.compositor import tile_arrays
    from emojicam.emoji_set import EmojiSet
    from emojicam.settings import Settings

    settings = Settings(**spec["settings"])
    tiles = tile_arrays(EmojiSet.load(spec["emoji_set"]), settings.tile_px, settings.background)
    exporter, grids = Exporter(Path(spec["out"])), []
    for name, weights in spec["models"]:
        grids += export_model(exporter, name, weights, tiles, settings, spec["grids"])
    (exporter.out / "programs.json").write_text(json.dumps({"grids": grids, "kernels": exporter.kernels,
                                                            "data": exporter.data}))


def export_model(exporter: Exporter, name: str, weights: str, tiles, settings, grid_sizes) -> list[dict]:
    """One network's grids: each its buffers, its frame function's dispatches, and how many of them are the
    network's (up to the last that reads a weight)."""
    from emojicam import model
    from emojicam.kernels import InferenceNet

    ckpt = model.load(weights, "CPU")
    params = {key: t.numpy() for key, t in get_state_dict(ckpt.model).items()}
    net = model.TinyConvNet(ckpt.model.config)
    for key, t in get_state_dict(net).items():  # on NULL the data is gone: it is kept here, by buffer
        t.replace(Tensor(params[key], device=DEVICE)).realize()
    scorer = Scorer(InferenceNet(net, DEVICE, scheduled=False), tiles.bgr, tiles.cover, settings)
    # the same constants on the CPU device, for their bytes
    on_cpu = Scorer(InferenceNet(ckpt.model, "CPU", scheduled=False), tiles.bgr, tiles.cover, settings)
    consts = {id(t.uop.base): params[key] for key, t in get_state_dict(net).items()}
    consts |= {id(getattr(scorer, a).uop.base): getattr(on_cpu, a).numpy() for a in ("emoji", "emoji_keys")}
    weight_keys = {exporter.blob(array) for array in params.values()}
    p, grids = ckpt.model.config.patch_px, []
    for cols, rows in grid_sizes:
        grid = Grid(cols, rows, settings.tile_px)
        cells_np = np.arange(grid.count, dtype=np.int32)
        cells = Tensor(cells_np, device=DEVICE).realize()
        grid_consts = {**consts, id(cells.uop.base): cells_np}
        width = input_width(grid, p)
        rgba = Tensor.zeros(rows * p, width, 4, dtype=dtypes.uint8, device=DEVICE).contiguous().realize()
        prev = Tensor.zeros(grid.count, dtype=dtypes.int32, device=DEVICE).contiguous().realize()
        margin = Tensor([-np.inf], device=DEVICE).realize()
        pick = capture(frame_function(scorer, grid, p, settings.background, cells), rgba, prev, margin)
        buffers = Buffers()
        programs = {"pick": exporter.program(pick, INPUTS, OUTPUTS, grid_consts, buffers)}
        weight_buffers = {i for i, b in enumerate(buffers.entries) if b.get("data") in weight_keys}
        network = 1 + max(i for i, d in enumerate(programs["pick"]) if weight_buffers & set(d["bindings"]))
        grids.append({"name": f"{cols}x{rows}", "model": name, "patch_px": p, "cols": cols, "rows": rows,
                      "input": [rows * p, width], "buffers": buffers.entries, "programs": programs,
                      "network": network})
    return grids


if __name__ == "__main__":
    export(json.loads(sys.argv[1]))

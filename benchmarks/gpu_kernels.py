"""What a GPU is asked to do per frame, without a GPU: every kernel of one frame rendered at full size for each GPU
renderer tinygrad ships that loads here, on its NULL device (renders and schedules, runs nothing), checked against
that API's launch limits (emojicam/gpu_kernels.py).

    .venv/bin/python benchmarks/gpu_kernels.py [--renderers WGSL,OPENCL,CUDA,METAL] [--sizes 64x36@1280x720,...]
        [--models default] [--name gpu-kernels] [--json F]

writes results/<date>-<name>.{md,json}: per renderer, path, frame size and grid: kernels per frame, the largest
work-group and grid, buffer arguments, GFLOP and MB moved (tinygrad's estimates), copies, the limits broken (none
is the goal), and each kernel's launch sizes. A renderer whose compiler does not load here (Metal off macOS; CUDA
without NVIDIA's NVRTC library, which `pip install nvidia-cuda-nvrtc-cu12` brings, no GPU needed) is reported as
such.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
# renderer -> (tinygrad's DEV for it on the NULL device, the API whose limits apply)
# (sm_86: a laptop RTX 30; CUDA needs an arch, and the kernels' shapes do not change between sm_80 and sm_89.)
# AMD is not here: tinygrad's HIP renderer needs AMD's comgr library to start, its AMDLLVM one fails on these kernels
# with this machine's LLVM, and NULL::gfx1100 renders for the assembler without work-groups (no launch sizes to check);
# AMD's code generation runs in the emulator instead (tests/test_gpu_emulated.py, PYTHON::gfx1100).
RENDERERS = {"WGSL": ("NULL:WGSL", "WEBGPU"), "OPENCL": ("NULL:OPENCL", "OPENCL"), "CUDA": ("NULL:CUDA:sm_86", "CUDA"),
             "METAL": ("NULL:METAL", "METAL")}
SIZES = ("64x36@1280x720", "128x72@1280x720", "64x36@1920x1080", "128x72@1920x1080")


def parse_size(text: str) -> tuple[int, int, int]:
    """'64x36@1280x720' -> (cols, width, height); the rows follow the frame's aspect ratio."""
    grid, frame = text.split("@")
    width, height = (int(v) for v in frame.split("x"))
    return int(grid.split("x")[0]), width, height


def measure(api: str, sizes: list[str], models: list[str]) -> list[dict]:
    """In a process started with DEV=NULL:RENDERER: each model, path and size's kernels and their check."""
    from emojicam.engine import open_engine
    from emojicam.gpu_kernels import LIMITS, violations
    from emojicam.settings import ModelChoice, Settings

    rows = []
    for name in models:
        for composite in ("host", "device"):
            for size in sizes:
                cols, width, height = parse_size(size)
                t0 = time.perf_counter()
                with_path = open_engine(Settings(cols=cols, device="NULL", composite=composite, stability=1.0),
                                        ModelChoice(model=name))
                frame_shape = (height, width, 3)
                got = with_path.launches(frame_shape)
                grid = with_path.grid_for(frame_shape)
                kernels = [{"name": k.name, "global": k.global_size, "local": k.local_size, "buffers": k.buffers,
                            "scalars": k.scalars, "gflop": k.ops / 1e9, "mb": k.bytes / 1e6,
                            "broken": violations(k, LIMITS[api])} for k in got.kernels]
                rows.append({"model": name, "path": composite, "frame": f"{width}x{height}",
                             "grid": f"{grid.cols}x{grid.rows}", "kernels": kernels, "copies": list(got.copies),
                             "gflop": got.ops / 1e9, "mb": got.bytes / 1e6,
                             "render_s": round(time.perf_counter() - t0, 2)})
    return rows


def nvrtc() -> dict[str, str]:
    """NVRTC_PATH for tinygrad's CUDA renderer where NVIDIA's nvidia-cuda-nvrtc-cu12 wheel is installed (tinygrad
    looks for the library on the system's paths only)."""
    from importlib.util import find_spec

    spec = find_spec("nvidia.cuda_nvrtc") if find_spec("nvidia") else None
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("lib/libnvrtc.so*")) if spec else []
    return {"NVRTC_PATH": str(found[0])} if found and "NVRTC_PATH" not in os.environ else {}


def run_renderer(renderer: str, sizes: list[str], models: list[str]) -> dict:
    """One child process per renderer (tinygrad picks the NULL device's renderer when the process starts)."""
    dev, api = RENDERERS[renderer]
    env = {**os.environ, "DEV": dev, "NULL_ALLOW_COPYOUT": "1", **nvrtc()}
    done = subprocess.run([sys.executable, __file__, "--child", api, "--sizes", ",".join(sizes), "--models",
                           ",".join(models)], capture_output=True, text=True, env=env, cwd=ROOT, timeout=3600)
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()] or ["no output"]
        return {"renderer": renderer, "dev": dev, "api": api, "error": lines[-1][:200]}
    return {"renderer": renderer, "dev": dev, "api": api, "rows": json.loads(done.stdout)}


def markdown(results: list[dict], header: str) -> str:
    lines = [header, "", "| renderer (limits) | model | path | frame | grid | kernels | copies | largest group | "
             "most groups on an axis | most buffers | GFLOP | MB moved | limits broken |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for result in results:
        label = f"{result['renderer']} ({result['api']})"
        if "error" in result:
            lines.append(f"| {label} | | | | | not rendered here: {result['error']} | | | | | | | |")
            continue
        for row in result["rows"]:
            ks = row["kernels"]
            broken = sorted({f"{k['name']}: {b}" for k in ks for b in k["broken"]})
            group = max(ks, key=lambda k: k["local"][0] * k["local"][1] * k["local"][2])["local"]
            lines.append(f"| {label} | {row['model']} | {row['path']} | {row['frame']} | {row['grid']} | {len(ks)} | "
                         f"{len(row['copies'])} | {'x'.join(map(str, group))} | "
                         f"{max(max(k['global']) for k in ks):,} | {max(k['buffers'] + k['scalars'] for k in ks)} | "
                         f"{row['gflop']:.2f} | {row['mb']:.1f} | {'; '.join(broken) or 'none'} |")
    lines += ["", "Each kernel's launch (work-groups per axis x threads per work-group), in the order one frame runs "
              "them:", ""]
    for result in results:
        for row in result.get("rows", []):
            launches = ", ".join(f"{k['name']} {'x'.join(map(str, k['global']))} x {'x'.join(map(str, k['local']))}"
                                 for k in row["kernels"])
            lines.append(f"- {result['renderer']}, {row['model']}, {row['path']}, {row['frame']} at {row['grid']}: "
                         f"{launches}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--renderers", default=",".join(RENDERERS), help="comma list (default: all)")
    parser.add_argument("--sizes", default=",".join(SIZES), help="GRIDxROWS@WIDTHxHEIGHT comma list")
    parser.add_argument("--models", default="default", help="shipped 256-set models, comma list (default default)")
    parser.add_argument("--name", default="gpu-kernels", help="results file name after the date")
    parser.add_argument("--json", type=Path, default=None, help="also (or only, with --no-results) write JSON here")
    parser.add_argument("--no-results", action="store_true", help="do not write into benchmarks/results/")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes, models = args.sizes.split(","), args.models.split(",")
    if args.child:
        print(json.dumps(measure(args.child, sizes, models)))
        return
    results = [run_renderer(r, sizes, models) for r in args.renderers.split(",")]
    from emojicam.bench.machine import machine_line

    header = (f"# One frame's kernels at full size on tinygrad's NULL device, per GPU renderer\n\n"
              f"{time.strftime('%Y-%m-%d %H:%M')} UTC; {machine_line()}. Rendered and scheduled, not run: "
              f"FLOPs and bytes are tinygrad's estimates per frame with every cell through the network. Limits: "
              f"emojicam/gpu_kernels.py LIMITS.")
    text = markdown(results, header)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    if not args.no_results:
        out = RESULTS / f"{time.strftime('%Y-%m-%d')}-{args.name}"
        out.with_suffix(".md").write_text(text)
        out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote {out}.md and .json")


if __name__ == "__main__":
    main()

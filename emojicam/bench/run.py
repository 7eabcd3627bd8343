"""`emojicam bench`: FLOPs, per-stage milliseconds and fps of emojicam per device and grid, next to its peers.

Every figure comes from a real 1280x720 H.264 clip (the bundled sample rescaled, else a synthetic textured scene)
decoded with OpenCV; per-frame figures are medians over frames after warm-up, so JIT compilation is never in them.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from emojicam.bench.timing import median_ms, timed_loop
from emojicam.errors import EmojicamError
from emojicam.media.ffmpeg import ffmpeg_exe, h264_writer
from emojicam.resources import shipped
from emojicam.settings import PATHS

if TYPE_CHECKING:
    from emojicam.bench.peers import Peer
    from emojicam.engine import Emojifier
    from emojicam.model import TinyConvNet
    from emojicam.settings import ModelChoice

SOURCE_SIZE = (1280, 720)                # (width, height) of the source frames
LADDER_COLS = (32, 64, 80, 128)          # 32x18, 64x36, 80x45, 128x72 tiles on a 16:9 frame
E2E_TARGET = 0.8                         # the video issue: end to end at least 80% of the engine alone
WARMUP_FRAMES = 3                        # TinyJit: run, capture, then replay from the third call on
SAMPLE = shipped("samples", "sample.mp4")
REFERENCE = {"mflop_per_patch": 2.2, "patches_per_frame": 5000, "gflop_per_frame": 11.0,
             "forwards_per_frame": "one per grid row", "source": "pic2emoji write-up (2021)"}


@dataclass(frozen=True)
class BenchConfig:
    """What one `emojicam bench` run measures."""

    devices: tuple[str, ...]
    cols: tuple[int, ...] = LADDER_COLS
    frames: int = 30              # timed frames per measurement (fewer if max_seconds runs out first)
    clip_frames: int = 30         # length of the H.264 clip decoded and converted end to end
    max_seconds: float = 15.0     # time cap per timing loop, so big grids on slow devices still finish
    tile_px: int = 16
    peers: bool = True
    source: Path | None = None    # video to cut the clip from; default samples/sample.mp4, else synthetic
    peak_gflops: dict[str, float] = field(default_factory=dict)  # device (or "*") -> assumed peak
    # where frames are cut and composited; empty = both paths on GPUs, the host path on CPU devices
    composites: tuple[str, ...] = ()


def paths_for(device: str, cfg: BenchConfig) -> tuple[str, ...]:
    """The --composite paths measured on a device."""
    from emojicam.devices import runs_on_cpu

    return cfg.composites or (PATHS[:1] if runs_on_cpu(device) else PATHS)


QUICK = {"cols": (32,), "frames": 4, "clip_frames": 8, "max_seconds": 5.0}


# --- the source clip -------------------------------------------------------------------------------------------

def synthetic_scene(frames: int, size: tuple[int, int] = SOURCE_SIZE, seed: int = 0) -> list[np.ndarray]:
    """A panning scene with gradients, soft shapes, text and grain, so patches look like photo patches."""
    w, h = size
    rng = np.random.default_rng(seed)
    width = w + 4 * frames
    x, y = np.meshgrid(np.linspace(0, 1, width, dtype=np.float32), np.linspace(0, 1, h, dtype=np.float32))
    canvas = np.stack([90 + 80 * x, 120 + 60 * np.sin(3 * y + x), 160 - 90 * y], axis=2)
    for _ in range(60):
        centre = (int(rng.integers(0, width)), int(rng.integers(0, h)))
        axes = (int(rng.integers(20, 160)), int(rng.integers(20, 160)))
        cv2.ellipse(canvas, centre, axes, float(rng.uniform(0, 180)), 0, 360, rng.uniform(0, 255, 3).tolist(), -1)
    canvas = np.clip(cv2.GaussianBlur(canvas, (0, 0), 3), 0, 255).astype(np.uint8)
    for i in range(8):
        cv2.putText(canvas, "emojicam bench 1280x720", (int(rng.integers(0, width - 600)), 80 + 80 * i),
                    cv2.FONT_HERSHEY_SIMPLEX, float(rng.uniform(1, 2.5)), rng.uniform(0, 255, 3).tolist(), 3)
    grain = cv2.GaussianBlur(rng.normal(0, 18, canvas.shape).astype(np.float32), (0, 0), 1.2)
    canvas = np.clip(canvas + grain, 0, 255).astype(np.uint8)  # grain: no patch is perfectly flat
    return [np.ascontiguousarray(canvas[:, 4 * i:4 * i + w]) for i in range(frames)]


def make_clip(dst: Path, frames: int, source: Path | None = None) -> str:
    """Write a 1280x720 H.264 clip of up to `frames` frames to dst; returns what it was made from."""
    w, h = SOURCE_SIZE
    source = source or (SAMPLE if SAMPLE.is_file() else None)
    if source is not None:
        cmd = [ffmpeg_exe() or "ffmpeg", "-v", "error", "-y", "-i", str(source), "-frames:v", str(frames),
               "-vf", f"scale={w}:{h}:force_original_aspect_ratio=increase,crop={w}:{h}", "-an",
               "-c:v", "libx264", "-pix_fmt", "yuv420p", str(dst)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0 or not dst.is_file():
            msg = (done.stderr.strip().splitlines() or ["no output"])[-1][:120]
            raise EmojicamError(f"--source: expected a video FFmpeg can read, got {source} ({msg})")
        return f"{source.name} rescaled to {w}x{h}"
    writer = h264_writer(dst, SOURCE_SIZE)
    writer.send(None)
    try:
        for frame in synthetic_scene(frames):
            writer.send(frame)
    finally:
        writer.close()
    return f"synthetic textured scene, {w}x{h}"


def decode_clip(clip: Path) -> tuple[list[np.ndarray], list[float]]:
    """Every frame of the clip and the seconds each cv2 read took."""
    cap = cv2.VideoCapture(str(clip))
    frames, times = [], []
    try:
        while True:
            t0 = time.perf_counter()
            ok, frame = cap.read()
            if not ok:
                break
            times.append(time.perf_counter() - t0)
            frames.append(frame)
    finally:
        cap.release()
    if not frames:
        raise EmojicamError(f"clip: expected frames OpenCV can decode, got none from {clip}")
    return frames, times


def encode_ms(frames: list[np.ndarray], dst: Path) -> float:
    """Milliseconds per frame to H.264-encode emoji frames with FFmpeg (process start-up excluded)."""

    h, w = frames[0].shape[:2]
    writer = h264_writer(dst, (w, h))
    writer.send(None)  # starts FFmpeg
    t0 = time.perf_counter()
    try:
        for frame in frames:
            writer.send(frame)
    finally:
        writer.close()  # waits for the encoder to finish
    return (time.perf_counter() - t0) * 1e3 / len(frames)


def convert_e2e(emojifier: Emojifier, src: Path, dst: Path) -> tuple[int, float]:
    """Decode -> emojify -> encode the whole clip as `emojicam convert` does; returns the frames written and the
    share of cells left unchanged (not recomputed)."""
    from emojicam.media.video import convert_video

    stats = convert_video(emojifier, src, dst, quiet=True)
    return stats.frames, stats.skipped


# --- measuring -------------------------------------------------------------------------------------------------

def measure_engine(emojifier: Emojifier, frames: list[np.ndarray], cfg: BenchConfig) -> tuple[dict, list[np.ndarray]]:
    """Warm-up, FLOP counters of one frame, then per-stage medians over timed frames; also returns emoji frames."""
    from tinygrad.helpers import GlobalCounters

    from emojicam.engine import STAGES

    grid = emojifier.grid_for(frames[0].shape)
    t0 = time.perf_counter()
    for i in range(WARMUP_FRAMES):
        emojifier.reset()  # here and below: every cell of every frame through the network, the engine's full cost
        emojifier(frames[i % len(frames)])
    warmup_s = time.perf_counter() - t0
    GlobalCounters.reset()
    emojifier.reset()
    emojifier(frames[0])
    measured_flops, moved, kernels = GlobalCounters.global_ops, GlobalCounters.global_mem, GlobalCounters.kernel_count
    stages: dict[str, list[float]] = {s: [] for s in STAGES}
    outputs: list[np.ndarray] = []

    def step(i: int) -> None:
        emojifier.reset()
        out = emojifier(frames[i % len(frames)])
        for s in STAGES:
            stages[s].append(out.stage_ms[s])
        if len(outputs) < 16:
            outputs.append(out.image)
    times = timed_loop(step, cfg.frames, cfg.max_seconds)
    ms = {s: statistics.median(v) for s, v in stages.items()}
    up, down = emojifier.traffic(frames[0].shape)
    classify_ms = float(np.median(np.sum([stages[s] for s in ("upload", "forward", "download")], axis=0)))
    engine_ms = median_ms(times)
    analytic = emojifier.model.config.flops_per_patch() * grid.count
    return {
        "system": "emojicam", "device": emojifier.device, "grid": f"{grid.cols}x{grid.rows}", "cols": grid.cols,
        "lanes": len(emojifier.lane_devices), "beam_searched": emojifier.searched(grid.count),
        "scheduled": emojifier.scheduled,
        "rows": grid.rows, "patches": grid.count, "frames": len(times), "forwards_per_frame": 1,
        "warmup_frames": WARMUP_FRAMES, "warmup_s": warmup_s, "compile_s_est": max(0.0, warmup_s - 3 * engine_ms / 1e3),
        "flops_per_patch": emojifier.model.config.flops_per_patch(), "gflop_per_frame": analytic / 1e9,
        "gflop_per_frame_measured": measured_flops / 1e9, "measured_over_analytic": measured_flops / analytic,
        "mb_moved_per_frame": moved / 1e6, "kernels_per_frame": kernels,
        "composite": "device" if emojifier.on_device else "host", "bytes_up_per_frame": up,
        "bytes_down_per_frame": down, "device_ms": ms["forward"], "host_ms": median_ms(times) - ms["forward"],
        "ms": ms, "engine_ms": engine_ms, "classify_ms": classify_ms,
        "inference_fps": 1e3 / engine_ms, "classify_fps": 1e3 / classify_ms, "forward_fps": 1e3 / ms["forward"],
        "achieved_gflops": analytic / 1e9 / (ms["forward"] / 1e3),
    }, outputs


def measure_peer(peer, patch_sets: list[np.ndarray], reference: np.ndarray, grid_record: dict,
                 cfg: BenchConfig) -> dict:
    """Time one peer on the same patches; agreement = share of patches where it picks our emoji."""
    from tinygrad.helpers import GlobalCounters

    record = {"system": peer.name, "device": peer.device, "threads": peer.threads, "note": peer.note,
              **{k: grid_record[k] for k in ("grid", "cols", "rows", "patches")},
              "forwards_per_frame": grid_record["rows"] if peer.name == "rowwise" else 1}
    if peer.classify is None:
        return {**record, "status": "skipped"}
    try:
        t0 = time.perf_counter()
        for _ in range(2):
            picked = peer.classify(patch_sets[0])
        warmup_s = time.perf_counter() - t0
        GlobalCounters.reset()
        peer.classify(patch_sets[0])
        kernels = GlobalCounters.kernel_count if peer.name == "rowwise" else None
        times = timed_loop(lambda i: peer.classify(patch_sets[i % len(patch_sets)]), cfg.frames, cfg.max_seconds)
    except Exception as e:  # a peer runtime that fails on this shape is reported, not fatal to the run
        return {**record, "status": f"failed: {(str(e).strip().splitlines() or [type(e).__name__])[0][:120]}"}
    classify_ms = median_ms(times)
    return {**record, "status": "ok", "frames": len(times), "warmup_s": warmup_s, "kernels_per_frame": kernels,
            "classify_ms": classify_ms, "classify_fps": 1e3 / classify_ms,
            "achieved_gflops": grid_record["gflop_per_frame"] / (classify_ms / 1e3),
            "agreement": float((np.asarray(picked).reshape(-1) == reference).mean())}


def measure_peers(net: TinyConvNet, device: str, patch_sets: list[np.ndarray], grid_record: dict, cfg: BenchConfig,
                  host_peers: list[Peer]) -> list[dict]:
    """The row-by-row reference design on the same device and the host peers, on the same patches; every peer must
    agree with our network's own argmax (the engine's colour and coverage terms re-rank it, and no peer has those)."""
    from tinygrad import Tensor

    from emojicam.bench.peers import Peer, rowwise

    picks = net(Tensor(patch_sets[0], device=device)).argmax(1).numpy()
    row_peer = Peer("rowwise", device, "tinygrad, same device", rowwise(net, device, grid_record["cols"]),
                    "reference design: one TinyJit forward per grid row")
    return [measure_peer(peer, patch_sets, picks, grid_record, cfg) for peer in [row_peer, *host_peers]]


def measure_grid(emojifier: Emojifier, frames: list[np.ndarray], clip: Path, workdir: Path, decode_ms: float,
                 encode_cache: dict[int, float], peak: tuple[float | None, str], cfg: BenchConfig) -> dict:
    """The emojicam record of one device x grid: engine figures, the stages around it and end to end."""
    rec, outputs = measure_engine(emojifier, frames, cfg)
    cols = rec["cols"]
    if cols not in encode_cache:  # encoding cost depends on the output size only, not on the device
        encode_cache[cols] = encode_ms(outputs, workdir / "encode.mp4")
    rec["ms"] = {"decode": decode_ms, **rec["ms"], "encode": encode_cache[cols]}
    # convert recomputes only the cells that changed, in smaller batches: compile (or load) those shapes first, so
    # that the end-to-end time, like the engine's, leaves compilation out
    t0 = time.perf_counter()
    if not emojifier.on_device:  # the device path has one function per frame size, compiled by now
        emojifier.warm_up(rec["patches"])
    rec["warmup_s"] += time.perf_counter() - t0
    t0 = time.perf_counter()
    done, rec["e2e_skipped"] = convert_e2e(emojifier, clip, workdir / "e2e.mp4")
    rec["e2e_fps"] = done / (time.perf_counter() - t0)
    rec["e2e_over_inference"] = rec["e2e_fps"] / rec["inference_fps"]
    rec["serial_fps_estimate"] = 1e3 / (decode_ms + rec["engine_ms"] + encode_cache[cols])  # with no overlap
    rec["peak_gflops"], rec["peak_basis"] = peak
    rec["share_of_peak"] = rec["achieved_gflops"] / peak[0] if peak[0] else None
    return rec


def add_ratios(records: list[dict]) -> None:
    """Each peer's classify fps over emojicam's on the same grid (the host path), per device."""
    for rec in records:
        if rec["system"] != "emojicam" and rec.get("status") == "ok":
            rec["vs_emojicam"] = {r["device"]: rec["classify_fps"] / r["classify_fps"] for r in records
                                  if r["system"] == "emojicam" and r["grid"] == rec["grid"]
                                  and r["composite"] == "host"
                                  and (rec["system"] != "rowwise" or r["device"] == rec["device"])}


def run(cfg: BenchConfig, weights: Path, emoji_set_dir: Path, log: Callable[[str], None] = print) -> dict:
    """Measure every device x grid (and the peers); returns the report: environment, settings, records."""
    from emojicam import model
    from emojicam.bench.machine import environment, peak_gflops
    from emojicam.bench.peers import runtime_peers
    from emojicam.builder import wait_idle
    from emojicam.emoji_set import EmojiSet
    from emojicam.engine import Emojifier, Settings
    from emojicam.grid import cut_patches

    env = environment(cfg.devices)  # before measuring: the load average says how busy the machine was
    emoji_set = EmojiSet.load(emoji_set_dir)
    records: list[dict] = []
    host_peers: list[Peer] = []
    with tempfile.TemporaryDirectory(prefix="emojicam-bench-") as tmp:
        clip = Path(tmp) / "clip.mp4"
        made_from = make_clip(clip, cfg.clip_frames, cfg.source)
        frames, decode_times = decode_clip(clip)
        decode_ms = median_ms(decode_times)
        log(f"clip: {len(frames)} frames of {made_from}; cv2 decode {decode_ms:.1f} ms/frame")
        encode_cache: dict[int, float] = {}
        for device in cfg.devices:
            ckpt = model.load(weights, device)
            peak = peak_gflops(device, cfg.peak_gflops)
            if cfg.peers and not host_peers:
                host_peers = runtime_peers(ckpt.model)
                log("peers: " + ", ".join(f"{p.name} ({p.note or p.threads})" for p in host_peers))
            for cols, composite in ((c, p) for c in cfg.cols for p in paths_for(device, cfg)):
                settings = Settings(cols=cols, tile_px=cfg.tile_px, device=device, composite=composite)
                with Emojifier(ckpt, emoji_set, settings) as emojifier:
                    rec = measure_grid(emojifier, frames, clip, Path(tmp), decode_ms, encode_cache, peak, cfg)
                    grid, patch_px = emojifier.grid_for(frames[0].shape), emojifier.patch_px
                wait_idle()  # the peers below compute on this thread: no capture of the engine's may be open
                records.append(rec)
                log(f"{device} {rec['grid']} ({composite} path): engine {rec['inference_fps']:.1f} fps (forward "
                    f"{rec['ms']['forward']:.1f} ms), end to end {rec['e2e_fps']:.1f} fps, warm-up "
                    f"{rec['warmup_s']:.1f} s, {rec['bytes_up_per_frame'] / 1e6:.2f} MB up, "
                    f"{rec['bytes_down_per_frame'] / 1e6:.2f} MB down")
                if not cfg.peers or composite != "host":  # the peers classify the host path's patches
                    continue
                patch_sets = [cut_patches(f, grid, patch_px) for f in frames[:6]]
                # host peers run once per grid, next to the first device
                records += measure_peers(ckpt.model, device, patch_sets, rec, cfg,
                                         host_peers if device == cfg.devices[0] else [])
    add_ratios(records)
    return {"environment": env, "reference": REFERENCE, "clip": made_from,
            "config": {"devices": list(cfg.devices), "cols": list(cfg.cols), "frames": cfg.frames,
                       "clip_frames": len(frames), "max_seconds": cfg.max_seconds, "tile_px": cfg.tile_px,
                       "warmup_frames": WARMUP_FRAMES, "weights": str(weights), "peers": cfg.peers,
                       "e2e_target": E2E_TARGET, "engine_settings": {k: v for k, v in asdict(emojifier.settings).items()
                                                                      if k not in ("cols", "device")}},
            "records": records}


# --- the command -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BenchOutputs:
    """The files `emojicam bench` writes besides its tables on standard output (None: not asked for)."""

    json: Path | None = None
    markdown: Path | None = None
    plot: Path | None = None


def bench_command(cfg: BenchConfig, choice: ModelChoice, outputs: BenchOutputs) -> None:
    """`emojicam bench`: measure, print the tables, write the files asked for."""
    from emojicam.bench.report import check_outputs, format_text, write_outputs
    from emojicam.devices import runs_on_cpu
    from emojicam.engine import model_files, resolve_device
    from emojicam.grid import Grid

    check_outputs(outputs.json, outputs.markdown, outputs.plot)
    for cols in cfg.cols:
        Grid.for_frame((SOURCE_SIZE[1], SOURCE_SIZE[0]), cols, cfg.tile_px)  # bad --cols/--tile fail now
    # --model auto: what convert runs on the first device measured (the 36 px network, see model.auto_model)
    set_dir, weights = model_files(choice, runs_on_cpu(resolve_device(cfg.devices[0])))
    report = run(cfg, weights, set_dir, log=lambda line: print(line, file=sys.stderr, flush=True))
    print(format_text(report), end="")
    write_outputs(report, outputs.json, outputs.markdown, outputs.plot)
    for path in (outputs.json, outputs.markdown, outputs.plot):
        if path:
            print(f"wrote {path}")

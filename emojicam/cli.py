"""The `emojicam` command: parses arguments, builds Settings, calls the core, prints user errors on one line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from emojicam import jit_cache
from emojicam.emoji_set import BACKGROUNDS, DEFAULT_SET
from emojicam.engine import Settings
from emojicam.errors import EmojicamError
from emojicam.model import DEFAULT_WEIGHTS

COLS = 64


def add_engine_args(p: argparse.ArgumentParser, stability: float, still: float = 0.0, text_help: str = "",
                    cols_help: str = "") -> None:
    """Flags every command that emojifies shares. A command with text output says in text_help how its text
    background works; its --background then defaults to None (auto for pictures, white for text, decided where
    the output is known). cols_help: what an unset --cols (None then) means besides the default."""
    p.add_argument("--cols", type=int, default=None if cols_help else COLS,
                   help=f"grid columns; rows follow the aspect ratio (default {COLS}{cols_help})")
    p.add_argument("--tile", type=int, default=16, help="output pixels per emoji tile (default 16)")
    p.add_argument("--background", choices=BACKGROUNDS, default=None if text_help else "auto",
                   help="behind transparent emoji pixels: auto = per tile, the colour that brings the tile's mean "
                        "colour to its cell's" + (f"; {text_help}" if text_help else " (default auto)"))
    p.add_argument("--stability", type=float, default=stability,
                   help=f"score margin a new emoji must win by to replace a tile's emoji (video, live); 0 = off "
                        f"(default {stability})")
    p.add_argument("--still-threshold", type=float, default=still, metavar="LEVELS",
                   help=f"video, live: a cell whose 6x6 thumbnail changed by at most this many levels (0..255) since "
                        f"its emoji was picked keeps it without a forward pass; 0 = only cells repeated bit for "
                        f"bit from the frame before, which is exact (default {still})")
    p.add_argument("--device", default=None, help="tinygrad device: CPU, CL, METAL, CUDA, ... (default: tinygrad's)")
    p.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS, help="trained weights (default: shipped)")
    p.add_argument("--emoji-set", type=Path, default=DEFAULT_SET, help="folder of emoji PNGs (default: shipped)")


def settings_from(args: argparse.Namespace) -> Settings:
    return Settings(cols=COLS if args.cols is None else args.cols, tile_px=args.tile,
                    background=args.background or "auto", device=args.device,
                    stability=args.stability, still_threshold=args.still_threshold)


def make_emojifier(args: argparse.Namespace):
    """Load the set and weights named by args and build the engine (imports tinygrad lazily)."""
    from emojicam import model
    from emojicam.emoji_set import EmojiSet
    from emojicam.engine import Emojifier, resolve_device

    settings = settings_from(args)
    emoji_set = EmojiSet.load(args.emoji_set)
    return Emojifier(model.load(args.weights, resolve_device(settings.device)), emoji_set, settings)


def cmd_convert(args: argparse.Namespace) -> int:
    from emojicam.convert import convert_paths

    convert_paths(args.inputs, args.output_dir, args, make_emojifier)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from emojicam.emoji_set import EmojiSet
    from emojicam.engine import resolve_device
    from emojicam.train import TrainConfig, train

    emoji_set = EmojiSet.load(args.emoji_dir)
    cfg = TrainConfig(steps=args.steps, batch=args.batch, lr=args.lr, seed=args.seed)
    ckpt = train(emoji_set, args.output, cfg, device=resolve_device(args.device))
    print(f"hold-out top-1 {ckpt.info['holdout_top1']:.2%} on {ckpt.info['holdout_size']} perturbed emoji; "
          f"wrote {args.output}")
    return 0


def cmd_devices(args: argparse.Namespace) -> int:
    from emojicam.devices import describe_devices

    print(describe_devices())
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from emojicam.evaluate import evaluate, format_summary

    for photo in args.photos:
        if not photo.is_file():
            raise EmojicamError(f"evaluate: expected a photo file, got no file at {photo}")
    summary = evaluate(make_emojifier(args), args.photos, args.output_dir, cols=args.cols)
    print(format_summary(summary))
    print(f"wrote {args.output_dir / 'quality.json'} and one contact sheet per photo")
    return 0


def cmd_live(args: argparse.Namespace) -> int:
    from emojicam.live import LiveOptions, run_live

    opts = LiveOptions(camera=args.camera, source=args.source, record=args.record, window=not args.no_window,
                       max_frames=args.max_frames, virtual_camera=args.virtual_camera, snapshot_dir=args.snapshots)
    if args.terminal:
        from emojicam.terminal import run_terminal

        args.background = args.background or "white"
        run_terminal(opts, settings_from(args), lambda: make_emojifier(args), max_cols=args.cols)
        return 0
    run_live(opts, settings_from(args), lambda: make_emojifier(args))
    return 0


def frame_size(text: str) -> tuple[int, int]:
    """'1280x720' -> (1280, 720), or a one-line EmojicamError."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise EmojicamError(f"--size: expected WIDTHxHEIGHT such as 1280x720, got {text!r}") from None
    if not (16 <= width <= 16384 and 16 <= height <= 16384):
        raise EmojicamError(f"--size: expected 16..16384 pixels a side, got {text!r}")
    return width, height


def cmd_tune(args: argparse.Namespace) -> int:
    import math
    import time

    import numpy as np

    from emojicam.bench import median_ms, timed_loop
    from emojicam.engine import batch_sizes
    from emojicam.model import PATCH_PX

    width, height = frame_size(args.size)
    if args.beam < 1:
        raise EmojicamError(f"--beam: expected a search width >= 1, got {args.beam}")
    emojifier = make_emojifier(args)
    grid = emojifier.grid_for((height, width, 3))
    sizes = batch_sizes(grid.count) if args.still_sizes else [grid.count]
    print(f"tune: {emojifier.device} ({len(emojifier.lanes)} lane(s)), grid {grid.cols}x{grid.rows}, BEAM={args.beam}, "
          f"batches of {', '.join(map(str, sizes))} patches; the search takes minutes", flush=True)
    patches = np.random.default_rng(0).integers(0, 256, (grid.count, PATCH_PX, PATCH_PX, 3), dtype=np.uint8)

    def forward_ms(batch: np.ndarray) -> tuple[float, np.ndarray]:
        picks = emojifier.classify(batch)  # compiles or loads first
        return median_ms(timed_loop(lambda _: emojifier.classify(batch), 5, math.inf)), picks

    for size in sorted(sizes, reverse=True):
        before, picks = forward_ms(patches[:size])
        t0 = time.perf_counter()
        emojifier.tune(size, args.beam)
        searched = time.perf_counter() - t0
        after, tuned = forward_ms(patches[:size])
        kept = "searched kernels stored"
        if after >= before:  # the search found nothing faster (or timing noise misled it): keep the defaults
            emojifier.tune(size, beam=0)
            kept = "slower, default kernels kept"
        print(f"  {size} patches: {before:.1f} -> {after:.1f} ms per forward ({before / after:.2f}x), same emoji for "
              f"{np.mean(picks == tuned):.2%} of patches, search {searched:.0f} s; {kept}", flush=True)
    print(f"stored in {jit_cache.cache_dir()}; `convert` and `live` with the same grid, device and settings use it")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from emojicam.bench import bench_command

    return bench_command(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emojicam", description="Webcam, video and photos to emoji art.",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("convert", help="convert photos and videos to emoji art",
                       description="Convert images (png jpg webp bmp) and videos (mp4 webm mkv mov avi gif). "
                                   "Give IN OUT, or several inputs / folders with -o DIR. A still into OUT.txt or "
                                   "OUT.html is written as text: one emoji character (sequence) per cell, one line "
                                   "per row, to paste into a chat; the .html page shows it and has a copy button.")
    p.add_argument("inputs", nargs="+", type=Path, help="IN OUT, or inputs (files or folders) with -o")
    p.add_argument("-o", "--output-dir", type=Path, default=None, help="output folder for several inputs")
    p.add_argument("--max-chars", type=int, default=None, metavar="N",
                   help="text outputs: the densest grid whose text, newlines included, fits in N characters (a chat "
                        "message limit: Discord 2000, Slack 4000); prints the grid it chose (default: no limit, "
                        "--cols decides)")
    add_engine_args(p, stability=1.0,
                    text_help="text (.txt, .html) has no background of its own (the reader's chat or page is "
                              "behind it), so its emoji are picked for white or black (default: auto for pictures "
                              "and video, white for text)",
                    cols_help="; with --max-chars, the most columns it may try, default 512")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("train", help="train TinyConvNet on a folder of emoji PNGs")
    p.add_argument("emoji_dir", type=Path, help="folder of emoji PNGs (RGBA or RGB)")
    p.add_argument("-o", "--output", type=Path, required=True, help="weights file to write (.safetensors)")
    p.add_argument("--steps", type=int, default=6000, help="training steps (default 6000)")
    p.add_argument("--batch", type=int, default=128, help="batch size (default 128)")
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate, cosine-decayed (default 0.003)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--device", default=None, help="tinygrad device (default: tinygrad's)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="measure emoji-art quality on photos against the classic emoji mosaic")
    p.add_argument("photos", nargs="+", type=Path, help="photos to measure on")
    p.add_argument("-o", "--output-dir", type=Path, default=Path("out/evaluate"),
                   help="where quality.json and the contact sheets go (default out/evaluate)")
    add_engine_args(p, stability=0.0)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("devices", help="list the tinygrad devices (and OpenCL devices) that work here")
    p.set_defaults(func=cmd_devices)

    p = sub.add_parser("live", help="live emoji mirror of a webcam, video file or stream",
                       description="A window with the emoji feed. Keys: q/Esc quit, +/- grid density, m mirror, "
                                   "o original/emoji/side-by-side, s PNG snapshot, space pause. With --terminal, "
                                   "the feed as emoji characters in this terminal instead (q or Ctrl-C quits).")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--camera", type=int, default=0, metavar="N", help="camera index (default 0)")
    source.add_argument("--source", default=None, metavar="PATH_OR_URL",
                        help="a video file or stream URL instead of a camera")
    p.add_argument("--record", type=Path, default=None, metavar="OUT.mp4",
                   help="also record what is shown, without the heads-up display (.mp4 .webm .gif)")
    p.add_argument("--no-window", action="store_true", help="no window (for scripts and servers; use with --record)")
    p.add_argument("--max-frames", type=int, default=None, metavar="N",
                   help="stop after this many frames; a file is then read frame by frame, not at its fps")
    p.add_argument("--virtual-camera", action="store_true",
                   help="send the emoji feed to a virtual webcam (needs the virtualcam extra and v4l2loopback or OBS)")
    p.add_argument("--snapshots", type=Path, default=Path("."), metavar="DIR",
                   help="folder for the PNGs the s key saves (default: the current folder)")
    p.add_argument("--terminal", action="store_true",
                   help="draw the emoji as text in this terminal instead of a window (over SSH too): two columns "
                        "per emoji, the grid as large as the terminal (follows a resize), a status line; q or "
                        "Ctrl-C quits")
    add_engine_args(p, stability=1.0, still=4.0,
                    text_help="--terminal paints the cells white or black and picks the emoji for that (default: "
                              "auto in the window, white with --terminal)",
                    cols_help="; with --terminal, the most columns it may use, default as many as fit")
    p.set_defaults(func=cmd_live)

    p = sub.add_parser("tune", help="search faster kernels for one grid on this machine (tinygrad BEAM), once",
                       description="Runs tinygrad's kernel search (BEAM) for the frame function of one grid and "
                                   "stores the searched kernels in this machine's JIT cache (~/.cache/emojicam), "
                                   "where `convert` and `live` with the same grid, device and settings pick them "
                                   "up. Takes minutes; run it on an otherwise idle machine.")
    p.add_argument("--size", default="1280x720", metavar="WxH",
                   help="frame size the grid is laid on: your camera's or video's (default 1280x720)")
    p.add_argument("--beam", type=int, default=2, help="search width, tinygrad's BEAM (default 2)")
    p.add_argument("--still-sizes", action="store_true",
                   help="also the smaller batches that live's still cells use (1/8, 1/4, 1/2 of the grid)")
    add_engine_args(p, stability=1.0)
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("bench", help="measure FLOPs, per-stage times and fps per device and grid, against peers",
                       description="Benchmark on a 1280x720 H.264 clip (samples/sample.mp4 rescaled, else synthetic): "
                                   "FLOPs, ms per stage, engine and end-to-end fps per device and grid, and the same "
                                   "network row by row, in onnxruntime, OpenCV dnn and PyTorch (when installed).")
    p.add_argument("--device", action="append", default=None,
                   help="tinygrad device(s) to measure, repeatable or comma list (default: every working one)")
    p.add_argument("--cols", action="append", default=None,
                   help="grid columns to measure, repeatable or comma list (default 32,64,80,128 = 32x18 .. 128x72)")
    p.add_argument("--quick", action="store_true", help="32x18 only and a few frames: a smoke test under a minute")
    p.add_argument("--frames", type=int, default=None, help="timed frames per measurement (default 30, quick 4)")
    p.add_argument("--clip-frames", type=int, default=None,
                   help="frames in the clip converted end to end (default 30, quick 8)")
    p.add_argument("--source", type=Path, default=None, help="video to cut the clip from (default samples/sample.mp4)")
    p.add_argument("--no-peers", action="store_true", help="measure emojicam only")
    p.add_argument("--peak-gflops", action="append", default=None,
                   help="assumed peak GFLOP/s: N for every device or DEVICE=N (default: worked out per device)")
    p.add_argument("--tile", type=int, default=16, help="output pixels per emoji tile (default 16)")
    p.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS, help="trained weights (default: shipped)")
    p.add_argument("--emoji-set", type=Path, default=DEFAULT_SET, help="folder of emoji PNGs (default: shipped)")
    p.add_argument("--json", type=Path, default=None, help="write every record and the environment as JSON")
    p.add_argument("--markdown", type=Path, default=None, help="write the tables as Markdown")
    p.add_argument("--plot", type=Path, default=None, help="write fps against tiles per frame as a .png")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except EmojicamError as e:
        print(f"emojicam: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("emojicam: interrupted", file=sys.stderr)
        return 130

"""The `emojicam` command: parses arguments, builds Settings, calls the core, prints user errors on one line."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from emojicam import __version__
from emojicam.emoji_set import SETS
from emojicam.errors import EmojicamError, Interrupted
from emojicam.grid import PATCH_PX
from emojicam.settings import BACKGROUNDS, COLS, COMPOSITES, MODELS, TILE_PX, ModelChoice, Settings

if TYPE_CHECKING:
    from emojicam.bench.run import BenchConfig

DEVICE_HELP = ("tinygrad device: CPU, CL, METAL, CUDA, ... (default: the first GPU backend that works, else the CPU "
               "device; `emojicam devices` says which and why)")
QUIET_HELP = ("no progress and no per-file lines, only warnings and errors (progress is a bar on a terminal, "
              "a line every few seconds in a log)")


def add_engine_args(p: argparse.ArgumentParser, stability: float, still: float = 0.0, text_help: str = "",
                    cols_help: str = "") -> None:
    """Flags every command that emojifies shares. A command with text output says in text_help how its text
    background works; its --background then defaults to None (auto for pictures, white for text, decided where
    the output is known). cols_help: what an unset --cols (None then) means besides the default."""
    p.add_argument("--cols", type=int, default=None if cols_help else COLS,
                   help=f"grid columns; rows follow the aspect ratio (default {COLS}{cols_help})")
    p.add_argument("--tile", type=int, default=TILE_PX, help=f"output pixels per emoji tile (default {TILE_PX})")
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
    p.add_argument("--variety", type=float, default=Settings.variety,
                   help="a fixed per-cell dither added to the scores, so flat areas mix the emoji that fit them "
                        f"instead of repeating one; 0 = off (default {Settings.variety})")
    p.add_argument("--device", default=None, help=DEVICE_HELP)
    p.add_argument("--composite", choices=COMPOSITES, default="auto",
                   help="where frames are cut and composited: host (OpenCV/numpy), device (the whole frame in one "
                        "compiled function on the device), auto = device on GPUs, host on CPU devices (default auto)")
    add_model_args(p)


def add_model_args(p: argparse.ArgumentParser) -> None:
    """Which network and emoji set: a shipped pair by name, or a custom set and its weights."""
    p.add_argument("--model", choices=MODELS, default="auto",
                   help="shipped network: default (36 px input), fast (18 px, about 5x fewer FLOPs, for real time "
                        "on CPUs), auto = fast for `live` on CPU devices, else default (default auto)")
    p.add_argument("--set", choices=tuple(SETS), default="default", dest="set_name",
                   help="shipped emoji set: default (256 Twemoji), full (every Twemoji but flags, components and "
                        "skin tones) (default default)")
    p.add_argument("--weights", type=Path, default=None,
                   help="trained weights (default: the shipped ones for --set and --model)")
    p.add_argument("--emoji-set", type=Path, default=None,
                   help="folder of emoji PNGs (default: the shipped --set)")


def model_choice(args: argparse.Namespace) -> ModelChoice:
    """The network and emoji set that --set/--model or --emoji-set/--weights name."""
    return ModelChoice(args.set_name, args.model, args.weights, args.emoji_set)


def settings_from(args: argparse.Namespace, background: str = "auto") -> Settings:
    """The engine's Settings from the shared engine flags; background: what an unset --background means."""
    return Settings(cols=COLS if args.cols is None else args.cols, tile_px=args.tile,
                    background=args.background or background, device=args.device,
                    stability=args.stability, still_threshold=args.still_threshold, variety=args.variety,
                    composite=args.composite)


def cmd_convert(args: argparse.Namespace) -> int:
    from emojicam.convert import ConvertOptions, convert_paths

    opts = ConvertOptions(tuple(args.inputs), args.output_dir, args.quiet, args.max_chars, args.cols,
                          args.background)
    convert_paths(opts, settings_from(args), model_choice(args))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from emojicam.atomic import check_writable
    from emojicam.emoji_set import EmojiSet
    from emojicam.engine import resolve_device
    from emojicam.train import TrainConfig, train

    if not 10 <= args.patch_px <= 64:
        raise EmojicamError(f"--patch-px: expected 10..64 pixels, got {args.patch_px}")
    if args.resume is not None and not args.resume.is_file():
        raise EmojicamError(f"--resume: expected a weights file, got no file at {args.resume}")
    channels = _channels(args.channels)
    emoji_set = EmojiSet.load(args.emoji_dir)
    check_writable(args.output)  # in a moment, not after the training
    cfg = TrainConfig(steps=args.steps, batch=args.batch, lr=args.lr, seed=args.seed, patch_px=args.patch_px,
                      channels=channels)
    ckpt = train(emoji_set, args.output, cfg, device=resolve_device(args.device), resume=args.resume,
                 quiet=args.quiet)
    print(f"hold-out top-1 {ckpt.info['holdout_top1']:.2%} on {ckpt.info['holdout_size']} perturbed emoji; "
          f"wrote {args.output}")
    return 0


def _channels(text: str) -> tuple[int, int]:
    parts = text.split(",")
    if len(parts) != 2 or not all(p.strip().isdigit() and 1 <= int(p) <= 256 for p in parts):
        raise EmojicamError(f"--channels: expected two channel counts 1..256 as C1,C2 (e.g. 8,16), got {text!r}")
    return int(parts[0]), int(parts[1])


def cmd_devices(args: argparse.Namespace) -> int:
    from emojicam.caches import open_caches
    from emojicam.devices import describe_devices

    open_caches()  # before tinygrad opens a device: that compiles
    print(describe_devices(verbose=args.verbose))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from emojicam.atomic import check_writable
    from emojicam.engine import open_engine
    from emojicam.evaluate import evaluate, format_summary

    for photo in args.photos:
        if not photo.is_file():
            raise EmojicamError(f"evaluate: expected a photo file, got no file at {photo}")
    check_writable(args.output_dir / "quality.json")  # now, not after the weights load and the photos
    with open_engine(settings_from(args), model_choice(args)) as emojifier:
        summary = evaluate(emojifier, args.photos, args.output_dir, cols=args.cols)
    print(format_summary(summary))
    print(f"wrote {args.output_dir / 'quality.json'} and one contact sheet per photo")
    return 0


def cmd_live(args: argparse.Namespace) -> int:
    from emojicam.live.mirror import LiveOptions

    opts = LiveOptions(camera=args.camera, source=args.source, record=args.record, window=not args.no_window,
                       max_frames=args.max_frames, virtual_camera=args.virtual_camera, snapshot_dir=args.snapshots)
    if args.terminal:
        from emojicam.live.terminal import run_terminal

        run_terminal(opts, settings_from(args, background="white"), model_choice(args), max_cols=args.cols)
    else:
        from emojicam.live.window import run_live

        run_live(opts, settings_from(args), model_choice(args))
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
    from emojicam.bench.tune import TuneOptions, tune
    from emojicam.engine import open_engine

    width, height = frame_size(args.size)
    if args.beam < 1:
        raise EmojicamError(f"--beam: expected a search width >= 1, got {args.beam}")
    with open_engine(settings_from(args), model_choice(args)) as emojifier:
        tune(emojifier, TuneOptions((height, width, 3), args.beam, args.still_sizes),
             say=lambda line: print(line, flush=True))
    return 0


def cmd_web(args: argparse.Namespace) -> int:
    from emojicam.web.site import check_port, export_site, parse_grids, serve, site_models

    grids = parse_grids(args.grids)
    check_port(args.port)
    set_dir, models = site_models(model_choice(args))
    settings = Settings(tile_px=args.tile, background=args.background, stability=args.stability,
                        variety=args.variety)
    site = export_site(args.out_dir, models, set_dir, grids, settings,
                       log=lambda line: print(line, file=sys.stderr, flush=True))
    done = ("kept" if site.kept else "wrote") + f" {site.path}: {len(site.file_bytes)} files"
    print(f"{done}, {site.bytes / 1e6:.1f} MB, networks and grids {', '.join(site.kernels_per_frame)}"
          f"{' (already this site: same version, networks, set, settings and grids)' if site.kept else ''}",
          flush=True)
    if args.serve:
        serve(site.path, args.port, lambda url: print(f"serving {site.path} at {url} (Ctrl-C stops)", flush=True))
    return 0


def split_list(values: list[str] | None) -> list[str]:
    """Repeatable flags that also take comma lists: ["CPU,CL", "METAL"] -> ["CPU", "CL", "METAL"]."""
    return [v.strip() for value in values or [] for v in value.split(",") if v.strip()]


def parse_peaks(values: list[str] | None) -> dict[str, float]:
    """--peak-gflops N (every device) or DEVICE=N -> {"*" or DEVICE: N}."""
    peaks = {}
    for value in split_list(values):
        device, _, number = value.rpartition("=")
        try:
            peak = float(number)
        except ValueError:
            peak = -1.0
        if peak <= 0:
            raise EmojicamError(f"--peak-gflops: expected N or DEVICE=N with N > 0 GFLOP/s, got {value}")
        peaks[device.upper() or "*"] = peak
    return peaks


def bench_config(args: argparse.Namespace) -> BenchConfig:
    """What `emojicam bench` measures, from its flags; checks what a user can get wrong."""
    from emojicam.bench.run import LADDER_COLS, QUICK, BenchConfig
    from emojicam.devices import working_devices
    from emojicam.engine import resolve_device
    from emojicam.settings import PATHS

    names = split_list(args.device) or working_devices()
    devices = tuple(dict.fromkeys(resolve_device(name) for name in names))
    if not devices:
        raise EmojicamError("--device: expected a working tinygrad device (see `emojicam devices`), got none here")
    try:
        cols = tuple(int(c) for c in split_list(args.cols)) or (QUICK["cols"] if args.quick else LADDER_COLS)
    except ValueError:
        raise EmojicamError(f"--cols: expected whole numbers such as 32,64,80,128, got {','.join(args.cols)}") from None
    for flag, value in (("--frames", args.frames), ("--clip-frames", args.clip_frames)):
        if value is not None and value < 1:
            raise EmojicamError(f"{flag}: expected at least 1, got {value}")
    if args.source is not None and not args.source.is_file():
        raise EmojicamError(f"--source: expected a video file, got no file at {args.source}")
    sizes = {**(QUICK if args.quick else {}), "cols": cols}
    sizes |= {k: v for k, v in (("frames", args.frames), ("clip_frames", args.clip_frames)) if v is not None}
    composites = tuple(dict.fromkeys(split_list(args.composite)))
    if bad := [c for c in composites if c not in PATHS]:
        raise EmojicamError(f"--composite: expected host, device or both (host,device), got {','.join(bad)}")
    return BenchConfig(devices=devices, tile_px=args.tile, peers=not args.no_peers, source=args.source,
                       peak_gflops=parse_peaks(args.peak_gflops), composites=composites, **sizes)


def cmd_bench(args: argparse.Namespace) -> int:
    from emojicam.bench.run import BenchOutputs, bench_command

    outputs = BenchOutputs(args.json, args.markdown, args.plot)
    bench_command(bench_config(args), model_choice(args), outputs)
    return 0


def add_convert_parser(sub: argparse._SubParsersAction) -> None:
    """The convert command and its flags."""
    p = sub.add_parser("convert", help="convert photos and videos to emoji art",
                       description="Convert images (png jpg webp bmp) and videos (mp4 webm mkv mov avi gif). "
                                   "Give IN OUT, or several inputs / folders with -o DIR. A still into OUT.txt or "
                                   "OUT.html is written as text: one emoji character (sequence) per cell, one line "
                                   "per row, to paste into a chat; the .html page shows it and has a copy button.")
    p.add_argument("inputs", nargs="+",
                   help="IN OUT (IN may be a stream URL), or inputs (files or folders) with -o")
    p.add_argument("-o", "--output-dir", type=Path, default=None, help="output folder for several inputs")
    p.add_argument("-q", "--quiet", action="store_true", help=QUIET_HELP)
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


def add_train_parser(sub: argparse._SubParsersAction) -> None:
    """The train command and its flags."""
    p = sub.add_parser("train", help="train TinyConvNet on a folder of emoji PNGs")
    p.add_argument("emoji_dir", type=Path, help="folder of emoji PNGs (RGBA or RGB)")
    p.add_argument("-o", "--output", type=Path, required=True, help="weights file to write (.safetensors)")
    p.add_argument("--steps", type=int, default=6000, help="training steps (default 6000)")
    p.add_argument("--batch", type=int, default=128, help="batch size (default 128)")
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate, cosine-decayed (default 0.003)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--patch-px", type=int, default=PATCH_PX,
                   help=f"the network's input size in pixels: {PATCH_PX} = the default model, 18 = the fast one "
                        f"(default {PATCH_PX})")
    p.add_argument("--channels", default="8,16", metavar="C1,C2",
                   help="output channels of the two convolutions (default 8,16; wider learns more look-alikes, "
                        "costs more per patch)")
    p.add_argument("--resume", type=Path, default=None, metavar="WEIGHTS",
                   help="go on from these weights (a run stopped by Ctrl-C, or the checkpoint a run writes to -o "
                        "at every hold-out evaluation) up to --steps")
    p.add_argument("--device", default=None, help=DEVICE_HELP)
    p.add_argument("-q", "--quiet", action="store_true", help=QUIET_HELP)
    p.set_defaults(func=cmd_train)


def add_evaluate_parser(sub: argparse._SubParsersAction) -> None:
    """The evaluate command and its flags."""
    p = sub.add_parser("evaluate", help="measure emoji-art quality on photos against the classic emoji mosaic")
    p.add_argument("photos", nargs="+", type=Path, help="photos to measure on")
    p.add_argument("-o", "--output-dir", type=Path, default=Path("out/evaluate"),
                   help="where quality.json and the contact sheets go (default out/evaluate)")
    add_engine_args(p, stability=0.0)
    p.set_defaults(func=cmd_evaluate)


def add_devices_parser(sub: argparse._SubParsersAction) -> None:
    """The devices command and its flags."""
    p = sub.add_parser("devices", help="list the tinygrad devices (and OpenCL devices) that work here")
    p.add_argument("--verbose", action="store_true", help="also say why each missing backend is not available")
    p.set_defaults(func=cmd_devices)


def add_live_parser(sub: argparse._SubParsersAction) -> None:
    """The live command and its flags."""
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


def add_tune_parser(sub: argparse._SubParsersAction) -> None:
    """The tune command and its flags."""
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


def add_web_parser(sub: argparse._SubParsersAction) -> None:
    """The web command and its flags."""
    from emojicam.web.site import DEFAULT_GRIDS

    p = sub.add_parser("web", help="write the browser page: the live mirror and a GPU benchmark on WebGPU",
                       description="Write a static site (index.html, its JavaScript, the WGSL kernels tinygrad renders "
                                   "from the same network and scoring, the weights and the tile atlas) that runs the "
                                   "emoji mirror and a GPU benchmark on the visitor's GPU in any browser with WebGPU, "
                                   "nothing installed. Nothing is loaded from elsewhere: put it on any static host, "
                                   "open its index.html from the folder, or serve it here with --serve. Keys as in "
                                   "live, and c copies the emoji as text; index.html#bench runs the benchmark. With "
                                   "--model auto the site carries both networks and the page picks the largest "
                                   "grid and network that hold the camera's rate. A folder that already holds the "
                                   "same site is kept, so --serve serves it at once.")
    p.add_argument("out_dir", type=Path, metavar="OUT_DIR",
                   help="folder for the site: a new or empty one, or an earlier site, which is replaced")
    grids = ",".join(f"{c}x{r}" for c, r in DEFAULT_GRIDS)
    p.add_argument("--grids", default=grids, metavar="COLSxROWS,...",
                   help=f"the grids the page offers (+/- step between them); the picture is cropped to each grid's "
                        f"aspect ratio (default {grids})")
    p.add_argument("--tile", type=int, default=16, help="pixels per emoji tile on the page (default 16)")
    p.add_argument("--background", choices=BACKGROUNDS, default="auto",
                   help="behind transparent emoji pixels: auto = per tile, the colour that brings the tile's mean "
                        "colour to its cell's (default auto)")
    p.add_argument("--stability", type=float, default=1.0,
                   help="score margin a new emoji must win by to replace a tile's emoji; 0 = off (default 1.0)")
    p.add_argument("--variety", type=float, default=Settings.variety,
                   help=f"the fixed per-cell dither added to the scores; 0 = off (default {Settings.variety})")
    p.add_argument("--serve", action="store_true",
                   help="then serve the site on 127.0.0.1 and print its URL until Ctrl-C (the camera needs a secure "
                        "page, and localhost is one)")
    p.add_argument("--port", type=int, default=8000, help="port for --serve; 0 = any free one (default 8000)")
    add_model_args(p)
    p.set_defaults(func=cmd_web)


def add_bench_parser(sub: argparse._SubParsersAction) -> None:
    """The bench command and its flags."""
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
    p.add_argument("--composite", action="append", default=None, metavar="host,device",
                   help="paths to measure: host (OpenCV/numpy cut and compositing), device (the whole frame on the "
                        "device); default both on GPUs, host on CPU devices")
    p.add_argument("--peak-gflops", action="append", default=None,
                   help="assumed peak GFLOP/s: N for every device or DEVICE=N (default: worked out per device)")
    p.add_argument("--tile", type=int, default=TILE_PX, help=f"output pixels per emoji tile (default {TILE_PX})")
    add_model_args(p)
    p.add_argument("--json", type=Path, default=None, help="write every record and the environment as JSON")
    p.add_argument("--markdown", type=Path, default=None, help="write the tables as Markdown")
    p.add_argument("--plot", type=Path, default=None, help="write fps against tiles per frame as a .png")
    p.set_defaults(func=cmd_bench)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emojicam", description="Webcam, video and photos to emoji art.",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--version", action="version", version=f"emojicam {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    add_convert_parser(sub)
    add_train_parser(sub)
    add_evaluate_parser(sub)
    add_devices_parser(sub)
    add_live_parser(sub)
    add_tune_parser(sub)
    add_web_parser(sub)
    add_bench_parser(sub)
    return parser


# what `kill`, `timeout`, systemd, a job scheduler or a closed terminal send
TERMINATING = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


def in_finaliser(frame) -> bool:
    """Whether the code a signal interrupted must not be cut short: a weakref callback or a __del__, which the garbage
    collector runs in the middle of any code and whose exceptions Python prints and drops (a SIGTERM raised in
    tinygrad's weakref callbacks would be lost, and the conversion would go on to the end), or the __init__ of an
    object that has a __del__ (cut short, it leaves a half-built object whose __del__ fails later and prints a
    traceback, as a tinygrad Buffer without its `device` did)."""
    while frame is not None:
        code = frame.f_code
        if code.co_name == "__del__" or Path(code.co_filename).name in ("weakref.py", "_weakrefset.py"):
            return True
        if code.co_name == "__init__" and hasattr(type(frame.f_locals.get("self")), "__del__"):
            return True
        frame = frame.f_back
    return False


def redeliver(signum: int) -> None:
    """Send signum to the main thread again, where it also wakes a sleep or a wait (to the process on Windows,
    where threads cannot be signalled one by one)."""
    if hasattr(signal, "pthread_kill"):
        signal.pthread_kill(threading.main_thread().ident, signum)
    else:
        signal.raise_signal(signum)


@contextlib.contextmanager
def signals_as_interrupts():
    """SIGTERM and SIGHUP raise Interrupted in the main thread, as Ctrl-C raises KeyboardInterrupt, so the same
    cleanup runs; once one arrived, repeats do nothing, so they cannot cut that cleanup short. (Not SIG_IGN: a
    process started during the cleanup, such as a tinygrad compile worker, would inherit it and then ignore the
    SIGTERM that is meant to end it.)"""
    arrived: list[int] = []

    def stop(signum, frame):
        if arrived:
            return
        if in_finaliser(frame):  # printed and dropped there, or a half-built object left: deliver it again shortly
            threading.Timer(0.02, redeliver, (signum,)).start()
            return
        arrived.append(signum)
        raise Interrupted(signum)

    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    before = {s: signal.signal(s, stop) for s in TERMINATING}
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with signals_as_interrupts():
            return args.func(args)
    except EmojicamError as e:
        print(f"emojicam: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        by = f" by {e}" if isinstance(e, Interrupted) else ""  # Ctrl-C: KeyboardInterrupt itself
        print(f"emojicam: interrupted{by}", file=sys.stderr)
        return 128 + (e.signum if isinstance(e, Interrupted) else signal.SIGINT)

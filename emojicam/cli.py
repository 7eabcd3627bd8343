"""The `emojicam` command: parses arguments, builds Settings, calls the core, prints user errors on one line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from emojicam.emoji_set import BACKGROUNDS, DEFAULT_SET
from emojicam.engine import Settings
from emojicam.errors import EmojicamError
from emojicam.model import DEFAULT_WEIGHTS


def add_engine_args(p: argparse.ArgumentParser, stability: float) -> None:
    """Flags every command that emojifies shares."""
    p.add_argument("--cols", type=int, default=64, help="grid columns; rows follow the aspect ratio (default 64)")
    p.add_argument("--tile", type=int, default=16, help="output pixels per emoji tile (default 16)")
    p.add_argument("--background", choices=BACKGROUNDS, default="auto",
                   help="behind transparent emoji pixels: auto = the cell's mean colour (default auto)")
    p.add_argument("--stability", type=float, default=stability,
                   help=f"log-probability margin a new emoji must win by to replace a tile's emoji; 0 = off "
                        f"(default {stability})")
    p.add_argument("--device", default=None, help="tinygrad device: CPU, CL, METAL, CUDA, ... (default: tinygrad's)")
    p.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS, help="trained weights (default: shipped)")
    p.add_argument("--emoji-set", type=Path, default=DEFAULT_SET, help="folder of emoji PNGs (default: shipped)")


def settings_from(args: argparse.Namespace) -> Settings:
    return Settings(cols=args.cols, tile_px=args.tile, background=args.background, device=args.device,
                    stability=args.stability)


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emojicam", description="Webcam, video and photos to emoji art.",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("convert", help="convert photos and videos to emoji art",
                       description="Convert images (png jpg webp bmp) and videos (mp4 webm mkv mov avi gif). "
                                   "Give IN OUT, or several inputs / folders with -o DIR.")
    p.add_argument("inputs", nargs="+", type=Path, help="IN OUT, or inputs (files or folders) with -o")
    p.add_argument("-o", "--output-dir", type=Path, default=None, help="output folder for several inputs")
    add_engine_args(p, stability=1.0)
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

    p = sub.add_parser("devices", help="list the tinygrad devices (and OpenCL devices) that work here")
    p.set_defaults(func=cmd_devices)
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

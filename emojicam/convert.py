"""`emojicam convert`: pair inputs with outputs, check them all, then convert stills and videos."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from emojicam.capture import is_url
from emojicam.errors import EmojicamError
from emojicam.images import IMAGE_EXTS, check_image_output, read_image, write_image

VIDEO_EXTS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".gif")
VIDEO_OUT_EXTS = (".mp4", ".webm", ".gif")


def kind_of(path: Path | str) -> str:
    if is_url(path):
        return "video"
    ext = path.suffix.lower()
    if ext in IMAGE_EXTS:
        return "image"
    if ext in VIDEO_EXTS:
        return "video"
    raise EmojicamError(f"input: expected an image ({' '.join(IMAGE_EXTS)}) or video ({' '.join(VIDEO_EXTS)}), "
                        f"got '{path.suffix or path.name}' ({path})")


def plan(names: list[str], output_dir: Path | None) -> list[tuple[Path | str, Path]]:
    """(input, output) pairs: `IN OUT`, or every input (folders expanded) into output_dir, same name. A stream URL
    stays text (a Path would fold its "//")."""
    inputs = [n if is_url(n) else Path(n) for n in names]
    if output_dir is None:
        if len(inputs) != 2:
            raise EmojicamError(f"convert: expected IN OUT, or inputs with -o DIR, got {len(inputs)} path(s)")
        src, dst = inputs
        if is_url(dst):
            raise EmojicamError(f"output: expected a file name, got the URL {dst}")
        if not is_url(src) and not src.exists():
            raise EmojicamError(f"input: expected a file, got no file at {src}")
        pairs = [(src, dst)]
    else:
        files: list[Path] = []
        for path in inputs:
            if is_url(path):
                raise EmojicamError(f"convert: expected IN OUT for a stream, got {path} with -o DIR")
            if path.is_dir():
                found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTS + VIDEO_EXTS)
                if not found:
                    raise EmojicamError(f"input: expected images or videos in folder {path}, got none")
                files += found
            elif path.exists():
                files.append(path)
            else:
                raise EmojicamError(f"input: expected a file or folder, got nothing at {path}")
        output_dir.mkdir(parents=True, exist_ok=True)
        pairs = [(f, output_dir / (f.stem + "_emoji" + (f.suffix if f.suffix.lower() in IMAGE_EXTS + VIDEO_OUT_EXTS
                                                          else ".mp4"))) for f in files]
    for src, dst in pairs:
        if kind_of(src) == "image":
            check_image_output(dst)
        elif dst.suffix.lower() not in VIDEO_OUT_EXTS:
            raise EmojicamError(f"output: expected a video output ({' '.join(VIDEO_OUT_EXTS)}) for {Path(src).name}, "
                                f"got '{dst.suffix or dst.name}'")
        if not is_url(src) and src.resolve() == dst.resolve():
            raise EmojicamError(f"output: expected a path other than the input, got {dst}")
    return pairs


def convert_paths(inputs: list[str], output_dir: Path | None, args, make_emojifier: Callable) -> None:
    """Convert every planned pair, printing one line per output; stops at the first bad input."""
    pairs = plan(inputs, output_dir)
    for src, dst in pairs:  # a bad input fails in a moment, not after the weights load
        if kind_of(src) == "image":
            read_image(src)
        else:
            from emojicam.video import check_output, check_video

            if not is_url(src):  # a stream is opened once: its server may take one client only
                check_video(src)
            check_output(dst)
    emojifier = make_emojifier(args)
    for src, dst in pairs:
        if kind_of(src) == "image":
            frame = read_image(src)
            emojifier.reset()
            write_image(dst, emojifier(frame))
            print(f"{src} -> {dst}")
        else:
            from emojicam.video import convert_video

            stats = convert_video(emojifier, src, dst)
            print(f"{src} -> {dst} ({stats.frames} frames at {stats.fps:.1f} fps; {stats.skipped:.0%} of cells kept "
                  f"their emoji without a forward pass)")

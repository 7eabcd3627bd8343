"""`emojicam convert`: pair inputs with outputs, check them all, then convert stills and videos."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import cv2

from emojicam.atomic import check_writable
from emojicam.errors import EmojicamError
from emojicam.live.capture import is_url
from emojicam.media.images import IMAGE_EXTS, check_image_output, read_image, write_image
from emojicam.media.reader import check_video, is_still_image, probe
from emojicam.media.text import TEXT_EXTS, text_art, write_art
from emojicam.media.video import convert_video
from emojicam.media.writer import OUT_EXTS, check_output
from emojicam.settings import check_text_background

if TYPE_CHECKING:
    from emojicam.engine import Emojifier
    from emojicam.settings import ModelChoice, Settings

# names that are taken as videos without a look inside; any other file is asked (FFmpeg, then OpenCV) what it holds
VIDEO_EXTS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".gif", ".ts", ".mts", ".m2ts", ".3gp", ".flv",
              ".mpg", ".mpeg", ".wmv", ".ogv")


@lru_cache(maxsize=256)
def kind_of(path: Path | str) -> str:
    """'image' or 'video': a stream URL is a video; a file by a well-known extension, else by its content."""
    if is_url(path):
        return "video"
    path = Path(path)
    ext = path.suffix.lower()
    if ext in IMAGE_EXTS:
        return "image"
    if ext in VIDEO_EXTS:
        return "video"
    if path.is_file() and path.stat().st_size > 0:
        info = probe(path)
        if info is None:  # no FFmpeg: OpenCV's image decoders know their formats by their first bytes
            return "image" if cv2.haveImageReader(str(path)) else "video"
        if info.has_video:
            return "image" if is_still_image(info) and cv2.haveImageReader(str(path)) else "video"
        reason = info.error or f"FFmpeg found no picture in it ({info.container or 'unknown format'})"
    else:
        reason = "an empty file" if path.is_file() else "not a file"
    raise EmojicamError(f"input: expected an image or a video FFmpeg can decode, got {path} ({reason})")


def _media(path: Path) -> bool:
    """Whether a file found in an input folder is an image or a video (others there are left alone)."""
    try:
        kind_of(path)
    except EmojicamError:
        return False
    return True


def _output_suffix(src: Path) -> str:
    """The input's own suffix where emojicam writes that format, else .png for stills and .mp4 for videos."""
    keep = IMAGE_EXTS if kind_of(src) == "image" else OUT_EXTS  # each led by its default: .png, .mp4
    return src.suffix if src.suffix.lower() in keep else keep[0]


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
        if dst.is_dir() or names[1].endswith(("/", os.sep)):
            raise EmojicamError(f"output: expected a file name, got the folder {names[1]} (to write into a folder: "
                                f"emojicam convert IN... -o {names[1]})")
        if not is_url(src) and not src.exists():
            raise EmojicamError(f"input: expected a file, got no file at {src}")
        pairs = [(src, dst)]
    else:
        files: list[Path] = []
        for path in inputs:
            if is_url(path):
                raise EmojicamError(f"convert: expected IN OUT for a stream, got {path} with -o DIR")
            if path.is_dir():
                found = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".") and _media(p))
                if not found:
                    raise EmojicamError(f"input: expected images or videos in folder {path}, got none")
                files += found
            elif path.exists():
                files.append(path)
            else:
                raise EmojicamError(f"input: expected a file or folder, got nothing at {path}")
        try:
            output_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise EmojicamError(f"output: expected a folder to write into, got an error making {output_dir}: "
                                f"{e.strerror or e}") from None
        pairs = [(f, output_dir / (f.stem + "_emoji" + _output_suffix(f))) for f in files]
    for src, dst in pairs:
        if kind_of(src) == "image":
            if not is_text(dst):
                check_image_output(dst)
        elif is_text(dst):
            raise EmojicamError(f"output: text ({dst.suffix}) is for stills, got a video ({src.name}); write a video "
                                f"({' '.join(OUT_EXTS)}), take one frame first (ffmpeg -i {src.name} -frames:v "
                                f"1 frame.png), or watch it as text: emojicam live --terminal --source {src.name}")
        elif dst.suffix.lower() not in OUT_EXTS:
            raise EmojicamError(f"output: expected a video output ({' '.join(OUT_EXTS)}) for {Path(src).name}, "
                                f"got '{dst.suffix or dst.name}'")
        if not is_url(src) and src.resolve() == dst.resolve():
            raise EmojicamError(f"output: expected a path other than the input, got {dst}")
    return pairs


@dataclass(frozen=True)
class ConvertOptions:
    """What `emojicam convert` was asked, beside the engine's Settings: the inputs (IN OUT, or inputs with
    output_dir), text_background = --background as given (None: white for text outputs), cols = --cols as given
    (None: the densest grid within max_chars for text)."""

    inputs: tuple[str, ...]
    output_dir: Path | None = None
    quiet: bool = False
    max_chars: int | None = None
    cols: int | None = None
    text_background: str | None = None


def is_text(dst: Path) -> bool:
    """Whether an output is written as text (.txt, .html) rather than pixels."""
    return dst.suffix.lower() in TEXT_EXTS


def convert_paths(opts: ConvertOptions, settings: Settings, choice: ModelChoice) -> None:
    """Convert every planned pair, printing one line per output (none with quiet); stops at the first bad input."""
    from emojicam.engine import open_engine

    say = (lambda _: None) if opts.quiet else print
    pairs = plan(list(opts.inputs), opts.output_dir)
    text = any(is_text(dst) for _, dst in pairs)  # IN OUT only: -o DIR keeps each input's kind
    if opts.max_chars is not None and not text:
        raise EmojicamError(f"--max-chars: expected a text output ({' '.join(TEXT_EXTS)}), got "
                            f"{', '.join(sorted({dst.suffix or dst.name for _, dst in pairs}))}")
    if text:
        settings = dataclasses.replace(settings, background=opts.text_background or "white")
        check_text_background(settings.background)
    for src, dst in pairs:  # a bad input or an output that cannot be written fails now, not after the weights load
        if kind_of(src) == "image":
            read_image(src)
            if not dst.parent.is_dir():
                raise EmojicamError(f"output: expected an existing folder, got {dst.parent}")
        else:
            if not is_url(src):  # a stream is opened once: its server may take one client only
                check_video(src)
            check_output(dst)
        check_writable(dst)
    with open_engine(settings, choice) as emojifier:
        strings = emojifier.emoji_set.strings() if text else []  # a set without codepoints fails here, first
        for src, dst in pairs:
            convert_one(emojifier, src, dst, opts, strings, say)


def convert_one(emojifier: Emojifier, src: Path | str, dst: Path, opts: ConvertOptions, strings: list[str],
                say: Callable[[str], None]) -> None:
    """One input into its output: a still as text or a picture, or a video; one line saying what was written."""
    if is_text(dst):
        art = text_art(emojifier, read_image(src), strings, opts.cols, opts.max_chars)
        write_art(dst, art, src.name, emojifier.settings.background)
        limit = f" of at most {opts.max_chars:,}" if opts.max_chars is not None else ""
        say(f"{src} -> {dst} (grid {art.grid.cols}x{art.grid.rows}, {art.chars:,} characters{limit})")
    elif kind_of(src) == "image":
        emojifier.reset()
        write_image(dst, emojifier(read_image(src)).image)
        say(f"{src} -> {dst}")
    else:
        stats = convert_video(emojifier, src, dst, quiet=opts.quiet)
        retimed = stats.retiming.note(stats.frame_rate)
        say(f"{src} -> {dst} ({stats.frames} frames written, {stats.frames / stats.frame_rate:.2f} s at "
            f"{stats.frame_rate:g} fps{'; ' + retimed if retimed else ''}; converted at {stats.fps:.1f} frames/s; "
            f"{stats.skipped:.0%} of cells kept their emoji without a forward pass)")

"""`emojicam convert`: pair inputs with outputs, check them all, then convert stills and videos."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from emojicam.errors import EmojicamError
from emojicam.images import IMAGE_EXTS, check_image_output, read_image, write_image
from emojicam.text import TEXT_EXTS

VIDEO_EXTS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".gif")
VIDEO_OUT_EXTS = (".mp4", ".webm", ".gif")


def kind_of(path: Path) -> str:
    ext = path.suffix.lower()
    if ext in IMAGE_EXTS:
        return "image"
    if ext in VIDEO_EXTS:
        return "video"
    raise EmojicamError(f"input: expected an image ({' '.join(IMAGE_EXTS)}) or video ({' '.join(VIDEO_EXTS)}), "
                        f"got '{path.suffix or path.name}' ({path})")


def plan(inputs: list[Path], output_dir: Path | None) -> list[tuple[Path, Path]]:
    """(input, output) pairs: `IN OUT`, or every input (folders expanded) into output_dir, same name."""
    if output_dir is None:
        if len(inputs) != 2:
            raise EmojicamError(f"convert: expected IN OUT, or inputs with -o DIR, got {len(inputs)} path(s)")
        src, dst = inputs
        if not src.exists():
            raise EmojicamError(f"input: expected a file, got no file at {src}")
        pairs = [(src, dst)]
    else:
        files: list[Path] = []
        for path in inputs:
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
            if dst.suffix.lower() not in TEXT_EXTS:
                check_image_output(dst)
        elif dst.suffix.lower() in TEXT_EXTS:
            raise EmojicamError(f"output: text ({dst.suffix}) is for stills, got a video ({src.name}); write a video "
                                f"({' '.join(VIDEO_OUT_EXTS)}), take one frame first (ffmpeg -i {src.name} -frames:v "
                                f"1 frame.png), or watch it as text: emojicam live --terminal --source {src.name}")
        elif dst.suffix.lower() not in VIDEO_OUT_EXTS:
            raise EmojicamError(f"output: expected a video output ({' '.join(VIDEO_OUT_EXTS)}) for {src.name}, "
                                f"got '{dst.suffix or dst.name}'")
        if src.resolve() == dst.resolve():
            raise EmojicamError(f"output: expected a path other than the input, got {dst}")
    return pairs


def is_text(dst: Path) -> bool:
    return dst.suffix.lower() in TEXT_EXTS


def convert_paths(inputs: list[Path], output_dir: Path | None, args, make_emojifier: Callable) -> None:
    """Convert every planned pair, printing one line per output; stops at the first bad input."""
    pairs = plan(inputs, output_dir)
    text = any(is_text(dst) for _, dst in pairs)  # IN OUT only: -o DIR keeps each input's kind
    if args.max_chars is not None and not text:
        raise EmojicamError(f"--max-chars: expected a text output ({' '.join(TEXT_EXTS)}), got "
                            f"{', '.join(sorted({dst.suffix or dst.name for _, dst in pairs}))}")
    if text:
        from emojicam.text import check_text_background

        args = type(args)(**{**vars(args), "background": args.background or "white"})
        check_text_background(args.background)
    for src, dst in pairs:  # a bad input fails in a moment, not after the weights load
        if kind_of(src) == "image":
            read_image(src)
            if not dst.parent.is_dir():
                raise EmojicamError(f"output: expected an existing folder, got {dst.parent}")
        else:
            from emojicam.video import check_output, check_video

            check_video(src)
            check_output(dst)
    emojifier = make_emojifier(args)
    if text:
        from emojicam.text import emoji_strings, text_art, write_art

        strings = emoji_strings(emojifier.emoji_set)  # a set without codepoints fails here, before any output
    for src, dst in pairs:
        if is_text(dst):
            art = text_art(emojifier, read_image(src), strings, args.cols, args.max_chars)
            write_art(dst, art, src.name, args.background)
            limit = f" of at most {args.max_chars:,}" if args.max_chars is not None else ""
            print(f"{src} -> {dst} (grid {art.grid.cols}x{art.grid.rows}, {art.chars:,} characters{limit})")
        elif kind_of(src) == "image":
            frame = read_image(src)
            emojifier.reset()
            write_image(dst, emojifier(frame))
            print(f"{src} -> {dst}")
        else:
            from emojicam.video import convert_video

            stats = convert_video(emojifier, src, dst)
            print(f"{src} -> {dst} ({stats.frames} frames at {stats.fps:.1f} fps; {stats.skipped:.0%} of cells kept "
                  f"their emoji without a forward pass)")

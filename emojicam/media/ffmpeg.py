"""FFmpeg in one place: the binary imageio-ffmpeg ships (or IMAGEIO_FFMPEG_EXE names), and emojicam's H.264
settings, which the video writer and the benchmark's encode stage share."""

from __future__ import annotations

import shutil
from collections.abc import Generator
from functools import lru_cache
from pathlib import Path

# x264 for emoji art: superfast gives files of the same size as veryfast on emoji frames (flat cells, sharp edges)
# for 0.70x the encode CPU and 0.3 dB less PSNR (docs/video.md)
X264 = ("-preset", "superfast", "-crf", "20")


@lru_cache(maxsize=1)
def ffmpeg_exe() -> str | None:
    """The FFmpeg binary imageio-ffmpeg finds (honours IMAGEIO_FFMPEG_EXE), or None if there is none that runs."""
    import imageio_ffmpeg

    try:
        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError:
        return None
    return shutil.which(exe)


def h264_writer(dst: Path, size: tuple[int, int], fps: float = 30) -> Generator[None, object, None]:
    """An imageio-ffmpeg frame writer (send BGR frames, then close) with emojicam's H.264 settings, no sound."""
    import imageio_ffmpeg

    return imageio_ffmpeg.write_frames(str(dst), size, fps=fps, codec="libx264", pix_fmt_in="bgr24", quality=None,
                                       macro_block_size=1, ffmpeg_log_level="error", output_params=list(X264))

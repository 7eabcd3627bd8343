"""Damaged clocks against real pauses: frames `emojicam convert` writes, against FFmpeg's own counts (decoded, and
put on the constant rate as `-fps_mode cfr` does), with the warning it prints; also the earlier time-stamp inputs
that must keep their counts (a GIF with uneven delays, raw .h264, a wrapping .ts clock, a .webm without duration,
an HLS playlist, a 3 s pause).

    .venv/bin/python benchmarks/damaged_clock.py [--name damaged-clock]

Inputs are made here with the bundled FFmpeg from its test pattern (tests/media.py's helpers); each is converted
alone with `--cols 8 --tile 8`. FFmpeg's constant-rate count is stopped after 20 s (a 10 h jump is a million frames:
about 35 s of FFmpeg alone on this machine); then the count shown is a floor. Writes results/<date>-<name>.md.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results_md import write_markdown

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from media import FFMPEG, damaged_clusters, damaged_pts, ffmpeg, ffmpeg_count, flash_and_beep  # noqa: E402


def cfr_count(path: Path, fps: float) -> str:
    """FFmpeg's count on the constant rate, or a floor when it runs past 20 s."""
    proc = subprocess.Popen([FFMPEG, "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:v:0", "-fps_mode", "cfr",
                             "-r", str(fps), "-f", "null", "-"], stderr=subprocess.PIPE, text=True, errors="replace")
    try:
        text = proc.communicate(timeout=20)[1]
        return re.findall(r"frame= *(\d+)", text)[-1]
    except subprocess.TimeoutExpired:
        proc.kill()
        text = proc.communicate()[1]
        counts = re.findall(r"frame= *(\d+)", text)
        return f"over {int(counts[-1]) if counts else 0:,} (stopped at 20 s)"


def inputs(d: Path) -> dict[str, tuple[Path, float]]:
    """name -> (file, its frame rate)."""
    part = flash_and_beep(d / "part.mp4", at_s=0.5, seconds=2.0)
    ffmpeg("-i", part, "-c", "copy", "-f", "mpegts", d / "clean.ts")
    ffmpeg("-i", part, "-c", "copy", "-output_ts_offset", "20000", "-cluster_time_limit", "300", d / "clean.mkv")
    pattern = ["-f", "lavfi", "-i", "testsrc2=size=160x90:rate=25:duration=4"]
    ffmpeg(*pattern, "-vf", "setpts='PTS+gte(T,2)*3/TB'", "-fps_mode", "passthrough", "-c:v", "libx264",
           d / "pause3.mkv")
    ffmpeg("-i", part, "-vf", "setpts='PTS+gte(T,1)*20/TB'", "-af", "asetpts='PTS+gte(T,1)*20/TB'", "-fps_mode",
           "passthrough", "-c:v", "libx264", "-c:a", "aac", d / "pause20.mkv")
    ffmpeg(*pattern, "-c:v", "libx264", "-output_ts_offset", str(2 ** 33 / 90000 - 2), "-f", "mpegts", d / "wrap.ts")
    ffmpeg(*pattern, "-c:v", "libx264", "-f", "h264", d / "raw.h264")
    ffmpeg(*pattern, "-c:v", "libx264", "-f", "hls", "-hls_time", "1", "-hls_list_size", "0", d / "list.m3u8")
    webm = subprocess.run([FFMPEG, "-v", "error", *pattern[:3], "testsrc2=size=160x90:rate=30:duration=2", "-c:v",
                           "libvpx-vp9", "-deadline", "realtime", "-f", "webm", "-"], capture_output=True, check=True)
    (d / "pipe.webm").write_bytes(webm.stdout)
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x90:rate=10:duration=2", "-vf",
           "setpts='PTS+if(gte(N,10),N*0.02/TB,0)'", "-fps_mode", "passthrough", d / "uneven.gif")
    return {"the same 2 s .ts undamaged (for comparison)": (d / "clean.ts", 25),
            "one .ts frame's stamp +10 h (PTS only)": (damaged_pts(d / "clean.ts", d / "ts_ahead.ts", 20, 36000), 25),
            ".mkv clock +10 h from 0.5 s on": (damaged_clusters(d / "clean.mkv", d / "mkv_ahead.mkv", 3, 36000), 25),
            ".mkv clock 2 h 47 min back from 0.5 s on": (damaged_clusters(d / "clean.mkv", d / "mkv_back.mkv", 3,
                                                                          -10000), 25),
            ".mkv paused 20 s (a 22 s file)": (d / "pause20.mkv", 25), ".mkv paused 3 s": (d / "pause3.mkv", 25),
            ".ts whose 33-bit clock wraps": (d / "wrap.ts", 25), "raw .h264": (d / "raw.h264", 25),
            "HLS playlist, 1 s segments": (d / "list.m3u8", 25), ".webm written to a pipe": (d / "pipe.webm", 30),
            "GIF with uneven delays": (d / "uneven.gif", 0)}


def convert(src: Path, dst: Path) -> tuple[str, str, float]:
    """(closing line's frames, warning, seconds) of one conversion."""
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "emojicam", "convert", str(src), str(dst), "--cols", "8", "--tile",
                           "8"], capture_output=True, text=True, cwd=ROOT, timeout=1800)
    seconds = time.perf_counter() - t0
    written = re.search(r"\((\d+) frames written, [^;)]*", done.stdout)
    warned = " / ".join(line.split(": ", 3)[-1] for line in done.stderr.splitlines() if "warning" in line)
    return (written[0][1:] if written else f"exit {done.returncode}: {done.stderr.strip()[-200:]}"), warned, seconds


def decode_seconds(src: Path) -> float:
    t0 = time.perf_counter()
    ffmpeg_count(src)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="damaged-clock")
    args = parser.parse_args()
    from emojicam.bench.machine import machine_line

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (src, fps) in inputs(Path(tmp)).items():
            written, warned, seconds = convert(src, Path(tmp) / f"{src.stem}-emoji.mp4")
            rate = fps or float(re.search(r"([\d.]+) fps", written)[1]) if "fps" in written else fps
            rows.append(f"| {name} | {ffmpeg_count(src)} | {cfr_count(src, rate) if rate else '-'} | {written} | "
                        f"{seconds:.1f} s (FFmpeg's decode alone {decode_seconds(src):.2f} s) | {warned or '-'} |")
            print(rows[-1], flush=True)
    lines = ["# Damaged clocks and real pauses", "",
             f"{time.strftime('%Y-%m-%d %H:%M')} UTC; {machine_line()} (shared with other work); "
             "`benchmarks/damaged_clock.py`; each input converted alone with `--cols 8 --tile 8` (the whole command: "
             "Python's start, the weights and the kernels from the cache included).", "",
             "| input | FFmpeg decodes | FFmpeg on the constant rate (what the reader asked for before) | "
             "emojicam writes | convert took | warning |", "| --- | --- | --- | --- | --- | --- |", *rows]
    write_markdown(args.name, lines)


if __name__ == "__main__":
    main()

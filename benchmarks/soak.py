"""Long runs: `emojicam live` in a real window on a virtual screen (Xvfb) for many minutes, the grid changed by
key presses every few seconds, and `emojicam convert` of a long 720p video; the memory, threads and open files of
the process tree sampled every few seconds. Leaks show as growth after the first minute.

    .venv/bin/python benchmarks/soak.py live [--minutes 30] [--every 5] [--name soak-live]
    .venv/bin/python benchmarks/soak.py convert [--minutes 60] [--fps 5] [--cols 16] [--name soak-convert]

live: the source is samples/sample.mp4 scaled to 320x180 and looped with FFmpeg (`-stream_loop`, copied, not
re-encoded) to a file longer than the run, played at its own pace (a file read as a mirror is, frames dropped when
the loop is slower); keys + + - - in turn (xdotool), so the grid cycles through four sizes; the frame rate from
live's `running:` lines (one every 30 s). convert: samples/sample.mp4 at 1280x720 and --fps, looped to --minutes.
Growth is the median of the last minute's samples against the median of the second minute's (after the first
minute, when grids are compiled and caches filled); flat means under 5% for memory, threads and files.
Writes results/<date>-<name>.md and .json with the machine line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import imageio_ffmpeg
from live_fps import start_xvfb
from results_md import RESULTS, write_markdown

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "sample.mp4"
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
FLAT = 0.05
KEYS = ("plus", "plus", "minus", "minus")


def looped(out: Path, seconds: float, size: str, fps: int) -> Path:
    """samples/sample.mp4 at size and fps, looped (stream copy) to at least `seconds`."""
    piece = out.with_suffix(".piece.mp4")
    subprocess.run([FFMPEG, "-v", "error", "-y", "-i", SAMPLE, "-an", "-vf", f"scale={size},fps={fps}", "-c:v",
                    "libx264", "-preset", "veryfast", "-g", str(fps * 2), piece], check=True, timeout=600)
    loops = int(seconds // 6) + 1  # the sample is 6 s long
    subprocess.run([FFMPEG, "-v", "error", "-y", "-stream_loop", str(loops), "-i", piece, "-c", "copy", out],
                   check=True, timeout=600)
    return out


def tree(pid: int) -> list[int]:
    """pid and its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo += children.get(p, [])
    return found


def sample(pid: int) -> dict | None:
    """RSS (MiB), threads and open files of pid's process tree now, and RSS per program (python, ffmpeg, ...);
    None once it has gone."""
    rss = threads = fds = 0
    each: dict[str, float] = {}
    for p in tree(pid):
        try:
            status = Path(f"/proc/{p}/status").read_text()
            fds += len(os.listdir(f"/proc/{p}/fd"))
        except OSError:
            if p == pid:
                return None
            continue
        kib = int(re.search(r"^VmRSS:\s+(\d+)", status, re.M)[1]) if "VmRSS" in status else 0
        name = re.search(r"^Name:\s+(\S+)", status, re.M)[1].split("-")[0]
        rss, each[name] = rss + kib, each.get(name, 0) + kib / 1024
        threads += int(re.search(r"^Threads:\s+(\d+)", status, re.M)[1])
    return {"rss_mib": rss / 1024, "threads": threads, "fds": fds, "rss_mib_by_program": each}


def growth(samples: list[dict], key: str, t0: float) -> tuple[float, float, float]:
    """(second minute's median, last minute's median, growth) of one measure."""
    base = [s[key] for s in samples if t0 + 60 <= s["t"] < t0 + 120] or [samples[0][key]]
    end_t = samples[-1]["t"]
    last = [s[key] for s in samples if s["t"] >= end_t - 60]
    b, e = statistics.median(base), statistics.median(last)
    return b, e, (e - b) / b if b else 0.0


def watch(proc: subprocess.Popen, every: float, until: float, on_tick=None) -> list[dict]:
    """Samples of proc's tree every `every` s until it ends or `until` (perf_counter) passes."""
    samples = []
    while proc.poll() is None and time.perf_counter() < until:
        got = sample(proc.pid)
        if got is None:
            break
        samples.append({"t": time.perf_counter(), **got})
        if on_tick is not None:
            on_tick(len(samples))
        time.sleep(every)
    return samples


def soak_live(args: argparse.Namespace, work: Path) -> tuple[list[str], dict]:
    source = looped(work / "loop.mp4", args.minutes * 60 + 120, "320:180", 25)
    xvfb, display = start_xvfb()
    env = {**os.environ, "DISPLAY": display}
    lines: list[str] = []
    proc = subprocess.Popen([sys.executable, "-m", "emojicam", "live", "--source", str(source), "--cols", "16",
                             "--tile", "8"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    reader = threading.Thread(target=lambda: lines.extend(line.rstrip("\n") for line in proc.stdout), daemon=True)
    reader.start()
    try:
        window = subprocess.run(["xdotool", "search", "--sync", "--onlyvisible", "--name", "^emojicam$"], env=env,
                                capture_output=True, text=True, timeout=600).stdout.split()[-1]
        presses = []

        def press(n: int) -> None:  # every sample is `every` s apart: a key each sample
            key = KEYS[n % len(KEYS)]
            subprocess.run(["xdotool", "key", "--window", window, key], env=env, timeout=30, capture_output=True)
            presses.append(key)

        t0 = time.perf_counter()
        samples = watch(proc, args.every, t0 + args.minutes * 60, press)
        subprocess.run(["xdotool", "key", "--window", window, "q"], env=env, timeout=30, capture_output=True)
        rc = proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        xvfb.terminate()
    reader.join(timeout=30)
    errors = proc.stderr.read()
    rates = [float(m[1]) for m in map(re.compile(r"^running: \d+ frames, ([\d.]+) fps").match, lines) if m]
    closing = next((line for line in lines if line.startswith("live: ")), "no closing line")
    grids = sum(line.startswith("grid: ") and "columns" in line for line in lines)
    steady = rates[2:] or rates  # the first minute compiles grids
    about = (f"`emojicam live --source loop.mp4 --cols 16 --tile 8` in a window on Xvfb for {args.minutes:g} min; "
             f"a key (+ + - - in turn) every {args.every:g} s ({len(presses)} presses, {grids} grid changes "
             f"confirmed); exit status {rc}; closing line: {closing}")
    extra = [f"Frame rate (live's `running:` lines, one per 30 s): {len(rates)} lines, after the first minute "
             f"median {statistics.median(steady) if steady else 0:.1f} fps, min {min(steady, default=0):.1f}, "
             f"max {max(steady, default=0):.1f}; first half median "
             f"{statistics.median(steady[:len(steady) // 2] or [0]):.1f}, second half median "
             f"{statistics.median(steady[len(steady) // 2:] or [0]):.1f}.",
             *([f"stderr: {errors.strip()[-500:]}"] if errors.strip() else [])]
    return report(about, samples, t0, extra), {"fps": rates, "rc": rc, "closing": closing, "stderr": errors,
                                                "samples": samples, "t0": t0}


def soak_convert(args: argparse.Namespace, work: Path) -> tuple[list[str], dict]:
    source = looped(work / "long.mp4", args.minutes * 60, "1280:720", args.fps)
    out = work / "long-emoji.mp4"
    proc = subprocess.Popen([sys.executable, "-m", "emojicam", "convert", str(source), str(out), "--cols",
                             str(args.cols)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(line.rstrip("\n") for line in proc.stdout), daemon=True)
    reader.start()
    t0 = time.perf_counter()
    samples = watch(proc, args.every, float("inf"))
    rc = proc.wait()
    reader.join(timeout=30)
    seconds = time.perf_counter() - t0
    about = (f"`emojicam convert long.mp4 long-emoji.mp4 --cols {args.cols}`: samples/sample.mp4 at 1280x720 "
             f"{args.fps} fps looped to {args.minutes:g} min ({args.minutes * 60 * args.fps:.0f} frames); exit "
             f"status {rc} after {seconds / 60:.1f} min; last line: {lines[-1] if lines else 'none'}")
    return report(about, samples, t0, []), {"rc": rc, "lines": lines[-5:], "samples": samples, "t0": t0}


def report(about: str, samples: list[dict], t0: float, extra: list[str]) -> list[str]:
    from emojicam.bench.machine import machine_line

    lines = [f"# Soak: {about.split('`')[1].split()[1]}", "",
             f"{time.strftime('%Y-%m-%d %H:%M')} UTC; {machine_line()} (a machine shared with other work: rates are "
             f"this run's only); `benchmarks/soak.py {' '.join(sys.argv[1:])}`.", "", about + ".", "",
             f"{len(samples)} samples of the process tree (/proc: VmRSS summed, threads, open fds).", "",
             "| measure | second minute (median) | last minute (median) | growth | max after minute 1 | flat |",
             "| --- | --- | --- | --- | --- | --- |"]
    for key, name in (("rss_mib", "RSS MiB"), ("threads", "threads"), ("fds", "open fds")):
        if not samples:
            break
        b, e, g = growth(samples, key, t0)
        top = max((s[key] for s in samples if s["t"] >= t0 + 60), default=e)
        lines.append(f"| {name} | {b:.1f} | {e:.1f} | {g:+.1%} | {top:.1f} | {'yes' if g < FLAT else 'NO'} |")
    programs = sorted({name for x in samples for name in x.get("rss_mib_by_program", {})})
    per = []
    for name in programs:
        mine = [{"t": x["t"], "rss": x["rss_mib_by_program"].get(name, 0.0)} for x in samples]
        b, e, g = growth(mine, "rss", t0)
        per.append(f"{name} {b:.1f} -> {e:.1f} MiB ({g:+.1%})")
    if per:
        lines += ["", f"RSS per program, second minute -> last minute (medians): {'; '.join(per)}."]
    return [*lines, "", *extra]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("live", "convert"))
    parser.add_argument("--minutes", type=float, default=None, help="live: 30, convert: 60 (the video's length)")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between samples (and keys)")
    parser.add_argument("--fps", type=int, default=5, help="convert: the long video's frame rate")
    parser.add_argument("--cols", type=int, default=16, help="convert: grid columns")
    parser.add_argument("--name", default=None)
    args = parser.parse_args()
    args.minutes = args.minutes or (30.0 if args.kind == "live" else 60.0)
    with tempfile.TemporaryDirectory() as tmp:
        lines, data = (soak_live if args.kind == "live" else soak_convert)(args, Path(tmp))
    name = args.name or f"soak-{args.kind}"
    out = write_markdown(name, lines)
    (RESULTS / f"{out.stem}.json").write_text(json.dumps(data, indent=1))


if __name__ == "__main__":
    main()

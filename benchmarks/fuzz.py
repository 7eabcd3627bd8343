"""A mutation fuzzer over every input kind emojicam reads: small real files made from samples/ (PNG, JPEG, WebP,
GIF, MP4, MOV/HEVC, WebM, MKV, MPEG-TS), damaged (bytes flipped, cut short, a run zeroed, the header hit), then
given to `emojicam convert` as a file and as a stream URL (served on 127.0.0.1), and to `emojicam live --source
FILE --no-window --record`. Every case must end in an output or in one `emojicam: error:` line with exit status 2:
no traceback, no hang past --timeout, nothing half-written left behind, no output longer than its input's content.

    .venv/bin/python benchmarks/fuzz.py [--cases 500] [--seed 1] [--jobs 2] [--timeout 120] [--name fuzz]

Writes results/<date>-<name>.md and .json (each case: kind, runner, mutation, exit status, verdict).
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import imageio_ffmpeg

ROOT = Path(__file__).resolve().parent.parent
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
SECONDS = 1.0  # every seed video's length: no output may be longer (plus one frame's slack per kind below)
VIDEO_ARGS = {
    "mp4": ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac"],
    "mov": ["-c:v", "libx265", "-pix_fmt", "yuv420p", "-tag:v", "hvc1", "-x265-params", "log-level=none", "-c:a",
            "aac"],
    "webm": ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-c:a", "libopus"],
    "mkv": ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac"],
    "ts": ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-f", "mpegts"],
    "gif": [],
}
STILLS = ("png", "jpg", "webp")
KINDS = (*STILLS, *VIDEO_ARGS)
MUTATIONS = ("flip", "truncate", "zero", "header")


@dataclass(frozen=True)
class Case:
    """One fuzz case: which seed file, how it is given to emojicam, and the mutation's own seed."""

    index: int
    kind: str
    runner: str  # convert, url, live
    mutation: str
    seed: int


@dataclass(frozen=True)
class Outcome:
    """What a case did: exit status, seconds, output frames (videos), and the verdict ("ok" or what went wrong)."""

    case: Case
    rc: int
    seconds: float
    frames: int
    verdict: str
    said: str


def make_seeds(folder: Path) -> dict[str, Path]:
    """The real small files every case starts from: samples/sample.mp4 at 160x90 for SECONDS with its sound, and a
    still of samples/grace_hopper.jpg, one per kind."""
    sample, still = ROOT / "samples" / "sample.mp4", cv2.imread(str(ROOT / "samples" / "grace_hopper.jpg"))
    seeds = {}
    small = cv2.resize(still, (160, 200), interpolation=cv2.INTER_AREA)
    for ext in STILLS:
        seeds[ext] = folder / f"seed.{ext}"
        cv2.imwrite(str(seeds[ext]), small)
    for ext, args in VIDEO_ARGS.items():
        seeds[ext] = folder / f"seed.{ext}"
        subprocess.run([FFMPEG, "-v", "error", "-y", "-i", sample, "-t", str(SECONDS), "-vf", "scale=160:90,fps=25",
                        *(args if ext != "gif" else ["-an"]), seeds[ext]], check=True, timeout=300)
    return seeds


def mutate(data: bytes, mutation: str, rng: random.Random) -> bytes:
    """data damaged one way: bytes flipped, cut short, a run zeroed, or bytes of its first 64 changed."""
    out = bytearray(data)
    if mutation == "flip":
        for _ in range(rng.randint(1, 16)):
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    elif mutation == "truncate":
        out = out[:rng.randrange(1, len(out))]
    elif mutation == "zero":
        at, length = rng.randrange(len(out)), rng.randint(1, 4096)
        out[at:at + length] = bytes(len(out[at:at + length]))
    else:
        for _ in range(rng.randint(1, 4)):
            out[rng.randrange(min(64, len(out)))] = rng.randrange(256)
    return bytes(out)


def cases(n: int, seed: int) -> list[Case]:
    """n cases cycling through every kind and mutation; a third of the videos (not GIFs) as a URL, a sixth in live."""
    rng, found = random.Random(seed), []
    for i in range(n):
        kind, mutation = KINDS[i % len(KINDS)], MUTATIONS[(i // len(KINDS)) % len(MUTATIONS)]
        roll = rng.random()
        runner = "convert"
        if kind in VIDEO_ARGS and kind != "gif":
            runner = "url" if roll < 1 / 3 else "live" if roll < 1 / 2 else "convert"
        found.append(Case(i, kind, runner, mutation, rng.randrange(1 << 30)))
    return found


class Server:
    """A plain HTTP server on 127.0.0.1 for one folder (a stream URL's bytes), in a thread."""

    def __init__(self, folder: Path):
        handler = functools.partial(QuietHandler, directory=str(folder))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def frames_in(path: Path) -> int:
    """Video frames FFmpeg decodes from an output."""
    text = subprocess.run([FFMPEG, "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:v:0", "-f", "null", "-"],
                          capture_output=True, text=True, errors="replace", timeout=300).stderr
    found = re.findall(r"frame= *(\d+)", text)
    return int(found[-1]) if found else 0


def run_case(case: Case, seeds: dict[str, Path], work: Path, server: Server, timeout: float) -> Outcome:
    """Damage the case's seed, hand it to emojicam, judge what came out."""
    folder = work / f"case{case.index:04d}"
    folder.mkdir()
    src = folder / f"in.{case.kind}"
    src.write_bytes(mutate(seeds[case.kind].read_bytes(), case.mutation, random.Random(case.seed)))
    out_dir = folder / "out"
    out_dir.mkdir()
    is_still = case.kind in STILLS
    out = out_dir / ("out.png" if is_still else "out.mp4")
    given = f"http://127.0.0.1:{server.port}/{folder.name}/{src.name}" if case.runner == "url" else str(src)
    cmd = ([sys.executable, "-m", "emojicam", "live", "--source", given, "--no-window", "--record", str(out)]
           if case.runner == "live" else [sys.executable, "-m", "emojicam", "convert", given, str(out)])
    cmd += ["--cols", "8", "--tile", "8"]
    t0 = time.perf_counter()
    try:
        done = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, errors="replace", timeout=timeout)
    except subprocess.TimeoutExpired:
        return Outcome(case, -1, time.perf_counter() - t0, 0, f"hang: no end after {timeout:g} s", "")
    seconds = time.perf_counter() - t0
    left = sorted(p.name for p in out_dir.iterdir())
    errors = done.stderr.strip().splitlines()
    said = next((line for line in errors if line.startswith("emojicam: error:")), "")
    frames = frames_in(out) if out.exists() and not is_still else 0
    if "Traceback" in done.stderr:
        verdict = f"traceback: {errors[-1] if errors else ''}"
    elif done.returncode not in (0, 2):
        verdict = f"exit status {done.returncode}: {errors[-1] if errors else ''}"
    elif done.returncode == 2 and (left or len([e for e in errors if not e.startswith("emojicam: warning:")]) != 1
                                   or not said):
        verdict = f"exit 2 but {'left ' + ', '.join(left) if left else 'not one error line: ' + done.stderr[-300:]}"
    elif done.returncode == 0 and left != [out.name]:
        verdict = f"exit 0 but the output folder holds {left}"
    elif frames > SECONDS * 25 + 2:
        verdict = f"output longer than its input: {frames} frames from {SECONDS:g} s at 25 fps"
    else:
        verdict = "ok"
    return Outcome(case, done.returncode, seconds, frames, verdict, said or (errors[-1] if errors else ""))


def run_all(chosen: list[Case], jobs: int, timeout: float, say=print) -> list[Outcome]:
    """Make the seeds, run the chosen cases (jobs at a time), return every outcome."""
    with tempfile.TemporaryDirectory(prefix="emojicam-fuzz-") as tmp:
        work = Path(tmp)
        seeds = make_seeds(work)
        server = Server(work)
        try:
            with ThreadPoolExecutor(jobs) as pool:
                outcomes = []
                for got in pool.map(lambda c: run_case(c, seeds, work, server, timeout), chosen):
                    outcomes.append(got)
                    if got.verdict != "ok":
                        say(f"case {got.case.index} ({got.case.kind}, {got.case.runner}, {got.case.mutation}, seed "
                            f"{got.case.seed}): {got.verdict}")
                    elif len(outcomes) % 25 == 0:
                        say(f"{len(outcomes)}/{len(chosen)} cases")
        finally:
            server.close()
    return outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds a case may take before it is a hang")
    parser.add_argument("--only", default="", help="case numbers to run again (comma-separated), of --cases")
    parser.add_argument("--name", default="fuzz")
    args = parser.parse_args()
    if args.only:
        chosen = [cases(args.cases, args.seed)[int(i)] for i in args.only.split(",")]
        for got in run_all(chosen, args.jobs, args.timeout, lambda line: None):
            print(f"case {got.case.index} ({got.case.kind}, {got.case.runner}, {got.case.mutation}): exit {got.rc}, "
                  f"{got.verdict}; {got.said}")
        return
    t0 = time.perf_counter()
    outcomes = run_all(cases(args.cases, args.seed), args.jobs, args.timeout, lambda line: print(line, flush=True))
    minutes = (time.perf_counter() - t0) / 60
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from results_md import RESULTS, write_markdown

    from emojicam.bench.machine import machine_line

    bad = [o for o in outcomes if o.verdict != "ok"]
    by = Counter((o.case.kind, o.case.runner, "exit 0" if o.rc == 0 else "exit 2" if o.rc == 2 else "other")
                 for o in outcomes)
    lines = ["# Fuzzing every input kind", "",
             f"{time.strftime('%Y-%m-%d %H:%M')} UTC; {machine_line()} (shared with other work); "
             f"`benchmarks/fuzz.py --cases {args.cases} --seed {args.seed} --jobs {args.jobs} --timeout "
             f"{args.timeout:g}`: {len(outcomes)} cases in {minutes:.0f} min.", "",
             "Seeds: samples/sample.mp4 at 160x90, 1 s, 25 fps with its sound (GIF without), as MP4 (H.264), MOV "
             "(HEVC), WebM (VP9), MKV, MPEG-TS, GIF; samples/grace_hopper.jpg at 160x200 as PNG, JPEG, WebP. "
             "Mutations: 1-16 bits flipped, cut at a random byte, a run of up to 4 KiB zeroed, 1-4 of the first 64 "
             "bytes replaced. Runners: `convert IN OUT`, `convert URL OUT` (the bytes served over HTTP on "
             "127.0.0.1), `live --source IN --no-window --record OUT.mp4`; all with --cols 8 --tile 8.", "",
             f"**{len(bad)} failures** (tracebacks {sum(o.verdict.startswith('traceback') for o in bad)}, hangs "
             f"{sum(o.verdict.startswith('hang') for o in bad)}, partial outputs "
             f"{sum('left' in o.verdict or 'holds' in o.verdict for o in bad)}, outputs longer than their input "
             f"{sum(o.verdict.startswith('output longer') for o in bad)}).", "",
             "| kind | runner | exit 0 (an output) | exit 2 (one error line) | other |",
             "| --- | --- | --- | --- | --- |"]
    for kind in KINDS:
        for runner in ("convert", "url", "live"):
            row = [by[(kind, runner, e)] for e in ("exit 0", "exit 2", "other")]
            if any(row):
                lines.append(f"| {kind} | {runner} | {row[0]} | {row[1]} | {row[2]} |")
    slowest = max(outcomes, key=lambda o: o.seconds)
    lines += ["", f"Slowest case: {slowest.seconds:.0f} s ({slowest.case.kind}, {slowest.case.runner}, "
              f"{slowest.case.mutation}); median {sorted(o.seconds for o in outcomes)[len(outcomes) // 2]:.1f} s."]
    lines += [f"- case {o.case.index} ({o.case.kind}, {o.case.runner}, {o.case.mutation}, seed {o.case.seed}): "
              f"{o.verdict}" for o in bad]
    out = write_markdown(args.name, lines)
    (RESULTS / f"{out.stem}.json").write_text(json.dumps([asdict(o) for o in outcomes], indent=1))


if __name__ == "__main__":
    main()

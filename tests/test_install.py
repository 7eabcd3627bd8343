"""Installing and running anywhere: the wheel in a fresh venv outside the checkout, inputs known by their content,
`emojicam devices`, progress output in logs, --version."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, run_cli
from media import decoded_frames, ffmpeg, make_clip

import emojicam

PHOTO = ROOT / "samples" / "grace_hopper.jpg"


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", size=(128, 72), seconds=0.6)


def test_version_is_the_package_version():
    done = run_cli("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"emojicam {emojicam.__version__}"


@pytest.mark.parametrize("name", ["clip.ts", "clip.m2ts", "recording"])
def test_video_is_known_by_its_content_not_its_name(clip, weights, tmp_path, name):
    """A transport stream (camcorders' .mts/.m2ts too) and a video without an extension convert like the mp4."""
    src = tmp_path / name
    ffmpeg("-i", clip, "-c", "copy", "-f", "mpegts", src)
    out = tmp_path / "out.mp4"
    done = run_cli("convert", src, out, "--cols", 8, "--weights", weights)
    assert done.returncode == 0, done.stderr
    assert len(decoded_frames(out)) == len(decoded_frames(clip))


def test_photo_without_an_extension_is_a_photo(weights, tmp_path):
    src = tmp_path / "photo"
    shutil.copy(PHOTO, src)
    done = run_cli("convert", src, "-o", tmp_path / "out", "--cols", 8, "--weights", weights)
    assert done.returncode == 0, done.stderr
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["photo_emoji.png"]


def test_file_that_is_neither_gets_one_line_and_exit_2(weights, tmp_path):
    src = tmp_path / "notes.dat"
    src.write_text("not a picture at all\n" * 50)
    out = tmp_path / "out.mp4"
    done = run_cli("convert", src, out, "--weights", weights)
    assert done.returncode == 2
    assert done.stderr.startswith("emojicam: error: input: expected an image or a video") and \
        done.stderr.count("\n") == 1
    assert not out.exists()


def test_devices_lists_what_works_with_the_default_marked():
    done = run_cli("devices")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    marked = [line for line in lines if line.strip().startswith("* ")]
    assert len(marked) == 1, done.stdout
    # no GPU here, and PoCL's OpenCL runs on the CPU: tinygrad itself would pick CL, emojicam its faster CPU device
    assert marked[0].split()[-1] == "CPU" and "  CPU: no GPU backend works here" in done.stdout, done.stdout
    chosen = run_cli("devices", env={"DEV": "CL"})
    assert [line.split()[-1] for line in chosen.stdout.splitlines() if line.strip().startswith("* ")] == ["CL"]
    assert "  CL: DEV=CL is set" in chosen.stdout, chosen.stdout
    missing = [line for line in lines if line.startswith("not available here")]
    assert len(missing) == 1 and "METAL" in missing[0] and "--verbose" in missing[0]  # this is not a Mac
    assert "libSystem" not in done.stdout  # the per-backend errors only with --verbose
    verbose = run_cli("devices", "--verbose")
    assert verbose.returncode == 0 and "libSystem" in verbose.stdout


def test_devices_without_pyopencl_has_no_traceback(tmp_path):
    (tmp_path / "pyopencl.py").write_text("raise ImportError('pyopencl is not installed')\n")
    done = run_cli("devices", env={"PYTHONPATH": str(tmp_path)})
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert "* " in done.stdout


def test_progress_in_a_log_has_no_bar_and_quiet_has_nothing(clip, weights, tmp_path):
    done = run_cli("convert", clip, tmp_path / "a.mp4", "--cols", 8, "--weights", weights)
    assert done.returncode == 0 and "\r" not in done.stderr and "%|" not in done.stderr, done.stderr
    assert done.stdout.count("\n") == 1 and "frames at" in done.stdout
    quiet = run_cli("convert", clip, tmp_path / "b.mp4", "--cols", 8, "--weights", weights, "--quiet")
    assert quiet.returncode == 0 and quiet.stdout == "" and quiet.stderr == ""


def test_line_progress_prints_at_most_every_few_seconds(capsys):
    from emojicam.progress import LineProgress

    bar = LineProgress(100, "clip.mp4", "frame", every_s=3600)
    for _ in range(100):
        bar.update()
    bar.close()
    assert capsys.readouterr().err == ""  # short: only the caller's result line
    bar = LineProgress(100, "clip.mp4", "frame", every_s=0)
    bar.update(40)
    assert capsys.readouterr().err.startswith("clip.mp4: 40/100 frames")


def test_wheel_installs_and_runs_outside_the_checkout(clip, tmp_path):
    """What a user gets from `pip install emojicam-*.whl`: the wheel carries its emoji set, weights and samples,
    and works from any folder (here one that is not the checkout and has no emoji_set/ or weights/ beside it)."""
    dist, venv, work = tmp_path / "dist", tmp_path / "venv", tmp_path / "work"
    work.mkdir()
    pip_env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", dist, ROOT], check=True,
                   env=pip_env, timeout=600, cwd=tmp_path)
    wheel = next(dist.glob("emojicam-*.whl"))
    subprocess.run([sys.executable, "-m", "venv", venv], check=True, timeout=300)
    subprocess.run([venv / "bin" / "python", "-m", "pip", "install", "-q", wheel], check=True, env=pip_env,
                   timeout=900)
    shutil.copy(PHOTO, work / "photo.jpg")
    shutil.copy(clip, work / "clip.mp4")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}

    def installed(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run([venv / "bin" / "emojicam", *args], capture_output=True, text=True, cwd=work, env=env,
                              timeout=600)
        assert done.returncode == 0, f"emojicam {' '.join(args)}: {done.stderr}"
        return done

    where = subprocess.run([venv / "bin" / "python", "-c", "import emojicam.resources as r; print(r.shipped("
                            "'emoji_set'))"], capture_output=True, text=True, cwd=work, env=env, check=True).stdout
    assert str(venv) in where and str(ROOT) not in where  # the installed copy, not the checkout
    assert installed("--version").stdout.strip() == f"emojicam {emojicam.__version__}"
    assert "* " in installed("devices").stdout
    installed("convert", "photo.jpg", "photo_emoji.png", "--cols", "16")
    installed("convert", "clip.mp4", "clip_emoji.mp4", "--cols", "8")
    installed("live", "--source", "clip.mp4", "--no-window", "--max-frames", "3", "--cols", "8")
    installed("evaluate", "photo.jpg", "--cols", "16", "-o", "quality")
    installed("web", "site", "--grids", "8x4")  # the browser page's templates come from the wheel
    assert (work / "photo_emoji.png").stat().st_size > 0 and len(decoded_frames(work / "clip_emoji.mp4")) > 0
    assert (work / "quality" / "quality.json").exists()
    assert (work / "site" / "app.js").read_bytes() == (ROOT / "emojicam" / "webpage" / "app.js").read_bytes()


def test_readme_benchmark_tables_are_generated_from_their_results_file():
    """The README's tables are exactly what benchmarks/readme_tables.py makes of the results file they name."""
    done = subprocess.run([sys.executable, ROOT / "benchmarks" / "readme_tables.py", "--check"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr

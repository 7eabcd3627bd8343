"""Installing and running anywhere: the wheel in a fresh venv outside the checkout, inputs known by their content,
`emojicam devices`, progress output in logs, --version."""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import cv2
import pytest
from conftest import ROOT, need_tool, run_cli
from media import decoded_frames, ffmpeg, make_clip

PHOTO = ROOT / "samples" / "grace_hopper.jpg"


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", size=(128, 72), seconds=0.6)


def test_version_is_the_installed_package_version():
    done = run_cli("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"emojicam {importlib.metadata.version('emojicam')}"
    assert re.fullmatch(r"emojicam \d+\.\d+\.\d+", done.stdout.strip()), done.stdout


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
    assert done.stdout.count("\n") == 1 and "frames written" in done.stdout
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
    bar.update(70)  # more than announced (a file whose time stamps jump): the count goes on without the total
    assert capsys.readouterr().err.startswith("clip.mp4: 110 frames")


def test_a_bar_past_its_total_drops_the_total(monkeypatch):
    import io

    from emojicam.progress import progress_bar

    terminal = io.StringIO()
    terminal.isatty = lambda: True
    monkeypatch.setattr(sys, "stderr", terminal)
    bar = progress_bar(31, "joined.ts", "frame")
    bar.update(30)
    assert "30/31" in str(bar)
    bar.update(30)
    assert "60frame" in str(bar).replace(" ", "") and "/31" not in str(bar) and "%" not in str(bar), str(bar)
    bar.close()


def python_for_everyone() -> str:
    """A Python an unprivileged user can run too: this one where every folder above it is open to others (CI's),
    else the system's of the same version (a pyenv under /root is not)."""
    here = Path(sys.executable).resolve()
    if all(p.stat().st_mode & 0o001 for p in here.parents) and here.stat().st_mode & 0o001:
        return sys.executable
    system = shutil.which(f"python{sys.version_info.major}.{sys.version_info.minor}", path="/usr/bin:/usr/local/bin")
    need_tool(f"python{sys.version_info.major}.{sys.version_info.minor}", "the install is also run as an "
              "unprivileged user, who needs a Python of this version in a folder open to everyone", system is not None)
    return system


@pytest.fixture(scope="session")
def installed(tmp_path_factory) -> Iterator[Path]:
    """`pip install emojicam-*.whl` into a fresh venv, built once: the venv. It lives in a folder every user can
    reach (pytest's own is private to root), so that an unprivileged user can run it too."""
    dist = tmp_path_factory.mktemp("dist")
    pip_env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", dist, ROOT], check=True,
                   env=pip_env, timeout=600, cwd=dist)
    base = Path(tempfile.mkdtemp(prefix="emojicam-install-"))
    try:
        base.chmod(0o755)
        venv = base / "venv"
        subprocess.run([python_for_everyone(), "-m", "venv", venv], check=True, timeout=300)
        subprocess.run([venv / "bin" / "python", "-m", "pip", "install", "-q", next(dist.glob("emojicam-*.whl"))],
                       check=True, env=pip_env, timeout=900)
        yield venv
    finally:
        shutil.rmtree(base)


def outside_env(**extra: str) -> dict[str, str]:
    """The environment of a user outside the checkout: no PYTHONPATH or venv of ours, and (unless given) the
    caches where their HOME puts them, not where the test suite keeps its own. Nor anything that points into the
    checkout or our venv: importing cv2 here sets LD_LIBRARY_PATH (and Qt's paths) into our venv, and tinygrad,
    looking for its libraries along LD_LIBRARY_PATH, failed for a user who cannot enter the checkout's folder (a
    `mktemp -d` checkout is 0700)."""
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "EMOJICAM_CACHE", "CACHEDB", "XDG_CACHE_HOME", "POCL_CACHE_DIR")
    ours = (str(ROOT), sys.prefix)
    return {**{k: v for k, v in os.environ.items()
               if k not in drop and (k == "PATH" or not any(p in v for p in ours))}, **extra}


def test_wheel_installs_and_runs_outside_the_checkout(installed, clip, tmp_path):
    """What a user gets from `pip install emojicam-*.whl`: the wheel carries its emoji set, weights and samples,
    and works from any folder (here one that is not the checkout and has no emoji_set/ or weights/ beside it)."""
    venv, work = installed, tmp_path / "work"
    work.mkdir()
    shutil.copy(PHOTO, work / "photo.jpg")
    shutil.copy(clip, work / "clip.mp4")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}

    def run(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run([venv / "bin" / "emojicam", *args], capture_output=True, text=True, cwd=work, env=env,
                              timeout=600)
        assert done.returncode == 0, f"emojicam {' '.join(args)}: {done.stderr}"
        return done

    where = subprocess.run([venv / "bin" / "python", "-c", "import emojicam.resources as r; print(r.shipped("
                            "'emoji_set'))"], capture_output=True, text=True, cwd=work, env=env, check=True).stdout
    assert str(venv) in where and str(ROOT) not in where  # the installed copy, not the checkout
    wheel_version = subprocess.run([venv / "bin" / "python", "-c", "import importlib.metadata as m; print(m.version("
                                    "'emojicam'))"], capture_output=True, text=True, cwd=work, env=env,
                                   check=True).stdout.strip()  # what pip installed, from the wheel's metadata
    assert run("--version").stdout.strip() == f"emojicam {wheel_version}" and wheel_version
    assert "* " in run("devices").stdout
    run("convert", "photo.jpg", "photo_emoji.png", "--cols", "16")
    run("convert", "clip.mp4", "clip_emoji.mp4", "--cols", "8")
    run("live", "--source", "clip.mp4", "--no-window", "--max-frames", "3", "--cols", "8")
    run("evaluate", "photo.jpg", "--cols", "16", "-o", "quality")
    run("web", "site", "--grids", "8x4")  # the browser page's templates come from the wheel
    assert (work / "photo_emoji.png").stat().st_size > 0 and len(decoded_frames(work / "clip_emoji.mp4")) > 0
    assert (work / "quality" / "quality.json").exists()
    assert (work / "site" / "app.js").read_bytes() == (ROOT / "emojicam" / "web" / "page" / "app.js").read_bytes()


# in a private mount namespace (nothing leaks to the machine): the venv read-only, HOME a read-only tmpfs; then a
# photo and a video converted as root with that HOME, and as nobody with no home at all
READ_ONLY_RUNS = """
set -e
mount --bind "$VENV" "$VENV" && mount -o remount,bind,ro "$VENV"
mount -t tmpfs -o ro,size=16k tmpfs "$ROHOME"
cd "$WORK"
as_nobody="setpriv --reuid=65534 --regid=65534 --clear-groups"
for who in root nobody; do
  for input in photo.jpg clip.mp4; do
    out="$who-${input%.*}_emoji.${input##*.}"; out="${out/.jpg/.png}"
    if [ $who = root ]; then wrap="env HOME=$ROHOME"; else wrap="$as_nobody env HOME=/nonexistent"; fi
    set +e
    $wrap "$VENV/bin/emojicam" convert "$input" "$out" --cols 8 >"$out.stdout" 2>"$out.stderr"
    echo $? >"$out.rc"
    set -e
  done
done
touch "$VENV/written" 2>"$WORK/venv-touch.stderr" || true
"""


def test_a_read_only_install_runs_for_root_and_for_a_user_without_a_home(installed, clip):
    """The installed package on a read-only mount (a container image, a system-wide or Nix install): its weights,
    set and samples load without a file of the package opened for writing; with ~/.cache read-only, or no home at
    all, the caches are skipped with one warning line and the photo and the video still convert."""
    need_tool("unshare --mount", "a read-only install is simulated in a private mount namespace (as root)",
              subprocess.run(["unshare", "--mount", "true"], capture_output=True).returncode == 0)
    base = Path(tempfile.mkdtemp(prefix="emojicam-ro-"))
    try:
        base.chmod(0o755)
        work, home = base / "work", base / "home"
        work.mkdir(mode=0o777)
        work.chmod(0o777)  # nobody writes the outputs here
        home.mkdir()
        for src, name in ((PHOTO, "photo.jpg"), (clip, "clip.mp4")):
            shutil.copy(src, work / name)
            (work / name).chmod(0o644)
        env = outside_env(VENV=str(installed), WORK=str(work), ROHOME=str(home))
        subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", "-c", READ_ONLY_RUNS], env=env,
                       check=True, timeout=1200)
        assert "Read-only file system" in (work / "venv-touch.stderr").read_text()  # it was read-only
        for who in ("root", "nobody"):
            for out in (f"{who}-photo_emoji.png", f"{who}-clip_emoji.mp4"):
                rc, stderr = (work / f"{out}.rc").read_text().strip(), (work / f"{out}.stderr").read_text()
                assert rc == "0" and "Traceback" not in stderr, (out, stderr[-3000:])
                # besides the progress lines a slow start prints (every 10 s, into a log)
                warned = [line for line in stderr.splitlines() if line.strip()
                          and not re.fullmatch(r"clip\.mp4: \d+/\d+ frames, [\d.]+ frame/s", line)]
                assert len(warned) == 1 and warned[0].startswith("emojicam: warning: caches skipped"), (out, stderr)
                assert "tinygrad's kernels" in warned[0] and "emojicam's JITs" in warned[0], warned[0]
            assert cv2.imread(str(work / f"{who}-photo_emoji.png")).shape[1] == 8 * 16
            assert len(decoded_frames(work / f"{who}-clip_emoji.mp4")) == len(decoded_frames(clip))
        assert not (installed / "written").exists()
    finally:
        shutil.rmtree(base)


def test_readme_benchmark_tables_are_generated_from_their_results_file():
    """docs/benchmarks.md's tables are exactly what benchmarks/readme_tables.py makes of the results file they
    name."""
    done = subprocess.run([sys.executable, ROOT / "benchmarks" / "readme_tables.py", "--check"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr

"""Shared test helpers: run the real CLI in a subprocess, find the shipped weights, make disks that fill up and
folders a process cannot write to."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emojicam.builder import wait_idle
from emojicam.emoji_set import DEFAULT_SET

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS = ROOT / "weights" / "default.safetensors"


@pytest.fixture(scope="session", autouse=True)
def own_jit_cache(tmp_path_factory) -> None:
    """The suite's own cache of captured functions (inherited by the CLI runs), so an entry left by an earlier run
    on this machine never answers for this run's code; tests of the cache itself point it elsewhere."""
    os.environ["EMOJICAM_CACHE"] = str(tmp_path_factory.mktemp("jit-cache"))


DEV_AT_START = os.environ.get("DEV")  # a DEV the person running the tests chose


@pytest.fixture(autouse=True)
def no_device_chosen_for_children():
    """tinygrad, when it first picks its default device in this process, writes it into os.environ["DEV"] for its
    child processes: the CLI runs below would then take it for a device the user chose. Only a DEV set before the
    tests started is passed on."""
    if DEV_AT_START is None:
        os.environ.pop("DEV", None)
    else:
        os.environ["DEV"] = DEV_AT_START


@pytest.fixture(autouse=True)
def no_build_left_running():
    """Each test's background builds end before the next test starts: tinygrad's JIT capture on the compile thread
    would take in whatever the next test computes on its own thread meanwhile."""
    yield
    wait_idle()


def run_cli(*args: str | Path, timeout: float = 300, env: dict | None = None,
            wrap: list[str] | tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """Run `python -m emojicam ARGS` as a user would (behind `wrap`, a command prefix such as unwritable's);
    returns the finished process (text output)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([*wrap, sys.executable, "-m", "emojicam", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=full_env)


def one_line(stderr: str) -> str:
    """The one line a failed command printed on stderr, its progress bar's redraws aside."""
    said = [line for line in stderr.splitlines() if line.strip() and not re.search(r"\d+%\||\[\d\d:\d\d", line)]
    assert len(said) == 1, stderr[-3000:]
    return said[0]


def digest(path: Path) -> str:
    """A file's SHA-256: an input is never touched."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def need_tool(name: str, why: str, present: bool | None = None) -> None:
    """A test's tool (a program, or a facility of the system such as mount namespaces): present (default: `name` is
    a command on PATH), or the test ends here, saying why it needs it. Skipped on a developer's machine; failed
    when the CI environment variable is set, where ./setup.sh test installs every tool and a green run must not
    hide tests that never ran."""
    if present is None:
        present = shutil.which(name) is not None
    if present:
        return
    message = f"{name} is missing: {why}"
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set: a test whose tool is missing fails there)", pytrace=False)
    pytest.skip(message)


def mount_tmpfs(folder: Path, options: str) -> None:
    """A tmpfs on folder (`mount -t tmpfs -o OPTIONS`). Mounting needs root (CI runs the tests as root); elsewhere
    the test is skipped, saying why (under CI it fails)."""
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True, text=True)
    need_tool("mount -t tmpfs", f"full and read-only disks are simulated with a tmpfs, and mounting one failed "
              f"here: {(done.stderr.strip() or 'mount refused').splitlines()[-1]}", done.returncode == 0)


@pytest.fixture
def small_disk(tmp_path):
    """small_disk(kib) -> an empty folder on a tmpfs of that size: a disk that fills up."""
    mounted: list[Path] = []

    def make(kib: int) -> Path:
        folder = tmp_path / f"disk{len(mounted)}"
        folder.mkdir()
        mount_tmpfs(folder, f"size={kib}k")
        mounted.append(folder)
        return folder

    yield make
    for folder in mounted:
        subprocess.run(["umount", str(folder)], check=True, timeout=60)


@pytest.fixture
def read_only(tmp_path):
    """An empty folder on a read-only file system (a tmpfs mounted read-only), as a read-only mount, a locked
    card or a container's image is."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    mount_tmpfs(folder, "size=16k,ro")
    yield folder
    subprocess.run(["umount", str(folder)], check=True, timeout=60)


@pytest.fixture(scope="session")
def xvfb():
    """A virtual X screen for the window tests; yields its DISPLAY value."""
    for tool in ("Xvfb", "xdotool", "import"):
        need_tool(tool, "the window tests run on a virtual screen; install xvfb, xdotool and imagemagick "
                  "(./setup.sh test does)")
    for n in range(90, 190):
        if Path(f"/tmp/.X{n}-lock").exists() or Path(f"/tmp/.X11-unix/X{n}").exists():
            continue
        proc = subprocess.Popen(["Xvfb", f":{n}", "-screen", "0", "1280x720x24", "-nolisten", "tcp"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):  # up to 20 s for the socket on a busy machine
            if proc.poll() is not None or Path(f"/tmp/.X11-unix/X{n}").exists():
                break
            time.sleep(0.1)
        if proc.poll() is None:
            yield f":{n}"
            proc.terminate()
            proc.wait(timeout=10)
            return
    pytest.fail("could not start Xvfb on any display :90..:189")


def unwritable(folder: Path) -> list[str]:
    """Take the write permission of folder away; returns the command prefix for a process that must then be refused.
    Root ignores permission bits, except inside a user namespace where it is nobody (`unshare --user`); without
    user namespaces the test is skipped, saying why."""
    folder.chmod(0o555)
    if os.geteuid() != 0:
        return []
    works = bool(shutil.which("unshare")) and subprocess.run(["unshare", "--user", "true"],
                                                             capture_output=True).returncode == 0
    need_tool("unshare --user", "running as root, which permission bits do not stop, a refused write is tested in a "
              "user namespace (util-linux's unshare, and user namespaces allowed)", works)
    return ["unshare", "--user"]


@pytest.fixture(scope="session")
def weights() -> Path:
    if not WEIGHTS.exists():
        pytest.fail(f"shipped weights missing: {WEIGHTS}")
    return WEIGHTS


@pytest.fixture(scope="session")
def other_weights(tmp_path_factory) -> tuple[Path, Path]:
    """`emojicam train` (a few steps) on three emoji: a real weights file for another set, and that set: a folder of
    PNGs without a manifest, so without codepoints."""
    d = tmp_path_factory.mktemp("other")
    folder = d / "three"
    folder.mkdir()
    for name in json.loads((DEFAULT_SET / "manifest.json").read_text())["classes"][:3]:
        shutil.copy(DEFAULT_SET / name["file"], folder / name["file"])
    out = d / "three.safetensors"
    done = run_cli("train", folder, "-o", out, "--steps", 3, "--batch", 8, "--device", "CPU")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1].endswith(f"perturbed emoji; wrote {out}")
    assert sorted(p.name for p in d.iterdir()) == ["three", "three.safetensors"], "no temporary file left"
    return folder, out

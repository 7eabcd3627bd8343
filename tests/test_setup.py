"""setup.sh on the platforms users have: faked `uname` and package managers on PATH record what it asks for."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ("bash", "sh", "dirname", "grep", "cat", "python3")  # the real programs setup.sh runs besides the fakes


def fake_machine(tmp_path: Path, system: str, managers: tuple[str, ...], root: bool = True,
                 xcode: bool = True) -> dict[str, str]:
    """A PATH holding only stubs (uname prints `system`; each manager and query tool records its arguments and
    reports nothing installed) and the few real tools setup.sh needs; returns the environment to run it in."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        os.symlink(shutil.which(tool), bin_dir / tool)
    log = tmp_path / "calls.log"

    def stub(name: str, body: str) -> None:
        (bin_dir / name).write_text(f"#!/bin/sh\necho \"{name} $*\" >> '{log}'\n{body}\n")
        (bin_dir / name).chmod(0o755)

    stub("uname", f"echo {system}")
    stub("id", "echo 0" if root else "echo 1000")
    stub("sudo", "exit 1")  # no password-less sudo
    queries = {"apt-get": ("dpkg-query", "exit 1"), "dnf": ("rpm", "exit 1"), "zypper": ("rpm", "exit 1"),
               "pacman": ("pacman", '[ "$1" = -Q ] && exit 1; exit 0')}
    for manager in managers:
        stub(manager, "exit 0")
        query, body = queries[manager]
        stub(query, body)
    if system == "Darwin":
        stub("xcode-select", "echo /Library/Developer/CommandLineTools" if xcode else "exit 2")
        if xcode:
            stub("clang", "exit 0")
    return {"PATH": str(bin_dir), "HOME": str(tmp_path), "LOG": str(log)}


def run_setup(env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    done = subprocess.run([shutil.which("bash"), str(ROOT / "setup.sh"), *args], capture_output=True, text=True,
                          env=env, timeout=60)
    log = Path(env["LOG"])
    return done, log.read_text().splitlines() if log.exists() else []


def installs(calls: list[str], manager: str) -> set[str]:
    """The package names of the manager's install call (the arguments after its flags)."""
    lines = [c for c in calls if c.startswith(f"{manager} ") and " -Q " not in c + " "]
    lines = [c for c in lines if "install" in c or c.startswith("pacman -S")]
    assert len(lines) == 1, calls
    return {w for w in lines[0].split()[1:] if not w.startswith("-") and w != "install"}


@pytest.mark.parametrize(("manager", "base", "for_tests"), [
    ("apt-get", {"clang", "pocl-opencl-icd", "ocl-icd-libopencl1"},
     {"xvfb", "xdotool", "imagemagick", "chromium", "tmux", "fonts-noto-color-emoji"}),
    ("dnf", {"clang", "pocl", "ocl-icd"},
     {"xorg-x11-server-Xvfb", "xdotool", "ImageMagick", "chromium", "tmux", "google-noto-color-emoji-fonts"}),
    ("pacman", {"clang", "pocl", "ocl-icd"},
     {"xorg-server-xvfb", "xdotool", "imagemagick", "chromium", "tmux", "noto-fonts-emoji"}),
    ("zypper", {"clang", "pocl", "libOpenCL1"},
     {"xorg-x11-server-Xvfb", "xdotool", "ImageMagick", "chromium", "tmux", "google-noto-coloremoji-fonts"}),
])
def test_linux_branch_asks_its_own_manager_for_its_own_names(tmp_path: Path, manager: str, base: set[str],
                                                             for_tests: set[str]) -> None:
    env = fake_machine(tmp_path, "Linux", (manager,))
    done, calls = run_setup(env, "system")
    assert done.returncode == 0, done.stderr
    asked = installs(calls, manager)
    assert base <= asked and not asked & for_tests, asked  # the demo needs no test tools
    if manager != "apt-get":
        assert not [c for c in calls if c.startswith(("apt-get", "dpkg-query"))], calls
    Path(env["LOG"]).unlink()
    done, calls = run_setup(env, "system", "test")
    assert done.returncode == 0, done.stderr
    assert base | for_tests <= installs(calls, manager)


def test_apt_is_not_used_where_dnf_is_the_system_manager_even_if_both_exist(tmp_path: Path) -> None:
    """A Debian machine with both: apt-get wins (first in the order); a Fedora machine has no apt-get at all."""
    env = fake_machine(tmp_path, "Linux", ("apt-get", "dnf"))
    done, calls = run_setup(env, "system")
    assert done.returncode == 0, done.stderr
    assert installs(calls, "apt-get") and not [c for c in calls if c.startswith("dnf")]


def test_macos_uses_xcode_clang_and_installs_nothing(tmp_path: Path) -> None:
    env = fake_machine(tmp_path, "Darwin", ("apt-get",))  # a stray apt-get on PATH must not be touched
    done, calls = run_setup(env, "system", "test")
    assert done.returncode == 0, done.stderr
    assert [c.split()[0] for c in calls] == ["uname", "xcode-select"], calls


def test_macos_without_command_line_tools_says_what_to_run(tmp_path: Path) -> None:
    env = fake_machine(tmp_path, "Darwin", (), xcode=False)
    done, calls = run_setup(env, "system")
    assert done.returncode == 1
    assert "xcode-select --install" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert [c.split()[0] for c in calls] == ["uname", "xcode-select"], calls


def test_linux_without_a_known_manager_stops_with_one_line(tmp_path: Path) -> None:
    env = fake_machine(tmp_path, "Linux", ())
    done, calls = run_setup(env, "system")
    assert done.returncode == 1
    assert "clang" in done.stderr and "PoCL" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert [c.split()[0] for c in calls] == ["uname"], calls


def test_non_root_without_sudo_gets_the_one_command_to_run(tmp_path: Path) -> None:
    env = fake_machine(tmp_path, "Linux", ("dnf",), root=False)
    done, calls = run_setup(env, "system")
    assert done.returncode == 1
    assert "sudo sh -c \"dnf install -y clang pocl ocl-icd\"" in done.stderr, done.stderr
    assert not [c for c in calls if c.startswith("dnf")]


def test_unknown_job_is_refused(tmp_path: Path) -> None:
    done, _ = run_setup(fake_machine(tmp_path, "Linux", ("apt-get",)), "deploy")
    assert done.returncode == 2 and "usage" in done.stderr


MISSING_TOOL = """
import sys
sys.path.insert(0, {tests!r})
from conftest import need_tool

def test_needs_a_tool_nobody_has():
    need_tool("no-such-tool-emojicam", "to show what a missing tool does")
"""


@pytest.mark.parametrize("ci", [None, "1"])
def test_a_missing_tool_skips_on_a_developers_machine_and_fails_under_ci(tmp_path: Path, ci: str | None) -> None:
    """conftest.need_tool, which every test whose program or system facility may be missing goes through: a skip
    that says why, or under CI (.ci/run sets it) a failure, so a green CI run has run every test."""
    (tmp_path / "test_missing.py").write_text(MISSING_TOOL.format(tests=str(ROOT / "tests")))
    env = {k: v for k, v in os.environ.items() if k != "CI"} | ({"CI": ci} if ci else {})
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rsf", "-p", "no:cacheprovider", "-c", os.devnull,
                           str(tmp_path / "test_missing.py")], capture_output=True, text=True, env=env, timeout=300,
                          cwd=tmp_path)
    assert "no-such-tool-emojicam is missing: to show what a missing tool does" in done.stdout, done.stdout
    if ci:
        assert done.returncode == 1 and "1 failed" in done.stdout, done.stdout
    else:
        assert done.returncode == 0 and "1 skipped" in done.stdout, done.stdout

#!/usr/bin/env bash
# Set up emojicam in ./.venv (system packages first, when missing), then run one job:
#   ./setup.sh demo          convert the bundled sample video and photo into out/
#   ./setup.sh test          ruff + the whole test suite (what CI runs)
#   ./setup.sh               set up only
#   ./setup.sh system [test] only the system packages (those the tests need too, with `test`)
# Debian/Ubuntu (apt-get), Fedora (dnf), Arch (pacman), openSUSE (zypper) and macOS (Xcode's command-line tools).
set -euo pipefail
cd "$(dirname "$0")"
job="${1:-setup}"
case "$job" in
  setup|demo|test) for_tests=$([ "$job" = test ] && echo 1 || true);;
  system) for_tests=$([ "${2:-}" = test ] && echo 1 || true);;
  *) echo "usage: ./setup.sh [demo|test|system [test]]" >&2; exit 2;;
esac

# What emojicam needs from the system, in each package manager's names:
#   clang: tinygrad's CPU device compiles with it; PoCL + an OpenCL ICD loader: tinygrad's CL device on any CPU;
#   python3-venv: Debian splits venv out (asked for only when python3 lacks it).
# For the tests: Xvfb + xdotool + ImageMagick (a real window on a virtual screen, keys, screenshots), Chromium
# (the HTML page in a real browser), tmux (the terminal mirror in a real terminal), an emoji font for both.
system_packages() {
  case "$1" in
    apt)
      echo clang pocl-opencl-icd ocl-icd-libopencl1
      python3 -c 'import ensurepip, venv' 2>/dev/null || echo python3-venv
      [ -z "$for_tests" ] || echo xvfb xdotool imagemagick chromium tmux fonts-noto-color-emoji;;
    dnf)
      echo clang pocl ocl-icd
      [ -z "$for_tests" ] || echo xorg-x11-server-Xvfb xdotool ImageMagick chromium tmux google-noto-color-emoji-fonts;;
    pacman)
      echo clang pocl ocl-icd
      [ -z "$for_tests" ] || echo xorg-server-xvfb xdotool imagemagick chromium tmux noto-fonts-emoji;;
    zypper)
      echo clang pocl libOpenCL1
      [ -z "$for_tests" ] || echo xorg-x11-server-Xvfb xdotool ImageMagick chromium tmux google-noto-coloremoji-fonts;;
  esac
}

installed() {  # installed MANAGER PACKAGE
  case "$1" in
    apt) dpkg-query -W -f='${Status}' "$2" 2>/dev/null | grep -q "install ok installed";;
    dnf|zypper) rpm -q "$2" >/dev/null 2>&1;;
    pacman) pacman -Q "$2" >/dev/null 2>&1;;
  esac
}

install_command() {  # install_command MANAGER PACKAGES...: the one line that installs them
  local manager="$1"; shift
  case "$manager" in
    apt) echo "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $*";;
    dnf) echo "dnf install -y $*";;
    pacman) echo "pacman -S --needed --noconfirm $*";;
    zypper) echo "zypper --non-interactive install $*";;
  esac
}

if [ "$(uname -s)" = Darwin ]; then
  # macOS: clang comes with Xcode's command-line tools; Metal needs no driver and the window tests need no Xvfb
  if ! xcode-select -p >/dev/null 2>&1 || ! command -v clang >/dev/null; then
    echo "setup: tinygrad's CPU device needs clang: run 'xcode-select --install', then this command again" >&2
    exit 1
  fi
else
  manager=""
  for m in apt-get:apt dnf:dnf pacman:pacman zypper:zypper; do
    if command -v "${m%%:*}" >/dev/null; then manager="${m##*:}"; break; fi
  done
  if [ -z "$manager" ]; then
    echo "setup: no apt-get, dnf, pacman or zypper here: install clang and an OpenCL driver (PoCL) with your" \
         "system's package manager, then run this command again" >&2
    exit 1
  fi
  missing=()
  for p in $(system_packages "$manager"); do installed "$manager" "$p" || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    command=$(install_command "$manager" "${missing[@]}")
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
      if sudo -n true 2>/dev/null; then sudo="sudo"; else
        echo "setup: run 'sudo sh -c \"$command\"' first, then this command again" >&2; exit 1; fi
    fi
    echo "setup: installing ${missing[*]}"
    $sudo sh -c "$command" >/dev/null
  fi
fi
[ "$job" = system ] && { echo "setup: system packages present"; exit 0; }

python=$(command -v python3 || true)
if [ -z "$python" ] || ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
  echo "setup: emojicam needs Python 3.10 or newer as python3" >&2; exit 1
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv
extras="opencl"
[ "$job" = test ] && extras="opencl,dev"
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[$extras]"

case "$job" in
  demo)
    mkdir -p out
    .venv/bin/emojicam devices
    .venv/bin/emojicam convert samples/sample.mp4 out/sample_emoji.mp4
    .venv/bin/emojicam convert samples/grace_hopper.jpg out/grace_hopper_emoji.png
    echo "demo: wrote out/sample_emoji.mp4 and out/grace_hopper_emoji.png";;
  test)
    .venv/bin/ruff check .
    .venv/bin/python -m pytest -q;;
  setup) echo "setup: done; try .venv/bin/emojicam --help";;
esac

#!/usr/bin/env bash
# Set up emojicam in ./.venv (system packages first, when missing), then run one job:
#   ./setup.sh demo   convert the bundled sample video and photo into out/
#   ./setup.sh test   ruff + the whole test suite
#   ./setup.sh        set up only
set -euo pipefail
cd "$(dirname "$0")"
job="${1:-setup}"

# clang: tinygrad's CPU device; pocl + ocl-icd: an OpenCL driver on any CPU (tinygrad's CL device);
# xvfb/xdotool/x11-apps: a virtual screen for the live-window tests; python3-venv: Debian splits venv out
# (asked for only when python3 lacks it).
packages=(clang pocl-opencl-icd ocl-icd-libopencl1)
python3 -c 'import ensurepip, venv' 2>/dev/null || packages+=(python3-venv)
[ "$job" = test ] && packages+=(xvfb xdotool x11-apps imagemagick)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null; then
    echo "setup: install these system packages (or their equivalents) first: ${missing[*]}" >&2; exit 1
  fi
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if sudo -n true 2>/dev/null; then sudo="sudo"; else
      echo "setup: run 'sudo apt-get install -y ${missing[*]}' first, then this command again" >&2; exit 1; fi
  fi
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

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
  *) echo "usage: ./setup.sh [demo|test]" >&2; exit 2;;
esac

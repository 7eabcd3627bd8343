#!/usr/bin/env bash
# Seconds from `emojicam live` starting to its first emoji frame, with every cache empty (a first-time user) and on
# the next start (caches filled), per device, at the default 64x36 grid, on the bundled clip, without a window.
#   benchmarks/first_run.sh [DEVICE ...]     (default: CPU CL)
# Every run gets its own empty HOME-like cache folder: tinygrad's kernel cache (CACHEDB), emojicam's JIT cache
# (EMOJICAM_CACHE) and PoCL's kernel cache (POCL_CACHE_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
emojicam=${EMOJICAM:-.venv/bin/emojicam}
for device in "${@:-CPU CL}"; do
  for d in $device; do
    caches=$(mktemp -d)
    for run in empty filled; do
      line=$(CACHEDB="$caches/tinygrad.db" EMOJICAM_CACHE="$caches/emojicam" POCL_CACHE_DIR="$caches/pocl" \
             "$emojicam" live --source samples/sample.mp4 --no-window --max-frames 3 --device "$d" 2>&1 |
             grep "first frame after")
      echo "$d $run: $line"
    done
    rm -rf "$caches"
  done
done

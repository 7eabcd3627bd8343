#!/usr/bin/env bash
# One-shot GPU check on a bare Linux machine with no network: installs emojicam and the wheels it needs from a
# folder, benches both paths (host and device) at 32x18, 64x36, 80x45 and 128x72 with the PyTorch peer, converts
# the bundled clip, and writes JSON + Markdown (with the GPU's name) into the output folder. Aimed at < 8 minutes.
#
#   benchmarks/gpu.sh WHEELS_DIR OUT_DIR [DEVICE]        # DEVICE: CUDA (default), NV, AMD, METAL, CL
#   COLS=32 benchmarks/gpu.sh ...                         # fewer grids (a dry run on a CPU machine)
#
# WHEELS_DIR, made on a machine with the internet and the same Python version and CPU architecture:
#   pip download -d wheels . setuptools wheel
#   pip download -d wheels torch --index-url https://download.pytorch.org/whl/cu124
#   (that is: emojicam's own dependencies tinygrad, numpy, opencv-python, imageio-ffmpeg, tqdm; setuptools to
#   build emojicam from this checkout; torch for the peer; onnxruntime and onnx too for the CPU peers: '.[bench]'). The machine needs Python 3.10+,
#   the GPU driver (libcuda for CUDA/NV) and, for tinygrad's CUDA device, NVRTC (shipped inside torch's wheel as
#   nvidia-cuda-nvrtc; the script points tinygrad at it).
set -euo pipefail
wheels=${1:?usage: benchmarks/gpu.sh WHEELS_DIR OUT_DIR [DEVICE]}
out=${2:?usage: benchmarks/gpu.sh WHEELS_DIR OUT_DIR [DEVICE]}
device=${3:-CUDA}
here=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)
venv="$out/venv"

python3 -m venv "$venv"
"$venv/bin/pip" install -q --upgrade --no-index --find-links "$wheels" setuptools wheel \
    && "$venv/bin/pip" install -q --no-index --find-links "$wheels" --no-build-isolation "$here" || {
    echo "gpu.sh: expected every wheel emojicam needs in $wheels, got an install failure (see above)" >&2; exit 2; }
"$venv/bin/pip" install -q --no-index --find-links "$wheels" torch 2>/dev/null \
    || echo "gpu.sh: no torch wheel in $wheels: the PyTorch peer is skipped" >&2
py="$venv/bin/python"
# NVRTC from the torch wheel, if the system has none (tinygrad's CUDA device compiles with it)
nvrtc=$("$py" - <<'EOF' 2>/dev/null || true
import glob, os, site
hits = [p for d in site.getsitepackages() for p in glob.glob(os.path.join(d, "nvidia", "cuda_nvrtc", "lib"))]
print(hits[0] if hits else "")
EOF
)
[ -n "$nvrtc" ] && export LD_LIBRARY_PATH="$nvrtc:${LD_LIBRARY_PATH:-}"
export EMOJICAM_CACHE="$out/cache" CACHEDB="$out/cache/tinygrad.db"
cd "$out"  # run the installed package, not the checkout's source folder

gpu=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1 || true)
"$py" -m emojicam devices > "$out/devices.txt" 2>&1 || true
{
    echo "# emojicam on ${gpu:-$device} ($(date -u '+%Y-%m-%d %H:%M UTC'))"
    echo
    echo "host: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores; device $device"
    echo
} > "$out/gpu.md"
timeout 360 "$py" -m emojicam bench --device "$device" --cols "${COLS:-32,64,80,128}" --composite host,device \
    --frames 30 --clip-frames 60 --json "$out/bench.json" --markdown "$out/bench.md" 2> "$out/bench.log" \
    || echo "gpu.sh: emojicam bench failed or ran out of time (bench.log)" >&2
[ -f "$out/bench.md" ] && cat "$out/bench.md" >> "$out/gpu.md"
sample=$("$py" -c "from emojicam.resources import shipped; print(shipped('samples', 'sample.mp4'))")
start=$(date +%s)
timeout 120 "$py" -m emojicam convert "$sample" "$out/sample_emoji.mp4" --device "$device" --quiet \
    > "$out/convert.txt" 2>&1 || echo "gpu.sh: convert failed (convert.txt)" >&2
echo "convert of the bundled clip: $(grep -- ' -> ' "$out/convert.txt" | tail -1 || echo failed), \
$(( $(date +%s) - start )) s wall" >> "$out/gpu.md"
echo "wrote $out/gpu.md, bench.json, bench.md"

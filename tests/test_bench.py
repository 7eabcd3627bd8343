"""`emojicam bench --quick`: the report's structure and the consistency of its numbers (never a speed)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from conftest import ROOT, run_cli

from emojicam.cli import parse_peaks, split_list
from emojicam.errors import EmojicamError
from emojicam.model import ModelConfig

PEERS = {"rowwise", "onnxruntime", "onnxruntime-1t", "cv2.dnn", "torch"}
STAGES = {"decode", "cut", "upload", "forward", "download", "composite", "encode"}


@pytest.fixture(scope="module")
def quick(tmp_path_factory, weights):
    """One real quick run on the CPU device, with every output file asked for."""
    out = tmp_path_factory.mktemp("bench")
    done = run_cli("bench", "--quick", "--device", "CPU", "--weights", weights, "--json", out / "r.json",
                   "--markdown", out / "r.md", "--plot", out / "r.png", timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    return out, done.stdout, json.loads((out / "r.json").read_text())


def test_report_lists_environment_and_one_record_per_device_and_grid(quick):
    _, _, report = quick
    env = report["environment"]
    for key in ("cpu", "cpu_count", "os", "versions", "git_commit", "beam", "devices", "load_average_1_5_15"):
        assert key in env
    assert env["versions"]["tinygrad"] and env["versions"]["opencv-python"] and env["versions"]["numpy"]
    assert env["devices"].keys() == {"CPU"}
    ours = [r for r in report["records"] if r["system"] == "emojicam"]
    assert [(r["device"], r["grid"]) for r in ours] == [("CPU", "32x18")]
    assert {r["system"] for r in report["records"]} == {"emojicam"} | PEERS
    assert report["reference"]["mflop_per_patch"] == 2.2
    assert report["config"]["clip_frames"] == 8 and report["config"]["engine_settings"]["tile_px"] == 16


def test_flops_patches_and_stage_times_are_consistent(quick):
    _, _, report = quick
    r = next(r for r in report["records"] if r["system"] == "emojicam")
    assert r["patches"] == r["cols"] * r["rows"] == 32 * 18
    assert r["flops_per_patch"] == ModelConfig(classes=256).flops_per_patch()
    assert r["gflop_per_frame"] == pytest.approx(r["flops_per_patch"] * r["patches"] / 1e9)
    # measured counts ReLU, pooling, softmax and argmax too, so a little above the multiply-add count
    assert 1.0 <= r["measured_over_analytic"] < 2.0
    assert r["kernels_per_frame"] >= 3 and r["mb_moved_per_frame"] > 0
    assert set(r["ms"]) == STAGES and all(v > 0 for v in r["ms"].values())
    assert r["engine_ms"] >= r["ms"]["forward"]
    assert r["inference_fps"] == pytest.approx(1e3 / r["engine_ms"])
    assert r["classify_fps"] >= r["inference_fps"] and r["forward_fps"] >= r["classify_fps"]
    assert r["e2e_fps"] > 0 and 0 < r["e2e_over_inference"] < 3  # end to end cannot outrun its own engine by much
    assert r["warmup_s"] > 0 and r["frames"] >= 3
    assert r["achieved_gflops"] == pytest.approx(r["gflop_per_frame"] / (r["ms"]["forward"] / 1e3))
    assert r["peak_gflops"] > 0 and 0 < r["share_of_peak"] <= 1


def test_peers_pick_the_same_emoji_and_are_compared_per_grid(quick):
    _, _, report = quick
    ours = next(r for r in report["records"] if r["system"] == "emojicam")
    peers = {r["system"]: r for r in report["records"] if r["system"] != "emojicam"}
    for name in ("rowwise", "onnxruntime", "onnxruntime-1t", "cv2.dnn"):  # installed here (the bench extra)
        p = peers[name]
        assert p["status"] == "ok", p
        assert p["agreement"] >= 0.99  # same weights, same argmax; float rounding may flip a near-tie
        assert p["vs_emojicam"]["CPU"] == pytest.approx(p["classify_fps"] / ours["classify_fps"])
    assert peers["rowwise"]["forwards_per_frame"] == ours["rows"]
    assert peers["rowwise"]["kernels_per_frame"] >= ours["rows"]  # at least one kernel per row
    assert peers["onnxruntime-1t"]["threads"] == "intra_op 1"
    assert peers["torch"]["status"] in ("ok", "skipped")


def test_terminal_markdown_and_plot_outputs(quick):
    out, stdout, _ = quick
    for title in ("Work per frame", "Milliseconds per stage", "Classify fps"):
        assert title in stdout
    assert "pic2emoji" in stdout and "32x18" in stdout
    md = (out / "r.md").read_text()
    assert md.startswith("# emojicam bench") and "| CPU | 32x18 |" in md and "| onnxruntime | CPU | 32x18 |" in md
    png = (out / "r.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    assert sorted(p.name for p in out.iterdir()) == ["r.json", "r.md", "r.png"]  # no temp files left


@pytest.mark.parametrize(("args", "expected"), [
    (("--device", "NOPE"), "--device: expected a working tinygrad device"),
    (("--device", "CPU", "--peak-gflops", "fast"), "--peak-gflops: expected N or DEVICE=N"),
    (("--device", "CPU", "--cols", "0"), "--cols: expected 1..512 columns, got 0"),
    (("--device", "CPU", "--plot", "plot.jpg"), "--plot: expected a .png path, got plot.jpg"),
])
def test_bad_arguments_fail_on_one_line_before_measuring(args, expected, tmp_path, weights):
    done = run_cli("bench", "--quick", "--weights", weights, "--json", tmp_path / "r.json", *args, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and expected in done.stderr
    assert not list(tmp_path.iterdir())


def test_list_and_peak_flags():
    assert split_list(["CPU,CL", " METAL ", ""]) == ["CPU", "CL", "METAL"]
    assert parse_peaks(["100", "cl=2.5e3"]) == {"*": 100.0, "CL": 2500.0}
    with pytest.raises(EmojicamError, match="got CL=0"):
        parse_peaks(["CL=0"])


def test_bench_stopped_by_sigterm_leaves_no_temporary_files(tmp_path, weights):
    temp, report = tmp_path / "tmp", tmp_path / "r.json"
    temp.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "emojicam", "bench", "--quick", "--no-peers", "--device", "CPU",
                             "--weights", str(weights), "--json", str(report)], cwd=ROOT, text=True,
                            env={**os.environ, "TMPDIR": str(temp)}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for line in proc.stderr:  # the clip is made and decoded in a temporary folder: then the timing starts
            if line.startswith("clip: "):
                break
        assert any(temp.iterdir()), "bench ended before its temporary folder appeared"
        os.kill(proc.pid, signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 143 and stderr.splitlines()[-1] == "emojicam: interrupted by SIGTERM", stderr[-2000:]
    assert list(temp.iterdir()) == [] and not report.exists()

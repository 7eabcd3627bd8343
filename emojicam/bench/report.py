"""`emojicam bench` output: terminal tables, Markdown, JSON and an fps-vs-tiles plot, each written atomically."""

from __future__ import annotations

import json
from pathlib import Path

from emojicam.atomic import check_writable, write_atomic
from emojicam.errors import EmojicamError

STAGE_ORDER = ("decode", "cut", "upload", "forward", "download", "composite", "encode")
Table = tuple[str, list[str], list[list[str]]]  # title, header, rows


def _num(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def kernel_source(record: dict) -> str:
    """Where a row's kernels came from: BEAM (`emojicam tune`), emojicam's CPU schedule, or tinygrad's heuristics."""
    if record.get("beam_searched"):
        return f"BEAM={record['beam_searched']} (tune)"
    return "CPU schedule" if record.get("scheduled") else "tinygrad heuristics"


def where(record: dict) -> str:
    """An emojicam record's device, and the path when it is the device path (--composite device)."""
    return record["device"] + (" device path" if record.get("composite", "host") == "device" else "")


def tables(report: dict) -> list[Table]:
    """The report as four tables: work per frame, time per stage, fps against the peers, traffic per frame."""
    ours = [r for r in report["records"] if r["system"] == "emojicam"]
    work = [[where(r), r["grid"], f"{r['patches']:,}", _num(r["gflop_per_frame"], 2),
             _num(r["gflop_per_frame_measured"], 2), _num(r["measured_over_analytic"], 2), str(r["kernels_per_frame"]),
             _num(r["mb_moved_per_frame"]), _num(r["warmup_s"]), str(r["frames"]), str(r.get("lanes", 1)),
             kernel_source(r)] for r in ours]
    ref = report["reference"]
    work.append(["pic2emoji", "reference", f"~{ref['patches_per_frame']:,}", _num(ref["gflop_per_frame"], 2), "-", "-",
                 "per row", "-", "-", "-", "-", "-"])
    stages = [[where(r), r["grid"], *(_num(r["ms"][s]) for s in STAGE_ORDER), _num(r["engine_ms"]),
               _num(r["inference_fps"]), _num(r["e2e_fps"]), f"{r.get('e2e_skipped', 0):.0%}",
               f"{r['e2e_over_inference']:.0%}",
               _num(r["achieved_gflops"], 2), "-" if r["share_of_peak"] is None else f"{r['share_of_peak']:.1%}"]
              for r in ours]
    speed = []
    for r in report["records"]:
        if r["system"] == "emojicam":
            speed.append(["emojicam", where(r), r["grid"], "1", str(r["kernels_per_frame"]), _num(r["classify_ms"]),
                          _num(r["classify_fps"]), "1.00", "-", "tinygrad, one batched pass"])
        elif r["status"] != "ok":
            speed.append([r["system"], r["device"], r["grid"], "-", "-", "-", "-", "-", "-",
                          r["note"] if r["status"] == "skipped" else r["status"]])
        else:
            vs = " ".join(f"{v:.2f} ({d})" for d, v in r["vs_emojicam"].items())
            speed.append([r["system"], r["device"], r["grid"], str(r["forwards_per_frame"]),
                          "-" if r["kernels_per_frame"] is None else str(r["kernels_per_frame"]),
                          _num(r["classify_ms"]), _num(r["classify_fps"]), vs, f"{r['agreement']:.1%}", r["threads"]])
    return [
        ("Work per frame (GFLOP analytic = flops_per_patch x patches; measured = tinygrad GlobalCounters)",
         ["device", "grid", "patches", "GFLOP", "GFLOP meas", "meas/anal", "kernels", "MB moved", "warm-up s",
          "frames", "lanes", "kernels from"], work),
        ("Milliseconds per stage (medians after warm-up) and frames per second",
         ["device", "grid", *STAGE_ORDER, "engine", "engine fps", "e2e fps", "e2e skipped",
          f"e2e/engine (>={report['config'].get('e2e_target', 0.8):.0%})", "GFLOP/s", "of peak"],
         stages),
        ("Classify fps (uint8 patches -> emoji indices), emojicam against its peers on the same patches; "
         "same argmax = share of patches where a peer picks what our network's argmax picks",
         ["system", "device", "grid", "forwards", "kernels", "ms", "fps", "fps / emojicam's", "same argmax",
          "threads / note"], speed),
        ("Traffic per frame, host path (cut and compositing on the host) and device path (the whole frame in one "
         "compiled function): bytes up and down, kernels, host ms (everything but the forward) and device ms "
         "(the forward, finished on the device)",
         ["device", "grid", "MB up", "MB down", "kernels", "host ms", "device ms", "engine fps"],
         [[where(r), r["grid"], _num(r["bytes_up_per_frame"] / 1e6, 3), _num(r["bytes_down_per_frame"] / 1e6, 3),
           str(r["kernels_per_frame"]), _num(r["host_ms"]), _num(r["device_ms"]), _num(r["inference_fps"])]
          for r in ours if "bytes_up_per_frame" in r]),
    ]


def header_lines(report: dict) -> list[str]:
    env, ref, cfg = report["environment"], report["reference"], report["config"]
    ours = next((r for r in report["records"] if r["system"] == "emojicam"), None)
    peaks = {r["device"]: f"{_num(r['peak_gflops'])} GFLOP/s ({r['peak_basis']})" for r in report["records"]
             if r["system"] == "emojicam"}
    lines = [f"emojicam bench on {env['host']}: {env['cpu']} ({env['cpu_count']} cpus), {env['os']}",
             f"tinygrad {env['versions']['tinygrad']}, BEAM={env['beam']}, commit {env['git_commit']}, "
             f"load average {env['load_average_1_5_15']}, {env['date']}",
             f"source: {report['clip']}, {cfg['clip_frames']} frames, tile {cfg['tile_px']} px"]
    lines += [f"device {d}: {env['devices'].get(d, d)}; peak {p}" for d, p in peaks.items()]
    if ours:
        lines.append(f"model: {ours['flops_per_patch'] / 1e6:.2f} MFLOP per patch, one batched forward per frame; "
                     f"reference ({ref['source']}): {ref['mflop_per_patch']} MFLOP per patch, "
                     f"~{ref['patches_per_frame']:,} patches ~ {ref['gflop_per_frame']} GFLOP per frame, "
                     f"{ref['forwards_per_frame']}")
        lines.append("engine and stage figures: every cell of every frame through the network; end to end (e2e): "
                     "`emojicam convert` on the clip, which skips cells unchanged since the frame before "
                     "(share in the e2e skipped column)")
    return lines


def format_text(report: dict) -> str:
    """Aligned plain-text tables for the terminal."""
    out = header_lines(report)
    for title, header, rows in tables(report):
        widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
        out += ["", title]
        out += ["  ".join(str(c).rjust(w) if i > 1 else str(c).ljust(w) for i, (c, w) in enumerate(zip(row, widths,
                strict=True))).rstrip() for row in [header, *rows]]
    return "\n".join(out) + "\n"


def format_markdown(report: dict) -> str:
    """The same tables as GitHub Markdown."""
    out = ["# emojicam bench", "", *(f"- {line}" for line in header_lines(report))]
    for title, header, rows in tables(report):
        out += ["", f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(str(c).replace("|", "/") for c in row) + " |" for row in rows]
    return "\n".join(out) + "\n"


def write_plot(report: dict, path: Path) -> None:
    """fps against tiles per frame: emojicam classify and end to end per device, each peer per device."""
    import matplotlib
    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5))
    lines: dict[tuple[str, str, str], list[tuple[int, float]]] = {}
    for r in report["records"]:
        if r["system"] == "emojicam":
            lines.setdefault(("emojicam", r["device"], "classify"), []).append((r["patches"], r["classify_fps"]))
            lines.setdefault(("emojicam", r["device"], "end to end"), []).append((r["patches"], r["e2e_fps"]))
        elif r.get("status") == "ok":
            lines.setdefault((r["system"], r["device"], "classify"), []).append((r["patches"], r["classify_fps"]))
    for (system, device, what), points in lines.items():
        xs, ys = zip(*sorted(points), strict=True)
        style = "-o" if system == "emojicam" and what == "classify" else "--s" if system == "emojicam" else ":^"
        ax.plot(xs, ys, style, label=f"{system} {device} ({what})")
    ax.axvline(report["reference"]["patches_per_frame"], color="grey", lw=0.8)
    ax.text(report["reference"]["patches_per_frame"], ax.get_ylim()[1], " pic2emoji ~5,000", va="top", fontsize=8)
    ax.set(xscale="log", yscale="log", xlabel="tiles (patches) per frame", ylabel="frames per second",
           title=f"emojicam bench, {report['environment']['cpu']} ({report['environment']['date'][:10]})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=110)
    plt.close(fig)


def write_outputs(report: dict, json_path: Path | None, markdown_path: Path | None, plot_path: Path | None) -> None:
    if json_path:
        write_atomic(json_path, lambda p: p.write_text(json.dumps(report, indent=1) + "\n"), make_folder=True)
    if markdown_path:
        write_atomic(markdown_path, lambda p: p.write_text(format_markdown(report)), make_folder=True)
    if plot_path:
        write_atomic(plot_path, lambda p: write_plot(report, p), make_folder=True)


def check_outputs(json_path: Path | None, markdown_path: Path | None, plot_path: Path | None) -> None:
    """Fail before minutes of measuring, not after, when an output cannot be written."""
    if plot_path is not None:
        if plot_path.suffix.lower() != ".png":
            raise EmojicamError(f"--plot: expected a .png path, got {plot_path}")
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise EmojicamError("--plot: expected matplotlib installed (pip install 'emojicam[bench]'), "
                                "got no matplotlib") from None
    for flag, path in (("--json", json_path), ("--markdown", markdown_path), ("--plot", plot_path)):
        if path is not None and path.exists() and path.is_dir():
            raise EmojicamError(f"{flag}: expected a file path, got the folder {path}")
        if path is not None:
            check_writable(path)

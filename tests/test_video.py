"""Video files end to end: real clips made by FFmpeg, converted by the real CLI, checked with FFmpeg and OpenCV."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, digest, one_line, run_cli
from media import (
    beep_s,
    beeps_s,
    damaged_clusters,
    damaged_pts,
    decoded_frames,
    ffmpeg,
    ffmpeg_count,
    ffmpeg_frame,
    flash_and_beep,
    flash_s,
    flashes_s,
    frame_times,
    joined_ts,
    make_clip,
    probe,
    rotated,
    sound,
    stream_seconds,
    stream_server,
    truncated,
)

from emojicam.errors import EmojicamError
from emojicam.media.reader import FrameClock, Retiming, open_video
from emojicam.media.video import prefetch
from emojicam.media.writer import VideoWriter

COLS, TILE = 16, 8
SECONDS = 0.6  # clip length: few frames, since on a busy machine each can take a tenth of a second
H264 = ["-c:v", "libx264", "-pix_fmt", "yuv420p"]  # no +faststart: the index goes at the end, as cameras write it


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """One of each input the converter must handle: 160x90 (16:9, so most share one grid shape) with a tone."""
    d = tmp_path_factory.mktemp("clips")
    c = {
        "h264": make_clip(d / "h264.mp4", seconds=SECONDS),
        "vp9": make_clip(d / "vp9.webm", seconds=SECONDS),
        "mjpeg": make_clip(d / "mjpeg.avi", seconds=SECONDS),
        "fps60": make_clip(d / "fps60.mov", fps=60, seconds=0.5),
        "odd": make_clip(d / "odd.mkv", size=(161, 91), seconds=SECONDS),  # still a 16x9 grid
        "anim": make_clip(d / "anim.gif", fps=10),
        "silent": make_clip(d / "silent.mp4", audio=False, seconds=SECONDS),
        "two_s": make_clip(d / "two_s.mp4", seconds=2),
        "long": make_clip(d / "long.mp4", seconds=4),
        "no_index": truncated(make_clip(d / "camera.mp4", video_args=H264), d / "no_index.mp4", 0.5),
        "empty": d / "empty.mp4",
        "text": d / "notes.mp4",
        "audio_only": d / "audio_only.mp4",
    }
    c["rotated"] = rotated(c["h264"], d / "rotated.mp4", 90)
    c["truncated"] = truncated(c["two_s"], d / "truncated.mp4", 0.4)  # faststart: the index survives the cut
    c["empty"].touch()
    c["text"].write_text("not a video\n")
    ffmpeg("-f", "lavfi", "-i", "sine=duration=1", "-c:a", "aac", c["audio_only"])
    return c


@pytest.fixture(scope="module")
def batch(clips, weights, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """One CLI call converting most clips with -o DIR (one weights load; two grid shapes to compile)."""
    out = tmp_path_factory.mktemp("out")
    names = ("h264", "vp9", "mjpeg", "fps60", "odd", "anim", "silent", "rotated", "truncated")
    done = run_cli("convert", *(clips[n] for n in names), "-o", out, "--cols", COLS, "--tile", TILE,
                   "--weights", weights)
    assert done.returncode == 0, done.stderr
    return out, done


def rows_for(size: tuple[int, int]) -> int:
    w, h = size
    return max(1, round(COLS * h / w))


# --- reading -----------------------------------------------------------------------------------------------------

def test_open_video_reports_what_ffmpeg_sees(clips):
    for name, fps, count, audio in [("h264", 25, 15, True), ("vp9", 25, 15, True), ("mjpeg", 25, 15, True),
                                    ("fps60", 60, 30, True), ("anim", 10, 10, False), ("silent", 25, 15, False)]:
        with open_video(clips[name]) as video:
            frames = list(video)
            assert (video.fps, video.frame_count, video.has_audio, video.size) == (fps, count, audio, (160, 90)), name
        assert len(frames) == count and frames[0].shape == (90, 160, 3) and frames[0].dtype == np.uint8, name
        assert probe(clips[name]).size == (160, 90)
    with open_video(clips["odd"]) as video:
        assert video.size == (161, 91) and next(iter(video)).shape == (91, 161, 3)


def combing(frame: np.ndarray) -> float:
    """Mean level by which each row differs from the mean of its neighbours: high where two fields taken at
    different times are woven into one frame (the comb of interlaced video on moving edges)."""
    g = frame.astype(np.float32).mean(2)
    return float(np.abs(g[1:-1] - (g[:-2] + g[2:]) / 2).mean())


def test_interlaced_video_is_deinterlaced_and_progressive_left_alone(tmp_path):
    """A camcorder or broadcast file's interlaced frames come out deinterlaced, with the same frame count; a
    progressive clip of the same moving picture comes out as decoded, bit for bit."""
    scrolling = "testsrc2=size=320x180:rate={rate},scroll=h={step},format=yuv420p"
    woven = tmp_path / "interlaced.ts"  # 50 pictures a second woven into 25 top-field-first frames, as 1080i50
    ffmpeg("-f", "lavfi", "-i", scrolling.format(rate=50, step=0.01), "-t", 1, "-vf",
           "tinterlace=interleave_top,setfield=tff", "-c:v", "mpeg2video", "-flags", "+ildct+ilme", "-b:v", "4M",
           woven)
    progressive = make_clip(tmp_path / "progressive.mp4", audio=False, source="testsrc2",
                            video_args=["-vf", "scroll=h=0.02", "-c:v", "libx264", "-pix_fmt", "yuv420p"])
    raw = decoded_frames(woven)  # as FFmpeg decodes it, fields woven
    with open_video(woven) as video:
        frames = list(video)
    assert len(frames) == len(raw) == 25
    assert np.mean([combing(f) for f in raw]) > 4 * np.mean([combing(f) for f in frames])
    with open_video(progressive) as video:
        assert all(np.array_equal(a, b) for a, b in zip(video, decoded_frames(progressive), strict=True))


def test_rotation_metadata_is_applied_like_players_do(clips):
    """A phone's rotate=90 clip comes out upright: the stored frame turned 90 degrees counter-clockwise,
    exactly what FFmpeg (and so every player) shows."""
    assert probe(clips["rotated"]).rotation == 90
    with open_video(clips["h264"]) as plain, open_video(clips["rotated"]) as turned:
        assert turned.size == (90, 160)
        for i, (a, b) in enumerate(zip(plain, turned, strict=True)):
            np.testing.assert_array_equal(b, np.rot90(a, 1))
            if i == 5:
                np.testing.assert_array_equal(b, ffmpeg_frame(clips["rotated"], 5))


@pytest.mark.parametrize("name, says", [("empty", "empty file"), ("text", "FFmpeg can read"),
                                        ("no_index", "moov atom not found"), ("audio_only", "decodable frame")])
def test_open_video_refuses_what_is_not_a_video(clips, name, says):
    with pytest.raises(EmojicamError, match=says):
        open_video(clips[name])


def test_prefetch_hands_over_frames_and_errors_and_stops_early():
    assert list(prefetch(iter(range(20)), depth=2)) == list(range(20))

    def broken():
        yield 1
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        list(prefetch(broken()))
    endless = prefetch(iter(lambda: 0, 1), depth=2)
    assert next(endless) == 0
    endless.close()  # must return: the reader thread sees the stop and ends


# --- writing -----------------------------------------------------------------------------------------------------

def test_writer_keeps_frames_rate_and_colours(tmp_path, clips):
    dst = tmp_path / "grey.mp4"
    levels = [0, 40, 80, 120, 160, 200, 240] * 3
    with VideoWriter(dst, 30000 / 1001, (64, 48), audio_from=clips["h264"]) as out:
        for level in levels:
            out.write(np.full((48, 64, 3), level, np.uint8))
    p = probe(dst)
    assert (p.video, p.audio, p.size, p.fps) == ("h264", "aac", (64, 48), 29.97)
    frames = decoded_frames(dst)
    assert [round(float(f.mean()) / 40) * 40 for f in frames] == levels
    assert stream_seconds(dst, "a") == pytest.approx(len(levels) * 1001 / 30000, abs=0.03)  # tone cut to fit
    assert list(tmp_path.iterdir()) == [dst]


def test_writer_pads_odd_sizes_for_yuv420p(tmp_path):
    """An odd side gets one black pixel on the right/bottom for H.264 and VP9; GIF keeps the size."""
    for name, size in [("odd.mp4", (64, 48)), ("odd.webm", (64, 48)), ("odd.gif", (63, 47))]:
        with VideoWriter(tmp_path / name, 25, (63, 47)) as out:
            for _ in range(3):
                out.write(np.full((47, 63, 3), 255, np.uint8))
        assert probe(tmp_path / name).size == size
        frame = decoded_frames(tmp_path / name)[1].astype(int)
        assert frame[:47, :63].min() > 200
        if size == (64, 48):
            assert frame[47].mean() < 60 and frame[:, 63].mean() < 60


def test_writer_failure_leaves_nothing_and_kills_ffmpeg(tmp_path, clips):
    dst = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError, match="boom"), VideoWriter(dst, 25, (32, 32)) as out:
        out.write(np.zeros((32, 32, 3), np.uint8))
        proc = out._proc
        raise RuntimeError("boom")
    assert proc.poll() is not None and list(tmp_path.iterdir()) == []
    # FFmpeg's own error comes back as one EmojicamError line, its first (the cause)
    with pytest.raises(EmojicamError, match=r"invalid width x height \(70000x2\)") as err, \
            VideoWriter(dst, 25, (70000, 2)) as out:
        for _ in range(20):
            out.write(np.zeros((2, 70000, 3), np.uint8))
    assert "\n" not in str(err.value) and list(tmp_path.iterdir()) == []


def test_writer_keeps_the_video_when_the_audio_cannot_be_added(tmp_path, clips, capsys):
    with VideoWriter(tmp_path / "out.mp4", 25, (32, 32), audio_from=clips["text"]) as out:
        for _ in range(5):
            out.write(np.zeros((32, 32, 3), np.uint8))
    assert "could not add the audio of notes.mp4" in capsys.readouterr().err
    assert probe(tmp_path / "out.mp4").audio is None and len(decoded_frames(tmp_path / "out.mp4")) == 5
    assert list(tmp_path.iterdir()) == [tmp_path / "out.mp4"]


def test_writer_without_ffmpeg_falls_back_to_opencv(tmp_path):
    script = (f"import numpy as np\nfrom pathlib import Path\nfrom emojicam.media.writer import VideoWriter\n"
              f"with VideoWriter(Path({str(tmp_path / 'cv.mp4')!r}), 25, (81, 45)) as out:\n"
              f"    for i in range(10): out.write(np.full((45, 81, 3), i * 20, np.uint8))\n"
              f"try:\n    VideoWriter(Path({str(tmp_path / 'cv.gif')!r}), 25, (81, 45))\n"
              f"except Exception as e:\n    print(type(e).__name__, e)\n")
    env = {**os.environ, "IMAGEIO_FFMPEG_EXE": str(tmp_path / "no-ffmpeg-here")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("\n") == 1 and "warning: FFmpeg not found" in done.stderr
    assert done.stdout.startswith("EmojicamError output: expected FFmpeg")
    frames = decoded_frames(tmp_path / "cv.mp4")
    assert len(frames) == 10 and frames[0].shape[:2] == (46, 82)  # padded to even, right and bottom
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cv.mp4"]


# --- the convert command -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, out, video, audio, fps, frames", [
    ("h264", "h264_emoji.mp4", "h264", "aac", 25, 15),
    ("vp9", "vp9_emoji.webm", "vp9", "opus", 25, 15),
    ("mjpeg", "mjpeg_emoji.mp4", "h264", "aac", 25, 15),
    ("fps60", "fps60_emoji.mp4", "h264", "aac", 60, 30),
    ("odd", "odd_emoji.mp4", "h264", "aac", 25, 15),
    ("anim", "anim_emoji.gif", "gif", None, 10, 10),
    ("silent", "silent_emoji.mp4", "h264", None, 25, 15),
    ("rotated", "rotated_emoji.mp4", "h264", "aac", 25, 15),
])
def test_convert_keeps_frames_fps_and_audio(batch, clips, name, out, video, audio, fps, frames):
    out_dir, done = batch
    assert f"{clips[name]} -> {out_dir / out}" in done.stdout
    with open_video(clips[name]) as src:
        w, h = COLS * TILE, rows_for(src.size) * TILE
    p = probe(out_dir / out)
    assert (p.video, p.audio, p.size, p.fps) == (video, audio, (w, h), fps)
    decoded = decoded_frames(out_dir / out)
    assert len(decoded) == frames and decoded[0].shape == (h, w, 3)
    assert stream_seconds(out_dir / out, "v") == pytest.approx(frames / fps, abs=0.02)  # decodes without error
    if audio:  # as long as the video, to an audio frame
        assert stream_seconds(out_dir / out, "a") == pytest.approx(frames / fps, abs=0.03)


def test_convert_portrait_clip_stays_portrait(batch):
    assert probe(batch[0] / "rotated_emoji.mp4").display_size == (COLS * TILE, 28 * TILE)


def test_convert_truncated_input_converts_what_decodes_and_says_so(batch):
    out_dir, done = batch
    warnings = [line for line in done.stderr.splitlines() if "emojicam: warning" in line]
    assert len(warnings) == 1 and "truncated.mp4: converted" in warnings[0] and "of 50 expected" in warnings[0]
    converted = int(warnings[0].split("converted ")[1].split()[0])
    assert 5 < converted < 50 and len(decoded_frames(out_dir / "truncated_emoji.mp4")) == converted
    assert sorted(p.name for p in out_dir.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize("name", ["empty", "text", "no_index"])
def test_convert_bad_input_exits_2_with_one_line_and_no_output(clips, weights, tmp_path, name):
    dst = tmp_path / "out.mp4"
    done = run_cli("convert", clips[name], dst, "--cols", COLS, "--weights", weights)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("emojicam: error: input: expected")
    assert list(tmp_path.iterdir()) == []


def converting(src: Path | str, dst: Path, weights: Path) -> subprocess.Popen:
    """`emojicam convert src dst` in the background, once FFmpeg's temporary file has appeared beside dst."""
    proc = subprocess.Popen([sys.executable, "-m", "emojicam", "convert", str(src), str(dst), "--cols", str(COLS),
                             "--tile", str(TILE), "--weights", str(weights)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120  # a guard against hanging, not a speed check
    while not any(dst.parent.iterdir()) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    if proc.poll() is not None or not any(dst.parent.iterdir()):
        proc.kill()
        pytest.fail(f"conversion ended (or hung) before FFmpeg's temp file appeared: {proc.communicate()[1][-2000:]}")
    return proc


@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)],
                         ids=["ctrl-c", "sigterm", "sighup"])
def test_convert_stopped_by_a_signal_leaves_no_file(clips, weights, tmp_path, sig, status):
    before = digest(clips["long"])
    proc = converting(clips["long"], tmp_path / "long.mp4", weights)
    try:
        os.kill(proc.pid, sig)
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == status and stderr.splitlines()[-1].startswith("emojicam: interrupted"), stderr[-2000:]
    assert list(tmp_path.iterdir()) == [] and digest(clips["long"]) == before


def test_convert_onto_a_full_disk_fails_on_one_line(clips, weights, small_disk):
    disk, before = small_disk(8), digest(clips["h264"])
    done = run_cli("convert", clips["h264"], disk / "out.mp4", "--cols", COLS, "--tile", TILE, "--weights", weights)
    line = one_line(done.stderr)
    assert done.returncode == 2 and line.startswith("emojicam: error: output: expected"), done.stderr[-2000:]
    assert str(disk / "out.mp4") in line and "No space left on device" in line
    assert list(disk.iterdir()) == [] and digest(clips["h264"]) == before


def test_convert_into_a_folder_removed_mid_run_fails_on_one_line(clips, weights, tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    proc = converting(clips["long"], folder / "long.mp4", weights)
    try:
        shutil.rmtree(folder)
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    line = one_line(stderr)
    assert proc.returncode == 2 and line.startswith("emojicam: error: output: expected"), stderr[-2000:]
    assert str(folder / "long.mp4") in line and "No such file or directory" in line
    assert list(tmp_path.iterdir()) == []


def test_convert_keeps_what_a_stream_sent_before_its_server_died(clips, weights, tmp_path):
    dst = tmp_path / "stream.mp4"
    with stream_server(clips["long"]) as (url, server):
        proc = converting(url, dst, weights)
        try:
            time.sleep(1)  # a few more frames
            server.kill()
            _, stderr = proc.communicate(timeout=120)
        finally:
            proc.kill()
    assert proc.returncode == 0, stderr[-2000:]
    said = [line for line in stderr.splitlines() if "warning" in line]
    assert len(said) == 1 and f"{url}: the stream stopped sending frames after" in said[0], stderr[-2000:]
    assert f"kept them all in {dst}" in said[0]
    frames = int(said[0].split("frames after ")[1].split()[0])
    # every frame it got is kept; a stream's time stamps may also repeat a few (constant-rate output, see
    # FrameClock): 2 seen before, 3 once in CI on 2026-12-02 (53 output frames for 50 received, not reproduced)
    assert frames >= 1 and frames <= len(decoded_frames(dst)) <= frames + 3 and stream_seconds(dst, "v") > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stream.mp4"]


# --- sound in sync -----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def synced(tmp_path_factory, weights) -> dict[str, tuple[Path, Path]]:
    """Clips that flash and beep at 1 s, converted in one CLI call: constant frame rate, a phone's rotated copy, a
    variable frame rate (16.7 fps, then 50 fps from the flash on) and a picture that starts 0.4 s after its sound."""
    d = tmp_path_factory.mktemp("sync")
    plain = flash_and_beep(d / "plain.mp4")
    late = d / "late.mp4"
    ffmpeg("-i", plain, "-vf", "trim=start=0.4", *H264, "-c:a", "copy", late)
    sources = {"plain": plain, "rotated": rotated(plain, d / "rotated.mp4", 90),
               "vfr": flash_and_beep(d / "vfr.mp4", fps=50, keep="gte(t,1)+not(mod(n,3))"), "late": late}
    out = d / "out"
    done = run_cli("convert", *sources.values(), "-o", out, "--cols", COLS, "--tile", TILE, "--weights", weights)
    assert done.returncode == 0, done.stderr[-2000:]
    return {name: (src, out / f"{src.stem}_emoji.mp4") for name, src in sources.items()}


@pytest.mark.parametrize("name", ["plain", "rotated", "vfr", "late"])
def test_sound_stays_with_the_picture(synced, name):
    """The beep starts within one frame of the flash, and the sound is the source's from its first frame on."""
    src, out = synced[name]
    start = frame_times(src)[0][0]  # where the source's picture starts, and so the output
    assert flash_s(src) == pytest.approx(1.0, abs=0.001) and beep_s(sound(src)) == pytest.approx(1.0, abs=0.002)
    frame, ours, theirs = 1 / probe(out).fps, sound(out), sound(src)[round(start * 16000):]
    heard, seen = beep_s(ours), flash_s(out)
    assert abs(heard - seen) <= frame, (heard, seen)
    assert seen == pytest.approx(1.0 - start, abs=frame)
    assert len(ours) == pytest.approx(len(theirs), abs=0.05 * 16000)  # all of it, not cut short or padded
    n = min(len(ours), len(theirs))
    assert np.corrcoef(ours[:n], theirs[:n])[0, 1] > 0.9  # the same sound at the same time, not silence


# --- time stamps that jump ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def joined(tmp_path_factory, weights) -> tuple[dict[str, tuple[Path, Path]], subprocess.CompletedProcess]:
    """Two 1 s recordings (each flashing and beeping at 0.5 s) joined into one transport stream, as camcorders
    (.mts spanning clips), capture cards and HLS recordings write them; converted in one CLI call."""
    d = tmp_path_factory.mktemp("joined")
    part = flash_and_beep(d / "part.mp4", at_s=0.5, seconds=1.0)
    bigger = flash_and_beep(d / "bigger.mp4", at_s=0.5, seconds=1.0, size=(192, 108))
    sources = {"restart": joined_ts([part, part], d / "restart.ts"),  # the clock starts again at the join
               "resize": joined_ts([part, bigger], d / "resize.ts"),  # ... and the picture grows to 192x108
               "gap": joined_ts([part, part], d / "gap.ts", [0, 2]),  # the second part 1 s after the first ends
               "jump": joined_ts([part, part], d / "jump.ts", [0, 60]),  # 59 s after: beyond FFmpeg's 10 s
               "back": joined_ts([part, part], d / "back.ts", [5, 0])}  # 6 s before the first began
    out = d / "out"
    done = run_cli("convert", *sources.values(), "-o", out, "--cols", COLS, "--tile", TILE, "--weights", weights)
    assert done.returncode == 0 and "warning" not in done.stderr, done.stderr[-2000:]
    return {name: (src, out / f"{name}_emoji.mp4") for name, src in sources.items()}, done


@pytest.mark.parametrize("name, says", [("restart", "1 time-stamp jump joined end to end"),
                                        ("resize", "1 time-stamp jump joined end to end"),
                                        ("gap", "repeated to keep the source's timing at a constant 25 fps"),
                                        ("jump", "1 time-stamp jump joined end to end"),
                                        ("back", "1 time-stamp jump joined end to end")])
def test_joined_recordings_convert_in_full_with_their_sound(joined, name, says):
    """Every frame FFmpeg decodes, on the constant rate as FFmpeg puts them (a gap is held, a jump joined), and
    the sound of both parts where FFmpeg plays it: each flash and its beep together, on both sides of the join."""
    (src, out), done = joined[0][name], joined[1]
    frames = ffmpeg_count(src, 25)
    assert ffmpeg_count(out) == frames >= ffmpeg_count(src) == 50
    line = next(line for line in done.stdout.splitlines() if line.startswith(f"{src} -> {out} "))
    assert f"({frames} frames written, {frames / 25:.2f} s at 25 fps; " in line and says in line, line
    assert stream_seconds(out, "a") == pytest.approx(frames / 25, abs=0.03)
    seen, heard = flashes_s(out), beeps_s(sound(out))
    assert seen == pytest.approx(flashes_s(src), abs=0.02) and len(seen) == 2
    assert heard == pytest.approx(beeps_s(sound(src)), abs=0.02) and len(heard) == 2
    # FFmpeg lays the second part's sound after the first's, which runs 45 ms past its picture (the AAC encoder's
    # priming and padding): the second beep comes that much late in FFmpeg's own reading, and here
    assert all(-0.04 <= b - f <= 0.06 for f, b in zip(seen, heard, strict=True)), (seen, heard)


def test_without_ffmpeg_opencv_stamps_are_joined_too(joined, weights, tmp_path):
    """The reader for streams, and for files where no FFmpeg runs: OpenCV's time stamps through FrameClock."""
    src, _ = joined[0]["restart"]
    out = tmp_path / "restart.mp4"
    done = run_cli("convert", src, out, "--cols", COLS, "--tile", TILE, "--weights", weights,
                   env={"IMAGEIO_FFMPEG_EXE": str(tmp_path / "no-ffmpeg-here")})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "(50 frames written, 2.00 s at 25 fps; 1 time-stamp jump joined end to end" in done.stdout, done.stdout
    assert len(decoded_frames(out)) == 50


@pytest.fixture(scope="module")
def damaged(tmp_path_factory, weights) -> tuple[dict[str, tuple[Path, Path]], subprocess.CompletedProcess]:
    """2 s recordings (flash and beep at 0.5 s) whose clocks were damaged, and one paused for 20 s, converted in one
    CLI call."""
    d = tmp_path_factory.mktemp("damaged")
    part = flash_and_beep(d / "part.mp4", at_s=0.5, seconds=2.0)
    ffmpeg("-i", part, "-c", "copy", "-f", "mpegts", d / "clean.ts")
    ffmpeg("-i", part, "-c", "copy", "-output_ts_offset", "20000", "-cluster_time_limit", "300", d / "clean.mkv")
    pause = "setpts='PTS+gte(T,1)*20/TB'"
    sources = {"ts_ahead": damaged_pts(d / "clean.ts", d / "ts_ahead.ts", 20, 36000),  # one frame's stamp: +10 h
               "mkv_ahead": damaged_clusters(d / "clean.mkv", d / "mkv_ahead.mkv", 3, 36000),  # +10 h, for good
               "mkv_back": damaged_clusters(d / "clean.mkv", d / "mkv_back.mkv", 3, -10000),  # 2 h 47 min back
               "paused": d / "paused.mkv"}  # 20 s without frames or sound, in a file that says it lasts 22 s
    ffmpeg("-i", part, "-vf", pause, "-af", f"a{pause}", "-fps_mode", "passthrough", "-c:v", "libx264", "-c:a", "aac",
           sources["paused"])
    out = d / "out"
    done = run_cli("convert", *sources.values(), "-o", out, "--cols", COLS, "--tile", TILE, "--weights", weights)
    assert done.returncode == 0, done.stderr[-2000:]
    return {name: (src, out / f"{name}_emoji.mp4") for name, src in sources.items()}, done


@pytest.mark.parametrize("name, says", [("ts_ahead", "jump ahead by 10 h 0 min at 1.00 s (1 more such jump)"),
                                        ("mkv_ahead", "jump ahead by 10 h 0 min at 0.52 s, more than"),
                                        ("mkv_back", "jump back by 2 h 46 min at 0.52 s, more than"),
                                        ("paused", None)])
def test_a_damaged_clock_is_a_break_and_a_pause_keeps_its_length(damaged, name, says):
    """A jump longer than the file (a damaged clock) is one frame on, as many frames written as FFmpeg decodes, with
    one warning naming it, instead of hours of copies (1,080,000 for the +10 h stamp); a pause the file's length
    holds is kept; the sound stays with the picture either way."""
    (src, out), done = damaged[0][name], damaged[1]
    decoded = ffmpeg_count(src)
    warned = [line for line in done.stderr.splitlines() if f"{src.name}:" in line]
    if says is None:
        assert ffmpeg_count(out) == ffmpeg_count(src, 25) == 550 and not warned, warned
        assert flashes_s(out) == pytest.approx([0.5], abs=0.04)
        return
    assert decoded == 50 and ffmpeg_count(out) == decoded, (ffmpeg_count(out), decoded)
    assert len(warned) == 1 and says in warned[0] and "damaged clock" in warned[0], warned
    assert stream_seconds(out, "a") == pytest.approx(2.0, abs=0.03)
    assert flashes_s(out) == pytest.approx([0.5], abs=0.04)
    assert beeps_s(sound(out)) == pytest.approx([0.5], abs=0.06)


def test_a_broken_clock_is_named_by_its_longest_step():
    assert Retiming().broken_clock() == ""
    said = Retiming(breaks=((-100.0, 1.0), (5000.0, 2.0), (20.0, 3.0))).broken_clock()
    assert said.startswith("its time stamps jump ahead by 1 h 23 min at 2.00 s (2 more such jumps), "), said
    assert Retiming(breaks=((-59.5, 0.5),)).broken_clock().startswith("its time stamps jump back by 59.5 s at 0.50 s,")


def test_frame_clock_holds_gaps_and_joins_jumps():
    """Output frames each frame fills (told when the next one comes): a gap is held by repeats; a stamp that goes
    back or leaps ahead by more than 10 s continues one frame on; a stamp given twice (unknown) counts one on."""
    clock = FrameClock(10)
    stamps = [5.0, 5.1, 5.2, 0.0, 0.1, 0.5, 0.6, 100.0, 100.1, 100.1, 100.14, 100.3]
    assert clock.advance(stamps[0]) == 0
    copies = [*(clock.advance(t) for t in stamps[1:]), 1]  # the last frame is written once
    assert copies == [1, 1, 1, 1, 4, 1, 1, 1, 1, 0, 2, 1]
    assert clock.retiming() == Retiming(written=sum(copies), decoded=12, repeated=4, dropped=1, jumps=2)


def test_convert_bad_output_exits_2_before_any_work(clips, weights, tmp_path):
    for dst in (tmp_path / "missing" / "out.mp4", tmp_path):
        done = run_cli("convert", clips["h264"], dst, "--weights", weights)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert done.stderr.startswith("emojicam: error: output: expected")
    assert list(tmp_path.iterdir()) == []


def test_a_signal_that_lands_in_a_finaliser_still_interrupts():
    """The garbage collector runs __del__ methods and weakref callbacks (tinygrad has many) in the middle of any code,
    and Python prints and drops an exception raised there: a SIGTERM that arrived during one was lost once, and the
    conversion went on to the end. Here the signal is raised inside a __del__; the wait after it must still end in
    Interrupted."""
    from emojicam.cli import signals_as_interrupts
    from emojicam.errors import Interrupted

    class Dying:
        def __del__(self):
            signal.raise_signal(signal.SIGTERM)
            sum(range(10_000))  # the handler runs here, inside __del__

    t0 = time.monotonic()
    with pytest.raises(Interrupted), signals_as_interrupts():
        Dying()
        time.sleep(30)
    assert time.monotonic() - t0 < 25, "interrupted in the sleep, not after it"


def test_a_signal_that_lands_in_a_constructor_with_a_finaliser_waits_for_it(capfd):
    """A SIGTERM that cut a tinygrad Buffer's __init__ short left a Buffer without `device`, whose __del__ then
    printed a traceback after `emojicam: interrupted by SIGTERM` (a CI run). The signal is now delivered again once
    such a constructor has finished: the object is whole, its __del__ runs quietly, and the wait still ends."""
    import gc

    from emojicam.cli import signals_as_interrupts
    from emojicam.errors import Interrupted

    class Held:
        def __init__(self):
            signal.raise_signal(signal.SIGTERM)
            sum(range(10_000))  # the handler runs here, inside __init__
            self.device = "CPU"

        def __del__(self):
            assert self.device == "CPU"

    t0 = time.monotonic()
    with pytest.raises(Interrupted), signals_as_interrupts():
        held = Held()
        time.sleep(30)
    assert time.monotonic() - t0 < 25, "interrupted in the sleep, not after it"
    del held
    gc.collect()
    assert "Traceback" not in capfd.readouterr().err

"""Every writer on a disk that fills up, in a folder it may not write to, on a read-only file system, under a
file-size limit; every output kind of every command on a read-only or missing folder: one line naming the path and
the operating system's reason, and nothing left behind. Real faults (a tmpfs, a user namespace, RLIMIT_FSIZE), not
mocks."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, mount_tmpfs, one_line, run_cli, unwritable
from media import make_clip

from emojicam.atomic import write_atomic
from emojicam.emoji_set import DEFAULT_SET
from emojicam.errors import EmojicamError
from emojicam.media.writer import VideoWriter

# writes a still, a video, a video with sound and weights into argv[1]; one line per output: name, outcome, message
WRITERS = r"""
import sys
from pathlib import Path
import numpy as np
from emojicam import model
from emojicam.media.images import write_image
from emojicam.media.writer import VideoWriter

folder, sound = Path(sys.argv[1]), Path(sys.argv[2])
noise = np.random.default_rng(0).integers(0, 256, (25, 48, 64, 3), dtype=np.uint8)  # incompressible: big files

def video(name, audio=None):
    with VideoWriter(folder / name, 25, (64, 48), audio_from=audio) as out:
        for frame in noise:
            out.write(frame)

jobs = {"still.png": lambda: write_image(folder / "still.png", np.tile(noise[0], (4, 4, 1))),
        "video.webm": lambda: video("video.webm"), "sound.mp4": lambda: video("sound.mp4", sound),
        "weights.safetensors": lambda: model.save(folder / "weights.safetensors", model.load(device="CPU"))}
for name, job in jobs.items():
    try:
        job()
        print(name, "written", "", sep="\t")
    except Exception as e:
        print(name, type(e).__name__, e, sep="\t")
"""
LIMIT = 16 << 10  # bytes: each output above is bigger


def file_size_limit() -> None:
    """In the child: files may not grow beyond LIMIT (writes then fail with EFBIG; Python ignores SIGXFSZ)."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))


@pytest.fixture(scope="module")
def sound_clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("sound") / "tone.mp4", seconds=1.0)


@pytest.mark.parametrize("fault, reason", [("disk full", "No space left on device"),
                                           ("permission denied", "Permission denied"),
                                           ("read-only", "Read-only file system"),
                                           ("file size limit", "File too large")])
def test_every_writer_fails_on_one_line_and_leaves_nothing(fault, reason, tmp_path, small_disk, sound_clip,
                                                           request):
    wrap, preexec = [], None
    if fault == "disk full":
        folder = small_disk(LIMIT >> 10)
    elif fault == "read-only":  # the cleanup after FFmpeg's failure is refused too, and must not raise over it
        folder = request.getfixturevalue("read_only")
    else:
        folder = tmp_path / "out"
        folder.mkdir()
        if fault == "permission denied":
            wrap = unwritable(folder)
        else:
            preexec = file_size_limit
    # CACHELEVEL=0: tinygrad's own kernel cache (a sqlite file under ~/.cache) would meet the file-size limit
    # before the writers do, and it is not one of emojicam's outputs
    done = subprocess.run([*wrap, sys.executable, "-c", WRITERS, str(folder), str(sound_clip)], capture_output=True,
                          text=True, timeout=300, cwd=ROOT, preexec_fn=preexec, env={**os.environ, "CACHELEVEL": "0"})
    assert done.returncode == 0, done.stderr[-3000:]
    results = [line.split("\t") for line in done.stdout.strip().splitlines()]
    assert [r[0] for r in results] == ["still.png", "video.webm", "sound.mp4", "weights.safetensors"], done.stdout
    for name, outcome, message in results:
        assert outcome == "EmojicamError", (name, outcome, message)
        assert message.startswith("output: expected") and str(folder / name) in message and reason in message, message
    assert sorted(folder.iterdir()) == []  # no partial or temporary file


def test_full_disk_in_the_audio_pass_leaves_nothing(tmp_path, small_disk, sound_clip):
    """Room for the encoded frames, not for the copy with sound beside them: the second FFmpeg pass is what fails."""
    noise = np.random.default_rng(1).integers(0, 256, (25, 48, 64, 3), dtype=np.uint8)

    def write(path, audio=None):
        with VideoWriter(path, 25, (64, 48), audio_from=audio) as out:
            for frame in noise:
                out.write(frame)

    write(tmp_path / "frames.mp4")  # what the first pass writes: the same frames, the same encoder
    pages = -(-(tmp_path / "frames.mp4").stat().st_size // 4096)
    disk = small_disk(4 * (pages + 1))
    with pytest.raises(EmojicamError, match="No space left on device") as err:
        write(disk / "out.mp4", audio=sound_clip)
    assert str(disk / "out.mp4") in str(err.value) and "\n" not in str(err.value)
    assert sorted(disk.iterdir()) == []


PHOTO = ROOT / "samples" / "grace_hopper.jpg"
SMALL = ("--cols", "8")
# every output a command writes: (name, arguments with OUT for the output folder, the path its line names)
OUTPUTS = [(f"convert {ext}", ("convert", "PHOTO", f"OUT/out{ext}", *SMALL), f"OUT/out{ext}")
           for ext in (".png", ".jpg", ".webp", ".txt", ".html")]
OUTPUTS += [(f"convert {ext}", ("convert", "CLIP", f"OUT/out{ext}", *SMALL), f"OUT/out{ext}")
            for ext in (".mp4", ".webm", ".gif")]
OUTPUTS += [
    ("convert -o", ("convert", "PHOTO", "-o", "OUT/photos", *SMALL), "OUT/photos"),
    ("live --record", ("live", "--source", "CLIP", "--no-window", "--record", "OUT/live.mp4", *SMALL), "OUT/live.mp4"),
    ("live snapshots", ("live", "--source", "CLIP", "--snapshots", "OUT", *SMALL), "OUT"),
    ("train -o", ("train", DEFAULT_SET, "-o", "OUT/w.safetensors", "--steps", "3", "--batch", "8"),
     "OUT/w.safetensors"),
    ("evaluate -o", ("evaluate", "PHOTO", "-o", "OUT/quality", *SMALL), "OUT/quality/quality.json"),
    *((f"bench --{flag}", ("bench", "--quick", "--no-peers", f"--{flag}", f"OUT/bench.{ext}", *SMALL),
       f"OUT/bench.{ext}") for flag, ext in (("json", "json"), ("markdown", "md"), ("plot", "png"))),
    ("web", ("web", "OUT/site", "--grids", "8x4"), "OUT/site"),
]
# those that make a missing folder (as mkdir -p would) rather than refuse it
MAKE_FOLDERS = ("convert -o", "train -o", "evaluate -o", "bench --json", "bench --markdown", "bench --plot",
                "web")


@pytest.mark.parametrize("fault", ["read-only", "missing folder"])
def test_every_output_kind_fails_on_one_line_before_any_work(fault, request, tmp_path, sound_clip, xvfb):
    """Each command and output kind, through the real CLI, into a folder on a read-only file system or one that is
    not there: exit 2, one line with the path and the reason, no traceback (cleanup included), nothing left."""
    folder = request.getfixturevalue("read_only") if fault == "read-only" else tmp_path / "gone"
    reason = "Read-only file system" if fault == "read-only" else "existing folder"
    said = {}
    for name, args, named in OUTPUTS:
        if fault == "missing folder" and name in MAKE_FOLDERS:
            continue
        fill = {"PHOTO": PHOTO, "CLIP": sound_clip}
        argv = [fill.get(a, str(a).replace("OUT", str(folder))) for a in args]
        done = run_cli(*argv, timeout=120, env={"DISPLAY": xvfb})
        line = one_line(done.stderr)
        said[name] = line
        assert done.returncode == 2 and line.startswith("emojicam: error: "), (name, done.stderr[-2000:])
        path = named.replace("OUT", str(folder))
        assert (path if fault == "read-only" else str(folder)) in line and reason in line, (name, line)
        assert not folder.exists() or list(folder.iterdir()) == [], (name, list(folder.iterdir()))
    assert len(said) == (len(OUTPUTS) if fault == "read-only" else len(OUTPUTS) - len(MAKE_FOLDERS))


def test_a_temporary_file_that_cannot_be_removed_is_named_not_raised(tmp_path, capsys):
    """The folder turns read-only between the write and the rename (a card's lock, a remount): the rename's error is
    what is raised, and the temporary file that cleanup cannot remove is named in a warning, never raised."""
    folder = tmp_path / "card"
    folder.mkdir()
    mount_tmpfs(folder, "size=64k")

    def write_then_lock(tmp: Path) -> None:
        tmp.write_bytes(b"emoji" * 100)
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)

    try:
        with pytest.raises(EmojicamError, match="Read-only file system") as err:
            write_atomic(folder / "out.txt", write_then_lock)
        assert str(err.value) == f"output: expected to write {folder / 'out.txt'}, got an error: Read-only file system"
        left = list(folder.iterdir())
        assert len(left) == 1 and left[0].name.startswith(".out.")
        assert capsys.readouterr().err == (f"emojicam: warning: could not remove the temporary file {left[0]}: "
                                           f"Read-only file system\n")
    finally:
        subprocess.run(["umount", str(folder)], check=True)

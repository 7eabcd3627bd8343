"""Every writer on a disk that fills up, in a folder it may not write to, under a file-size limit: one line naming
the path and the operating system's reason, and nothing left behind. Real faults (a tmpfs, a user namespace,
RLIMIT_FSIZE), not mocks; the commands' own runs are in the tests of each command."""

from __future__ import annotations

import os
import resource
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, unwritable
from media import make_clip

from emojicam.errors import EmojicamError
from emojicam.video import VideoWriter

# writes a still, a video, a video with sound and weights into argv[1]; one line per output: name, outcome, message
WRITERS = r"""
import sys
from pathlib import Path
import numpy as np
from emojicam import model
from emojicam.images import write_image
from emojicam.video import VideoWriter

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
                                           ("file size limit", "File too large")])
def test_every_writer_fails_on_one_line_and_leaves_nothing(fault, reason, tmp_path, small_disk, sound_clip):
    wrap, preexec = [], None
    if fault == "disk full":
        folder = small_disk(LIMIT >> 10)
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

"""Make samples/sample.mp4: a 6 s 1280x720 30 fps H.264 + AAC clip, a slow pan/zoom over public-domain photos.

The photos come from scikit-image's bundled sample data (see samples/README.md for each licence); scikit-image
is not a dependency of emojicam, so install it anywhere and point this script at its data folder:

    python -m pip install --target /tmp/sk scikit-image
    .venv/bin/python samples/make_sample.py --photos /tmp/sk/skimage/data

Without --photos the script looks for an importable scikit-image. It needs numpy, OpenCV and imageio-ffmpeg
(all emojicam dependencies). Each photo is held still for half a second (for measuring flicker), then pans
and zooms for a second (for motion); the soundtrack is a few synthesised sine notes.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import tempfile
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np

WIDTH, HEIGHT, FPS = 1280, 720, 30
HOLD_S, MOVE_S = 0.5, 1.0
RATE = 48000
# (file, start crop, end crop): crops are (centre x, centre y, width) as fractions of the photo's width/height;
# the crop height follows 16:9. Chosen by eye so that faces and objects stay in frame.
SHOTS = (
    ("astronaut.png", (0.50, 0.36, 1.00), (0.44, 0.30, 0.55)),  # NASA, public domain: zoom in to the face
    ("coffee.png", (0.40, 0.55, 0.70), (0.60, 0.50, 0.70)),     # CC0: pan left to right
    ("chelsea.png", (0.50, 0.50, 0.95), (0.45, 0.40, 0.60)),    # CC0: zoom in to the cat's face
    ("rocket.jpg", (0.50, 0.60, 0.60), (0.50, 0.45, 0.95)),     # SpaceX, public domain: zoom out, tilt up
)
NOISE_SIGMA = 2.0  # per-frame Gaussian noise, 0..255 scale: a held shot flickers a little, like a real camera
NOTES_HZ = (392.00, 440.00, 523.25, 587.33, 659.25, 587.33, 523.25, 440.00)  # G4 A4 C5 D5 E5 D5 C5 A4


def find_photos(folder: Path | None) -> Path:
    """The folder holding scikit-image's sample photos."""
    if folder is None:
        spec = importlib.util.find_spec("skimage")  # locate without importing (scikit-image is heavy)
        if spec is None or spec.origin is None:
            raise SystemExit("scikit-image not found: install it (see this file's docstring) and pass --photos DIR")
        folder = Path(spec.origin).parent / "data"
    missing = [name for name, _, _ in SHOTS if not (folder / name).is_file()]
    if missing:
        raise SystemExit(f"expected {', '.join(missing)} in {folder}")
    return folder


def ease(t: np.ndarray) -> np.ndarray:
    """Smoothstep: the camera starts and stops gently."""
    return t * t * (3 - 2 * t)


def shot_frames(photo: np.ndarray, start: tuple, end: tuple, rng: np.random.Generator) -> np.ndarray:
    """Hold on the start crop, then move to the end crop: (frames, H, W, 3) uint8 BGR."""
    h, w = photo.shape[:2]
    hold, move = round(HOLD_S * FPS), round(MOVE_S * FPS)
    t = np.concatenate([np.zeros(hold), ease(np.linspace(0, 1, move))])
    frames = np.empty((len(t), HEIGHT, WIDTH, 3), np.uint8)
    for i, ti in enumerate(t):  # per frame, not per tile: one affine warp each
        cx, cy, cw = (np.array(start) * (1 - ti) + np.array(end) * ti) * (w, h, w)
        cw = min(cw, w, h * WIDTH / HEIGHT)  # never crop outside the photo
        scale = WIDTH / cw
        cx = np.clip(cx, cw / 2, w - cw / 2)
        cy = np.clip(cy, cw * HEIGHT / WIDTH / 2, h - cw * HEIGHT / WIDTH / 2)
        m = np.array([[scale, 0, WIDTH / 2 - scale * cx], [0, scale, HEIGHT / 2 - scale * cy]], np.float32)
        frame = cv2.warpAffine(photo, m, (WIDTH, HEIGHT), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
        frames[i] = np.clip(frame + rng.normal(0, NOISE_SIGMA, frame.shape) + 0.5, 0, 255)
    return frames


def soundtrack(seconds: float) -> np.ndarray:
    """Stereo s16 sine notes with soft attack and decay, a little louder on alternating sides."""
    per_note = seconds / len(NOTES_HZ)
    t = np.arange(round(per_note * RATE)) / RATE
    envelope = np.minimum(t / 0.02, 1) * np.exp(-3 * t)
    notes = [np.sin(2 * np.pi * hz * t) * envelope for hz in NOTES_HZ]
    mono = np.concatenate(notes) * 0.3
    pan = np.repeat(np.arange(len(NOTES_HZ)) % 2, len(t))
    stereo = np.stack([mono * (1 - 0.3 * pan), mono * (0.7 + 0.3 * pan)], 1)
    return (np.clip(stereo, -1, 1) * 32767).astype("<i2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=None, help="scikit-image's data folder (default: find it)")
    parser.add_argument("-o", "--output", type=Path, default=Path(__file__).with_name("sample.mp4"))
    parser.add_argument("--crf", type=int, default=24, help="x264 quality, lower is better (default 24)")
    args = parser.parse_args()
    folder = find_photos(args.photos)
    rng = np.random.default_rng(0)
    video = np.concatenate([shot_frames(cv2.imread(str(folder / name)), a, b, rng) for name, a, b in SHOTS])
    with tempfile.TemporaryDirectory() as tmp:
        audio = Path(tmp) / "audio.raw"
        audio.write_bytes(soundtrack(len(video) / FPS).tobytes())
        part = args.output.with_name(args.output.name + ".part.mp4")
        cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error",
               "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{WIDTH}x{HEIGHT}", "-r", str(FPS), "-i", "-",
               "-f", "s16le", "-ar", str(RATE), "-ac", "2", "-i", str(audio),
               "-c:v", "libx264", "-preset", "slow", "-crf", str(args.crf), "-pix_fmt", "yuv420p", "-g", str(FPS),
               "-c:a", "aac", "-b:a", "96k", "-shortest", "-movflags", "+faststart",
               "-map_metadata", "-1", "-fflags", "+bitexact", str(part)]
        subprocess.run(cmd, input=video.tobytes(), check=True)
        part.replace(args.output)
    print(f"wrote {args.output}: {len(video)} frames, {args.output.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()

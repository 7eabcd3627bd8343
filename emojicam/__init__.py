"""emojicam: webcam, video and photos to emoji art with a tiny tinygrad CNN."""

import os

# OpenCV's decoders print their own "[ERROR] ... readHeader" lines for broken files; emojicam reports those
# itself, on one line, so OpenCV stays quiet unless the user asks otherwise.
os.environ.setdefault("OPENCV_LOG_LEVEL", "OFF")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

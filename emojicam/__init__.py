"""emojicam: webcam, video and photos to emoji art with a tiny tinygrad CNN."""

import os

__version__ = "0.2.0"

# OpenCV's decoders print their own "[ERROR] ... readHeader" lines for broken files; emojicam reports those
# itself, on one line, so OpenCV stays quiet unless the user asks otherwise.
os.environ.setdefault("OPENCV_LOG_LEVEL", "OFF")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
# PoCL (OpenCL on the CPU) prints its kernel compiler's warnings ("1 warning generated.") to stderr: keep them quiet
os.environ.setdefault("POCL_EXTRA_BUILD_FLAGS", "-w")

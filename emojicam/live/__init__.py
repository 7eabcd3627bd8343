"""The live mirror: a camera, file or stream read in a thread, one frame loop, shown in a window or a terminal."""

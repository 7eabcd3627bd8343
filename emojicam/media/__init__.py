"""Media: what FFmpeg reads and writes (videos, with their sound), stills, and emoji art as text."""

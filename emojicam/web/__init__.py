"""`emojicam web`: the static site (WGSL kernels rendered by tinygrad, weights, atlas) and its page."""

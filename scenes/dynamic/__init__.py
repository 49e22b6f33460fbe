"""4D Gaussians for moving scenes: canonical Gaussians deformed over time by a HexPlane field (4DGaussians).

`deformation` (the field), `model` (canonical set + field + time axis; bundle dynamic/ I/O), `train` (static
warm-up, joint training, same-run static baseline), `cli` (`twin splat BUNDLE --dynamic`).
"""

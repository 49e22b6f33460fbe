"""Cameras from frames: COLMAP mapping (pycolmap), then alignment to +Z up and metres."""

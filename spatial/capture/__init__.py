"""Capture in: video keyframes or photos at a working resolution, synthetic captures, the printable marker sheet."""

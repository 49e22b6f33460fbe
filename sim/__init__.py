"""sim: Newton (Warp) physics and sensors in a reconstructed scene."""

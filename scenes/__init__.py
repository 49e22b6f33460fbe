"""scenes: 3D Gaussian splats, rendering, USD export and the browser viewer (geometry-to-scene)."""

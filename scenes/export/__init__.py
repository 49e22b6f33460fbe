"""A bundle in other tools' formats: OpenUSD (Isaac Sim), splat PLY, GLB, COLMAP and nerfstudio."""

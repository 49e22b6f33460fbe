"""Newton worlds: the scan as static geometry, robots on its support, MuJoCo C / Warp solvers, control, env."""

"""Simulated cameras: the robot ray traced into the scan and composited over its splats; control maps."""

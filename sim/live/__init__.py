"""The simulation in the browser: a physics session paced to real time, its viewer, and teleoperation."""

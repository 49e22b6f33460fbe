"""bridges: a simulated robot served on the robot's own network interface, so one controller drives the twin and
the hardware. `unitree_hg` holds Unitree's low-level humanoid DDS messages and their CRC; `unitree` serves a
simulated G1 on rt/lowstate and rt/lowcmd (`twin sim --bridge unitree`), as unitree_mujoco does."""

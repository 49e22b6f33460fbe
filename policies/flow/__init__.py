"""A π0-style flow-matching policy (Black et al. 2024): a small action expert that denoises an action chunk,
conditioned on image tokens and proprioception, with real-time chunking (Black et al. 2025) for the runtime.
LeRobot's folder shape: configuration / modeling / processor, plus `rtc.py`, the chunk-splicing guidance."""

"""Replays of recorded episodes: `twin view BUNDLE --dataset datasets/NAME` (the verb's config is `cli.py`)."""

"""`twin view`: a bundle in the browser viewer; `--sim` adds a live robot (sim), `--dataset` replays an episode.

policies registers the verb: its config extends sim's (`--sim`, which extends scenes' static viewer), so the layers
keep pointing down. Light to import: the replay loads its heavy parts (Newton, viser, the videos) when it runs.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from sim import SimViewConfig
from twin_kit import InputError, opt


@dataclass
class DatasetViewConfig(SimViewConfig):
    """Options of `twin view`: the static viewer's, the live robot's, and a recorded episode's replay."""

    robot: str | None = opt(None, "with --sim: robot (franka, so100, so101, ur5e, g1, g1_hands, aloha; default "
                                  "franka); with --dataset: the dataset's (another robot is an error)")
    scale: float | None = opt(None, "with --sim: metres per scene unit (required when the scale is arbitrary); with "
                                    "--dataset: the recording's (another scale is an error)", low=0, low_open=True)
    dataset: str | None = opt(None, "replay an episode recorded by `twin record` in this bundle (a LeRobot dataset "
                                    "folder, e.g. datasets/NAME): robot, objects and camera images, time slider")
    episode: int = opt(0, "with --dataset: the episode shown first (its index; the page picks others)", low=0)


def run_view(cfg: DatasetViewConfig, json_out: bool = False) -> int:
    """The replay with --dataset; otherwise sim's `twin view` (the live robot with --sim, else the static viewer)."""
    if cfg.dataset is None:
        if cfg.episode:
            raise InputError(f"--episode {cfg.episode}: needs --dataset")
        from sim import run_view as run_sim_view

        return run_sim_view(replace(cfg, robot=cfg.robot or "franka"), json_out)
    if cfg.sim:
        raise InputError("--sim and --dataset: choose one (a replay shows the recorded motion, not a live one)")
    from policies.replay.viewer import run_replay

    return run_replay(cfg, json_out)

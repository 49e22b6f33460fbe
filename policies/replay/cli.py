"""`twin view`: a bundle in the browser viewer; `--sim` adds a live robot (sim), `--dataset` replays an episode,
`--policy RUN --task T` plays a trained policy live (policies/live/).

policies registers the verb: its config extends sim's (`--sim`, which extends scenes' static viewer), so the layers
keep pointing down. Light to import: the replay and the live policy load their heavy parts (Newton, viser, torch,
the videos) when they run.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from policies.tasks.spec import TASK_NAMES
from sim import SimViewConfig
from twin_kit import InputError, opt


@dataclass
class DatasetViewConfig(SimViewConfig):
    """Options of `twin view`: the static viewer's, the live robot's, a recorded episode's replay, a live policy."""

    robot: str | None = opt(None, "with --sim: robot (franka, so100, so101, ur5e, g1, g1_hands, aloha; default "
                                  "franka); with --dataset: the dataset's (another robot is an error); with --policy: "
                                  "as for `twin eval` (default: the policy's)")
    scale: float | None = opt(None, "with --sim: metres per scene unit (required when the scale is arbitrary); with "
                                    "--dataset: the recording's (another scale is an error); with --policy: as for "
                                    "--sim", low=0, low_open=True)
    dataset: str | None = opt(None, "replay an episode recorded by `twin record` in this bundle (a LeRobot dataset "
                                    "folder, e.g. datasets/NAME): robot, objects and camera images, time slider")
    episode: int = opt(0, "with --dataset: the episode shown first (its index; the page picks others); with "
                          "--policy: the first episode's reset seed (Reset plays the next)", low=0)
    policy: str | None = opt(None, "play a trained policy live (a run folder, runs/NAME, or a saved policy folder) "
                                   "in --task's world: play/pause, reset, a style dropdown (vanilla and each held-out "
                                   "style family, as `twin eval` restyles), the policy's camera views")
    task: str | None = opt(None, "with --policy: the task it plays (reach, push or pick_place)", choices=TASK_NAMES)


def run_view(cfg: DatasetViewConfig, json_out: bool = False) -> int:
    """The replay with --dataset, the live policy with --policy; otherwise sim's `twin view` (the live robot with
    --sim, else the static viewer)."""
    if cfg.policy is not None:
        if cfg.task is None:
            raise InputError(f"--policy {cfg.policy}: needs --task (reach, push or pick_place)")
        if cfg.dataset is not None:
            raise InputError("--policy and --dataset: choose one (a replay shows recorded motion, a policy its own)")
        if cfg.sim:
            raise InputError("--policy and --sim: choose one (with --policy the policy drives the robot)")
        if cfg.solver is not None:
            raise InputError("--solver: with --sim only (a policy plays in its task's world, as in `twin eval`)")
        from policies.live.viewer import run_policy_view

        return run_policy_view(cfg, json_out)
    if cfg.task is not None:
        raise InputError(f"--task {cfg.task}: needs --policy")
    if cfg.dataset is None:
        if cfg.episode:
            raise InputError(f"--episode {cfg.episode}: needs --dataset or --policy")
        from sim import run_view as run_sim_view

        return run_sim_view(replace(cfg, robot=cfg.robot or "franka"), json_out)
    if cfg.sim:
        raise InputError("--sim and --dataset: choose one (a replay shows the recorded motion, not a live one)")
    from policies.replay.viewer import run_replay

    return run_replay(cfg, json_out)

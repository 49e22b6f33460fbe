"""Deployed episodes as a LeRobotDataset v3.0, written by the writer `twin record` uses (one episode at a time,
atomically), so a deployment can be replayed, audited or trained on like a recording.

Per frame (the policy's rate): `observation.state`, one video per camera, `action` (the safe target actually
sent, at the frame's last control step), `safety.events` (interventions of the safety filter during the frame)
and `watchdog.state` (0 run, 1 hold, 2 stop). Per episode (meta/episodes columns): outcome, success, control
rate, jitter, chunk delays, counts. Every safety event, watchdog change and refused chunk in full goes to
`meta/safety_events.jsonl`, one JSON line per episode, rewritten atomically after each episode (LeRobot's readers
ignore files they do not know in meta/).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from policies.datasets import DatasetWriter, Feature, standard_spec
from policies.features import IMAGE_PREFIX, STATE
from policies.runtime.loop import EpisodeLog
from twin_kit import atomic_write_file

EVENTS_FILE = "meta/safety_events.jsonl"
INSTRUCTION = "deployed policy"


def deploy_spec(meta: dict, fps: int, robot_type: str | None):
    """The dataset's features from the policy's metadata (names, cameras) plus the runtime's own columns."""
    obs, act = meta["observation"], meta["action"]
    state_names = obs[STATE].get("names") or [f"state_{i}" for i in range(obs[STATE]["shape"][0])]
    action_names = act.get("names") or [f"joint_{i}" for i in range(act["shape"][-1])]
    cams = {k.removeprefix(IMAGE_PREFIX): tuple(v["shape"][:2]) for k, v in obs.items() if k.startswith(IMAGE_PREFIX)}
    extra = {"safety.events": Feature("int64", (1,)), "watchdog.state": Feature("int64", (1,))}
    return standard_spec(fps, robot_type, state_names, action_names, cams, reward=False, done=True, extra=extra)


class DeployRecorder:
    """Writes each deployed episode to the dataset at `root` (created on the first episode)."""

    def __init__(self, root: str | Path, meta: dict, fps: int, robot_type: str | None, instruction: str = ""):
        self.root = Path(root)
        self.spec = deploy_spec(meta, fps, robot_type)
        self.instruction = instruction or INSTRUCTION
        self.writer: DatasetWriter | None = None
        self.lines: list[str] = []

    def add(self, log: EpisodeLog, extra: dict | None = None) -> int:
        """Write the episode (if it has a frame); returns its index, or -1 when nothing was recorded."""
        f = log.frames
        n = len(f["action"])
        if n == 0:
            return -1
        if self.writer is None:
            self.writer = DatasetWriter(self.root, self.spec)
        frames = {"observation.state": np.stack(f["state"][:n]), "action": np.stack(f["action"]),
                  "next.done": np.arange(n) == n - 1, "safety.events": np.asarray(f["events"], np.int64),
                  "watchdog.state": np.asarray(f["watchdog"], np.int64)}
        videos = {k: np.stack([imgs[k] for imgs in f["images"][:n]]) for k in self.spec.video_keys}
        meta = {**log.summary(), **(extra or {})}
        index = self.writer.add_episode(frames, videos, self.instruction, meta)
        self.lines.append(json.dumps({"episode_index": index, "safety": log.safety, "watchdog": log.watchdog,
                                      "faults": log.faults, "seams": log.seams, "delays": log.delays},
                                     default=_plain))
        atomic_write_file(self.root / EVENTS_FILE, ("\n".join(self.lines) + "\n").encode())
        return index

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _plain(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"{type(o).__name__} is not JSON")


def read_events(root: str | Path) -> list[dict]:
    """The per-episode event records of a deployment dataset (`EVENTS_FILE`), in episode order."""
    path = Path(root) / EVENTS_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

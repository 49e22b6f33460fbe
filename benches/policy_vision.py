"""How much a trained policy's actions depend on its cameras: open-loop error on recorded episodes with each
frame's own images, and with the images of another episode at the same step.

    python benches/policy_vision.py DATASET RUN [RUN ...] [--episodes 0,1,2,3,4,5] [--offset 50] [--json]

For every --every-th frame of the chosen episodes, each policy predicts its action chunk from the recorded
observation (`policy.infer`, robot units, the same noise for every call of a flow policy); the error is the mean
absolute difference from the recorded actions at chunk step 0 and step --ahead (radians for joint actions). Then
the same frames are played with the cameras of episode e + --offset (same step, clipped to its length): a scene
whose objects lie elsewhere. A policy that reads where the objects are from its images predicts worse with the
wrong images (`swapped_over_own` well above 1); one that drives from proprioception alone, as a copycat of the
demos' joint trajectories, does not, and fails in closed loop where only the images say where the objects are.
The last stdout line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402
import torch  # noqa: E402

from policies import ACTION, STATE, load_policy, read_dataset, run_policy  # noqa: E402
from twin_kit import machine, torch_threads  # noqa: E402


def errors(policy, ds, episodes: list[int], offset: int, every: int, ahead: int) -> dict:
    """Open-loop errors at chunk steps 0 and `ahead`, with own and swapped cameras."""
    cams = list(policy.features.camera_keys)
    out = {"own": [[], []], "swapped": [[], []]}
    for e in episodes:
        frames = ds.episode_frames(e)
        state, action = np.asarray(frames[STATE], np.float32), np.asarray(frames[ACTION], np.float32)
        idx = np.arange(0, len(state) - ahead, every)
        other = (e + offset) % ds.total_episodes
        for kind, source in (("own", e), ("swapped", other)):
            obs = {STATE: torch.from_numpy(state[idx])}
            for k in cams:
                video = ds.episode_video(source, k)
                obs[k] = torch.from_numpy(np.ascontiguousarray(video[np.minimum(idx, len(video) - 1)]))
            torch.manual_seed(0)   # a flow policy's noise: the same draw for own and swapped frames
            chunk = policy.infer(obs).numpy()
            out[kind][0].append(np.abs(chunk[:, 0] - action[idx]).mean())
            out[kind][1].append(np.abs(chunk[:, ahead] - action[idx + ahead]).mean())
    res = {f"{kind}_mae_step{s}": round(float(np.mean(v[i])), 5)
           for kind, v in out.items() for i, s in enumerate((0, ahead))}
    for s in (0, ahead):
        res[f"swapped_over_own_step{s}"] = round(res[f"swapped_mae_step{s}"] / res[f"own_mae_step{s}"], 3)
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("dataset")
    p.add_argument("runs", nargs="+", help="run folders (or saved policy folders)")
    p.add_argument("--episodes", default="0,1,2,3,4,5")
    p.add_argument("--offset", type=int, default=50, help="cameras come from episode e + offset")
    p.add_argument("--every", type=int, default=3, help="every n-th frame of an episode")
    p.add_argument("--ahead", type=int, default=4, help="the later chunk step scored")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    ds = read_dataset(a.dataset)
    episodes = [int(e) for e in a.episodes.split(",") if e]
    res = {"dataset": a.dataset, "episodes": episodes, "offset": a.offset, "every": a.every, "ahead": a.ahead,
           "policies": {}}
    with torch_threads(a.threads):
        for run in a.runs:
            policy = load_policy(run_policy(run)).eval()
            res["policies"][run] = {"type": policy.name, **errors(policy, ds, episodes, a.offset, a.every, a.ahead)}
            print(run, res["policies"][run], file=sys.stderr, flush=True)
    res["host"] = machine()
    out = Path(__file__).resolve().parent / "results" / "policy_vision.json"
    out.write_text(json.dumps(res, indent=1))
    print(json.dumps(res) if a.json else json.dumps(res, indent=1))


if __name__ == "__main__":
    main()

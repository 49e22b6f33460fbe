"""Expert success over many randomised episodes, every (task, robot) pair in one scene, in parallel worlds.

    python -m policies.experts.evaluate --bundle twins/demo --episodes 100 --worlds 25 --json
    python -m policies.experts.evaluate --bundle twins/bird --scale 0.0566 --tasks pick_place --robots so101

Episode k of a pair starts from reset seed `seed + k` (rounds of `worlds` episodes run side by side; a last
partial round still runs all worlds and counts only the episodes asked for). Every episode counts: a failure
is never retried or filtered. Prints one line per pair and, with --json, one JSON object as the last line.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, replace

import numpy as np

from policies.experts.registry import make_expert
from policies.tasks.env import TaskEnv
from policies.tasks.registry import task_robot_pairs
from policies.tasks.spec import TaskConfig
from twin_kit import InputError, add_config_arguments, config_from_namespace, console, emit_json, info, opt, quiet_warp


@dataclass
class EvalConfig:
    """Which pairs to evaluate, where, and how many episodes."""

    bundle: str | None = opt(None, "scene bundle directory or mesh file (None: an empty floor)")
    scale: float | None = opt(None, "metres per scene unit (for a bundle of arbitrary scale)", low=0.0, low_open=True)
    tasks: str = opt("all", "comma-separated tasks, or all")
    robots: str = opt("all", "comma-separated robots, or all (each task runs on the robots it supports)")
    episodes: int = opt(100, "episodes per (task, robot) pair", low=1)
    worlds: int = opt(25, "parallel worlds", low=1)
    seed: int = opt(0, "reset seed of the first episode", low=0)
    json: bool = opt(False, "print one JSON object with every pair's results as the last line")


def evaluate_pair(cfg: TaskConfig, episodes: int) -> dict:
    """Run `episodes` expert episodes of one task config; success count, rate and timing."""
    t0 = time.perf_counter()
    env = TaskEnv(cfg)
    build_s = time.perf_counter() - t0
    expert = make_expert(env)
    success, steps, seeds = [], [], []
    t1 = time.perf_counter()
    env_steps = 0
    for start in range(0, episodes, env.n):
        round_seeds = cfg.seed + start + np.arange(env.n)
        env.reset(round_seeds)
        expert.reset()
        done = np.zeros(env.n, bool)
        while not done.all():
            _, _, d, _ = env.step(expert.act())
            done = d.numpy()
            env_steps += env.n
        k = min(env.n, episodes - start)
        success += env.success[:k].tolist()
        steps += env.steps[:k].tolist()
        seeds += round_seeds[:k].tolist()
    run_s = time.perf_counter() - t1
    ok = np.array(success)
    return {"task": cfg.task, "robot": env.profile.name, "episodes": len(ok), "successes": int(ok.sum()),
            "success_rate": float(ok.mean()), "failed_seeds": [s for s, o in zip(seeds, ok, strict=True) if not o],
            "mean_steps_success": float(np.mean(np.array(steps)[ok])) if ok.any() else None,
            "control_dt": cfg.control_dt, "base": env.base.round(4).tolist(), "solver": env.world.cfg.solver,
            "build_s": round(build_s, 1), "run_s": round(run_s, 1),
            "env_steps_per_s": round(env_steps / max(run_s, 1e-9), 1)}


def selected_pairs(tasks: str, robots: str) -> list[tuple[str, str]]:
    """The supported (task, robot) pairs that `tasks` and `robots` (comma lists or "all") select."""
    from policies.tasks.robots import robot_name

    want_t = None if tasks == "all" else {t.strip() for t in tasks.split(",")}
    want_r = None if robots == "all" else {robot_name(r) for r in robots.split(",")}
    pairs = [(t, r) for t, r in task_robot_pairs()
             if (want_t is None or t in want_t) and (want_r is None or r in want_r)]
    if not pairs:
        raise InputError(f"no supported (task, robot) pair among tasks {tasks!r} and robots {robots!r}; "
                         f"supported: {', '.join(f'{t}/{r}' for t, r in task_robot_pairs())}")
    return pairs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m policies.experts.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser, EvalConfig)
    try:
        cfg = config_from_namespace(EvalConfig, parser.parse_args(argv))
        quiet_warp()
        results = []
        for task, robot in selected_pairs(cfg.tasks, cfg.robots):
            tc = replace(TaskConfig(), task=task, robot=robot, bundle=cfg.bundle, scale=cfg.scale,
                         worlds=min(cfg.worlds, cfg.episodes), seed=cfg.seed)
            r = evaluate_pair(tc, cfg.episodes)
            results.append(r)
            info(f"{task:<11} {r['robot']:<9} {r['successes']:>4}/{r['episodes']:<4} {100 * r['success_rate']:5.1f} %"
                 f"  build {r['build_s']} s, run {r['run_s']} s ({r['env_steps_per_s']} env-steps/s)"
                 + (f"  failed seeds {r['failed_seeds']}" if r["failed_seeds"] else ""))
    except InputError as e:
        console.print(f"error: {e}", highlight=False, markup=False)
        return 2
    if cfg.json:
        emit_json({"bundle": cfg.bundle, "scale": cfg.scale, "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

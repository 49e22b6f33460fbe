"""`twin eval`: checks before any work, the policy's runtime (PyTorch or its ONNX export), the episode source (this
process or Ray shards), progress, and the report: a success table per style with 95 % Wilson intervals on
stderr, failure videos and results.json in the output folder, and with `--json` one object as the last line
(`success` and `intervals` per style, `held_out_success`, episodes, seconds, episodes/s, env steps/s, ...).
"""
from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from pathlib import Path

from policies.evaluate.config import PolicyEvalConfig
from policies.evaluate.rollout import EpisodeResult, Job, camera_names, execution_mode, frame_steps
from policies.evaluate.styles import HELD_OUT, TRAIN, EvalStyle, parse_styles, wilson_interval
from policies.evaluate.videos import VideoQuota
from twin_kit import InputError, check_parent_writable, emit_json, info, progress

RESULTS_FILE = "results.json"


def check_eval(cfg: PolicyEvalConfig) -> dict:
    """Refuse bad inputs in one line before worlds are built; returns what the run needs (paths, the policy)."""
    from policies.evaluate.runs import EVAL_DIR, ONNX_FILE, resolve_run, trained_instructions, weights_digest
    from policies.pretrained import load_policy
    from policies.record.cameras import rig_of
    from policies.record.rollout import INSTRUCTIONS
    from policies.tasks.registry import get_task
    from policies.tasks.robots import get_profile
    from spatial import read_bundle

    run, policy_dir = resolve_run(cfg.run)
    policy = load_policy(policy_dir, "cpu")
    feats = policy.features
    robot = get_profile(cfg.robot or feats.robot_type or "franka").name
    if feats.robot_type and robot != feats.robot_type:
        raise InputError(f"--robot {cfg.robot}: the policy was trained on {feats.robot_type} data (its state and "
                         f"actions are that robot's joints)")
    get_task(cfg.task, robot)
    trained = trained_instructions(run)
    if trained is not None and INSTRUCTIONS[cfg.task] not in trained[0]:
        raise InputError(f"--task {cfg.task}: the policy was trained on demonstrations of {trained[0][0]!r} "
                         f"({trained[1][0]}), not of {cfg.task}")
    scene = Path(cfg.bundle)
    if not scene.exists():
        raise InputError(f"{scene}: no such scene bundle or mesh file")
    if scene.is_dir() and not read_bundle(scene).metric and cfg.scale is None:
        raise InputError(f"{scene}: the bundle's scale is arbitrary; pass --scale (metres per scene unit)")
    allowed = ("front", rig_of(robot).mount_name)
    for name, (h, w) in zip(camera_names(feats), feats.cameras.values(), strict=True):
        if name not in allowed:
            raise InputError(f"the policy reads a camera {name!r} that {robot} has no recording rig for "
                             f"(cameras: {', '.join(allowed)})")
        if h != w:
            raise InputError(f"the policy's camera {name!r} is {w}x{h}; recorded cameras are square")
    if len({tuple(v) for v in feats.cameras.values()}) > 1:
        raise InputError(f"the policy's cameras have different sizes ({feats.cameras}); the recorder's rig renders "
                         "one size")
    frame_steps(feats.fps, cfg.control_dt)
    parse_styles(cfg.styles)
    execution_mode(cfg.execution, policy.name, policy.config)
    if cfg.ray is not None or cfg.workers > 1:
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise InputError("--ray / --workers need Ray: pip install ray")
        if cfg.ray not in (None, "auto"):
            from policies.record.shards import reachable

            reachable(cfg.ray)
    out = Path(cfg.videos) if cfg.videos else run / EVAL_DIR / cfg.task
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / RESULTS_FILE).is_file())):
        raise InputError(f"--videos {out}: exists and is not an evaluation folder; choose a new or empty one")
    check_parent_writable(out, "--videos")
    spec = {"policy_path": str(policy_dir), "onnx_path": None, "out": str(out), "robot": robot, "policy": policy}
    if cfg.runtime == "onnx":
        from policies.evaluate.export import read_onnx_meta

        path = Path(cfg.onnx) if cfg.onnx else run / ONNX_FILE
        if path.is_file():
            meta = read_onnx_meta(path)
            if meta["type"] != policy.name or meta["weights_sha256"] != weights_digest(policy_dir):
                raise InputError(f"{path}: was exported from other weights than {policy_dir}'s; export again "
                                 f"(twin export-policy {cfg.run} --onnx)")
            spec["onnx_path"] = str(path)
        elif cfg.onnx:
            raise InputError(f"--onnx {path}: no such file")
    return spec


def open_runtime(cfg: PolicyEvalConfig, spec: dict):
    """(runtime, features, config, styles) in this process: the loaded policy, or an onnxruntime session."""
    from policies.configuration import config_from_json
    from policies.evaluate.runtime import OnnxRuntime, TorchRuntime
    from policies.features import PolicyFeatures
    from policies.registry import config_class

    styles = parse_styles(cfg.styles)
    if cfg.runtime == "onnx":
        rt = OnnxRuntime(spec["onnx_path"], cfg.threads)
        config = config_from_json(config_class(rt.kind), rt.meta["config"], str(rt.path))
        return rt, PolicyFeatures.from_json(rt.meta["features"]), config, styles
    policy = spec.get("policy")
    if policy is None:
        from policies.pretrained import load_policy

        policy = load_policy(spec["policy_path"], cfg.device)
    policy = policy.to(cfg.device).eval()
    return TorchRuntime(policy, cfg.threads, cfg.device), policy.features, policy.config, styles


def run_eval(cfg: PolicyEvalConfig, json_out: bool = False) -> int:
    """Evaluate `cfg.episodes` episodes per style (see the module doc)."""
    from twin_kit import quiet_warp

    t0 = time.perf_counter()
    spec = check_eval(cfg)
    cfg = dataclasses.replace(cfg, robot=spec["robot"])  # resolved once, for every worker
    quiet_warp()
    styles = parse_styles(cfg.styles)
    jobs = [Job(s, k) for s in range(len(styles)) for k in range(cfg.episodes)]
    sharded = cfg.ray is not None or cfg.workers > 1
    policy = spec["policy"]
    where = f"{cfg.ray} (Ray)" if cfg.ray else f"{cfg.workers} local workers" if sharded else "1 process"
    info(f"evaluating the {policy.name} policy of {spec['policy_path']} ({cfg.runtime}) on {cfg.task} with "
         f"{spec['robot']} in {cfg.bundle}: {cfg.episodes} episodes x {len(styles)} "
         f"style{'s' if len(styles) > 1 else ''} "
         f"({', '.join(s.name for s in styles)}), seeds {cfg.seed}-{cfg.seed + cfg.episodes - 1}, on {where}")
    results: list[EpisodeResult] = []
    build_s = 0.0
    with tempfile.TemporaryDirectory(prefix="twin-eval-") as tmp:
        if cfg.runtime == "onnx" and spec["onnx_path"] is None:
            from policies.evaluate.export import export_onnx
            from policies.evaluate.runs import weights_digest

            info("no ONNX export of this policy yet: exporting it into a temporary file")
            spec["onnx_path"] = export_onnx(policy, Path(tmp) / "policy.onnx",
                                            weights_digest(Path(spec["policy_path"])))["path"]
        films = VideoQuota(cfg.max_videos, cfg.success_videos).any
        if sharded:
            from policies.evaluate.shards import sharded_results

            source = sharded_results(cfg, {k: v for k, v in spec.items() if k != "policy"}, jobs, films)
        else:
            from policies.evaluate.rollout import play

            source = play(cfg, *open_runtime(cfg, spec), jobs, films)
        t_loop = time.perf_counter()
        with progress(json_out) as bar:
            task = bar.add_task("eval", total=len(jobs), status="building worlds")
            ok = 0
            try:
                for item in source:
                    if isinstance(item, float):
                        build_s = max(build_s, item)
                        continue
                    results.append(item)
                    ok += item.success
                    bar.update(task, advance=1, status=f"{ok}/{len(results)} succeeded")
            finally:
                if hasattr(source, "close"):
                    source.close()
        loop_s = time.perf_counter() - t_loop
    summary = summarise(cfg, styles, results, spec, time.perf_counter() - t0, max(loop_s - build_s, 1e-9), build_s)
    summary["videos"] = write_outputs(Path(spec["out"]), results, summary, cfg.max_videos,
                                       cfg.success_videos)
    print_table(styles, summary)
    info(f"{len(results)} episodes in {summary['seconds']:.1f} s ({summary['episodes_per_s']:.2f} episodes/s, "
         f"{summary['env_steps_per_s']:.0f} env steps/s after {build_s:.1f} s building); {len(summary['videos'])} "
         f"failure videos and {RESULTS_FILE} in {spec['out']}")
    if json_out:
        emit_json(summary)
    return 0


def summarise(cfg: PolicyEvalConfig, styles: list[EvalStyle], results: list[EpisodeResult], spec: dict,
              seconds: float, run_s: float, build_s: float) -> dict:
    """The run's JSON: per style success rate, Wilson interval, successes and failed seeds; throughput."""
    success, intervals, counts, failed = {}, {}, {}, {}
    for s in styles:
        rs = sorted((r for r in results if r.style == s.name), key=lambda r: r.number)
        k = sum(r.success for r in rs)
        success[s.name] = k / len(rs) if rs else 0.0
        intervals[s.name] = [round(v, 4) for v in wilson_interval(k, len(rs))]
        counts[s.name] = k
        failed[s.name] = [r.seed for r in rs if not r.success]
    families = [s.name for s in styles if not s.vanilla and s.split == HELD_OUT]
    trained = [s.name for s in styles if not s.vanilla and s.split == TRAIN]
    steps = sum(r.steps for r in results)
    return {"success": success, "intervals": intervals, "successes": counts,
            "held_out_success": (sum(success[f] for f in families) / len(families)) if families else None,
            "train_split_success": (sum(success[f] for f in trained) / len(trained)) if trained else None,
            "episodes": cfg.episodes, "total_episodes": len(results), "failed_seeds": failed,
            "seconds": round(seconds, 2), "build_seconds": round(build_s, 2),
            "episodes_per_s": round(len(results) / run_s, 3), "env_steps": steps,
            "env_steps_per_s": round(steps / run_s, 1), "policy": spec["policy"].name, "runtime": cfg.runtime,
            "execution": execution_mode(cfg.execution, spec["policy"].name, spec["policy"].config),
            "task": cfg.task, "robot": spec["robot"], "worlds": cfg.worlds, "seed": cfg.seed, "out": spec["out"]}


def write_outputs(out: Path, results: list[EpisodeResult], summary: dict, keep: int,
                  keep_successes: int = 0) -> list[str]:
    """Kept failure videos (`<style>_episode<k>.mp4`), success videos (`..._success.mp4`) and results.json into
    `out`, replacing an earlier evaluation there as a whole; returns the video paths."""
    from policies.evaluate.videos import kept_videos
    from twin_kit import make_parents, replace_path, staging_dir

    make_parents(out)
    order = {name: j for j, name in enumerate(summary["success"])}  # the table's order of styles
    ranked = sorted(results, key=lambda r: (order[r.style], r.number))
    kept = {id(r) for r in kept_videos(results, keep, keep_successes)}
    names = []
    with staging_dir(out) as tmp:
        for r in [r for r in ranked if id(r) in kept]:
            name = f"{r.style}_episode{r.number:04d}{'_success' if r.success else ''}.mp4"
            (tmp / name).write_bytes(r.video)
            names.append(str(out / name))
        episodes = [{"style": r.style, "episode": r.number, "seed": r.seed, "success": r.success, "steps": r.steps,
                     "frames": r.frames, "style_id": r.style_id, "digest": r.digest} for r in ranked]
        body = {**summary, "videos": names, "episode_results": episodes}
        (tmp / RESULTS_FILE).write_text(json.dumps(body, indent=1) + "\n")
        replace_path(tmp, out)
    return names


def print_table(styles: list[EvalStyle], summary: dict) -> None:
    """The success table on stderr: one row per style, 95 % Wilson intervals."""
    from rich.table import Table

    from twin_kit import console

    n = summary["episodes"]
    table = Table(title=f"{summary['policy']} on {summary['task']} ({summary['robot']}), {n} episodes per style")
    for col in ("style", "successes", "rate", "95 % interval"):
        table.add_column(col, justify="left" if col == "style" else "right")
    for s in styles:
        lo, hi = summary["intervals"][s.name]
        kind = "" if s.vanilla else " (held-out)" if s.split == HELD_OUT else " (train split)"
        table.add_row(s.name + kind, f"{summary['successes'][s.name]}/{n}",
                      f"{100 * summary['success'][s.name]:.0f} %", f"{100 * lo:.0f}-{100 * hi:.0f} %")
    if summary["held_out_success"] is not None:
        table.add_row("held-out mean", "", f"{100 * summary['held_out_success']:.0f} %", "")
    if summary["train_split_success"] is not None:
        table.add_row("train-split mean", "", f"{100 * summary['train_split_success']:.0f} %", "")
    console.print(table)

"""`twin export`: scenes' export of a bundle, plus `--task`: the whole task as one OpenUSD stage for Isaac.

Without --task the verb is scenes' own (`scenes.run_export`, unchanged). With --task it writes one reset of
the task (`--seed`) as `<stem>_<task>_<robot>.usda` (stem: the bundle's USD stage name) and its binary splat
layer beside it: into the bundle (atomically, like scenes' exports) or into --out.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, fields
from pathlib import Path

from policies.tasks.spec import TASK_NAMES
from scenes import ExportConfig
from twin_kit import InputError, opt


@dataclass
class TaskExportConfig(ExportConfig):
    """Options of `twin export`: scenes' formats, and with --task the task stage for Isaac Sim / Isaac Lab."""

    task: str | None = opt(None, "write the task (reach, push, pick_place) as one USD stage: the scan (splats, "
                                 "convex collision pieces), the task objects as rigid bodies and the robot as a "
                                 "UsdPhysics articulation, at the reset of --seed (implies --usd)", choices=TASK_NAMES)
    robot: str = opt("franka", "with --task: the robot (franka; so101 for reach and pick_place; g1 for reach)")
    scale: float | None = opt(None, "with --task: metres per scene unit (required when the bundle's scale is "
                                    "arbitrary)", low=0.0, low_open=True)
    seed: int = opt(0, "with --task: the reset (robot base spot, object poses) the stage holds", low=0)


SCENE_ONLY = ("usdz", "ply", "glb", "colmap", "nerfstudio")   # formats --task does not write


def run_task_export(cfg: TaskExportConfig, json_out: bool = False) -> int:
    """`twin export`: scenes' export without --task, else the task stage."""
    if cfg.task is None:
        from scenes import run_export

        base = ExportConfig(**{f.name: getattr(cfg, f.name) for f in fields(ExportConfig)})
        return run_export(base, json_out)
    return _export_task(cfg, json_out)


def _check(cfg: TaskExportConfig) -> None:
    """One-line errors, before any work, for what a task export cannot do."""
    from policies.tasks.registry import get_task
    from policies.tasks.robots import get_profile
    from spatial import read_bundle

    others = [f"--{f}" for f in SCENE_ONLY if getattr(cfg, f)]
    if others:
        raise InputError(f"--task writes the task's USD stage only; export {' '.join(others)} without --task")
    if cfg.approximation != "auto" or cfg.movable:
        raise InputError("--approximation and --movable are scene options; a task stage collides the scan as its "
                         "convex pieces and makes the task objects rigid bodies itself")
    get_profile(cfg.robot)                            # a robot without a task profile
    get_task(cfg.task, cfg.robot)                     # a task that does not run on it
    b = read_bundle(cfg.bundle)                       # missing or damaged bundle
    if cfg.scale is None and not b.metric:
        raise InputError(f"{b.root}: the bundle's scale is arbitrary; pass --scale (metres per scene unit)")
    if cfg.out is not None:
        from twin_kit import check_output_dir

        real, root = Path(cfg.out).resolve(), b.root.resolve()
        if real == root or root in real.parents:
            raise InputError(f"--out {cfg.out}: is inside the bundle; omit --out to add the stage to the bundle")
        check_output_dir(cfg.out, merge=True, what="--out")


def stage_name(root: Path, task: str, robot: str) -> Path:
    """Where a task stage goes in `root`: beside the scene stage, named after it, the task and the robot."""
    from spatial import BundlePaths

    scene = BundlePaths(root).usd_stage
    return scene.with_name(f"{scene.stem}_{task}_{robot}{scene.suffix}")


def _export_task(cfg: TaskExportConfig, json_out: bool) -> int:
    from contextlib import nullcontext

    from policies.export.stage import task_env, write_task_stage
    from policies.tasks.robots import get_profile
    from policies.tasks.spec import TaskConfig
    from scenes import read_splats_ply
    from spatial import read_bundle, updating_bundle
    from twin_kit import emit_json, info, warn

    _check(cfg)
    t0 = time.perf_counter()
    b = read_bundle(cfg.bundle)
    robot = get_profile(cfg.robot).name
    info(f"building the {cfg.task} task with {robot} in {b.root} (reset of seed {cfg.seed}) ...")
    env = task_env(TaskConfig(task=cfg.task, bundle=str(b.root), robot=robot, scale=cfg.scale), cfg.seed)
    g = read_splats_ply(b.paths.splats) if b.paths.splats.exists() else None
    if g is None:
        warn(f"{b.root}: no splats.ply; the task stage holds the collision pieces but no splats")
    cameras = b.cameras if cfg.cameras else None
    doc = f"Twin task {cfg.task} with {robot} in {b.root.name}, reset seed {cfg.seed}"
    final_root = Path(cfg.out) if cfg.out is not None else b.root
    target = updating_bundle(b.root) if cfg.out is None else nullcontext((final_root, None))
    if cfg.out is not None:
        final_root.mkdir(parents=True, exist_ok=True)
    with target as (dst, manifest):
        files, summary = write_task_stage(stage_name(dst, cfg.task, robot), env, g, cameras, doc)
        written = {"usd": str(final_root / files[0].name)}
        if len(files) > 1:
            written["usd_splats"] = str(final_root / files[1].name)
        if manifest is not None:
            manifest.setdefault("exports", {}).update({f"task_{k}": Path(v).name for k, v in written.items()})
    seconds = time.perf_counter() - t0
    for kind, path in written.items():
        info(f"{kind}: {path}")
    info(f"{summary['links']} links, {summary['joints']} joints, objects {', '.join(summary['object_positions'])}, "
         f"{summary['pieces']} collision pieces ({seconds:.1f} s)")
    if json_out:
        emit_json({"written": written, **summary, "seconds": round(seconds, 2)})
    return 0

"""`twin record`: checks before any work, the episode source (this process, or Ray shards), the dataset written
in episode order, progress, and the summary (`--json`: expert_success, episodes, frames, seconds, dataset).

A Ctrl-C stops the run between files: every finished episode stays in a valid dataset, a one-line message says
how many, and the exit code is 130. A full disk (or any write failure) ends it with the writer's one-line
error and exit code 2, the dataset again holding every episode written before.
"""
from __future__ import annotations

import time
from pathlib import Path

from policies.datasets.layout import INFO_PATH
from policies.record.config import RecordConfig, camera_list, family_list, steps_per_frame
from twin_kit import InputError, Prefetch, check_parent_writable, destination_lock, emit_json, info, progress


def check_record(cfg: RecordConfig, restyler_given: bool = False) -> int:
    """Refuse bad inputs in one line before anything is built; returns the first episode number (the
    dataset's episode count when appending, else 0). `restyler_given`: the caller brings its own restyler."""
    from policies.record.cameras import rig_of
    from policies.tasks.registry import get_task
    from policies.tasks.robots import get_profile
    from spatial import read_bundle

    scene = Path(cfg.bundle)
    if not scene.exists():
        raise InputError(f"{scene}: no such scene bundle or mesh file")
    if scene.is_dir():
        bundle = read_bundle(scene)
        if not bundle.metric and cfg.scale is None:
            raise InputError(f"{scene}: the bundle's scale is arbitrary; pass --scale (metres per scene unit)")
    profile = get_profile(cfg.robot)
    get_task(cfg.task, profile.name)
    cams = camera_list(cfg, rig_of(profile.name).mount_name)
    steps_per_frame(cfg)
    family_list(cfg)
    if cfg.restyle != "none" and not cams:
        raise InputError(f"--restyle {cfg.restyle} needs cameras (--cameras is none)")
    if cfg.restyle == "cosmos" and not cfg.cosmos_weights and not restyler_given:
        raise InputError("--restyle cosmos needs --cosmos-weights (a local Cosmos-Transfer2.5 diffusers folder)")
    if cfg.ray is not None or cfg.workers > 1:
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise InputError("--ray / --workers need Ray: pip install ray")
        if cfg.ray not in (None, "auto"):
            from policies.record.shards import reachable

            reachable(cfg.ray)
    out = Path(cfg.out)
    if out.resolve() == scene.resolve() or scene.resolve() in out.resolve().parents:
        raise InputError(f"--out {out}: is inside the scene bundle; write the dataset elsewhere")
    if (out / INFO_PATH).is_file():
        if not cfg.append:
            raise InputError(f"--out {out}: already holds a LeRobot dataset (pass --append to continue it, or "
                             "choose a new folder)")
        from policies.datasets import read_dataset

        return read_dataset(out).total_episodes
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"--out {out}: exists and is not a LeRobot dataset; choose a new or empty folder")
    check_parent_writable(out, "--out")
    return 0


def episode_source(cfg: RecordConfig, numbers: list[int], restyler=None):
    """Layouts and episodes of `numbers`: from Ray shards with --ray or --workers > 1, else this process."""
    if cfg.ray is not None or cfg.workers > 1:
        if restyler is not None:
            raise InputError("a restyler object cannot be shipped to workers; record in one process")
        from policies.record.shards import sharded_episodes

        return sharded_episodes(cfg, numbers)
    from policies.record.rollout import record_episodes

    # simulate and render the next episodes in a background thread while this one restyles and writes the last
    # (the two halves take about the same time, one core each)
    return Prefetch(record_episodes(cfg, numbers, restyler, defer_restyle=True), depth=2, name="record-worlds")


def run_record(cfg: RecordConfig, json_out: bool = False, restyler=None) -> int:
    """Record `cfg.episodes` expert episodes into the dataset at `cfg.out` (see the module doc). `restyler`:
    a ready `Restyler` (e.g. a Cosmos pipeline built in memory) instead of the one `cfg.restyle` names."""
    from twin_kit import quiet_warp

    t0 = time.perf_counter()
    first = check_record(cfg, restyler is not None)
    quiet_warp()  # keep stdout for the JSON result
    from policies.record.rollout import Layout
    from policies.record.sink import OrderedSink

    numbers = list(range(first, first + cfg.episodes))
    where = f"{cfg.ray} (Ray)" if cfg.ray else f"{cfg.workers} local workers" if cfg.workers > 1 else "1 process"
    info(f"recording {cfg.episodes} {cfg.task} episodes of {cfg.robot} in {cfg.bundle} (episodes {numbers[0]}-"
         f"{numbers[-1]}, seeds {cfg.seed + numbers[0]}-{cfg.seed + numbers[-1]}) on {where} -> {cfg.out}")
    written, frames, ok = 0, 0, 0
    failed: list[int] = []
    with destination_lock(cfg.out), progress(json_out) as bar:
        task = bar.add_task("record", total=cfg.episodes, status="building worlds")
        source = episode_source(cfg, numbers, restyler)
        sink = OrderedSink(cfg.out, cfg.append, first)
        try:
            for item in source:
                if isinstance(item, Layout):
                    sink.open(item)
                    continue
                for ep in sink.add(item):
                    written, frames = written + 1, frames + ep.length
                    ok += ep.success
                    if not ep.success:
                        failed.append(ep.number)
                    bar.update(task, advance=1, status=f"{ok}/{written} succeeded")
        except KeyboardInterrupt:
            total = sink.total_episodes
            info(f"interrupted: {cfg.out} keeps its {total} finished episode(s) ({written} from this run)")
            if json_out:
                emit_json(_summary(cfg, written, ok, frames, t0, total, interrupted=True))
            return 130
        finally:
            if isinstance(source, Prefetch):  # a second to stop: Ctrl-C must not wait for a whole episode
                source.close(timeout=1.0)
            elif hasattr(source, "close"):
                source.close()
            sink.close()
    res = _summary(cfg, written, ok, frames, t0, sink.total_episodes)
    fails = ""
    if failed:
        fails = f", failed: episodes {', '.join(map(str, failed[:20]))}{' ...' if len(failed) > 20 else ''}"
    info(f"recorded {written} episodes, {frames} frames in {res['seconds']:.1f} s: {ok} succeeded "
         f"({100 * res['expert_success']:.0f} %){fails}; {cfg.out} holds {res['total_episodes']} episodes")
    if json_out:
        emit_json(res)
    return 0


def _summary(cfg: RecordConfig, written: int, ok: int, frames: int, t0: float, total: int,
             interrupted: bool = False) -> dict:
    seconds = time.perf_counter() - t0
    out = {"expert_success": ok / written if written else 0.0, "episodes": written, "successes": ok,
           "failures": written - ok, "frames": frames, "seconds": round(seconds, 2), "dataset": str(cfg.out),
           "total_episodes": total, "frames_per_s": round(frames / seconds, 2) if seconds > 0 else None,
           "task": cfg.task, "robot": cfg.robot, "fps": cfg.fps}
    if interrupted:
        out["interrupted"] = True
    return out

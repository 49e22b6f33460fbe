"""`twin record`: scripted-expert episodes rendered, restyled and written as a LeRobotDataset v3.0.

Real worlds (Newton + MuJoCo's C core), real sensors (ray-traced robot over the bundle's splats), the real writer;
small: the test bundle (a 1.2 m box with splats, metric), 2 worlds, 32 px cameras, 1 s episodes at 10 fps. The
CLI runs in subprocesses; Ray runs a local 2-CPU instance in this process.
"""
from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from support.small_bundle import make_bundle

from policies import RecordConfig, Recorder, Restyler, episode_style, read_dataset, run_record

REPO = Path(__file__).resolve().parents[2]
PYTHON = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv" / "bin" / "python").exists() else sys.executable
REFERENCE = REPO / "tests" / "support" / "lerobot_reference.py"
SMALL = ["--worlds", "2", "--size", "32", "--episode-s", "1"]     # 10 frames per episode at 10 fps
CAMS = ("observation.images.front", "observation.images.wrist")


def twin(cwd: Path, *args: str, timeout: float = 180, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([PYTHON, "-m", "twin_cli", "record", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env, **kw)


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def error_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.strip()]


def video_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean() / 255.0)


def same_frames(a: dict, b: dict, skip=()) -> list[str]:
    """The keys whose arrays differ (all must be present in both)."""
    assert set(a) == set(b)
    return [k for k in a if k not in skip and not np.array_equal(a[k], b[k])]


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("record")
    make_bundle(d / "scene")
    make_bundle(d / "arbitrary", metric=False)
    return d


@pytest.fixture(scope="module")
def base(work) -> dict:
    """Four pick_place episodes recorded by the CLI in one process (2 worlds: episodes 2 and 3 reuse worlds)."""
    r = twin(work, "scene", "--out", "datasets/base", "--episodes", "4", *SMALL, "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    return {"root": work / "datasets" / "base", "json": last_json(r.stdout)}


def test_cli_records_a_dataset_both_readers_read(base, work):
    res, root = base["json"], base["root"]
    assert res["episodes"] == 4 and res["dataset"] == "datasets/base" and res["seconds"] > 0
    assert 0.0 <= res["expert_success"] <= 1.0 and res["frames"] == 40
    view = read_dataset(root)
    assert view.version == "v3.0" and view.total_episodes == 4 and view.total_frames == 40 and view.fps == 10
    assert view.robot_type == "franka" and view.tasks == ["pick up the cube and put it in the bin"]
    f = view.spec.features
    assert f["observation.state"].shape == (9,) and f["action"].shape == (9,)
    assert f["observation.state"].names[0] == "panda_joint1" and f["privileged.object_poses"].shape == (2, 7)
    assert [f[k].shape for k in CAMS] == [(32, 32, 3)] * 2
    for e in view.episodes:
        assert e.meta["seed"] == e.index and e.meta["style_id"] == "vanilla"
        fr = view.episode_frames(e.index)
        assert fr["next.done"][-1] and not fr["next.done"][:-1].any()           # done once, on the last frame
        assert bool(fr["next.success"][-1]) == e.meta["success"]               # the dataset says which succeeded
        assert (fr["style_id"] == 0).all() and np.isfinite(fr["privileged.object_poses"]).all()
        assert not np.array_equal(fr["action"][0], fr["action"][-1])           # the expert moved the arm
    assert sum(e.meta["success"] for e in view.episodes) == round(res["expert_success"] * 4)
    # LeRobot's own reader (its metadata, parquet loading and timestamp arithmetic) sees the same frames
    p = subprocess.run([PYTHON, str(REFERENCE), str(root), str(work / "ref")], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    ref = dict(np.load(work / "ref" / "frames.npz"))
    start = 0
    for e in range(4):
        fr, n = view.episode_frames(e), view.episodes[e].length
        for k, v in fr.items():
            assert np.array_equal(ref[k][start:start + n].reshape(v.shape), v), (e, k)
        for k in CAMS:
            assert video_error(ref[k][start:start + n], view.episode_video(e, k)) < 1 / 255
        start += n


def test_append_continues_the_seeds_like_one_run(base, work):
    """2 episodes, then 2 more appended on a single world: the same dataset as 4 in one run (episode k: seed k)."""
    out = work / "datasets" / "two"
    kw = dict(bundle=str(work / "scene"), out=str(out), episodes=2, size=32, episode_s=1.0)
    assert run_record(RecordConfig(**kw, worlds=2)) == 0
    assert run_record(RecordConfig(**kw, worlds=1, append=True)) == 0
    a, b = read_dataset(base["root"]), read_dataset(out)
    assert b.total_episodes == 4 and [e.meta["seed"] for e in b.episodes] == [0, 1, 2, 3]
    assert b.info["total_frames"] == a.info["total_frames"] and b.stats.keys() == a.stats.keys()
    for e in range(4):
        assert not same_frames(a.episode_frames(e), b.episode_frames(e))
        for k in CAMS:
            assert video_error(a.episode_video(e, k), b.episode_video(e, k)) < 1 / 255


def test_ray_workers_record_the_same_content(base, work):
    """A local Ray instance of 2 CPUs: 2 shards (episodes 0, 2 and 1, 3) on their own worlds, merged in episode
    order: frames and actions equal the single process's exactly, videos within codec tolerance."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        cfg = RecordConfig(bundle=str(work / "scene"), out=str(work / "datasets" / "ray"), episodes=4, worlds=2,
                           size=32, episode_s=1.0, workers=2, ray="auto")
        assert run_record(cfg) == 0
    finally:
        ray.shutdown()
    a, b = read_dataset(base["root"]), read_dataset(work / "datasets" / "ray")
    assert b.total_episodes == 4 and [e.length for e in b.episodes] == [e.length for e in a.episodes]
    for e in range(4):
        assert a.episodes[e].meta == b.episodes[e].meta
        fa, fb = a.episode_frames(e), b.episode_frames(e)
        assert not same_frames(fa, fb)
        for k in CAMS:
            assert video_error(a.episode_video(e, k), b.episode_video(e, k)) < 1 / 255


def test_procedural_restyle_changes_appearance_only(base, work):
    """Each episode gets the style drawn from its seed (recorded with it); state, actions and poses are those of
    the unstyled recording, episode for episode, whatever world ran it."""
    cfg = RecordConfig(bundle=str(work / "scene"), out="unused", size=32, episode_s=1.0, worlds=2,
                       restyle="procedural")
    rec = Recorder(cfg, 2)
    styled = {e.number: e for e in rec.run([3, 1])}
    view = read_dataset(base["root"])
    for k, ep in styled.items():
        style = episode_style(k, "procedural")
        assert ep.style_id == style.style_id and ep.style_id.startswith("train-") and ep.style == style.to_json()
        assert (ep.frames["style_id"] == int(ep.style_id.split("-")[1], 16)).all()
        plain = view.episode_frames(k)
        assert not same_frames({x: plain[x] for x in ep.frames}, ep.frames, skip=("style_id",))
        for cam in CAMS:
            assert video_error(ep.videos[cam], view.episode_video(k, cam)) > 10 / 255
    again = next(iter(rec.run([1])))                 # the same world, after another episode: the same frames
    assert all(np.array_equal(again.videos[c], styled[1].videos[c]) for c in CAMS)
    other = next(iter(Recorder(replace(cfg, style_variant=1), 1).run([1])))  # another look at the same episode
    assert other.style_id == episode_style(1, "procedural", variant=1).style_id != styled[1].style_id
    assert not same_frames(styled[1].frames, other.frames, skip=("style_id",))
    assert all(video_error(other.videos[c], styled[1].videos[c]) > 5 / 255 for c in CAMS)


def test_every_held_out_family_changes_what_the_cameras_see(work):
    """Each held-out family on its own visibly changes a recorded episode (same seed, same motion) in the small
    bundle, where the objects stand on the collision plane with no table in view. A family that changed nothing
    would make its evaluation row a second vanilla row: held-out distractors did in the demo twin until they
    could stand beside the objects."""
    from policies.restyle import STYLE_FAMILIES

    cfg = RecordConfig(bundle=str(work / "scene"), out="unused", task="push", size=48, episode_s=1.0, worlds=1)
    plain = next(iter(Recorder(cfg, 1).run([5]))).videos
    styled = Recorder(replace(cfg, restyle="procedural", style_split="held_out"), 1)
    for family in STYLE_FAMILIES:
        styled.families = (family,)
        ep = next(iter(styled.run([5])))
        assert json.loads(ep.style)[family] is not None and ep.style_id.startswith("held_out-"), family
        changed = {c: float((np.abs(ep.videos[c].astype(int) - plain[c]).max(-1) > 24).mean()) for c in CAMS}
        assert max(changed.values()) > 0.005, (family, changed)   # object_texture, the smallest: 1.6 %


def test_cosmos_restyle_writes_the_dataset(base, work):
    """Cosmos-Transfer through the recorder's one restyle call: a tiny random pipeline (CPU), prompts as
    embeddings; the episodes keep their content and get generated frames."""
    from support.tiny_cosmos import prompt_embeddings, tiny_pipeline

    from policies import CosmosConfig
    from twin_kit import torch_threads

    pos, neg = prompt_embeddings()
    restyler = Restyler("cosmos", CosmosConfig(control="depth", height=32, frames_per_clip=5, overlap=1, steps=1,
                                                     guidance=1.0),
                        tiny_pipeline(), pos, neg)
    out = work / "datasets" / "cosmos"
    cfg = RecordConfig(bundle=str(work / "scene"), out=str(out), episodes=1, size=32, episode_s=1.0, worlds=1,
                       restyle="cosmos")
    with torch_threads(1):
        assert run_record(cfg, restyler=restyler) == 0
    a, b = read_dataset(base["root"]), read_dataset(out)
    assert b.episodes[0].meta["style_id"].startswith("train-")
    assert not same_frames(a.episode_frames(0), b.episode_frames(0), skip=("style_id",))
    for k in CAMS:
        v = b.episode_video(0, k)
        assert v.shape == (10, 32, 32, 3) and video_error(v, a.episode_video(0, k)) > 10 / 255


def test_successes_are_counted_and_flagged(work):
    """reach (no cameras: state only): episodes end when the goal is held, the dataset flags each one."""
    r = twin(work, "scene", "--out", "datasets/reach", "--task", "reach", "--episodes", "3", "--cameras", "none",
             "--worlds", "2", "--episode-s", "3", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    res = last_json(r.stdout)
    view = read_dataset(work / "datasets" / "reach")
    assert not view.spec.video_keys and "privileged.object_poses" not in view.spec.features
    flags = [e.meta["success"] for e in view.episodes]
    assert res["expert_success"] == sum(flags) / 3 and res["successes"] + res["failures"] == 3
    assert any(flags)
    for e in view.episodes:
        fr = view.episode_frames(e.index)
        assert bool(fr["next.success"][-1]) == e.meta["success"] and fr["next.done"][-1]
        if e.meta["success"]:
            assert e.length < 30                                   # ended when the goal was held, not at 3 s


def _ctrl_c_as_in_a_terminal():
    """A child whose SIGINT is not ignored: a shell running the suite in the background ignores SIGINT, and
    children inherit that, so Ctrl-C would never reach them."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_keeps_every_finished_episode(work):
    out = work / "datasets" / "interrupted"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.Popen([PYTHON, "-m", "twin_cli", "record", "scene", "--out", str(out), "--episodes", "100",
                          *SMALL, "--json"], cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=env, preexec_fn=_ctrl_c_as_in_a_terminal)
    t0 = time.time()
    try:
        while time.time() - t0 < 120 and p.poll() is None:
            if (out / "meta" / "info.json").exists() and read_dataset(out).total_episodes >= 1:
                break
            time.sleep(0.2)
        p.send_signal(signal.SIGINT)
        stdout, stderr = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr and any(ln.startswith("interrupted:") for ln in error_lines(stderr))
    res = last_json(stdout)
    view = read_dataset(out)
    assert res["interrupted"] and res["total_episodes"] == view.total_episodes >= 1
    assert view.info["total_episodes"] == view.total_episodes
    for e in view.episodes:                                      # every kept episode is whole
        assert len(view.episode_frames(e.index)["action"]) == e.length == len(view.episode_video(e.index, CAMS[1]))
    assert not [p for p in out.rglob("*") if "staging" in p.name]


def test_full_disk_stops_with_one_line(work):
    """RLIMIT_FSIZE makes a growing dataset file fail (EFBIG, as a full disk would): exit 2, one error line, and
    the dataset keeps the episodes written before."""
    out = work / "datasets" / "full"
    r = twin(work, "scene", "--out", str(out), "--episodes", "40", *SMALL, "--json",
             preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, resource.RLIM_INFINITY)))
    assert r.returncode == 2, r.stderr[-2000:]
    lines = [ln for ln in error_lines(r.stderr) if ln.startswith("error:")]
    assert len(lines) == 1 and "disk full" in lines[0] and "Traceback" not in r.stderr
    kept = read_dataset(out).total_episodes
    assert 1 <= kept < 40 and f"keeps its {kept} finished episode(s)" in lines[0]
    assert last_json(r.stdout)["error"] in lines[0]


@pytest.mark.parametrize("args, message", [
    (["arbitrary"], "scale is arbitrary; pass --scale"),
    (["scene", "--task", "push", "--robot", "so101"], "task 'push' runs on franka, not 'so101'"),
    (["scene", "--robot", "ur5e"], "robot 'ur5e' has no task profile"),
    (["scene", "--cameras", "front,top"], "unknown camera 'top'"),
    (["scene", "--cameras", "front,front"], "names a camera twice"),
    (["scene", "--task", "reach", "--robot", "g1", "--cameras", "wrist"], "unknown camera 'wrist' for robot 'g1'"),
    (["scene", "--fps", "7"], "--fps 7 does not divide the control rate"),
    (["scene", "--restyle", "cosmos"], "needs --cosmos-weights"),
    (["scene", "--restyle", "procedural", "--cameras", "none"], "needs cameras"),
    (["nowhere"], "no such scene bundle"),
    (["scene", "--ray", "127.0.0.1:1"], "no Ray cluster answers there"),
    (["scene", "--ray", "nonsense"], "expected HOST:PORT"),
    (["scene", "--restyle", "procedural", "--style-families", "camera,background", "--style-count", "3"],
     "--style-count 3 exceeds the 2 families"),
], ids=["arbitrary-scale", "pair", "robot", "camera", "camera-twice", "g1-wrist", "fps", "cosmos", "no-cameras",
        "missing", "ray-unreachable", "ray-address", "style-count"])
def test_bad_inputs_exit_2_with_one_line(work, args, message):
    r = twin(work, *args, "--out", "datasets/bad", timeout=60)
    assert r.returncode == 2, r.stderr[-2000:]
    lines = error_lines(r.stderr)
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], lines
    assert not (work / "datasets" / "bad").exists()


def test_an_existing_dataset_needs_append(base, work):
    r = twin(work, "scene", "--out", "datasets/base", timeout=60)
    assert r.returncode == 2 and "already holds a LeRobot dataset (pass --append" in r.stderr
    assert read_dataset(base["root"]).total_episodes == 4

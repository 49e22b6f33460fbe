"""LeRobotDataset v3.0 written by Twin: read back by Twin's reader and by LeRobot's own (`lerobot-dataset`),
frame for frame; appending, interruption, a failing disk and file rolling keep the dataset valid; v2.1 reads."""
from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from policies import DatasetSpec, DatasetWriter, Feature, VideoEncoding, read_dataset, standard_spec
from policies.datasets.stats import QUANTILE_KEYS, column_stats, image_stats
from twin_kit import InputError

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / "tests" / "support" / "lerobot_reference.py"
H, W = 48, 64
CAM = "observation.images.front"
LENGTHS = (12, 9, 15)
TASKS = ("pick up the cube", "put the cube in the bin", "pick up the cube")
HQ = VideoEncoding(crf=10)  # high quality, so decoded frames are close to what was written


def make_spec() -> DatasetSpec:
    extra = {
        "observation.environment_state": Feature("float32", (7,), ["x", "y", "z", "qw", "qx", "qy", "qz"]),
        "privileged.object_poses": Feature("float32", (2, 7)),
        "style_id": Feature("int64", (1,)),
    }
    return standard_spec(10, "so101", [f"joint{i}" for i in range(6)], [f"joint{i}" for i in range(6)],
                         {"front": (H, W)}, extra=extra)


def make_episode(e: int, length: int) -> tuple[dict, dict]:
    """Deterministic frames for episode e: random state/action, smooth moving camera images."""
    rng = np.random.default_rng(100 + e)
    t = np.arange(length)[:, None, None]
    yy, xx = np.mgrid[0:H, 0:W]
    r = 128 + 90 * np.sin((xx[None] + 2.0 * t + 7 * e) / 11.0)
    g = 128 + 90 * np.cos((yy[None] - 1.5 * t) / 9.0)
    b = np.broadcast_to(60 + 2.0 * xx[None] + 5 * e, r.shape)
    video = np.clip(np.stack([r, g, b], axis=-1), 0, 255).astype(np.uint8)
    frames = {
        "observation.state": rng.normal(size=(length, 6)).astype(np.float32),
        "action": rng.normal(size=(length, 6)).astype(np.float32),
        "next.reward": (np.arange(length) == length - 1).astype(np.float32),
        "next.done": np.arange(length) == length - 1,
        "observation.environment_state": rng.normal(size=(length, 7)).astype(np.float32),
        "privileged.object_poses": rng.normal(size=(length, 2, 7)).astype(np.float32),
        "style_id": np.full(length, 3 + e, dtype=np.int64),
    }
    return frames, {CAM: video}


def write_dataset(root: Path, lengths=LENGTHS, **kw) -> None:
    with DatasetWriter(root, make_spec(), video=HQ, **kw) as w:
        for e, n in enumerate(lengths):
            frames, videos = make_episode(e, n)
            assert w.add_episode(frames, videos, TASKS[e % len(TASKS)], {"success": e != 1, "seed": e}) == e


def run_reference(pairs: list[tuple[Path, Path, Path | None]]) -> list[dict]:
    """LeRobot's reader (tests/support/lerobot_reference.py) on each dataset, in parallel processes."""
    procs = [subprocess.Popen([sys.executable, str(REFERENCE), str(root), str(out)] + ([str(raw)] if raw else []),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for root, out, raw in pairs]
    results = []
    for p, (_, out, _) in zip(procs, pairs, strict=True):
        stdout, stderr = p.communicate(timeout=300)
        assert p.returncode == 0, (f"LeRobot's reader failed (it needs `pip install 'datasets>=4,<4.2'` and "
                                   f"`pip install --no-deps lerobot-dataset==0.4.4`, as make setup does):\n"
                                   f"{stderr[-3000:]}")
        frames = dict(np.load(out / "frames.npz"))
        results.append({"frames": frames, **json.loads((out / "meta.json").read_text())})
    return results


def expected_columns(lengths=LENGTHS) -> dict[str, np.ndarray]:
    """Every column as the whole dataset should hold it (index features included)."""
    cols: dict[str, list] = {}
    start = 0
    for e, n in enumerate(lengths):
        frames, videos = make_episode(e, n)
        frames = {**frames, CAM: videos[CAM], "timestamp": (np.arange(n) / 10).astype(np.float32),
                  "frame_index": np.arange(n), "episode_index": np.full(n, e), "index": np.arange(start, start + n),
                  "task_index": np.full(n, sorted(set(TASKS), key=TASKS.index).index(TASKS[e % len(TASKS)]))}
        for k, v in frames.items():
            cols.setdefault(k, []).append(v)
        start += n
    return {k: np.concatenate(v) for k, v in cols.items()}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """One dataset with LeRobot's default file sizes, one with tiny limits (every file rolls over), both read by
    LeRobot's own reader."""
    base = tmp_path_factory.mktemp("lerobot")
    plain, rolled = base / "plain", base / "rolled"
    write_dataset(plain)
    write_dataset(rolled, chunks_size=2, data_files_size_in_mb=1e-4, video_files_size_in_mb=1e-4)
    raw = base / "raw.npz"
    np.savez(raw, **{f"{e}/{CAM}": make_episode(e, n)[1][CAM] for e, n in enumerate(LENGTHS)})
    refs = run_reference([(plain, base / "ref-plain", raw), (rolled, base / "ref-rolled", None)])
    return {"plain": plain, "rolled": rolled, "ref": refs[0], "ref_rolled": refs[1]}


def video_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean() / 255.0)


# ---------------------------------------------------------------------------------------------- layout, round trip

def test_v3_layout_and_round_trip(written):
    root = written["plain"]
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert files == ["data/chunk-000/file-000.parquet", "meta/episodes/chunk-000/file-000.parquet",
                     "meta/info.json", "meta/stats.json", "meta/tasks.parquet",
                     f"videos/{CAM}/chunk-000/file-000.mp4"]
    info = json.loads((root / "meta/info.json").read_text())
    assert list(info) == ["codebase_version", "robot_type", "total_episodes", "total_frames", "total_tasks",
                          "chunks_size", "data_files_size_in_mb", "video_files_size_in_mb", "fps", "splits",
                          "data_path", "video_path", "features"]
    assert info["codebase_version"] == "v3.0" and info["robot_type"] == "so101" and info["fps"] == 10
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (3, sum(LENGTHS), 2)
    assert info["splits"] == {"train": "0:3"}
    assert list(info["features"])[-5:] == ["timestamp", "frame_index", "episode_index", "index", "task_index"]
    vinfo = info["features"][CAM]["info"]
    assert vinfo["video.codec"] == "av1" and vinfo["video.pix_fmt"] == "yuv420p"
    assert (vinfo["video.height"], vinfo["video.width"], vinfo["video.fps"]) == (H, W, 10)
    schema = pq.read_schema(root / "data/chunk-000/file-000.parquet")
    state = schema.field("observation.state").type  # datasets' List(float32, length=6)
    assert pa.types.is_fixed_size_list(state) and state.list_size == 6 and state.value_type == pa.float32()
    assert schema.field("next.done").type == "bool" and schema.field("index").type == "int64"
    assert b"huggingface" in schema.metadata

    view = read_dataset(root)
    assert view.version == "v3.0" and view.total_episodes == 3 and view.total_frames == sum(LENGTHS)
    assert view.tasks == ["pick up the cube", "put the cube in the bin"]
    want = expected_columns()
    start = 0
    for e, n in enumerate(LENGTHS):
        ep = view.episodes[e]
        assert (ep.length, ep.from_index, ep.to_index, ep.tasks) == (n, start, start + n, [TASKS[e]])
        assert ep.meta == {"success": e != 1, "seed": e}
        got = view.episode_frames(e)
        for k, v in got.items():
            assert np.array_equal(v, want[k][start:start + n]), k
        assert video_error(view.episode_video(e, CAM), want[CAM][start:start + n]) < 3 / 255
        start += n


def test_stats_match_the_frames(written):
    """stats.json: LeRobot's per-feature statistics over all frames (cameras: per channel over sampled frames)."""
    view = read_dataset(written["plain"])
    want = expected_columns()
    state = column_stats(want["observation.state"])
    got = view.stats["observation.state"]
    for k in ("min", "max", "mean", "std"):
        assert np.allclose(got[k], state[k], atol=1e-6), k
    assert got["count"].tolist() == [sum(LENGTHS)]
    assert set(got) == {"min", "max", "mean", "std", "count", *QUANTILE_KEYS}
    assert np.all(got["q01"] <= got["q50"]) and np.all(got["q50"] <= got["q99"])
    cam = view.stats[CAM]
    assert cam["mean"].shape == (3, 1, 1) and cam["count"].tolist() == [sum(LENGTHS)]  # short episodes: all frames
    pixels = want[CAM].reshape(-1, 3) / 255.0
    assert np.allclose(cam["mean"].ravel(), pixels.mean(axis=0), atol=1e-9)
    assert np.allclose(cam["std"].ravel(), pixels.std(axis=0), atol=1e-9)  # the true std, not LeRobot 0.4's 0
    one = view.episodes[0].stats[CAM]
    assert np.allclose(one["mean"], image_stats(make_episode(0, LENGTHS[0])[1][CAM])["mean"])


# ---------------------------------------------------------------------------------------------- LeRobot's reader

def test_lerobot_reader_sees_the_same_frames(written):
    ref = written["ref"]
    assert ref["info"]["codebase_version"] == "v3.0"
    assert (ref["total_episodes"], ref["total_frames"], ref["len"]) == (3, sum(LENGTHS), sum(LENGTHS))
    assert ref["tasks"] == ["pick up the cube", "put the cube in the bin"]
    want = expected_columns()
    frames = ref["frames"]
    assert set(frames) == set(want)
    for k, v in want.items():
        if k == CAM:
            assert frames[k].shape == v.shape
            assert video_error(frames[k], v) < 3 / 255
        else:
            assert np.array_equal(frames[k].reshape(v.shape), v), k  # exactly what Twin wrote
    assert ref["frame_tasks"] == [TASKS[e] for e, n in enumerate(LENGTHS) for _ in range(n)]
    ends = np.cumsum([0, *LENGTHS]) / 10
    for e, ep in enumerate(ref["episodes"]):
        assert (ep["episode_index"], ep["length"], ep["tasks"]) == (e, LENGTHS[e], [TASKS[e]])
        assert np.isclose(ep[f"videos/{CAM}/from_timestamp"], ends[e])
        assert np.isclose(ep[f"videos/{CAM}/to_timestamp"], ends[e + 1])
    # Twin's reader decodes the same frames as the PyAV decode under LeRobot's timestamp logic.
    view = read_dataset(written["plain"])
    twin = np.concatenate([view.episode_video(e, CAM) for e in range(3)])
    assert np.array_equal(twin, frames[CAM])


def test_stats_agree_with_lerobots_own_computation(written):
    """LeRobot's compute_episode_stats + aggregate_stats on the frames it read give Twin's stats.json."""
    ref = written["ref"]
    ours = json.loads((written["plain"] / "meta/stats.json").read_text())
    assert set(ours) == set(ref["reference_stats"]) == set(ref["stats"])
    for feature, stats in ref["reference_stats"].items():
        for key, value in stats.items():
            mine = np.asarray(ours[feature][key], dtype=np.float64)
            theirs = np.asarray(value, dtype=np.float64)
            assert mine.shape == theirs.shape, (feature, key)
            if feature == CAM and key == "std":  # LeRobot 0.4 squares uint8 pixels (overflow); Twin does not
                continue
            if key in QUANTILE_KEYS:  # histogram estimates: within one of the 5000 bins (LeRobot bins float32
                lo, hi = (np.asarray(ours[feature][k], dtype=np.float64) for k in ("min", "max"))  # in float32)
                tol = (hi - lo) / 5000 + 1e-9
                assert np.all(np.abs(mine - theirs) <= tol), (feature, key, mine, theirs)
            else:
                assert np.allclose(mine, theirs, atol=1e-6, rtol=1e-5), (feature, key, mine, theirs)


def test_file_rolling_keeps_the_content(written):
    """Tiny size limits: every episode gets its own data, video and episodes file (2 files per chunk); the
    frames read back are identical, by Twin's reader and by LeRobot's."""
    root = written["rolled"]
    for kind in ("data", f"videos/{CAM}", "meta/episodes"):
        names = sorted(str(p.relative_to(root / kind)) for p in (root / kind).rglob("*.*"))
        ext = "mp4" if kind.startswith("videos") else "parquet"
        assert names == [f"chunk-000/file-000.{ext}", f"chunk-000/file-001.{ext}", f"chunk-001/file-000.{ext}"]
    plain, rolled = read_dataset(written["plain"]), read_dataset(root)
    assert [(e.data_path.parent.name, e.data_path.name) for e in rolled.episodes] == [
        ("chunk-000", "file-000.parquet"), ("chunk-000", "file-001.parquet"), ("chunk-001", "file-000.parquet")]
    for e in range(3):
        a, b = plain.episode_frames(e), rolled.episode_frames(e)
        assert all(np.array_equal(a[k], b[k]) for k in a)
        assert np.array_equal(plain.episode_video(e, CAM), rolled.episode_video(e, CAM))
        assert rolled.episodes[e].videos[CAM][1] == 0.0  # each episode starts its own mp4
    ref_plain, ref_rolled = written["ref"]["frames"], written["ref_rolled"]["frames"]
    assert all(np.array_equal(ref_plain[k], ref_rolled[k]) for k in ref_plain)


def test_twin_reads_and_continues_a_dataset_lerobot_wrote(tmp_path):
    """LeRobot's own writer records two episodes; Twin reads them frame for frame and appends a third (same
    files grow); LeRobot's reader then reads all three. (LeRobot 0.4's writer cannot store user features of
    shape (1,), so this spec has none besides the index features.)"""
    full = make_spec()
    spec = DatasetSpec(full.fps, full.robot_type, {k: f for k, f in full.features.items() if f.shape != (1,)})
    root = tmp_path / "lerobot-written"
    episodes = {e: make_episode(e, n) for e, n in enumerate(LENGTHS)}
    arrays = {f"{e}/{k}": v for e in (0, 1) for part in episodes[e] for k, v in part.items() if k in spec.features}
    np.savez(tmp_path / "episodes.npz", **arrays)
    recorded = {k: v for k, v in spec.info_features().items() if k in spec.recorded_keys or k == CAM}
    (tmp_path / "spec.json").write_text(json.dumps({"fps": spec.fps, "robot_type": spec.robot_type,
                                                    "features": recorded, "tasks": list(TASKS[:2])}))
    r = subprocess.run([sys.executable, str(REFERENCE), "--write", str(root), str(tmp_path / "episodes.npz"),
                        str(tmp_path / "spec.json")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"LeRobot's writer failed:\n{r.stderr[-3000:]}"

    view = read_dataset(root)
    assert view.total_episodes == 2 and view.tasks == list(TASKS[:2]) and view.spec.mismatch(spec) is None
    for e in (0, 1):
        frames, videos = episodes[e]
        got = view.episode_frames(e)
        for k in spec.recorded_keys:
            assert np.array_equal(got[k], frames[k]), k
        assert video_error(view.episode_video(e, CAM), videos[CAM]) < 4 / 255  # LeRobot's crf 30 encode
    state = view.stats["observation.state"]
    both = np.concatenate([episodes[e][0]["observation.state"] for e in (0, 1)])
    assert np.allclose(state["mean"], both.mean(axis=0), atol=1e-5) and state["count"].tolist() == [len(both)]

    with DatasetWriter(root, spec, append=True) as w:  # LeRobot's default encode, so the mp4 can grow
        frames, videos = episodes[2]
        assert w.add_episode({k: frames[k] for k in spec.recorded_keys}, videos, TASKS[2]) == 2
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*.mp4")) == [f"videos/{CAM}/chunk-000/file-000.mp4"]
    ref = run_reference([(root, tmp_path / "ref", None)])[0]
    assert ref["total_episodes"] == 3 and ref["len"] == sum(LENGTHS) and ref["tasks"] == list(TASKS[:2])
    want = expected_columns()
    for k in [*spec.recorded_keys, "index", "episode_index", "task_index", "frame_index", "timestamp"]:
        assert np.array_equal(ref["frames"][k].reshape(want[k].shape), want[k]), k
    assert video_error(ref["frames"][CAM], want[CAM]) < 4 / 255


# ---------------------------------------------------------------------------------------------- append

def test_append_continues_indices_and_reuses_tasks(tmp_path):
    root = tmp_path / "ds"
    write_dataset(root, lengths=LENGTHS[:2])
    with DatasetWriter(root, make_spec(), append=True, video=HQ) as w:
        frames, videos = make_episode(2, 7)
        assert w.add_episode(frames, videos, "pick up the cube", {"success": True, "seed": 2}) == 2
        frames, videos = make_episode(3, 5)
        assert w.add_episode(frames, videos, "open the drawer", {"success": False, "seed": 3}) == 3
    view = read_dataset(root)
    assert view.total_episodes == 4 and view.tasks == ["pick up the cube", "put the cube in the bin",
                                                       "open the drawer"]
    f2, f3 = view.episode_frames(2), view.episode_frames(3)
    n01 = sum(LENGTHS[:2])
    assert f2["index"].tolist() == list(range(n01, n01 + 7)) and set(f2["task_index"]) == {0}
    assert f3["index"].tolist() == list(range(n01 + 7, n01 + 12)) and set(f3["task_index"]) == {2}
    assert set(f3["episode_index"]) == {3} and f3["frame_index"].tolist() == list(range(5))
    assert np.array_equal(f3["observation.state"], make_episode(3, 5)[0]["observation.state"])
    path, start, end = view.episodes[3].videos[CAM]
    assert path.name == "file-000.mp4" and np.isclose(start, (n01 + 7) / 10) and np.isclose(end, (n01 + 12) / 10)
    assert video_error(view.episode_video(3, CAM), make_episode(3, 5)[1][CAM]) < 3 / 255
    assert video_error(view.episode_video(0, CAM), make_episode(0, LENGTHS[0])[1][CAM]) < 3 / 255
    info = json.loads((root / "meta/info.json").read_text())
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (4, n01 + 12, 3)
    assert json.loads((root / "meta/stats.json").read_text())["index"]["count"] == [n01 + 12]


def test_append_refusals(tmp_path):
    root = tmp_path / "ds"
    write_dataset(root, lengths=(4,))
    with pytest.raises(InputError, match="already holds a LeRobot dataset"):
        DatasetWriter(root, make_spec())
    other = standard_spec(10, "so101", [f"joint{i}" for i in range(7)], [f"joint{i}" for i in range(6)],
                          {"front": (H, W)})
    with pytest.raises(InputError) as e:
        DatasetWriter(root, other, append=True)
    assert "spec differs" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(InputError, match="fps is 10, not 30"):
        DatasetWriter(root, DatasetSpec(30, "so101", make_spec().features), append=True)
    with DatasetWriter(root, make_spec(), append=True) as w:
        frames, videos = make_episode(1, 4)
        with pytest.raises(InputError, match="episode_meta: keys"):
            w.add_episode(frames, videos, "t", {"success": True})
        with pytest.raises(InputError, match="a str where earlier episodes had a number"):
            w.add_episode(frames, videos, "t", {"success": True, "seed": "x"})
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="not a LeRobot dataset"):
        DatasetWriter(tmp_path / "junk", make_spec())


def test_bad_episodes_are_refused_before_anything_is_written(tmp_path):
    root = tmp_path / "ds"
    with DatasetWriter(root, make_spec(), video=HQ) as w:
        frames, videos = make_episode(0, 6)
        bad = [
            ({**frames, "observation.state": frames["observation.state"][:, :5]}, videos, "expected shape"),
            ({**frames, "action": np.full((6, 6), np.nan)}, videos, "NaN"),
            ({k: v for k, v in frames.items() if k != "action"}, videos, "missing feature 'action'"),
            ({**frames, "gripper": np.zeros(6)}, videos, "'gripper' is not a recorded feature"),
            ({**frames, "style_id": np.full(6, 1.5)}, videos, "cannot be stored as int64"),
            (frames, {CAM: videos[CAM][:5]}, "has 5 frames"),
            (frames, {CAM: videos[CAM].astype(np.float32)}, "uint8"),
            ({**frames, "timestamp": np.arange(6) / 30}, videos, "timestamp must be frame_index / fps"),
        ]
        for f, v, msg in bad:
            with pytest.raises(InputError, match=msg):
                w.add_episode(f, v, "task")
        with pytest.raises(InputError, match="task"):
            w.add_episode(frames, videos, "  ")
        assert w.add_episode(frames, videos, "task") == 0
    assert read_dataset(root).total_episodes == 1
    with pytest.raises(InputError, match="must be even"):
        standard_spec(10, None, ["a"], ["a"], {"cam": (31, 32)})
    with pytest.raises(InputError, match="must not contain '/'"):
        DatasetSpec(10, None, {"a/b": Feature("float32", (1,))})


# ---------------------------------------------------------------------------------------------- interruptions

_RECORDER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from test_lerobot_dataset import HQ, make_episode, make_spec
    from policies import DatasetWriter
    with DatasetWriter({root!r}, make_spec(), video=HQ) as w:
        for e in range(1000):
            frames, videos = make_episode(e, 30)
            w.add_episode(frames, videos, "pick up the cube", {{"success": True, "seed": e}})
            print("done", e, flush=True)
""")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill"])
def test_interrupted_recording_keeps_finished_episodes(tmp_path, sig):
    root = tmp_path / "ds"
    child = subprocess.Popen([sys.executable, "-c", _RECORDER.format(tests=str(Path(__file__).parent), root=str(root))],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # not ignored
    done = 0
    for line in child.stdout:
        done += line.startswith("done")
        if done == 3:
            child.send_signal(sig)  # lands while episode 3 is being encoded or written
            break
    rest, err = child.communicate(timeout=60)
    done += rest.count("done")
    assert child.returncode != 0
    if sig == signal.SIGINT:
        assert "KeyboardInterrupt" in err and "Traceback" in err
    view = read_dataset(root)
    assert done <= view.total_episodes <= done + 1  # the kill may land after a commit, before the print
    for e in range(view.total_episodes):
        frames, videos = make_episode(e, 30)
        got = view.episode_frames(e)
        assert np.array_equal(got["observation.state"], frames["observation.state"])
        assert got["index"].tolist() == list(range(30 * e, 30 * e + 30))
        assert video_error(view.episode_video(e, CAM), videos[CAM]) < 3 / 255
    info = json.loads((root / "meta/info.json").read_text())
    assert info["total_episodes"] == view.total_episodes and info["total_frames"] == 30 * view.total_episodes
    if sig == signal.SIGINT:
        assert not list(root.glob(".staging*")), "Ctrl-C left staging files"
        return
    # After a kill: LeRobot reads the dataset as the kill left it, and the next run continues it (stale
    # staging swept); LeRobot reads that too.
    n = view.total_episodes
    shutil.copytree(root, tmp_path / "as-killed")
    with DatasetWriter(root, make_spec(), append=True, video=HQ) as w:
        assert not list(root.glob(".staging*"))
        frames, videos = make_episode(n, 30)
        assert w.add_episode(frames, videos, "pick up the cube", {"success": True, "seed": n}) == n
    killed, ref = run_reference([(tmp_path / "as-killed", tmp_path / "ref-killed", None),
                                 (root, tmp_path / "ref", None)])
    assert killed["total_episodes"] == n and killed["frames"]["index"].tolist() == list(range(30 * n))
    assert ref["total_episodes"] == n + 1 and ref["len"] == 30 * (n + 1)
    assert ref["frames"]["index"].tolist() == list(range(30 * (n + 1)))
    assert video_error(ref["frames"][CAM][-30:], make_episode(n, 30)[1][CAM]) < 3 / 255


@pytest.mark.parametrize("fails", ["video", "data"])
def test_write_failure_mid_episode_leaves_the_dataset_as_it_was(tmp_path, fails):
    """A real failing write: RLIMIT_FSIZE caps file size, so the mp4 (or, without cameras, the parquet file)
    that grows with episode 2 fails with EFBIG (Python ignores SIGXFSZ) part-way through the episode."""
    assert signal.getsignal(signal.SIGXFSZ) == signal.SIG_IGN
    root = tmp_path / "ds"
    spec = make_spec()
    if fails == "data":
        spec = DatasetSpec(spec.fps, spec.robot_type, {k: f for k, f in spec.features.items() if not f.is_video})

    def episode(e):
        frames, videos = make_episode(e, LENGTHS[e])
        return frames, (videos if fails == "video" else {})

    w = DatasetWriter(root, spec, video=HQ)
    for e in range(2):
        w.add_episode(*episode(e), "pick up the cube", {"success": True, "seed": e})
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    grows = root / (f"videos/{CAM}/chunk-000/file-000.mp4" if fails == "video" else "data/chunk-000/file-000.parquet")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (grows.stat().st_size + 1, hard))
    try:
        with pytest.raises(InputError) as e:
            w.add_episode(*episode(2), "put the cube in the bin", {"success": True, "seed": 2})
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    msg = str(e.value)
    assert "disk full" in msg and "keeps its 2 finished episode(s)" in msg and "\n" not in msg
    after = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert after == before  # nothing changed on disk, no staging left behind
    assert read_dataset(root).total_episodes == 2
    assert w.add_episode(*episode(2), "put the cube in the bin", {"success": True, "seed": 2}) == 2
    w.close()
    view = read_dataset(root)
    assert view.total_episodes == 3 and view.tasks == ["pick up the cube", "put the cube in the bin"]
    assert np.array_equal(view.episode_frames(2)["action"], episode(2)[0]["action"])
    if fails == "video":
        assert video_error(view.episode_video(2, CAM), episode(2)[1][CAM]) < 3 / 255


# ---------------------------------------------------------------------------------------------- v2.1

def test_reads_a_real_v21_dataset(shared_data):
    """The G1 episode (LeRobot v2.1, one of 100 episodes present): 343 frames, 26-D state/action, AV1 video."""
    root = shared_data / "g1_episode"
    view = read_dataset(root)
    assert view.version == "v2.1" and view.fps == 30 and view.robot_type == "Unitree_G1_Inspire"
    assert view.total_episodes == 100 and view.tasks == ["Pick up the yellow bottle on the table."]
    assert [e.index for e in view.episodes if e.available] == [2]
    ep = view.episodes[2]
    assert (ep.length, ep.from_index, ep.to_index) == (343, 872, 1215)
    frames = view.episode_frames(2)
    assert frames["observation.state"].shape == (343, 26) and frames["action"].shape == (343, 26)
    assert frames["index"].tolist() == list(range(872, 1215)) and set(frames["episode_index"]) == {2}
    key = "observation.images.cam_high"
    video = view.episode_video(2, key)
    assert video.shape == (343, 480, 640, 3) and video.dtype == np.uint8
    assert 20 < video.mean() < 235 and video[0].std() > 5  # real picture content, not a blank decode
    with pytest.raises(InputError, match="not in this copy"):
        view.episode_frames(0)
    assert os.path.getsize(ep.videos[key][0]) > 0


def test_image_stats_from_value_counts_equal_the_per_pixel_ones():
    """image_stats counts each channel's 256 values; it must give column_stats' numbers over every pixel."""
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, (7, 40, 24, 3), dtype=np.uint8)
    frames[..., 1] = np.clip(frames[..., 1], 31, 200)        # a channel that never reaches 0 or 255
    frames[..., 2] = 17                                      # a constant channel
    fast = image_stats(frames)
    slow = column_stats(frames.reshape(-1, 3), count=7)
    for key, want in slow.items():
        want = want if key == "count" else want.astype(np.float64).reshape(-1, 1, 1) / 255.0
        assert np.allclose(fast[key], want, rtol=0, atol=1e-12), key

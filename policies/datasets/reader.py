"""Read a LeRobotDataset from disk: v3.0 (what Twin and LeRobot write now) and v2.1 (one file per episode).

`read_dataset(root)` gives a view with the metadata, the episode index, and per-episode access to frames and
camera videos (decoded with PyAV at the episode's timestamps, as LeRobot does). The episode rows are what a
reader trusts: info.json's totals may lag one episode behind after a crash (the writer repairs that).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from policies.datasets import layout
from policies.datasets.spec import DatasetSpec
from policies.datasets.stats import Stats, aggregate_stats, stats_from_json, unflatten_episode_stats
from policies.datasets.tables import column_values, episode_rows, read_parquet, task_list
from policies.datasets.video import TOLERANCE_S, decode_frames
from policies.jsonfile import read_json
from twin_kit import InputError, one_line

_KNOWN_COLUMNS = ("episode_index", "tasks", "length", "dataset_from_index", "dataset_to_index")
_LEGACY = ("v2.0", "v2.1")


@dataclass(frozen=True)
class EpisodeInfo:
    """One episode's row of the index: where its frames and videos are, and its own statistics.

    videos maps a camera key to (mp4 path, from_timestamp, to_timestamp) in seconds into that file.
    meta holds any other per-episode columns (Twin's success flags, seeds, style ids...).
    """

    index: int
    tasks: list[str]
    length: int
    from_index: int
    to_index: int
    data_path: Path
    videos: dict[str, tuple[Path, float, float]] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    stats: Stats = field(default_factory=dict)

    @property
    def available(self) -> bool:
        """Whether its data file is on disk (a partial copy of a dataset may hold only some episodes)."""
        return self.data_path.exists()


class LeRobotDatasetView:
    """A LeRobotDataset on disk (v3.0 or v2.1): metadata, episodes, frames and videos."""

    def __init__(self, root: Path, info: dict, tasks: list[str], episodes: list[EpisodeInfo], stats: Stats | None):
        self.root = root
        self.info = info
        self.version: str = info["codebase_version"]
        self.spec = DatasetSpec.from_info(info)
        self.tasks = tasks
        self.episodes = episodes
        self.stats = stats
        self._tables: dict[Path, pa.Table] = {}

    @property
    def fps(self) -> int:
        return self.spec.fps

    @property
    def robot_type(self) -> str | None:
        return self.spec.robot_type

    @property
    def total_episodes(self) -> int:
        return len(self.episodes)

    @property
    def total_frames(self) -> int:
        return sum(e.length for e in self.episodes)

    def _episode(self, i: int) -> EpisodeInfo:
        if not 0 <= i < len(self.episodes):
            raise InputError(f"{self.root}: no episode {i} (the dataset has {len(self.episodes)})")
        ep = self.episodes[i]
        if not ep.data_path.exists():
            raise InputError(f"{ep.data_path}: missing; episode {i} is not in this copy of the dataset")
        return ep

    def _table(self, path: Path) -> pa.Table:
        if path not in self._tables:
            if len(self._tables) >= 4:  # a few files at a time: episodes are read file by file
                self._tables.pop(next(iter(self._tables)))
            self._tables[path] = read_parquet(path)
        return self._tables[path]

    def episode_frames(self, i: int) -> dict[str, np.ndarray]:
        """Every non-video feature of episode i: (T,) for scalars, (T, *shape) otherwise, in file order."""
        ep = self._episode(i)
        table = self._table(ep.data_path)
        if "index" in table.column_names and table.num_rows != ep.length:
            idx = table.column("index")
            table = table.filter(pc.and_(pc.greater_equal(idx, ep.from_index), pc.less(idx, ep.to_index)))
        if table.num_rows != ep.length:
            raise InputError(f"{ep.data_path}: has {table.num_rows} rows for episode {i}, the index says "
                             f"{ep.length}")
        out = {}
        for key in self.spec.data_keys:
            if key not in table.column_names:
                raise InputError(f"{ep.data_path}: no column {key!r}")
            ft = self.spec.features[key]
            out[key] = column_values(table.column(key), ft.shape, ft.dtype)
        return out

    def episode_video(self, i: int, key: str) -> np.ndarray:
        """(T, H, W, 3) uint8 frames of camera `key` in episode i, each decoded at its frame's timestamp."""
        ep = self._episode(i)
        if key not in ep.videos:
            raise InputError(f"{self.root}: episode {i} has no video {key!r} (videos: {', '.join(ep.videos)})")
        path, start, _ = ep.videos[key]
        if not path.exists():
            raise InputError(f"{path}: missing; episode {i}'s {key} video is not in this copy of the dataset")
        ts = self.episode_frames(i)["timestamp"].astype(np.float64)
        return decode_frames(path, start + ts, TOLERANCE_S)


def _load_jsonl(path: Path) -> list[dict]:
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except OSError as e:
        raise InputError(f"{path}: cannot read ({one_line(e)})") from None
    except ValueError as e:
        raise InputError(f"{path}: not valid JSON lines ({one_line(e)})") from None


def _read_v3(root: Path, info: dict) -> LeRobotDatasetView:
    tasks_path = root / layout.TASKS_PATH
    tasks = task_list(read_parquet(tasks_path)) if tasks_path.exists() else []
    rows: list[dict] = []
    for path in sorted((root / layout.EPISODES_DIR).glob("chunk-*/file-*.parquet")):
        rows += episode_rows(read_parquet(path))
    rows.sort(key=lambda r: r["episode_index"])
    video_keys = [k for k, f in info["features"].items() if f.get("dtype") == "video"]
    episodes = []
    for r in rows:
        data = root / info["data_path"].format(chunk_index=r["data/chunk_index"], file_index=r["data/file_index"])
        videos = {}
        for key in video_keys:
            c, f = r.get(f"videos/{key}/chunk_index"), r.get(f"videos/{key}/file_index")
            if c is None or f is None:
                continue
            p = root / info["video_path"].format(video_key=key, chunk_index=c, file_index=f)
            videos[key] = (p, float(r[f"videos/{key}/from_timestamp"]), float(r[f"videos/{key}/to_timestamp"]))
        meta = {k: v for k, v in r.items() if k not in _KNOWN_COLUMNS and not k.startswith(
            ("stats/", "videos/", "data/", "meta/episodes/"))}
        episodes.append(EpisodeInfo(index=int(r["episode_index"]), tasks=list(r["tasks"] or []),
                                    length=int(r["length"]), from_index=int(r["dataset_from_index"]),
                                    to_index=int(r["dataset_to_index"]), data_path=data, videos=videos, meta=meta,
                                    stats=unflatten_episode_stats(r)))
    stats_path = root / layout.STATS_PATH
    stats = stats_from_json(read_json(stats_path)) if stats_path.exists() else None
    return LeRobotDatasetView(root, info, tasks, episodes, stats)


def _read_v21(root: Path, info: dict) -> LeRobotDatasetView:
    task_rows = _load_jsonl(root / layout.V21_TASKS_PATH)
    tasks = [""] * len(task_rows)
    for t in task_rows:
        tasks[int(t["task_index"])] = t["task"]
    per_episode: dict[int, Stats] = {}
    stats_path = root / layout.V21_EPISODES_STATS_PATH
    if stats_path.exists():
        for r in _load_jsonl(stats_path):
            per_episode[int(r["episode_index"])] = stats_from_json(r["stats"])
    chunks = int(info.get("chunks_size") or layout.DEFAULT_CHUNKS_SIZE)
    video_keys = [k for k, f in info["features"].items() if f.get("dtype") == "video"]
    episodes, start = [], 0
    for r in sorted(_load_jsonl(root / layout.V21_EPISODES_PATH), key=lambda r: r["episode_index"]):
        i, n = int(r["episode_index"]), int(r["length"])
        chunk = i // chunks
        data = root / info["data_path"].format(episode_chunk=chunk, episode_index=i)
        videos = {k: (root / info["video_path"].format(episode_chunk=chunk, video_key=k, episode_index=i), 0.0,
                      n / info["fps"]) for k in video_keys}
        meta = {k: v for k, v in r.items() if k not in _KNOWN_COLUMNS}
        episodes.append(EpisodeInfo(index=i, tasks=list(r.get("tasks") or []), length=n, from_index=start,
                                    to_index=start + n, data_path=data, videos=videos, meta=meta,
                                    stats=per_episode.get(i, {})))
        start += n
    if (root / layout.STATS_PATH).exists():
        stats = stats_from_json(read_json(root / layout.STATS_PATH))
    elif per_episode:
        stats = aggregate_stats(list(per_episode.values()))
    else:
        stats = None
    return LeRobotDatasetView(root, info, tasks, episodes, stats)


def read_dataset(root: str | Path) -> LeRobotDatasetView:
    """Open the LeRobotDataset at `root` (v3.0, or v2.0/v2.1); refuses anything else with a one-line error."""
    root = Path(root)
    info_path = root / layout.INFO_PATH
    if not info_path.exists():
        raise InputError(f"{root}: not a LeRobot dataset (no {layout.INFO_PATH})")
    info = read_json(info_path)
    version = info.get("codebase_version") if isinstance(info, dict) else None
    try:
        if version == layout.CODEBASE_VERSION:
            return _read_v3(root, info)
        if version in _LEGACY:
            return _read_v21(root, info)
    except (KeyError, TypeError, IndexError) as e:
        raise InputError(f"{root}: malformed LeRobot {version} metadata ({type(e).__name__}: {e})") from None
    raise InputError(f"{root}: LeRobot dataset version {version!r} is not supported (v3.0, v2.1)")

"""Record episodes into a LeRobotDataset v3.0, one finished episode at a time, always leaving a valid dataset.

Each `add_episode` builds every file it changes in a staging folder inside the dataset (the data and video
files that grow, the meta/episodes file, tasks, stats, info) and then renames them into place, in an order
in which every intermediate state reads as the previous dataset: videos and data first (a tail that no
episode row points at yet is ignored), then the episode row, then stats and info. A Ctrl-C is held back
during the renames; a crash, a kill or a full disk leaves every finished episode. Files are rebuilt from
the committed episode rows, so a tail left by an interrupted episode is dropped by the next one, and
reopening with `append=True` rewrites info and stats from the episode rows if they lag behind.
"""
from __future__ import annotations

import contextlib
import errno
import json
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from policies.datasets import layout
from policies.datasets.spec import DatasetSpec, per_frame
from policies.datasets.stats import (
    STAT_KEYS,
    Stats,
    aggregate_stats,
    episode_stats,
    flatten_episode_stats,
    stats_to_json,
    unflatten_episode_stats,
)
from policies.datasets.tables import (
    episode_rows,
    episodes_table,
    frames_schema,
    frames_table,
    read_parquet,
    task_list,
    tasks_table,
    write_parquet,
)
from policies.datasets.video import VideoEncoding, concat_videos, encode_video, video_duration, video_info
from twin_kit import InputError, deferred_interrupts, destination_lock, one_line, staging_dir, sweep_stale

_MB = 1024 ** 2
_BASE_COLUMNS = ("episode_index", "tasks", "length", "data/chunk_index", "data/file_index", "dataset_from_index",
                 "dataset_to_index")
_META_COLUMNS = ("meta/episodes/chunk_index", "meta/episodes/file_index")
_RESERVED_PREFIXES = ("stats/", "videos/", "data/", "meta/")


def _video_columns(key: str) -> list[str]:
    return [f"videos/{key}/{c}" for c in ("chunk_index", "file_index", "from_timestamp", "to_timestamp")]


def _plain(value, key: str):
    """An episode_meta value as a plain JSON-like Python value (numpy scalars and arrays converted)."""
    if isinstance(value, np.generic | np.ndarray):
        value = value.tolist()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple) and all(v is None or isinstance(v, bool | int | float | str) for v in value):
        return list(value)
    raise InputError(f"episode_meta[{key!r}]: {type(value).__name__} is not a number, string, bool or list of them")


def _kind(value) -> str:
    """The type class a column keeps across episodes (ints may widen to floats)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "str"
    if isinstance(value, list):
        return "list"
    return "none"


class DatasetWriter:
    """Append episodes to a LeRobotDataset v3.0 at `root` (created if missing).

    `append=False` refuses a folder that already holds a dataset; `append=True` continues it (episode,
    frame and task indices go on; a spec that differs is refused). Chunk and file sizes apply to a new
    dataset (an existing one keeps its own). Use as a context manager, or call `close()`.
    """

    def __init__(self, root: str | Path, spec: DatasetSpec, append: bool = False, *,
                 video: VideoEncoding | None = None, chunks_size: int = layout.DEFAULT_CHUNKS_SIZE,
                 data_files_size_in_mb: float = layout.DEFAULT_DATA_FILES_SIZE_IN_MB,
                 video_files_size_in_mb: float = layout.DEFAULT_VIDEO_FILES_SIZE_IN_MB):
        self.root = Path(root)
        self.spec = spec
        video = video or VideoEncoding()
        self.video = video.resolved() if spec.video_keys else video
        if chunks_size < 1 or data_files_size_in_mb <= 0 or video_files_size_in_mb <= 0:
            raise InputError("chunks_size and the file size limits must be positive")
        self._closed = False
        self._stack = contextlib.ExitStack()
        if self.root.exists() and not self.root.is_dir():
            raise InputError(f"{self.root}: exists and is not a directory")
        self.root.parent.mkdir(parents=True, exist_ok=True)
        self._stack.enter_context(destination_lock(self.root, label=str(self.root)))
        try:
            self._open(append, chunks_size, data_files_size_in_mb, video_files_size_in_mb)
        except BaseException:
            self._stack.close()
            raise

    # ------------------------------------------------------------------------------------------ opening

    def _open(self, append: bool, chunks_size: int, data_mb: float, video_mb: float) -> None:
        info_path = self.root / layout.INFO_PATH
        if self.root.is_dir():
            sweep_stale(self.root / layout.STAGING_NAME)
        if info_path.exists():
            if not append:
                raise InputError(f"{self.root}: already holds a LeRobot dataset (append to it, or choose a new "
                                 f"folder)")
            self._load()
            return
        if self.root.is_dir() and any(self.root.iterdir()):
            raise InputError(f"{self.root}: exists and is not a LeRobot dataset; choose a new or empty folder")
        self.info = {
            "codebase_version": layout.CODEBASE_VERSION, "robot_type": self.spec.robot_type,
            "total_episodes": 0, "total_frames": 0, "total_tasks": 0, "chunks_size": int(chunks_size),
            "data_files_size_in_mb": data_mb, "video_files_size_in_mb": video_mb, "fps": self.spec.fps,
            "splits": {}, "data_path": layout.DATA_PATH,
            "video_path": layout.VIDEO_PATH if self.spec.video_keys else None,
            "features": self.spec.info_features(),
        }
        self.root.mkdir(exist_ok=True)
        self.tasks: list[str] = []
        self.episodes: list[dict] = []
        self.episode_stats: list[Stats] = []
        self._meta_kinds: dict[str, str] | None = None
        self._guard_io(lambda: self._commit_files({layout.INFO_PATH: self._info_json()}, []), "creating")

    def _load(self) -> None:
        """Read the committed state of an existing dataset, and bring info/stats in line with its episodes."""
        try:
            info = json.loads((self.root / layout.INFO_PATH).read_text())
        except (OSError, ValueError) as e:
            raise InputError(f"{self.root / layout.INFO_PATH}: unreadable ({one_line(e)})") from None
        version = info.get("codebase_version")
        if version != layout.CODEBASE_VERSION:
            raise InputError(f"{self.root}: is a LeRobot {version} dataset; Twin appends only to "
                             f"{layout.CODEBASE_VERSION}")
        why = DatasetSpec.from_info(info).mismatch(self.spec)
        if why:
            raise InputError(f"{self.root}: the dataset's spec differs from this recording's ({why})")
        self.info = info
        tasks_path = self.root / layout.TASKS_PATH
        self.tasks = task_list(read_parquet(tasks_path)) if tasks_path.exists() else []
        rows: list[dict] = []
        for path in sorted((self.root / layout.EPISODES_DIR).glob("chunk-*/file-*.parquet")):
            rows += episode_rows(read_parquet(path))
        rows.sort(key=lambda r: r["episode_index"])
        if [r["episode_index"] for r in rows] != list(range(len(rows))):
            raise InputError(f"{self.root}: episode indices in meta/episodes are not 0..{len(rows) - 1}")
        self.episodes = rows
        self.episode_stats = [unflatten_episode_stats(r) for r in rows]
        self._meta_kinds = None
        if rows:
            std = set(self._standard_columns())
            self._meta_kinds = {k: _kind(v) for k, v in rows[-1].items() if k not in std}
        for key in self.spec.video_keys:
            have = (info["features"].get(key, {}).get("info") or {}).get("video.codec")
            if have and have != self.video.canonical_name:
                raise InputError(f"{self.root}: {key} is {have} video; record with that codec to append")
        stale = (info.get("total_episodes") != len(rows) or info.get("total_frames") != self.total_frames
                 or info.get("total_tasks") != len(self.tasks) or not (self.root / layout.STATS_PATH).exists())
        if stale and rows:
            self._guard_io(lambda: self._commit_files({layout.STATS_PATH: self._stats_json(),
                                                       layout.INFO_PATH: self._info_json()}, []), "repairing")

    # ------------------------------------------------------------------------------------------ state

    @property
    def total_episodes(self) -> int:
        return len(self.episodes)

    @property
    def total_frames(self) -> int:
        return int(self.episodes[-1]["dataset_to_index"]) if self.episodes else 0

    def _standard_columns(self) -> list[str]:
        cols = list(_BASE_COLUMNS)
        for key in self.spec.video_keys:
            cols += _video_columns(key)
        return cols + list(flatten_episode_stats(self._stat_layout())) + list(_META_COLUMNS)

    def _stat_layout(self) -> Stats:
        return {name: dict.fromkeys(STAT_KEYS, 0) for name in self.spec.features}

    def _info_json(self) -> str:
        info = dict(self.info)
        info["total_episodes"] = len(self.episodes)
        info["total_frames"] = self.total_frames
        info["total_tasks"] = len(self.tasks)
        info["splits"] = {"train": f"0:{len(self.episodes)}"} if self.episodes else {}
        return json.dumps(info, indent=4, ensure_ascii=False)

    def _stats_json(self) -> str:
        return json.dumps(stats_to_json(aggregate_stats(self.episode_stats)), indent=4, ensure_ascii=False)

    # ------------------------------------------------------------------------------------------ recording

    def add_episode(self, frames: dict[str, np.ndarray], videos: dict[str, np.ndarray] | None = None,
                    task: str = "", episode_meta: dict | None = None) -> int:
        """Write one finished episode; returns its episode_index.

        frames: every recorded non-video feature as (T, *shape) (scalars as (T,)); `timestamp` may be given
        and must then be frame_index / fps. videos: every video feature as (T, H, W, 3) uint8. task: the
        instruction. episode_meta: extra per-episode columns for meta/episodes (same keys every episode).
        """
        if self._closed:
            raise RuntimeError("DatasetWriter is closed")
        columns, length = self._columns(frames)
        clips = self._clips(videos or {}, length)
        if not isinstance(task, str) or not task.strip():
            raise InputError("task: must be a non-empty instruction string")
        meta = self._episode_meta(episode_meta)
        ep, start = len(self.episodes), self.total_frames
        tasks = self.tasks if task in self.tasks else [*self.tasks, task]
        columns["frame_index"] = np.arange(length, dtype=np.int64)
        columns["timestamp"] = (columns["frame_index"] / self.spec.fps).astype(np.float32)
        columns["episode_index"] = np.full(length, ep, dtype=np.int64)
        columns["index"] = np.arange(start, start + length, dtype=np.int64)
        columns["task_index"] = np.full(length, tasks.index(task), dtype=np.int64)
        stats = episode_stats(self.spec, columns, clips)
        self._guard_io(lambda: self._write_episode(ep, start, length, task, tasks, columns, clips, stats, meta),
                       f"writing episode {ep}")
        return ep

    def _columns(self, frames: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
        want = self.spec.recorded_keys
        extra = [k for k in frames if k not in want and k != "timestamp"]
        if extra:
            raise InputError(f"frames: {extra[0]!r} is not a recorded feature of this dataset "
                             f"(expected {', '.join(want) or 'none'})")
        missing = [k for k in want if k not in frames]
        if missing:
            raise InputError(f"frames: missing feature {missing[0]!r}")
        columns: dict[str, np.ndarray] = {}
        length = None
        for k in want:
            columns[k] = per_frame(frames[k], self.spec.features[k], k, length)
            length = columns[k].shape[0]
        if "timestamp" in frames:
            ts = np.asarray(frames["timestamp"], dtype=np.float64).reshape(-1)
            n = length if length is not None else ts.shape[0]
            if ts.shape[0] != n or np.abs(ts - np.arange(n) / self.spec.fps).max(initial=0) > 1e-4:
                raise InputError(f"frames: timestamp must be frame_index / fps ({self.spec.fps} fps)")
            length = n
        return columns, length  # length None: no recorded feature, the videos decide

    def _clips(self, videos: dict[str, np.ndarray], length: int | None) -> dict[str, np.ndarray]:
        keys = self.spec.video_keys
        extra = [k for k in videos if k not in keys]
        if extra:
            raise InputError(f"videos: {extra[0]!r} is not a video feature of this dataset")
        out = {}
        for k in keys:
            if k not in videos:
                raise InputError(f"videos: missing camera {k!r}")
            arr = np.asarray(videos[k])
            shape = self.spec.features[k].shape
            if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[1:] != shape:
                raise InputError(f"videos[{k!r}]: expected (T, {shape[0]}, {shape[1]}, 3) uint8, got "
                                 f"{arr.shape} {arr.dtype}")
            if length is not None and arr.shape[0] != length:
                raise InputError(f"videos[{k!r}]: has {arr.shape[0]} frames, the other features have {length}")
            length = arr.shape[0]
            out[k] = np.ascontiguousarray(arr)
        if not length:
            raise InputError("an episode needs at least one frame")
        return out

    def _episode_meta(self, episode_meta: dict | None) -> dict:
        meta = {str(k): _plain(v, str(k)) for k, v in (episode_meta or {}).items()}
        std = set(self._standard_columns())
        for k in meta:
            if k in std or k.startswith(_RESERVED_PREFIXES):
                raise InputError(f"episode_meta[{k!r}]: the name is one of LeRobot's own columns")
        if self._meta_kinds is not None:
            if set(meta) != set(self._meta_kinds):
                raise InputError(f"episode_meta: keys {sorted(meta)} differ from the earlier episodes' "
                                 f"{sorted(self._meta_kinds)}")
            for k, v in meta.items():
                kinds = {self._meta_kinds[k], _kind(v)}
                if len(kinds - {"none"}) > 1:
                    raise InputError(f"episode_meta[{k!r}]: a {_kind(v)} where earlier episodes had a "
                                     f"{self._meta_kinds[k]}")
        return meta

    # ------------------------------------------------------------------------------------------ files

    def _guard_io(self, work, doing: str):
        """Run file work; OS-level failures become one-line InputErrors (the dataset keeps its episodes)."""
        try:
            return work()
        except (OSError, av.error.FFmpegError) as e:
            code = getattr(e, "errno", None)
            if code in (errno.ENOSPC, errno.EDQUOT):
                why = "disk full"
            elif code == errno.EFBIG:
                why = "disk full (file size limit reached)"
            else:
                why = one_line(e)
            kept = f"the dataset keeps its {len(self.episodes)} finished episode(s)"
            raise InputError(f"{self.root}: {doing} failed: {why}; {kept}") from None

    def _commit_files(self, texts: dict[str, str], staged: list[tuple[Path, str]], stage: Path | None = None,
                      then=None) -> None:
        """Rename staged files into place in the given order, then `texts` (relative path -> text); `then()`
        runs in the same Ctrl-C-free block, so the writer's state never disagrees with the disk."""
        with contextlib.ExitStack() as stack:
            if stage is None:
                stage = stack.enter_context(staging_dir(self.root / layout.STAGING_NAME))
            moves = list(staged)
            for i, (rel, text) in enumerate(texts.items()):
                p = stage / f"text-{i}"
                p.write_text(text)
                moves.append((p, rel))
            for _, rel in moves:
                (self.root / rel).parent.mkdir(parents=True, exist_ok=True)
            with deferred_interrupts():
                for src, rel in moves:
                    src.chmod(0o644)
                    src.replace(self.root / rel)
                if then is not None:
                    then()

    def _write_episode(self, ep: int, start: int, length: int, task: str, tasks: list[str],
                       columns: dict[str, np.ndarray], clips: dict[str, np.ndarray], stats: Stats,
                       meta: dict) -> dict:
        with staging_dir(self.root / layout.STAGING_NAME) as stage:
            staged: list[tuple[Path, str]] = []
            row: dict = {"episode_index": ep, "tasks": [task], "length": length}
            for key, frames in clips.items():
                row.update(self._stage_video(stage, key, frames, staged))
            if tasks != self.tasks:
                write_parquet(tasks_table(tasks), stage / "tasks.parquet")
                staged.append((stage / "tasks.parquet", layout.TASKS_PATH))
            data = self._stage_data(stage, start, length, columns, staged)
            row = {**{k: row[k] for k in ("episode_index", "tasks", "length")}, **data,
                   **{k: v for k, v in row.items() if k.startswith("videos/")}}
            row.update(flatten_episode_stats(stats))
            self._stage_episode_row(stage, row, meta, staged)
            before = (self.episodes, self.episode_stats, self.tasks)
            after = ([*self.episodes, row], [*self.episode_stats, stats], tasks)
            self.episodes, self.episode_stats, self.tasks = after
            try:
                texts = {layout.STATS_PATH: self._stats_json(), layout.INFO_PATH: self._info_json()}
            finally:
                self.episodes, self.episode_stats, self.tasks = before

            def committed():
                self.episodes, self.episode_stats, self.tasks = after
                if self._meta_kinds is None:
                    self._meta_kinds = {k: _kind(v) for k, v in meta.items()}

            self._commit_files(texts, staged, stage, then=committed)
        return row

    def _file_of(self, prefix: str) -> tuple[int, int] | None:
        """(chunk, file) the last committed episode used for `prefix` (data, videos/<key>, meta/episodes)."""
        if not self.episodes:
            return None
        last = self.episodes[-1]
        return int(last[f"{prefix}/chunk_index"]), int(last[f"{prefix}/file_index"])

    def _rows_in(self, prefix: str, where: tuple[int, int]) -> list[dict]:
        return [r for r in self.episodes if (r[f"{prefix}/chunk_index"], r[f"{prefix}/file_index"]) == where]

    def _grows(self, path: Path, add_bytes: float, limit_mb: float) -> bool:
        """Whether the next episode still goes into `path` (LeRobot's rule: roll over once the file would
        reach the size limit)."""
        return path.exists() and path.stat().st_size + add_bytes < limit_mb * _MB

    def _stage_data(self, stage: Path, start: int, length: int, columns: dict[str, np.ndarray],
                    staged: list) -> dict:
        table = frames_table(self.spec, columns)
        tables = [table]
        where = self._file_of("data")
        if where is not None:
            path = self.root / layout.DATA_PATH.format(chunk_index=where[0], file_index=where[1])
            in_file = sum(int(r["length"]) for r in self._rows_in("data", where))
            per_frame_bytes = path.stat().st_size / max(in_file, 1) if path.exists() else 0
            if self._grows(path, per_frame_bytes * length, self.info["data_files_size_in_mb"]):
                old = read_parquet(path)
                old = old.filter(pc.less(old.column("index"), start))  # drop a tail no episode points at
                old = old.cast(frames_schema(self.spec))
                parts, at = [], 0
                for r in self._rows_in("data", where):  # one row group per episode
                    parts.append(old.slice(at, int(r["length"])))
                    at += int(r["length"])
                tables = [*parts, table] if at == old.num_rows else [old, table]
            else:
                where = layout.next_chunk_file(*where, self.info["chunks_size"])
        else:
            where = (0, 0)
        write_parquet(tables, stage / "data.parquet")
        staged.append((stage / "data.parquet", layout.DATA_PATH.format(chunk_index=where[0], file_index=where[1])))
        return {"data/chunk_index": where[0], "data/file_index": where[1], "dataset_from_index": start,
                "dataset_to_index": start + length}

    def _stage_video(self, stage: Path, key: str, frames: np.ndarray, staged: list) -> dict:
        clip = stage / f"{key}.episode.mp4"
        encode_video(frames, self.spec.fps, clip, self.video)
        duration = video_duration(clip)
        where = self._file_of(f"videos/{key}")
        out, start_s = clip, 0.0
        if where is not None:
            path = self.root / layout.VIDEO_PATH.format(video_key=key, chunk_index=where[0], file_index=where[1])
            if self._grows(path, clip.stat().st_size, self.info["video_files_size_in_mb"]):
                start_s = float(self.episodes[-1][f"videos/{key}/to_timestamp"])
                out = stage / f"{key}.mp4"
                concat_videos([(path, start_s), (clip, None)], out)
            else:
                where = layout.next_chunk_file(*where, self.info["chunks_size"])
        else:
            where = (0, 0)
        staged.append((out, layout.VIDEO_PATH.format(video_key=key, chunk_index=where[0], file_index=where[1])))
        feature = self.info["features"].setdefault(key, self.spec.features[key].to_json())
        if not feature.get("info"):
            feature["info"] = video_info(clip)
        return dict(zip(_video_columns(key), [where[0], where[1], start_s, start_s + duration], strict=True))

    def _stage_episode_row(self, stage: Path, row: dict, meta: dict, staged: list) -> None:
        where = self._file_of("meta/episodes")
        rows: list[dict] = []
        if where is not None:
            path = self.root / layout.EPISODES_PATH.format(chunk_index=where[0], file_index=where[1])
            in_file = self._rows_in("meta/episodes", where)
            per_row = path.stat().st_size / max(len(in_file), 1) if path.exists() else 0
            if self._grows(path, per_row, self.info["data_files_size_in_mb"]):
                rows = in_file
            else:
                where = layout.next_chunk_file(*where, self.info["chunks_size"])
        else:
            where = (0, 0)
        row.update({"meta/episodes/chunk_index": where[0], "meta/episodes/file_index": where[1]})
        row.update(meta)
        try:
            table = episodes_table([*rows, row])
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise InputError(f"episode_meta: values do not fit the earlier episodes' columns ({one_line(e)})") from None
        write_parquet(table, stage / "episodes.parquet")
        staged.append((stage / "episodes.parquet",
                       layout.EPISODES_PATH.format(chunk_index=where[0], file_index=where[1])))

    # ------------------------------------------------------------------------------------------ closing

    def close(self) -> None:
        """Release the dataset (every finished episode is already on disk)."""
        if not self._closed:
            self._closed = True
            self._stack.close()

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

"""Where things live in a LeRobotDataset: the v3.0 file names and templates (what LeRobot writes) and the
v2.1 ones (read only). The one place that spells a dataset file name."""
from __future__ import annotations

CODEBASE_VERSION = "v3.0"
V21 = "v2.1"

# v3.0: many episodes per file; `chunks_size` files per chunk folder; files roll over at a size in MB.
CHUNK_FILE = "chunk-{chunk_index:03d}/file-{file_index:03d}"
DATA_PATH = "data/" + CHUNK_FILE + ".parquet"
VIDEO_PATH = "videos/{video_key}/" + CHUNK_FILE + ".mp4"
EPISODES_PATH = "meta/episodes/" + CHUNK_FILE + ".parquet"
EPISODES_DIR = "meta/episodes"
DATA_DIR = "data"
INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"

DEFAULT_CHUNKS_SIZE = 1000
DEFAULT_DATA_FILES_SIZE_IN_MB = 100
DEFAULT_VIDEO_FILES_SIZE_IN_MB = 200

# v2.1: one parquet and one mp4 per episode, metadata as JSON lines.
V21_EPISODES_PATH = "meta/episodes.jsonl"
V21_TASKS_PATH = "meta/tasks.jsonl"
V21_EPISODES_STATS_PATH = "meta/episodes_stats.jsonl"

# The staging folder a writer fills before renaming files into place (`.staging.tmp-PID-…` inside the root:
# LeRobot's readers glob data/ and meta/episodes/ only, so a half-written file is never picked up).
STAGING_NAME = "staging"


def next_chunk_file(chunk_index: int, file_index: int, chunks_size: int) -> tuple[int, int]:
    """The (chunk, file) after this one: files count up to `chunks_size` per chunk, then a new chunk starts."""
    if file_index >= chunks_size - 1:
        return chunk_index + 1, 0
    return chunk_index, file_index + 1

"""Arrow tables in LeRobot's parquet layouts: frames (with the Hugging Face `datasets` schema LeRobot's reader
casts to), episode rows (`meta/episodes`), and the task list (`meta/tasks.parquet`, a pandas frame indexed by
task string). pyarrow only: no pandas, no `datasets`."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from policies.datasets.spec import DatasetSpec, Feature
from twin_kit import InputError

TASK_INDEX_COLUMN = "__index_level_0__"  # where pandas keeps an unnamed index


def write_parquet(table: pa.Table | list[pa.Table], path: Path) -> None:
    """Snappy-compressed parquet with dictionary encoding, as LeRobot writes it; a list of tables (one per
    episode, same schema) becomes one row group each, like LeRobot's episode-by-episode writes."""
    parts = table if isinstance(table, list) else [table]
    with pq.ParquetWriter(str(path), parts[0].schema, compression="snappy", use_dictionary=True) as w:
        for part in parts:
            w.write_table(part)


def read_parquet(path: Path) -> pa.Table:
    """The whole table, read through one open file: a writer renaming a new version into place meanwhile (a
    recording in progress) cannot give footer and pages from two different files."""
    try:
        with pa.OSFile(str(path), "rb") as f:
            return pq.read_table(f)
    except (OSError, pa.ArrowException) as e:
        raise InputError(f"{path}: not a readable parquet file ({str(e).splitlines()[0] if str(e) else e})") from None


# ---------------------------------------------------------------------------------------------- frames

def _hf_feature(ft: Feature) -> dict:
    """The feature in Hugging Face `datasets` 4 terms (Value, fixed-length List, ArrayND)."""
    if ft.shape == (1,):
        return {"dtype": ft.dtype, "_type": "Value"}
    if len(ft.shape) == 1:
        return {"feature": {"dtype": ft.dtype, "_type": "Value"}, "length": ft.shape[0], "_type": "List"}
    return {"shape": list(ft.shape), "dtype": ft.dtype, "_type": f"Array{len(ft.shape)}D"}


def _arrow_type(ft: Feature) -> pa.DataType:
    t = pa.from_numpy_dtype(np.dtype(ft.dtype))
    if ft.shape == (1,):
        return t
    if len(ft.shape) == 1:
        return pa.list_(t, ft.shape[0])
    for _ in ft.shape:  # ArrayND storage: nested variable-size lists
        t = pa.list_(t)
    return t


def _field(name: str, ft: Feature) -> pa.Field:
    """A column; ArrayND columns carry the extension-type tags `datasets` writes, so it rebuilds the type."""
    meta = None
    if len(ft.shape) > 1:
        meta = {b"ARROW:extension:metadata": json.dumps([list(ft.shape), ft.dtype]).encode(),
                b"ARROW:extension:name": f"datasets.features.features.Array{len(ft.shape)}DExtensionType".encode()}
    return pa.field(name, _arrow_type(ft), metadata=meta)


def frames_schema(spec: DatasetSpec) -> pa.Schema:
    """The data files' schema: one column per non-video feature, with the `huggingface` metadata."""
    fields = [_field(k, spec.features[k]) for k in spec.data_keys]
    hf = {"info": {"features": {k: _hf_feature(spec.features[k]) for k in spec.data_keys}}}
    return pa.schema(fields, metadata={b"huggingface": json.dumps(hf).encode()})


def _column(values: np.ndarray, ft: Feature) -> pa.Array:
    if ft.shape == (1,):
        return pa.array(values.reshape(-1))
    flat: pa.Array = pa.array(values.reshape(-1))
    if len(ft.shape) == 1:
        return pa.FixedSizeListArray.from_arrays(flat, ft.shape[0])
    for size in reversed(ft.shape):
        n = len(flat) // size
        flat = pa.ListArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int32) * size), flat)
    return flat


def frames_table(spec: DatasetSpec, columns: dict[str, np.ndarray]) -> pa.Table:
    """One episode's rows: `columns` holds every non-video feature, (T,) for scalars or (T, *shape)."""
    schema = frames_schema(spec)
    return pa.Table.from_arrays([_column(columns[k], spec.features[k]) for k in spec.data_keys], schema=schema)


def column_values(col: pa.ChunkedArray | pa.Array, shape: tuple[int, ...], dtype: str | None = None) -> np.ndarray:
    """A parquet column back as (T,) for a scalar feature or (T, *shape); any list nesting (fixed-size lists,
    Hugging Face Sequence/List/ArrayND storage) is unrolled."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    n = len(arr)
    if isinstance(arr.type, pa.ExtensionType):  # `datasets` imported in this process: ArrayND comes back typed
        arr = arr.storage
    while pa.types.is_list(arr.type) or pa.types.is_fixed_size_list(arr.type) or pa.types.is_large_list(arr.type):
        arr = arr.flatten()
    values = arr.to_numpy(zero_copy_only=False)
    if dtype is not None:
        values = values.astype(dtype, copy=False)
    return values.reshape((n,) if tuple(shape) == (1,) else (n, *shape))


# ---------------------------------------------------------------------------------------------- episodes

def episodes_table(rows: list[dict]) -> pa.Table:
    """meta/episodes rows (dicts of plain Python values, all with the first row's columns) as a table; types
    are inferred per column as LeRobot's `pa.Table.from_pydict` does."""
    cols = list(rows[0])
    for r in rows[1:]:
        if set(r) != set(cols):
            raise InputError("episode rows have different columns; cannot store them in one file")
    return pa.Table.from_pydict({c: [r[c] for r in rows] for c in cols})


def episode_rows(table: pa.Table) -> list[dict]:
    return table.to_pylist()


# ---------------------------------------------------------------------------------------------- tasks

def tasks_table(tasks: list[str]) -> pa.Table:
    """meta/tasks.parquet: column task_index, indexed by the task string (what `pandas.read_parquet` gives
    LeRobot: `tasks.loc[task].task_index`, `tasks.iloc[i].name`)."""
    pandas_meta = {
        "index_columns": [TASK_INDEX_COLUMN],
        "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode", "numpy_type": "object",
                            "metadata": {"encoding": "UTF-8"}}],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64",
             "metadata": None},
            {"name": None, "field_name": TASK_INDEX_COLUMN, "pandas_type": "unicode", "numpy_type": "object",
             "metadata": None},
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.0",  # the layout pandas 2 and 3 both read back as an index
    }
    schema = pa.schema([pa.field("task_index", pa.int64()), pa.field(TASK_INDEX_COLUMN, pa.string())],
                       metadata={b"pandas": json.dumps(pandas_meta).encode()})
    return pa.Table.from_arrays([pa.array(range(len(tasks)), pa.int64()), pa.array(tasks, pa.string())],
                                schema=schema)


def task_list(table: pa.Table) -> list[str]:
    """Task strings in task_index order, from a tasks.parquet written by LeRobot (pandas) or Twin."""
    name = TASK_INDEX_COLUMN
    meta = table.schema.metadata or {}
    if b"pandas" in meta:
        idx = json.loads(meta[b"pandas"]).get("index_columns") or []
        if idx and isinstance(idx[0], str):
            name = idx[0]
    if "task" in table.column_names:
        name = "task"
    if name not in table.column_names or "task_index" not in table.column_names:
        raise InputError("meta/tasks.parquet has no task strings and task_index columns")
    tasks = table.column(name).to_pylist()
    order = table.column("task_index").to_pylist()
    out = [""] * len(tasks)
    for i, t in zip(order, tasks, strict=True):
        if not 0 <= i < len(tasks):
            raise InputError(f"meta/tasks.parquet: task_index {i} out of range")
        out[i] = t
    return out

"""What a dataset holds: typed feature specs, as LeRobot's `info.json` `features` describes them.

A spec is built once by the recorder (`standard_spec` for the usual layout, or `DatasetSpec` directly for
anything else) and checked against an existing dataset before appending to it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from twin_kit import InputError

VIDEO = "video"
NUMERIC_DTYPES = ("float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "bool")

# Every frame carries these; LeRobot appends them after the recorded features, in this order.
DEFAULT_FEATURES: dict[str, tuple[str, tuple[int, ...]]] = {
    "timestamp": ("float32", (1,)),
    "frame_index": ("int64", (1,)),
    "episode_index": ("int64", (1,)),
    "index": ("int64", (1,)),
    "task_index": ("int64", (1,)),
}
# Filled in by the writer (timestamp too, from frame_index / fps, unless the recorder passes matching ones).
COMPUTED = ("timestamp", "frame_index", "episode_index", "index", "task_index")
IMAGE_NAMES = ["height", "width", "channels"]


@dataclass(frozen=True)
class Feature:
    """One per-frame feature: numpy dtype name (or "video"), per-frame shape, optional axis names.

    Video features are (height, width, 3) uint8 frames, stored as mp4 rather than in the parquet files.
    A shape of (1,) is a scalar per frame (a plain parquet column, as LeRobot writes it).
    """

    dtype: str
    shape: tuple[int, ...]
    names: list | dict | None = None

    def __post_init__(self):
        shape = tuple(int(s) for s in self.shape)
        object.__setattr__(self, "shape", shape)
        if self.dtype != VIDEO and self.dtype not in NUMERIC_DTYPES:
            raise InputError(f"feature dtype {self.dtype!r} is not supported (use one of "
                             f"{', '.join(NUMERIC_DTYPES)} or 'video')")
        if not shape or any(s < 1 for s in shape):
            raise InputError(f"feature shape {shape} must be non-empty with positive sizes")
        if self.dtype == VIDEO:
            if len(shape) != 3 or shape[2] != 3:
                raise InputError(f"video feature shape {shape} must be (height, width, 3)")
            if shape[0] % 2 or shape[1] % 2:
                raise InputError(f"video size {shape[1]}x{shape[0]} must be even (yuv420p video)")
        if len(shape) > 5:
            raise InputError(f"feature shape {shape} has more than 5 dimensions")
        names = self.names
        if (len(shape) == 1 and isinstance(names, list | tuple) and names and all(isinstance(n, str) for n in names)
                and len(names) != shape[0]):
            raise InputError(f"feature has {shape[0]} values but {len(names)} names")
        if isinstance(names, tuple):
            object.__setattr__(self, "names", list(names))

    @property
    def is_video(self) -> bool:
        return self.dtype == VIDEO

    def to_json(self) -> dict:
        """The feature as info.json writes it (`info`, the video stream description, is added by the writer)."""
        return {"dtype": self.dtype, "shape": list(self.shape), "names": self.names}

    @classmethod
    def from_json(cls, d: dict) -> Feature:
        return cls(dtype=d["dtype"], shape=tuple(d["shape"]), names=d.get("names"))


@dataclass
class DatasetSpec:
    """A dataset's frame rate, robot and features (name -> Feature); the default per-frame index features
    (timestamp, frame_index, episode_index, index, task_index) are added after the others when missing."""

    fps: int
    robot_type: str | None
    features: dict[str, Feature] = field(default_factory=dict)

    def __post_init__(self):
        if isinstance(self.fps, bool) or not float(self.fps).is_integer() or self.fps <= 0:
            raise InputError(f"fps must be a positive whole number, not {self.fps!r}")
        self.fps = int(self.fps)
        features = {}
        for name, ft in self.features.items():
            if not isinstance(ft, Feature):
                ft = Feature.from_json(ft) if isinstance(ft, dict) else Feature(*ft)
            if not name or "/" in name:
                raise InputError(f"feature name {name!r} must be non-empty and must not contain '/'")
            if name in DEFAULT_FEATURES and (ft.dtype, ft.shape) != DEFAULT_FEATURES[name]:
                dtype, shape = DEFAULT_FEATURES[name]
                raise InputError(f"feature {name!r} is LeRobot's own: it must be {dtype} of shape {shape}")
            features[name] = ft
        for name, (dtype, shape) in DEFAULT_FEATURES.items():
            features.setdefault(name, Feature(dtype, shape))
        self.features = features

    @property
    def video_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f.is_video]

    @property
    def data_keys(self) -> list[str]:
        """The parquet columns, in order: every non-video feature."""
        return [k for k, f in self.features.items() if not f.is_video]

    @property
    def recorded_keys(self) -> list[str]:
        """The non-video features a recorder passes to `add_episode` (the writer fills the index features)."""
        return [k for k in self.data_keys if k not in COMPUTED]

    def info_features(self, video_info: dict[str, dict] | None = None) -> dict[str, dict]:
        """The `features` of info.json; `video_info` maps a video key to its stream description."""
        out = {}
        for name, ft in self.features.items():
            out[name] = ft.to_json()
            if ft.is_video and video_info and name in video_info:
                out[name]["info"] = video_info[name]
        return out

    @classmethod
    def from_info(cls, info: dict) -> DatasetSpec:
        """The spec of an existing dataset, from its info.json."""
        try:
            return cls(fps=info["fps"], robot_type=info.get("robot_type"),
                       features={k: Feature.from_json(v) for k, v in info["features"].items()})
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"info.json does not describe LeRobot features ({type(e).__name__}: {e})") from None

    def mismatch(self, other: DatasetSpec) -> str | None:
        """Why `other` does not describe the same frames as this spec, or None when it does."""
        if self.fps != other.fps:
            return f"fps is {self.fps}, not {other.fps}"
        if (self.robot_type or None) != (other.robot_type or None):
            return f"robot_type is {self.robot_type!r}, not {other.robot_type!r}"
        if list(self.features) != list(other.features):
            missing = [k for k in other.features if k not in self.features]
            extra = [k for k in self.features if k not in other.features]
            if missing or extra:
                return f"features differ (missing {missing}, unexpected {extra})"
            return "features are in a different order"
        for k, ft in self.features.items():
            o = other.features[k]
            if (ft.dtype, ft.shape) != (o.dtype, o.shape):
                return f"feature {k!r} is {ft.dtype}{list(ft.shape)}, not {o.dtype}{list(o.shape)}"
            if _plain(ft.names) != _plain(o.names):
                return f"feature {k!r} has other names"
        return None


def _plain(names):
    """Names compared as JSON would store them (tuples and lists alike)."""
    if isinstance(names, list | tuple):
        return [_plain(n) for n in names]
    if isinstance(names, dict):
        return {k: _plain(v) for k, v in names.items()}
    return names


def standard_spec(fps: int, robot_type: str | None, state_names: list[str], action_names: list[str],
                  cameras: dict[str, tuple[int, int]], *, reward: bool = True, done: bool = True,
                  extra: dict[str, Feature] | None = None) -> DatasetSpec:
    """The usual robot-learning layout: `observation.state`, one `observation.images.<camera>` video per
    camera ((height, width)), `action`, `next.reward` and `next.done`, then any `extra` per-frame features
    (privileged object poses, success flags, style ids...)."""
    features: dict[str, Feature] = {
        "observation.state": Feature("float32", (len(state_names),), list(state_names)),
    }
    for cam, (h, w) in cameras.items():
        features[f"observation.images.{cam}"] = Feature(VIDEO, (h, w, 3), list(IMAGE_NAMES))
    features["action"] = Feature("float32", (len(action_names),), list(action_names))
    if reward:
        features["next.reward"] = Feature("float32", (1,))
    if done:
        features["next.done"] = Feature("bool", (1,))
    for name, ft in (extra or {}).items():
        if name in features:
            raise InputError(f"extra feature {name!r} is already a standard feature")
        features[name] = ft
    return DatasetSpec(fps=fps, robot_type=robot_type, features=features)


def per_frame(values, feature: Feature, name: str, length: int | None) -> np.ndarray:
    """A recorder's (T, *shape) array for one feature, checked and cast to the feature's dtype.

    A scalar feature (shape (1,)) may come as (T,) or (T, 1) and is returned as (T,). Refuses NaN or
    infinite floats, values that do not fit the dtype's kind (floats for an integer feature), and lengths
    that differ from the other features'.
    """
    arr = np.asarray(values)
    want = feature.shape
    if want == (1,) and arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim == 0 or arr.shape != ((arr.shape[0],) if want == (1,) else (arr.shape[0], *want)):
        raise InputError(f"{name}: expected shape (T, {', '.join(map(str, want))}), got {arr.shape}")
    if length is not None and arr.shape[0] != length:
        raise InputError(f"{name}: has {arr.shape[0]} frames, other features have {length}")
    dtype = np.dtype(feature.dtype)
    if arr.dtype.kind not in "biuf":
        raise InputError(f"{name}: values of type {arr.dtype} are not numbers")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise InputError(f"{name}: contains NaN or infinite values")
    if dtype == np.bool_ and arr.dtype.kind in "iu" and np.isin(arr, (0, 1)).all():
        return np.ascontiguousarray(arr.astype(bool))
    if not np.can_cast(arr.dtype, dtype, casting="same_kind"):
        raise InputError(f"{name}: {arr.dtype} values cannot be stored as {feature.dtype}")
    if dtype.kind in "iu" and arr.size:
        info = np.iinfo(dtype)
        if arr.min() < info.min or arr.max() > info.max:
            raise InputError(f"{name}: values outside the range of {feature.dtype}")
    return np.ascontiguousarray(arr.astype(dtype, copy=False))

"""What a policy reads and writes, taken from its training dataset: the state and action vectors (names, hence
sizes), the cameras (keys and frame sizes), the frame rate, and the normalisation statistics of state and action.

A trained policy carries this with it (config.json and stats.json beside its weights), so evaluation and the
robot runtime feed it exactly what it was trained on without opening the dataset.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from twin_kit import InputError

STATE = "observation.state"
ACTION = "action"
IMAGE_PREFIX = "observation.images."
IMAGES = "observation.images"  # the model input: every camera stacked, (B, N, 3, S, S)
ACTION_IS_PAD = "action_is_pad"
STAT_NAMES = ("mean", "std", "min", "max", "q01", "q99")
ACTION_DELTA = "action.delta"   # stats key: a delta-action policy's chunk offsets from the observed joints
OBJECTS = "privileged.object_poses"   # (objects, 7) simulator poses: targets of the auxiliary object head
TWIN = "train.twin"   # (B,) position in the batch of a restyled sample's original-appearance twin, -1 for none


@dataclass
class PolicyFeatures:
    """A policy's inputs and outputs. cameras maps a dataset video key (`observation.images.front`) to its
    [height, width]; stats maps `observation.state` and `action` to per-dimension statistics (lists); objects
    names the task objects whose simulator poses the dataset records (what an auxiliary head may learn to locate)."""

    state_names: list[str]
    action_names: list[str]
    cameras: dict[str, list[int]] = field(default_factory=dict)
    fps: int = 10
    robot_type: str | None = None
    stats: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    objects: list[str] = field(default_factory=list)

    def __post_init__(self):
        if not self.state_names or not self.action_names:
            raise InputError("a policy needs a non-empty observation.state and action")
        for key in self.cameras:
            if not key.startswith(IMAGE_PREFIX):
                raise InputError(f"camera key {key!r} must start with {IMAGE_PREFIX!r}")
        for key, dim in ((STATE, self.state_dim), (ACTION, self.action_dim), (ACTION_DELTA, self.action_dim)):
            for name, values in self.stats.get(key, {}).items():
                if len(values) != dim:
                    raise InputError(f"stats of {key} {name} have {len(values)} values, the feature has {dim}")

    @property
    def state_dim(self) -> int:
        return len(self.state_names)

    @property
    def action_dim(self) -> int:
        return len(self.action_names)

    @property
    def camera_keys(self) -> list[str]:
        return list(self.cameras)

    def to_json(self) -> dict:
        """Everything but the statistics (those go to stats.json)."""
        return {"state_names": list(self.state_names), "action_names": list(self.action_names),
                "cameras": {k: list(v) for k, v in self.cameras.items()}, "fps": self.fps,
                "robot_type": self.robot_type, "objects": list(self.objects)}

    @classmethod
    def from_json(cls, data: dict, stats: dict | None = None) -> PolicyFeatures:
        try:
            return cls(state_names=list(data["state_names"]), action_names=list(data["action_names"]),
                       cameras={k: [int(x) for x in v] for k, v in data.get("cameras", {}).items()},
                       fps=int(data.get("fps", 10)), robot_type=data.get("robot_type"), stats=stats or {},
                       objects=[str(x) for x in data.get("objects", [])])
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"policy features are malformed ({type(e).__name__}: {e})") from None


def check_objects(features: PolicyFeatures, aux_weight: float) -> int:
    """How many task objects an auxiliary object head predicts; refused when the dataset records none."""
    if not features.objects:
        raise InputError(f"aux_weight {aux_weight} needs a dataset that records {OBJECTS}")
    return len(features.objects)


def object_targets(batch: dict, features: PolicyFeatures, aux_weight: float):
    """The batch's standardised object xy (B, objects, 2), the auxiliary head's targets, checked."""
    if OBJECTS not in batch:
        raise InputError(f"aux_weight {aux_weight} needs {OBJECTS} in the training batch")
    target = batch[OBJECTS]
    if tuple(target.shape[1:]) != (len(features.objects), 2):
        raise InputError(f"object targets are {tuple(target.shape[1:])}, the auxiliary head predicts "
                         f"{(len(features.objects), 2)}")
    return target


def _names(feature, default: str) -> list[str]:
    n = feature.shape[0]
    names = feature.names
    if isinstance(names, list) and len(names) == n and all(isinstance(x, str) for x in names):
        return list(names)
    return [f"{default}_{i}" for i in range(n)]


def policy_features(dataset, cameras: list[str] | None = None) -> PolicyFeatures:
    """The features of a LeRobotDatasetView (`read_dataset(root)`): its state, action, and every camera (or only
    `cameras`, given as short names like `front` or as full keys), with the dataset's normalisation statistics."""
    spec = dataset.spec
    for key in (STATE, ACTION):
        ft = spec.features.get(key)
        if ft is None or ft.is_video or len(ft.shape) != 1:
            raise InputError(f"{dataset.root}: a policy needs a vector feature {key!r}")
    video = spec.video_keys
    if cameras is None:
        keys = [k for k in video if k.startswith(IMAGE_PREFIX)]
    else:
        keys = []
        for c in cameras:
            key = c if c.startswith(IMAGE_PREFIX) else IMAGE_PREFIX + c
            if key not in video:
                short = ", ".join(k.removeprefix(IMAGE_PREFIX) for k in video) or "none"
                raise InputError(f"{dataset.root}: no camera {c!r} (cameras: {short})")
            keys.append(key)
    if dataset.stats is None:
        raise InputError(f"{dataset.root}: has no normalisation statistics (meta/stats.json)")
    stats = {}
    for key in (STATE, ACTION):
        if key not in dataset.stats:
            raise InputError(f"{dataset.root}: stats.json has no statistics for {key!r}")
        stats[key] = {s: np.asarray(v, dtype=np.float64).reshape(-1).tolist()
                      for s, v in dataset.stats[key].items() if s in STAT_NAMES}
    objects: list[str] = []
    poses = spec.features.get(OBJECTS)
    if poses is not None and len(poses.shape) == 2:
        names = poses.names.get("objects") if isinstance(poses.names, dict) else None
        if not names or len(names) != poses.shape[0]:
            names = [f"object_{i}" for i in range(poses.shape[0])]
        objects = [str(x) for x in names]
    return PolicyFeatures(state_names=_names(spec.features[STATE], "state"),
                          action_names=_names(spec.features[ACTION], "action"),
                          cameras={k: list(spec.features[k].shape[:2]) for k in keys}, fps=spec.fps,
                          robot_type=spec.robot_type, stats=stats, objects=objects)

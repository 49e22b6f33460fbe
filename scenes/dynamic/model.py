"""4D Gaussians as one object: canonical Gaussians, their deformation field and the capture's time axis; how
they are deformed to a time, saved into a bundle's dynamic/ and read back."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from scenes.dynamic.deformation import DeformationConfig, DeformationField
from scenes.splats.gaussians import Gaussians, read_splats_ply, write_splats_ply
from spatial import BundlePaths, Camera, DynamicRecord, read_dynamic, write_dynamic
from twin_kit import InputError

DEFORMED = ("means", "quats", "log_scales")


@dataclass
class TimeAxis:
    """Capture time -> the field's normalised time: t = (timestamp - start) / (end - start), 0 first frame,
    1 last. `units` is "seconds" (camera timestamps) or "frames" (cameras in name order, when a capture has no
    timestamps)."""

    start: float
    end: float
    units: str = "seconds"

    def normalise(self, value: float) -> float:
        span = self.end - self.start
        return float(np.clip((value - self.start) / span, 0.0, 1.0)) if span > 0 else 0.0

    def to_json(self) -> dict:
        return {"start": self.start, "end": self.end, "units": self.units}

    @staticmethod
    def from_json(d: dict) -> TimeAxis:
        return TimeAxis(float(d["start"]), float(d["end"]), str(d.get("units", "seconds")))


def time_axis(cameras: list[Camera]) -> tuple[TimeAxis, list[float]]:
    """The time axis of a capture and each camera's normalised time (in the order given)."""
    stamps = [c.timestamp for c in cameras]
    if all(s is not None and np.isfinite(s) for s in stamps) and len(set(stamps)) > 1:
        axis = TimeAxis(float(min(stamps)), float(max(stamps)), "seconds")
        return axis, [axis.normalise(float(s)) for s in stamps]
    rank = {c.name: k for k, c in enumerate(sorted(cameras, key=lambda c: c.name))}
    axis = TimeAxis(0.0, float(max(len(cameras) - 1, 1)), "frames")
    return axis, [axis.normalise(rank[c.name]) for c in cameras]


def deform_params(params: dict[str, torch.Tensor], field: DeformationField, t: float) -> dict[str, torch.Tensor]:
    """Raw Gaussian parameters at normalised time t (differentiable w.r.t. both the canonical set and the field)."""
    means, quats, log_scales = field(params["means"], params["quats"], params["log_scales"], t)
    return {**params, "means": means, "quats": quats, "log_scales": log_scales}


@dataclass
class DynamicSplats:
    """Canonical Gaussians + deformation field + time axis: what a bundle's dynamic/ holds."""

    canonical: Gaussians
    field: DeformationField
    time: TimeAxis

    @torch.no_grad()
    def at(self, t: float, index=None) -> Gaussians:
        """The Gaussians at normalised time t in [0, 1] (only those at `index`, when given)."""
        g = self.canonical if index is None else self.canonical.subset(torch.as_tensor(index))
        means, quats, log_scales = self.field(g.means, g.quats, g.log_scales, float(np.clip(t, 0.0, 1.0)))
        return Gaussians(means, quats, log_scales, g.opacity_logits, g.sh_dc, g.sh_rest)

    def to(self, device) -> DynamicSplats:
        return DynamicSplats(self.canonical.to(device), self.field.to(device), self.time)

    @property
    def duration(self) -> float:
        """The capture's length in its time units (seconds, or frames when it had no timestamps)."""
        return self.time.end - self.time.start


def save_dynamic(root: str | Path, dyn: DynamicSplats, metrics: dict) -> None:
    """Write dynamic/ (canonical PLY, deformation weights, description) under bundle `root` (a staging copy)."""
    weights = {k: v.detach().cpu().numpy() for k, v in dyn.field.state_dict().items()}
    record = DynamicRecord(deformation=dyn.field.cfg.to_json(), time=dyn.time.to_json(), metrics=metrics)
    write_dynamic(root, record, weights)
    write_splats_ply(BundlePaths(Path(root)).dynamic_canonical, dyn.canonical)


def load_dynamic(root: str | Path, device: str | torch.device = "cpu") -> DynamicSplats:
    """A bundle's dynamic splats; InputError (BundleError) when missing, damaged or of another version."""
    record, weights = read_dynamic(root)
    try:
        field = DeformationField(DeformationConfig.from_json(record.deformation))
        field.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in weights.items()}, strict=True)
    except (ValueError, KeyError, TypeError, RuntimeError) as e:
        raise InputError(f"{BundlePaths(Path(root)).dynamic_deformation}: weights do not fit the described field "
                         f"({str(e).splitlines()[0][:120]})") from None
    field.eval()
    canonical = read_splats_ply(BundlePaths(Path(root)).dynamic_canonical)
    return DynamicSplats(canonical, field, TimeAxis.from_json(record.time)).to(device)

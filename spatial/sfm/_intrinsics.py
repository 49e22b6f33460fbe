"""Which frames share a camera, and which estimated cameras are not believable.

Photos of one size from one device at one zoom share one set of intrinsics (COLMAP refines one focal length
for all of them); a photo of another size or device gets its own. After mapping, a camera whose focal length
is far outside what lenses make (relative to its image's long side), or far from the other cameras' when no
EXIF focal vouches for it, is a registration that went wrong (a stretched or cropped photo, a degenerate
solve): its frame is dropped rather than poisoning depth and fusion.
"""
from __future__ import annotations

import numpy as np

from spatial.cameras import Camera
from spatial.capture.frames import Frame, FrameSet


def camera_groups(frames: FrameSet) -> list[list[int]]:
    """Frame indices that share one camera: same working size, same EXIF device and focal (when present)."""
    groups: dict[tuple, list[int]] = {}
    for i, f in enumerate(frames.frames):
        focal = round(f.focal_px / max(f.size), 2) if f.focal_px else None
        groups.setdefault((f.size, f.device, focal), []).append(i)
    return list(groups.values())


def focal_ratio(cam: Camera) -> float:
    """Focal length in units of the image's long side (a phone's main camera is about 0.7-1.2)."""
    return float(np.sqrt(cam.fx * cam.fy)) / max(cam.width, cam.height)


def implausible_cameras(cams: list[Camera], frames: list[Frame], observations: list[int], lo: float, hi: float,
                        spread: float, min_points: int) -> dict[str, str]:
    """Camera name -> why it is not believable: its pose rests on fewer than `min_points` sparse points, its
    focal ratio is outside [lo, hi], or more than `spread` times away from the median of the other cameras
    (unless the frame's EXIF focal agrees with the estimate)."""
    bad: dict[str, str] = {}
    ratios = np.array([focal_ratio(c) for c in cams])
    for k, (c, f) in enumerate(zip(cams, frames)):
        r = ratios[k]
        if observations[k] < min_points:
            bad[c.name] = f"implausible camera: its pose rests on {observations[k]} sparse points"
        elif not np.isfinite(r) or r < lo or r > hi:
            bad[c.name] = (f"implausible camera: focal length {c.fx:.0f} px is {r:.2f}x the image's long side "
                           f"(lenses give {lo:g}x to {hi:g}x)")
    for k, (c, f) in enumerate(zip(cams, frames)):
        if c.name in bad:
            continue
        others = np.array([ratios[j] for j, o in enumerate(cams) if j != k and o.name not in bad])
        if len(others) < 2:
            continue
        med = float(np.median(others))
        off = max(ratios[k] / med, med / ratios[k])
        vouched = f.focal_px is not None and 0.8 < c.fx / f.focal_px < 1.25
        if off > spread and not vouched:
            bad[c.name] = (f"implausible camera: focal length {c.fx:.0f} px is {off:.1f}x away from the other "
                           f"cameras' ({med * max(c.width, c.height):.0f} px at this size)")
    return bad

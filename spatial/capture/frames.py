"""Frames in: a video (keyframes by sharpness and parallax) or a folder of photos, at a working resolution.

Photos keep their EXIF orientation and give a focal-length prior when the EXIF has one; unreadable files
are skipped with a reason, never fatal. Huge JPEGs are decoded at a reduced scale (libjpeg DCT scaling),
so an 8000-pixel photo never costs its full-size buffer.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from twin_kit import InputError, opt, warn

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm")
MIN_FRAMES = 3


@dataclass
class FramesConfig:
    """How frames are read and which video frames become keyframes."""

    max_side: int = opt(960, "working resolution: longest image side in pixels (never upscaled)")
    max_keyframes: int = opt(240, "most keyframes kept from a video (evenly thinned beyond this)")
    parallax: float = opt(0.04, "new video keyframe when the median feature flow since the last one exceeds "
                                "this fraction of the image diagonal")
    min_tracked: float = opt(0.6, "... or when the fraction of features still tracked drops below this")
    sharpness_window: int = opt(6, "a video keyframe is the sharpest of this many candidate frames")
    track_side: int = opt(480, "longest side of the grey images used for tracking and sharpness")
    max_corners: int = opt(400, "features tracked from each video keyframe")


@dataclass
class Frame:
    """One input image at working resolution."""

    name: str  # file name for photos, frame_XXXXXX.png for video frames
    image: np.ndarray  # (H, W, 3) uint8 RGB
    original_size: tuple[int, int]  # (width, height) as stored, after EXIF orientation
    timestamp: float | None = None  # seconds: video presentation time, photo EXIF DateTimeOriginal
    focal_px: float | None = None  # EXIF focal length in pixels at working resolution
    device: str | None = None  # EXIF make and model, so that photos of different cameras get their own intrinsics

    @property
    def size(self) -> tuple[int, int]:
        return self.image.shape[1], self.image.shape[0]


@dataclass
class FrameSet:
    """The frames used, in capture order, and the inputs that were skipped with the reason."""

    frames: list[Frame]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    source: str = "photos"  # "photos" or "video"
    notes: list[str] = field(default_factory=list)  # what a user should know about the input (warned once)
    decoding: dict = field(default_factory=dict)  # video: frames decoded / declared by the container, truncated

    def __len__(self) -> int:
        return len(self.frames)


def working_size(w: int, h: int, max_side: int) -> tuple[int, int]:
    """(w, h) scaled so that the longest side is at most max_side, never upscaled."""
    s = min(1.0, max_side / max(w, h))
    return max(1, int(round(w * s))), max(1, int(round(h * s)))


def load_frames(input: Path, cfg: FramesConfig | None = None, progress=None) -> FrameSet:
    """Frames from a video file or a folder of photos; InputError when fewer than 3 are usable."""
    cfg = cfg or FramesConfig()
    input = Path(input)
    if not input.exists():
        raise InputError(f"{input}: no such file or directory")
    if input.is_dir():
        fs = load_photos(input, cfg, progress)
    elif input.suffix.lower() in VIDEO_SUFFIXES:
        from spatial.capture._keyframes import load_video

        fs = load_video(input, cfg, progress)
    elif input.suffix.lower() in PHOTO_SUFFIXES:
        raise InputError(f"{input}: a single photo; give a folder of at least {MIN_FRAMES} overlapping photos")
    else:
        raise InputError(f"{input}: not a video ({', '.join(VIDEO_SUFFIXES)}) or a folder of photos")
    if len(fs.frames) < MIN_FRAMES:
        extra = f" ({len(fs.skipped)} unreadable)" if fs.skipped else ""
        raise InputError(f"{input}: {len(fs.frames)} usable images{extra}, need at least {MIN_FRAMES}")
    return fs


def _natural_key(name: str):
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", name)]


def list_photos(folder: Path) -> list[Path]:
    """jpg/jpeg/png files (any case) in a folder, in natural name order (img2 before img10)."""
    return sorted((p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES),
                  key=lambda p: _natural_key(p.name))


def load_photos(folder: Path, cfg: FramesConfig, progress=None) -> FrameSet:
    """Every readable photo of a folder at working resolution; unreadable ones are skipped with a warning."""
    paths = list_photos(folder)
    frames, skipped = [], []
    task = progress.add_task("reading photos", total=len(paths), status="") if progress is not None else None
    for p in paths:
        try:
            frames.append(read_photo(p, cfg.max_side))
        except Exception as e:  # any decoder failure means "skip this file", never the whole capture
            reason = f"unreadable image ({type(e).__name__}: {e})".replace("\n", " ")
            skipped.append((p.name, reason))
            warn(f"skipping {p.name}: {reason}")
        if task is not None:
            progress.advance(task)
    return FrameSet(frames=frames, skipped=skipped, source="photos")


def _transposes():
    from PIL import Image

    T = Image.Transpose
    return {2: T.FLIP_LEFT_RIGHT, 3: T.ROTATE_180, 4: T.FLIP_TOP_BOTTOM, 5: T.TRANSPOSE, 6: T.ROTATE_270,
            7: T.TRANSVERSE, 8: T.ROTATE_90}


_TRANSPOSE = _transposes()  # EXIF orientation -> the transpose that shows the photo upright


def read_photo(path: Path, max_side: int) -> Frame:
    """One photo, oriented by its EXIF, reduced to max_side while decoding, with its EXIF focal prior."""
    from PIL import Image

    with Image.open(path) as im:
        exif = im.getexif()
        orientation = int(exif.get(0x0112, 1) or 1)
        sw, sh = im.size  # as stored, before orientation
        if orientation in (5, 6, 7, 8):
            ow, oh = sh, sw
        else:
            ow, oh = sw, sh
        tw, th = working_size(ow, oh, max_side)
        stored_target = (th, tw) if orientation in (5, 6, 7, 8) else (tw, th)
        if im.format == "JPEG" and stored_target != (sw, sh):
            im.draft("RGB", stored_target)  # libjpeg decodes at 1/2, 1/4 or 1/8 scale, >= the target
        im = im.convert("RGB")
        if im.size != stored_target:
            factor = min(im.size[0] // stored_target[0], im.size[1] // stored_target[1])
            if factor >= 2:
                im = im.reduce(factor)
            im = im.resize(stored_target, Image.Resampling.LANCZOS)
        if orientation in _TRANSPOSE:
            im = im.transpose(_TRANSPOSE[orientation])
        rgb = np.asarray(im, dtype=np.uint8).copy()
    focal = exif_focal_px(exif, (ow, oh))
    device = " ".join(str(exif.get(k, "")).strip("\x00 ") for k in (0x010F, 0x0110)).strip() or None
    return Frame(name=path.name, image=rgb, original_size=(ow, oh), timestamp=_exif_time(exif),
                 focal_px=focal * (tw / ow) if focal else None, device=device)


def exif_focal_px(exif, size: tuple[int, int]) -> float | None:
    """Focal length in pixels of the full-size image from EXIF: 35 mm equivalent, else mm and sensor density."""
    try:
        ifd = exif.get_ifd(0x8769)
    except Exception:
        return None
    w, h = size
    f35 = _num(ifd.get(41989))  # FocalLengthIn35mmFilm: equivalent on a 36x24 mm frame (43.27 mm diagonal)
    if f35 and f35 > 0:
        return f35 * float(np.hypot(w, h)) / float(np.hypot(36.0, 24.0))
    fmm = _num(ifd.get(37386))  # FocalLength (mm)
    xres = _num(ifd.get(41486))  # FocalPlaneXResolution: sensor pixels per unit
    unit = int(_num(ifd.get(41488)) or 2)  # FocalPlaneResolutionUnit: 2 inch, 3 cm, 4 mm, 5 um
    unit_mm = {2: 25.4, 3: 10.0, 4: 1.0, 5: 1e-3}.get(unit)
    if not (fmm and fmm > 0 and xres and xres > 0 and unit_mm):
        return None
    f_px = fmm * xres / unit_mm  # in the pixels of the sensor's full-resolution image
    full_w = _num(ifd.get(40962))  # PixelXDimension of the stored image, when given
    full_h = _num(ifd.get(40963))
    if full_w and full_h and full_w > 0:
        f_px *= max(w, h) / max(full_w, full_h)
    return float(f_px)


def _num(v) -> float | None:
    if v is None:
        return None
    try:
        if isinstance(v, tuple) and len(v) == 2:
            return float(v[0]) / float(v[1]) if v[1] else None
        return float(v)
    except (TypeError, ValueError, ZeroDivisionError):
        return None


def _exif_time(exif) -> float | None:
    try:
        s = exif.get_ifd(0x8769).get(36867) or exif.get(306)
        return datetime.strptime(str(s).strip("\x00 "), "%Y:%m:%d %H:%M:%S").timestamp() if s else None
    except Exception:
        return None

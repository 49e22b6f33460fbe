"""Video keyframes: decode with PyAV, keep a frame when the camera has moved enough since the last keyframe
(median tracked-feature flow or lost tracks), choosing the sharpest of the recent candidates.

Parallax comes from pyramidal Lucas-Kanade tracks of corners detected on the last keyframe, followed frame
to frame; sharpness is the variance of the Laplacian. A video whose features never move has no parallax to
reconstruct from, and is refused.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from spatial.capture.frames import MIN_FRAMES, Frame, FramesConfig, FrameSet, working_size
from twin_kit import InputError, warn

_LK = dict(winSize=(21, 21), maxLevel=3, criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01))


@dataclass
class _Candidate:
    index: int
    timestamp: float | None
    rgb: np.ndarray
    grey: np.ndarray
    sharpness: float
    motion: float = 0.0  # trigger ratio since the last keyframe (>= 1 means "moved enough")


class _Tracks:
    """Corners of one keyframe followed through later frames."""

    def __init__(self, grey: np.ndarray, max_corners: int):
        pts = cv2.goodFeaturesToTrack(grey, maxCorners=max_corners, qualityLevel=0.01, minDistance=8)
        self.start = np.zeros((0, 2), np.float32) if pts is None else pts.reshape(-1, 2)
        self.cur = self.start.copy()
        self.alive = np.ones(len(self.start), bool)
        self.prev = grey

    def step(self, grey: np.ndarray) -> None:
        idx = np.flatnonzero(self.alive)
        if len(idx):
            nxt, st, _ = cv2.calcOpticalFlowPyrLK(self.prev, grey, self.cur[idx].reshape(-1, 1, 2), None, **_LK)
            ok = st.reshape(-1).astype(bool)
            nxt = nxt.reshape(-1, 2)
            h, w = grey.shape
            ok &= (nxt[:, 0] >= 0) & (nxt[:, 0] < w) & (nxt[:, 1] >= 0) & (nxt[:, 1] < h)
            self.cur[idx[ok]] = nxt[ok]
            self.alive[idx[~ok]] = False
        self.prev = grey

    def motion(self, diag: float, cfg: FramesConfig) -> float:
        """max(median flow / parallax threshold, lost fraction / allowed loss); 0 when nothing is tracked."""
        if len(self.start) < 8:
            return 0.0
        frac = float(self.alive.mean())
        flow = float(np.median(np.linalg.norm(self.cur[self.alive] - self.start[self.alive], axis=1))) \
            if self.alive.any() else 0.0
        return max(flow / (cfg.parallax * diag), (1.0 - frac) / max(1e-6, 1.0 - cfg.min_tracked))


def declared_frames(stream) -> int | None:
    """Frames the container says the video stream holds: its frame count, else duration x frame rate."""
    if stream.frames:
        return int(stream.frames)
    if stream.duration and stream.time_base and stream.average_rate:
        return int(round(float(stream.duration * stream.time_base) * float(stream.average_rate)))
    return None


def _decode(path: Path, max_side: int, progress=None, stats: dict | None = None):
    """(index, seconds, RGB at working resolution) for every frame, decoded with FFmpeg's threads.

    `stats` receives "decoded" (frames read), "declared" (what the container announced) and "error" (why
    decoding stopped, when it failed after the first frame: the frames before the damage are kept).
    """
    import av

    stats = {} if stats is None else stats
    try:
        container = av.open(str(path))
    except Exception as e:
        raise InputError(f"{path}: cannot open video ({type(e).__name__}: {e})".replace("\n", " ")) from None
    with container:
        if not container.streams.video:
            raise InputError(f"{path}: no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stats.update(decoded=0, declared=declared_frames(stream), error=None)
        task = progress.add_task("reading video", total=stats["declared"] or None, status="") \
            if progress is not None else None
        try:
            for i, fr in enumerate(container.decode(stream)):
                rot = int(round(getattr(fr, "rotation", 0) or 0)) // 90 % 4
                w, h = (fr.height, fr.width) if rot % 2 else (fr.width, fr.height)
                tw, th = working_size(w, h, max_side)
                sw, sh = (th, tw) if rot % 2 else (tw, th)
                rgb = fr.to_ndarray(width=sw, height=sh, format="rgb24", interpolation="AREA")
                if rot:
                    rgb = np.ascontiguousarray(np.rot90(rgb, rot))
                stats["decoded"] = i + 1
                yield i, (float(fr.time) if fr.time is not None else None), rgb, (w, h)
                if task is not None:
                    progress.advance(task)
        except av.error.FFmpegError as e:
            if not stats["decoded"]:
                raise InputError(f"{path}: video decoding failed at its first frame ({e}); the file looks "
                                 "truncated or damaged".replace("\n", " ")) from None
            stats["error"] = str(e).replace("\n", " ")


def _stopped_early(stats: dict) -> bool:
    """Decoding ended well before the frame count the container declared (B-frame and edit-list slack aside)."""
    declared = stats.get("declared")
    return bool(stats.get("error")) or (declared is not None and stats["decoded"] < declared - max(2, 0.02 * declared))


def _grey(rgb: np.ndarray, side: int) -> np.ndarray:
    g = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    h, w = g.shape
    tw, th = working_size(w, h, side)
    return cv2.resize(g, (tw, th), interpolation=cv2.INTER_AREA) if (tw, th) != (w, h) else g


def select_keyframes(frames, cfg: FramesConfig) -> list[_Candidate]:
    """Keyframes from an iterable of (index, seconds, RGB): parallax decides when, sharpness decides which."""
    keys: list[_Candidate] = []
    window: deque[_Candidate] = deque(maxlen=max(1, cfg.sharpness_window))
    tracks: _Tracks | None = None
    diag = 1.0

    def start_from(best: _Candidate, later: list[_Candidate]) -> _Tracks:
        keys.append(best)
        tr = _Tracks(best.grey, cfg.max_corners)
        window.clear()
        for c in later:  # follow the new keyframe's corners up to the current frame
            tr.step(c.grey)
            c.motion = tr.motion(diag, cfg)
            window.append(c)
        return tr

    def sharpest(cands) -> _Candidate:
        moved = [c for c in cands if c.motion >= 0.5] or list(cands)
        return max(moved, key=lambda c: c.sharpness)

    for i, ts, rgb in frames:
        grey = _grey(rgb, cfg.track_side)
        diag = float(np.hypot(*grey.shape))
        c = _Candidate(i, ts, rgb, grey, float(cv2.Laplacian(grey, cv2.CV_32F).var()))
        if tracks is None:  # the first keyframe: the sharpest of the opening window
            window.append(c)
            if len(window) == window.maxlen:
                best = max(window, key=lambda x: x.sharpness)
                cands = list(window)
                tracks = start_from(best, cands[cands.index(best) + 1:])
            continue
        tracks.step(grey)
        c.motion = tracks.motion(diag, cfg)
        window.append(c)
        if c.motion >= 1.0:
            best = sharpest(window)
            cands = list(window)
            tracks = start_from(best, cands[cands.index(best) + 1:])
    if tracks is None and window:
        keys.append(max(window, key=lambda x: x.sharpness))
    elif window and max(c.motion for c in window) >= 0.5:  # the tail moved: end on its sharpest frame
        keys.append(sharpest(window))
    return keys


def load_video(path: Path, cfg: FramesConfig, progress=None) -> FrameSet:
    """Keyframes of a video at working resolution; InputError when the camera never moves.

    A video whose decoding stops before the end the container announces (a truncated or damaged file) keeps
    the frames before that point, with a one-line warning and a note in the FrameSet; it is refused when
    fewer than MIN_FRAMES keyframes remain.
    """
    sizes: dict[int, tuple[int, int]] = {}
    stats: dict = {}

    def frames():
        for i, ts, rgb, size in _decode(path, cfg.max_side, progress, stats):
            sizes[i] = size
            yield i, ts, rgb

    keys = select_keyframes(frames(), cfg)
    if not sizes:
        raise InputError(f"{path}: the video has no decodable frames")
    notes = []
    truncated = _stopped_early(stats)
    if truncated:
        why = f" ({stats['error']})" if stats.get("error") else ""
        declared = f" of the {stats['declared']} it declares" if stats.get("declared") else ""
        k = stats["decoded"]
        head = (f"decoding stopped after {k} frame{'s' if k != 1 else ''}{declared}{why}: the file looks truncated "
                "or damaged")
        if len(keys) < MIN_FRAMES:
            raise InputError(f"{path}: {head}, and the {len(keys)} keyframe{'s' if len(keys) != 1 else ''} before "
                             f"that point are too few (need {MIN_FRAMES})")
        note = f"{path.name}: {head}; only the frames before that point are used"
        warn(note)
        notes.append(note)
    if len(keys) < 2:
        raise InputError(f"{path}: no camera motion found over {len(sizes)} frames (the features never move); "
                         "walk around the scene while filming")
    if len(keys) > cfg.max_keyframes:
        keep = np.unique(np.linspace(0, len(keys) - 1, cfg.max_keyframes).round().astype(int))
        keys = [keys[k] for k in keep]
    return FrameSet(frames=[Frame(name=f"frame_{k.index:06d}.png", image=k.rgb, original_size=sizes[k.index],
                                  timestamp=k.timestamp) for k in keys], source="video", notes=notes,
                    decoding={"frames_decoded": stats["decoded"], "frames_declared": stats["declared"],
                              "truncated": truncated})

"""Failure videos: each frame of an episode shows what the policy saw (its cameras, restyled) beside a front view
in the capture's own appearance, encoded as it is played (H.264 mp4 in memory), so no episode's frames pile up.

Which to keep is decided by episode number (the lowest failures of each style), so the kept set is the same
whatever the number of worlds or workers: `worth_filming` tells a process which episodes can still be among them.
"""
from __future__ import annotations

import io
from collections import defaultdict

import numpy as np

MIN_HEIGHT = 192  # frames are scaled up (nearest) by a whole factor to at least this height


def tile(images: list[np.ndarray]) -> np.ndarray:
    """(H, W, 3) uint8 views side by side, each scaled by a whole factor to a common height, padded to even
    sides (yuv420p)."""
    h = max(im.shape[0] for im in images)
    height = h * max(1, -(-MIN_HEIGHT // h))
    parts = []
    for im in images:
        f = max(1, height // im.shape[0])
        big = im.repeat(f, 0).repeat(f, 1)
        pad = height - big.shape[0]
        parts.append(np.pad(big, ((0, pad), (0, 0), (0, 0))) if pad else big)
    out = np.concatenate(parts, axis=1)
    return np.pad(out, ((0, out.shape[0] % 2), (0, out.shape[1] % 2), (0, 0)))


class Clip:
    """One episode's video, encoded frame by frame into memory; `finish()` returns the mp4's bytes."""

    def __init__(self, fps: int):
        self.fps = int(fps)
        self.buffer = io.BytesIO()
        self.container = None
        self.stream = None
        self.frames = 0

    def _open(self, frame: np.ndarray) -> None:
        import av

        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        self.container = av.open(self.buffer, "w", format="mp4")
        opts = {"crf": "23", "preset": "veryfast", "tune": "zerolatency", "threads": "1"} if codec == "libx264" else {}
        self.stream = self.container.add_stream(codec, rate=self.fps, options=opts)
        self.stream.height, self.stream.width = frame.shape[:2]
        self.stream.pix_fmt = "yuv420p"

    def add(self, frame: np.ndarray) -> None:
        import av

        if self.container is None:
            self._open(frame)
        self.container.mux(self.stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame),
                                                                         format="rgb24")))
        self.frames += 1

    def finish(self) -> bytes | None:
        if self.container is None:
            return None
        self.container.mux(self.stream.encode())
        self.container.close()
        self.container = None
        return self.buffer.getvalue()

    def discard(self) -> None:
        if self.container is not None:
            self.container.close()
            self.container = None
        self.buffer = io.BytesIO()


class VideoQuota:
    """Per style, the outcomes this process has seen; an episode is worth filming unless `keep` lower-numbered
    failures and `keep_successes` lower-numbered successes of its style are known already (then it can never be
    among the kept ones)."""

    def __init__(self, keep: int, keep_successes: int = 0):
        self.keep, self.keep_successes = int(keep), int(keep_successes)
        self.seen: dict[tuple[str, bool], list[int]] = defaultdict(list)

    @property
    def any(self) -> bool:
        """Whether any video is kept at all."""
        return self.keep > 0 or self.keep_successes > 0

    def wanted(self, style: str, number: int, success: bool) -> bool:
        """Whether an episode with this outcome could still be among the kept videos of its kind."""
        keep = self.keep_successes if success else self.keep
        return keep > 0 and sum(k < number for k in self.seen[style, success]) < keep

    def worth_filming(self, style: str, number: int) -> bool:
        return self.wanted(style, number, False) or self.wanted(style, number, True)

    def add(self, style: str, number: int, success: bool) -> None:
        self.seen[style, success].append(number)


def kept_videos(results, keep: int, keep_successes: int = 0) -> list:
    """The results whose videos are kept: per style, the `keep` failed and the `keep_successes` successful
    episodes of lowest number with a video."""
    by_kind: dict[tuple[str, bool], list] = defaultdict(list)
    for r in sorted(results, key=lambda r: r.number):
        quota = keep_successes if r.success else keep
        if r.video is not None and len(by_kind[r.style, r.success]) < quota:
            by_kind[r.style, r.success].append(r)
    return [r for rs in by_kind.values() for r in rs]

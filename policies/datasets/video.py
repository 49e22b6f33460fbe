"""Camera streams as LeRobot stores them: one mp4 per episode, appended to a shared mp4 by stream copy, and
frames read back at the timestamps the episode index gives. PyAV only (its own FFmpeg).

LeRobot's default encode is SVT-AV1 (`libsvtav1`), yuv420p, a key frame every 2 frames, crf 30, preset 12;
`VideoEncoding` defaults to the same and falls back to H.264 where PyAV lacks SVT-AV1.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from twin_kit import InputError, IsolatedWorker

TOLERANCE_S = 1e-4  # LeRobot's default tolerance between a query timestamp and a decoded frame


@dataclass(frozen=True)
class VideoEncoding:
    """How camera frames are encoded (LeRobot's defaults); lower `crf` means higher quality, larger files.

    codec: a PyAV encoder (libsvtav1, h264/libx264 or hevc/libx265, as LeRobot allows);
    gop: frames between key frames (small keeps random access cheap for training);
    preset: SVT-AV1 speed, 0 (slow) to 13 (fast); ignored by other encoders.
    """

    codec: str = "libsvtav1"
    crf: int = 30
    gop: int = 2
    preset: int = 12
    pix_fmt: str = "yuv420p"

    def resolved(self) -> VideoEncoding:
        """This encoding with an encoder PyAV has here (SVT-AV1, else H.264); refuses an unknown codec."""
        import av

        if self.codec in av.codecs_available:
            return self
        if self.codec == "libsvtav1" and "libx264" in av.codecs_available:
            return VideoEncoding("libx264", self.crf, self.gop, self.preset, self.pix_fmt)
        raise InputError(f"video codec {self.codec!r} is not available in this PyAV build")

    @property
    def canonical_name(self) -> str:
        """The codec name a reader sees in the file (info.json `video.codec`): av1, h264, hevc."""
        import av

        return av.codec.Codec(self.codec, "w").canonical_name


def _quiet_encoders() -> None:
    """SVT-AV1 prints its banner to stderr unless told otherwise (a user's own SVT_LOG wins)."""
    os.environ.setdefault("SVT_LOG", "1")


_ENCODER = IsolatedWorker("twin-video-encoder")


def encode_video(frames: np.ndarray, fps: int, path: Path, enc: VideoEncoding) -> None:
    """Write (T, H, W, 3) uint8 frames as an mp4 whose frame i is shown at i / fps.

    The encoder runs in a killable child process: SVT-AV1 (PyAV 18's libSvtAv1Enc 4.1) deadlocked once in a
    few hundred clips of a long `twin record`, so a clip that hangs is killed and encoded again.
    """
    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    timeout = 60.0 + frames.nbytes / 2e6  # generous: 96 px clips take well under a second
    _ENCODER.call(_encode_clip, (frames, fps, str(path), enc), timeout=timeout)


def _encode_clip(frames: np.ndarray, fps: int, path: str, enc: VideoEncoding) -> None:
    """The encode itself (runs in the encoder process)."""
    import av

    _quiet_encoders()
    options = {"g": str(enc.gop), "crf": str(enc.crf)}
    if enc.codec == "libsvtav1":
        options["preset"] = str(enc.preset)
    with av.open(path, "w", format="mp4", options={"movflags": "faststart"}) as out:
        stream = out.add_stream(enc.codec, rate=fps, options=options)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = enc.pix_fmt
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode())


def video_duration(path: Path) -> float:
    """Seconds the video stream lasts (its last frame's end), as LeRobot measures an episode's video."""
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        if s.duration is not None:
            return float(s.duration * s.time_base)
        return float(c.duration / av.time_base)


def video_info(path: Path) -> dict:
    """The stream description info.json keeps under a video feature's `info` (LeRobot's keys and order)."""
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        fmt = s.codec_context.pix_fmt or "yuv420p"
        info = {"video.height": s.height, "video.width": s.width, "video.codec": s.codec.canonical_name,
                "video.pix_fmt": fmt, "video.is_depth_map": False, "video.fps": int(s.base_rate),
                "video.channels": 1 if "gray" in fmt else 4 if ("rgba" in fmt or "yuva" in fmt) else 3}
        info["has_audio"] = bool(c.streams.audio)
    return info


def concat_videos(parts: list[tuple[Path, float | None]], out_path: Path) -> None:
    """Stream-copy videos one after another into `out_path` (no re-encode). Each part is (path, keep_until):
    packets at or past `keep_until` seconds are dropped (what an interrupted write appended), and the next
    part starts at `keep_until` (or at the end of the part when None)."""
    import av

    with av.open(str(out_path), "w", format="mp4", options={"movflags": "faststart"}) as out:
        ost = None
        offset = Fraction(0)  # seconds at which the current part starts
        for path, keep_until in parts:
            with av.open(str(path)) as src:
                ist = src.streams.video[0]
                tb = ist.time_base
                if ost is None:
                    ost = out.add_stream_from_template(ist, opaque=True)
                    ost.time_base = tb
                shift = round(offset / tb)  # packets keep their own time base; PyAV rescales on mux
                limit = None if keep_until is None else round(Fraction(keep_until) / tb)
                end = 0
                for pkt in src.demux(ist):
                    if pkt.dts is None:
                        continue
                    if limit is not None and pkt.pts >= limit:
                        continue
                    end = max(end, pkt.pts + (pkt.duration or 0))
                    pkt.pts += shift
                    pkt.dts += shift
                    pkt.stream = ost
                    out.mux(pkt)
                length = limit if limit is not None else (ist.duration if ist.duration is not None else end)
                offset += length * tb


def decode_frames(path: Path, timestamps: np.ndarray, tolerance_s: float = TOLERANCE_S) -> np.ndarray:
    """(N, H, W, 3) uint8 frames of `path` shown at `timestamps` (seconds into the file), each the decoded
    frame nearest its timestamp; refuses (InputError) when none lies within `tolerance_s`."""
    import av

    ts = np.asarray(timestamps, dtype=np.float64)
    if ts.size == 0:
        raise InputError(f"{path}: no timestamps to decode")
    want, back = np.unique(ts, return_inverse=True)  # sorted, each once
    got: list[np.ndarray | None] = [None] * len(want)
    best = np.full(len(want), np.inf)
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        if want[0] > tolerance_s:  # start from the key frame before the first wanted frame
            c.seek(max(0, int((want[0] - tolerance_s) / s.time_base)), stream=s, backward=True)
        for frame in c.decode(s):
            if frame.pts is None:
                continue
            t = float(frame.pts * s.time_base)
            if t > want[-1] + tolerance_s:
                break
            j = int(np.searchsorted(want, t))
            for k in (j - 1, j):
                if 0 <= k < len(want) and abs(want[k] - t) < min(tolerance_s, best[k]):
                    best[k] = abs(want[k] - t)
                    got[k] = frame.to_ndarray(format="rgb24")
    missing = [float(want[i]) for i, f in enumerate(got) if f is None]
    if missing:
        raise InputError(f"{path}: no frame within {tolerance_s}s of {missing[0]:.4f}s "
                         f"({len(missing)} of {len(want)} timestamps missing)")
    return np.stack(got)[back]

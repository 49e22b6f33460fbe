"""The viewer's camera-path editor: keyframes from the current view, saved as JSON, rendered to video.

Path JSON (format "twin-camera-path", version 1): fps, seconds, width, height and keyframes, each with the
viewer pose (position, wxyz of camera-to-world, OpenCV axes), vertical fov in radians and the OpenCV
world_to_camera 4x4 that Twin's cameras use. `path_cameras` turns it into per-frame Camera objects.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spatial.bundle import updating_bundle
from spatial.cameras import Camera

PATH_FORMAT = "twin-camera-path"
PATHS_DIR = "paths"


def keyframe_from_client(client) -> dict:
    """The client's current view as a keyframe (the pose viser reports for that browser tab)."""
    import viser.transforms as tf

    cam = client.camera
    R_c2w = tf.SO3(np.asarray(cam.wxyz)).as_matrix()
    pos = np.asarray(cam.position, np.float64)
    w2c = np.eye(4)
    w2c[:3, :3] = R_c2w.T
    w2c[:3, 3] = -R_c2w.T @ pos
    return {"position": pos.tolist(), "wxyz": np.asarray(cam.wxyz, np.float64).tolist(), "fov_y": float(cam.fov),
            "aspect": float(cam.aspect), "width": int(cam.image_width), "height": int(cam.image_height),
            "world_to_camera": w2c.tolist()}


def path_document(keyframes: list[dict], fps: float = 30.0, seconds: float = 5.0,
                  width: int | None = None, height: int | None = None) -> dict:
    """A path JSON document; output size defaults to 640 px wide at the first keyframe's aspect."""
    aspect = keyframes[0]["aspect"] if keyframes else 16 / 9
    w = 2 * round(int(width or 640) / 2)
    h = int(height or 2 * round(w / aspect / 2))
    return {"format": PATH_FORMAT, "version": 1, "fps": float(fps), "seconds": float(seconds), "width": w,
            "height": h, "keyframes": keyframes}


def path_cameras(doc: dict, n_frames: int | None = None) -> list[Camera]:
    """Per-frame OpenCV cameras along a path: Catmull-Rom positions, piecewise slerp rotations, linear fov."""
    import viser.transforms as tf

    kfs = doc["keyframes"]
    if not kfs:
        raise ValueError("camera path has no keyframes")
    n = int(n_frames or max(round(doc["fps"] * doc["seconds"]), 1))
    W, H = int(doc["width"]), int(doc["height"])
    P = np.array([k["position"] for k in kfs], np.float64)
    Q = [tf.SO3(np.asarray(k["wxyz"], np.float64)) for k in kfs]
    F = np.array([k["fov_y"] for k in kfs], np.float64)
    m = len(kfs)
    out = []
    for f in range(n):
        u = 0.0 if n == 1 or m == 1 else f / (n - 1) * (m - 1)
        i = min(int(np.floor(u)), m - 2) if m > 1 else 0
        a = u - i
        j = min(i + 1, m - 1)
        p = _catmull_rom(P[max(i - 1, 0)], P[i], P[j], P[min(j + 1, m - 1)], a)
        rot = (Q[i] @ tf.SO3.exp(a * (Q[i].inverse() @ Q[j]).log())).as_matrix()
        fov = F[i] + a * (F[j] - F[i])
        fy = H / 2 / np.tan(fov / 2)
        R = rot.T
        out.append(Camera(name=f"path_{f:05d}", width=W, height=H, fx=fy, fy=fy, cx=(W - 1) / 2,
                          cy=(H - 1) / 2, R=R, t=-R @ p))
    return out


def _catmull_rom(p0, p1, p2, p3, a: float) -> np.ndarray:
    a2, a3 = a * a, a * a * a
    return 0.5 * (2 * p1 + (p2 - p0) * a + (2 * p0 - 5 * p1 + 4 * p2 - p3) * a2 + (3 * p1 - p0 - 3 * p2 + p3) * a3)


def save_path(bundle_root: Path, name: str, doc: dict) -> Path:
    """Add paths/<name>.json to the bundle atomically; returns its final path."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name.strip()) or "path"
    with updating_bundle(bundle_root) as (tmp, _manifest):
        d = tmp / PATHS_DIR
        d.mkdir(exist_ok=True)
        f = d / f"{safe}.json"
        if f.exists():
            f.unlink()  # a hard link to the bundle's current file: do not write through it
        f.write_text(json.dumps(doc, indent=1))
    return Path(bundle_root) / PATHS_DIR / f"{safe}.json"


def video_path(bundle_root: Path, name: str) -> Path:
    """Where "Render video" writes: <bundle>_<path name>.mp4 beside the bundle (videos are not bundle files)."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name.strip()) or "path"
    return Path(bundle_root).parent / f"{Path(bundle_root).name}_{safe}.mp4"


@dataclass
class PathEditor:
    """GUI state of the camera-path editor (keyframes are shared by every connected client)."""

    keyframes: list[dict] = field(default_factory=list)
    handles: dict = field(default_factory=dict)
    last_saved: Path | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


def add_path_editor(v) -> PathEditor:
    """Add the 'Camera path' GUI folder to a viewer: add keyframe, clear, save, render video with progress."""
    server = v.server
    ed = PathEditor()
    g = ed.handles
    with server.gui.add_folder("Camera path", order=2):
        g["count"] = server.gui.add_markdown("0 keyframes")
        g["add"] = server.gui.add_button("Add keyframe", hint="Add the current view as the next keyframe")
        g["clear"] = server.gui.add_button("Clear path")
        g["name"] = server.gui.add_text("Path name", "path")
        g["seconds"] = server.gui.add_number("Duration (s)", 5.0, min=0.1, max=600.0, step=0.1)
        g["width"] = server.gui.add_number("Video width", 640, min=64, max=3840, step=16)
        g["save"] = server.gui.add_button("Save path", hint=f"Write {PATHS_DIR}/<name>.json into the bundle")
        g["render"] = server.gui.add_button("Render video", hint="Render the path with the `twin render` renderer")
        g["progress"] = server.gui.add_progress_bar(0.0, visible=False)
        g["status"] = server.gui.add_markdown("")

    def redraw() -> None:
        g["count"].content = f"{len(ed.keyframes)} keyframe{'s' if len(ed.keyframes) != 1 else ''}"
        for k in [k for k in list(v.handles) if k.startswith("path_")]:
            v.handles.pop(k).remove()
        size = v.layers.extent * 0.03
        for i, kf in enumerate(ed.keyframes):
            v.handles[f"path_kf{i}"] = server.scene.add_camera_frustum(
                f"/camera_path/kf{i:03d}", fov=kf["fov_y"], aspect=kf["aspect"], scale=size,
                thickness=size * 0.04, color=(40, 120, 230), wxyz=kf["wxyz"], position=kf["position"])
        if len(ed.keyframes) >= 2:
            pts = np.array([kf["position"] for kf in ed.keyframes])
            v.handles["path_spline"] = server.scene.add_spline_catmull_rom(
                "/camera_path/spline", points=pts, thickness=size * 0.05, color=(40, 120, 230))

    @g["add"].on_click
    def _(ev) -> None:
        with ed.lock:
            ed.keyframes.append(keyframe_from_client(ev.client))
            redraw()

    @g["clear"].on_click
    def _(ev) -> None:
        with ed.lock:
            ed.keyframes.clear()
            redraw()

    def document() -> dict:
        return path_document(list(ed.keyframes), seconds=float(g["seconds"].value), width=int(g["width"].value))

    @g["save"].on_click
    def _(ev) -> None:
        if not ed.keyframes:
            g["status"].content = "Add a keyframe first."
            return
        with ed.lock:
            ed.last_saved = save_path(v.bundle.root, g["name"].value, document())
        g["status"].content = f"Saved `{ed.last_saved}`"

    @g["render"].on_click
    def _(ev) -> None:
        if len(ed.keyframes) < 1:
            g["status"].content = "Add keyframes first."
            return
        from .render_video import render_path_video  # the renderer behind `twin render`

        doc = document()
        out = video_path(v.bundle.root, g["name"].value)
        cams = path_cameras(doc)
        g["render"].disabled = True
        g["progress"].visible = True
        g["progress"].value = 0.0

        def on_progress(done: int, total: int) -> None:
            g["progress"].value = 100.0 * done / max(total, 1)

        try:
            g["status"].content = f"Rendering {len(cams)} frames..."
            render_path_video(v.bundle.root, cams, out, fps=doc["fps"], progress=on_progress)
            g["status"].content = f"Rendered `{out}`"
        except Exception as e:  # shown in the page: the server must keep running
            g["status"].content = f"Render failed: {type(e).__name__}: {e}"
        finally:
            g["render"].disabled = False
            g["progress"].visible = False

    redraw()
    return ed

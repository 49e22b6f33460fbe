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

from scenes.rendering.camera_paths import path_cameras, path_document
from spatial import BundlePaths, updating_bundle


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


def save_path(bundle_root: Path, name: str, doc: dict) -> Path:
    """Add <camera paths>/<name>.json to the bundle atomically; returns its final path."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name.strip()) or "path"
    with updating_bundle(bundle_root) as (tmp, _manifest):
        d = BundlePaths(tmp).camera_paths
        d.mkdir(exist_ok=True)
        f = d / f"{safe}.json"
        if f.exists():
            f.unlink()  # a hard link to the bundle's current file: do not write through it
        f.write_text(json.dumps(doc, indent=1))
    return BundlePaths(Path(bundle_root)).camera_paths / f"{safe}.json"


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
        g["save"] = server.gui.add_button("Save path", hint="Write the path into the bundle as <name>.json")
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
        from scenes.rendering.render_video import render_path_video  # the renderer behind `twin render`

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
            render_path_video(v.bundle.root, cams, out, fps=doc["fps"], progress=on_progress,
                              timed=v.layers.dynamic is not None)  # a moving scene plays over the path
            g["status"].content = f"Rendered `{out}`"
        except Exception as e:  # shown in the page: the server must keep running
            g["status"].content = f"Render failed: {type(e).__name__}: {e}"
        finally:
            g["render"].disabled = False
            g["progress"].visible = False

    redraw()
    return ed

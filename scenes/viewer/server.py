"""`twin view`: a viser server showing a bundle's splats, points, collision mesh and capture cameras.

The server binds 127.0.0.1 unless told otherwise; a port already in use is refused before viser starts
(viser would silently move to another port, and scripts rely on the URL printed first).
"""
from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from scenes.viewer._layers import SceneLayers, camera_pose_viser, load_layers, nice_length, thumbnail
from spatial import Bundle, Camera, read_bundle
from twin_kit import InputError

UP_AXES = {"+Z": "+z", "-Z": "-z", "+Y": "+y", "-Y": "-y", "+X": "+x", "-X": "-x"}
NO_SPLATS_TITLE = "No splats in this bundle"
NO_SPLATS_BODY = ("This bundle has no splats.ply yet (run `twin splat` to train them). "
                  "Showing the fused points and the collision mesh instead.")


@dataclass
class ViewerOptions:
    """How the viewer serves and what it sends (see scenes.cli_view.ViewConfig for the CLI help)."""

    host: str = "127.0.0.1"
    port: int = 8080
    max_gaussians: int = 300_000
    max_points: int = 1_000_000
    max_frustums: int = 300
    thumbnails: bool = True


@dataclass
class Viewer:
    """A running viewer: the viser server, what it loaded, and the scene/GUI handles (for tests and scripts)."""

    server: object
    bundle: Bundle
    layers: SceneLayers
    url: str
    handles: dict = field(default_factory=dict)
    gui: dict = field(default_factory=dict)
    paths: object | None = None

    def stop(self) -> None:
        self.server.stop()


def check_port_free(host: str, port: int) -> None:
    """Refuse a port something already listens on (viser would otherwise quietly pick another one)."""
    if not 0 < port < 65536:
        raise InputError(f"--port {port}: must be between 1 and 65535")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise InputError(f"--host {host}: cannot resolve ({e.strerror})") from None
    fam, _, _, _, addr = infos[0]
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio does: TIME_WAIT is not "in use"
        try:
            s.bind(addr)
        except OSError as e:
            raise InputError(f"port {port} on {host} is in use ({e.strerror}); pick another --port") from None


def _rich_to_stderr() -> None:
    """Point rich's global console at stderr: viser reports on it, and prints "Server stopped" from its own
    thread when a server stops, which landed between the URL line and the --json line on stdout (and, under
    load, in the next test's captured stdout)."""
    import rich

    if not rich.get_console().stderr:
        rich.reconfigure(stderr=True)


def start_viewer(bundle_path: str | Path, opts: ViewerOptions | None = None, announce: bool = True) -> Viewer:
    """Load a bundle, start the server and draw the scene; prints the URL first on stdout when `announce`.

    Damaged files raise InputError before anything is served; a bundle without splats is served with a
    page message and its points and mesh.
    """
    import viser

    opts = opts or ViewerOptions()
    bundle = read_bundle(bundle_path)
    layers = load_layers(bundle, budget=opts.max_gaussians, max_points=opts.max_points)
    if layers.splats is None and layers.points is None and layers.mesh is None:
        raise InputError(f"{bundle.root}: nothing to show (no splats.ply, points.ply or collision mesh)")
    check_port_free(opts.host, opts.port)
    _rich_to_stderr()
    with contextlib.redirect_stdout(sys.stderr):  # viser's banner must not precede the URL line
        server = viser.ViserServer(host=opts.host, port=opts.port, label=f"Twin: {bundle.root.name}",
                                   verbose=False)
    if server.get_port() != opts.port:
        server.stop()
        raise InputError(f"port {opts.port} on {opts.host} is in use; pick another --port")
    url = f"http://{opts.host}:{opts.port}"
    if announce:
        sys.stdout.write(url + "\n")
        sys.stdout.flush()
    v = Viewer(server=server, bundle=bundle, layers=layers, url=url)
    _draw(v, opts)
    return v


def serve_forever(v: Viewer, seconds: float | None = None) -> None:
    """Keep serving until interrupted (or for `seconds`, for scripts and tests)."""
    t0 = time.monotonic()
    try:
        while seconds is None or time.monotonic() - t0 < seconds:
            time.sleep(0.2)
    finally:
        v.stop()


def _draw(v: Viewer, opts: ViewerOptions) -> None:
    from scenes.viewer._paths import add_path_editor
    from scenes.viewer._time import add_time_controls

    server, layers, man = v.server, v.layers, v.bundle.manifest
    server.scene.set_up_direction(UP_AXES.get(str(man.get("up_axis", "+Z")).upper(), "+z"))
    server.gui.configure_theme(control_width="medium", show_logo=False)
    # Splats are unlit; image-based lighting and shadow maps only slow the first frame (tens of seconds
    # on software WebGL) for the mesh and frustums.
    server.scene.configure_environment_map(hdri=None)
    server.scene.configure_default_lights(enabled=True, cast_shadow=False)
    has_splats = layers.splats is not None
    if not has_splats:
        v.gui["message"] = server.gui.add_markdown(f"### {NO_SPLATS_TITLE}\n{NO_SPLATS_BODY}", order=0)

        @server.on_client_connect
        def _(client) -> None:
            client.add_notification(NO_SPLATS_TITLE, NO_SPLATS_BODY, with_close_button=True, color="yellow")

    h = v.handles
    if has_splats:
        s = layers.splats
        h["splats"] = server.scene.add_gaussian_splats("/splats", centers=s.centers, covariances=s.covariances,
                                                       rgbs=s.rgbs, opacities=s.opacities)
    if layers.points is not None:
        xyz, rgb = layers.points
        h["points"] = server.scene.add_point_cloud("/points", points=xyz, colors=rgb, point_size=layers.extent / 600,
                                                   point_shape="circle", precision="float32",
                                                   visible=not has_splats)
    if layers.mesh is not None:
        h["mesh"] = _add_mesh(server, layers.mesh, visible=not has_splats)
    _add_cameras(v, opts)
    _add_grid_and_scale(v)
    _add_layer_toggles(v)
    add_time_controls(v)
    _set_initial_camera(v)
    v.paths = add_path_editor(v)


def _add_mesh(server, mesh, visible: bool):
    """The collision mesh: vertex colours when it has them, else a translucent neutral tone."""
    colors = getattr(mesh.visual, "vertex_colors", None)
    if mesh.visual.kind == "vertex" and colors is not None and len(colors) == len(mesh.vertices):
        return server.scene.add_mesh_trimesh("/collision", mesh, visible=visible, cast_shadow=False,
                                             receive_shadow=False)
    return server.scene.add_mesh_simple("/collision", np.asarray(mesh.vertices, np.float32),
                                        np.asarray(mesh.faces, np.uint32), color=(170, 180, 200),
                                        opacity=0.6, side="double", visible=visible, cast_shadow=False,
                                        receive_shadow=False)


def _add_cameras(v: Viewer, opts: ViewerOptions) -> None:
    """Capture frustums with image thumbnails; clicking one flies the clicking client's camera to it."""
    cams = v.layers.cameras
    if not cams:
        return
    step = max(1, int(np.ceil(len(cams) / max(opts.max_frustums, 1))))
    server = v.server
    h = v.handles
    h["cameras"] = server.scene.add_frame("/cameras", show_axes=False)
    size = v.layers.extent * 0.04
    for i, cam in enumerate(cams[::step]):
        wxyz, pos = camera_pose_viser(cam)
        img = None
        if opts.thumbnails and cam.image and v.bundle.has(cam.image):
            img = thumbnail(v.bundle.path(cam.image))
        fr = server.scene.add_camera_frustum(
            f"/cameras/{i:05d}", fov=2 * np.arctan2(cam.height / 2, cam.fy), aspect=cam.width / cam.height,
            scale=size, thickness=size * 0.03, color=(230, 120, 40), image=img, format="jpeg",
            jpeg_quality=80, wxyz=wxyz, position=pos, cast_shadow=False, receive_shadow=False)
        fr.on_click(lambda ev, c=cam: _fly_from_click(v, ev, c))


def _fly_from_click(v: Viewer, ev, cam: Camera) -> None:
    """Fly to a clicked frustum, hiding it (its image would cover the view) and showing the last one again."""
    last = v.gui.get("hidden_frustum")
    if last is not None and last is not ev.target:
        last.visible = True
    ev.target.visible = False
    v.gui["hidden_frustum"] = ev.target
    fly_to(ev.client, cam)


def fly_to(client, cam: Camera, seconds: float = 0.6, steps: int = 20) -> None:
    """Move a client's view smoothly onto a capture camera (same pose and vertical field of view)."""
    import viser.transforms as tf

    wxyz1, p1 = camera_pose_viser(cam)
    fov1 = float(2 * np.arctan2(cam.height / 2, cam.fy))
    q0, p0, fov0 = tf.SO3(client.camera.wxyz), np.array(client.camera.position), float(client.camera.fov)
    delta = (q0.inverse() @ tf.SO3(wxyz1)).log()
    for k in range(1, steps + 1):
        a = k / steps
        a = a * a * (3 - 2 * a)
        with client.atomic():
            client.camera.position = p0 + a * (p1 - p0)
            client.camera.wxyz = (q0 @ tf.SO3.exp(a * delta)).wxyz
            client.camera.fov = fov0 + a * (fov1 - fov0)
        time.sleep(seconds / steps)


def _add_grid_and_scale(v: Viewer) -> None:
    """A ground grid at floor height (10 cells per section) and, for metric scenes, a labelled scale bar."""
    L, server = v.layers, v.server
    cell = nice_length(L.extent / 20)
    section = cell * 10
    size = max(np.ceil(1.5 * L.extent / section) * section, section)
    cx, cy = float(L.center[0]), float(L.center[1])
    v.handles["grid"] = server.scene.add_grid("/grid", width=size, height=size, plane="xy", cell_size=cell,
                                              section_size=section, position=(cx, cy, L.floor_z))
    metric = v.bundle.metric
    unit = "m" if metric else "units"
    v.gui["scale"] = server.gui.add_markdown(
        f"Grid: {cell:g} {unit} cells, {section:g} {unit} sections, +Z up."
        + ("" if metric else " Scale is **not metric** (arbitrary units)."))
    if metric:
        bar = nice_length(L.extent / 4)
        x0, y0 = cx - size / 2 + 0.05 * size, cy - size / 2 + 0.05 * size
        seg = np.array([[[x0, y0, L.floor_z], [x0 + bar, y0, L.floor_z]]], np.float32)
        v.handles["scale_bar"] = server.scene.add_line_segments(
            "/scale_bar", points=seg, colors=(20, 20, 20), thickness=bar * 0.01)
        v.handles["scale_label"] = server.scene.add_label(
            "/scale_bar/label", f"{bar:g} m", position=(x0 + bar / 2, y0, L.floor_z + bar * 0.05),
            anchor="bottom-center")


def _add_layer_toggles(v: Viewer) -> None:
    """One checkbox per drawn layer, plus a line saying what the display budget dropped."""
    server, h = v.server, v.handles
    names = [("splats", "Splats"), ("points", "Points"), ("mesh", "Collision mesh"), ("cameras", "Cameras"),
             ("grid", "Grid")]
    with server.gui.add_folder("Layers", order=1):
        if v.layers.splats is not None:
            s = v.layers.splats
            text = f"{len(s.index):,} Gaussians"
            if s.subsampled:
                text = (f"**Showing {len(s.index):,} of {s.n_total:,} Gaussians** (the most visible; display "
                        f"budget `--max-gaussians`). Exports and renders use all of them.")
            v.gui["budget"] = server.gui.add_markdown(text)
        for key, label in names:
            if key not in h:
                continue
            cb = server.gui.add_checkbox(label, bool(h[key].visible))
            v.gui[f"toggle_{key}"] = cb

            def _toggle(ev, key=key) -> None:
                vis = bool(ev.target.value)
                h[key].visible = vis
                if key == "grid":
                    for k in ("scale_bar", "scale_label"):
                        if k in h:
                            h[k].visible = vis

            cb.on_update(_toggle)


def _set_initial_camera(v: Viewer) -> None:
    """Open a little behind the first capture camera (so its frustum is in view), else an oblique overview."""
    L, ic = v.layers, v.server.initial_camera
    if L.cameras:
        cam = L.cameras[0]
        R = np.asarray(cam.R, np.float64)
        ic.position = tuple(cam.center - R[2] * L.extent * 0.15)
        ic.look_at = tuple(cam.center + R[2] * L.extent * 0.5)
        ic.fov = float(2 * np.arctan2(cam.height / 2, cam.fy))
    else:
        ic.position = tuple(L.center + L.extent * np.array([0.7, -0.7, 0.5]))
        ic.look_at = tuple(L.center)
    ic.up = (0.0, 0.0, 1.0)


def run_in_thread(bundle_path: str | Path, opts: ViewerOptions) -> tuple[Viewer, threading.Event]:
    """Start a viewer for in-process use (examples, tests); returns it and an event that stops it when set."""
    v = start_viewer(bundle_path, opts, announce=False)
    stop = threading.Event()

    def _wait() -> None:
        stop.wait()
        v.stop()

    threading.Thread(target=_wait, daemon=True).start()
    return v, stop

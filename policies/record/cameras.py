"""The recorded cameras of each robot: a fixed `front` camera facing the robot across its workspace, and the
robot's mounted one (`wrist` on the arm's hand, `head` on the G1), each a `sim.Sensors` over every world.

Poses are set in the robot's frame (base x forward, z up from the support surface; a mounted camera in its
link's frame at the home pose), so the views are the same in every scene. A front camera whose line of sight
to the workspace is blocked by the scan (a wall, a shelf in its mesh, or splats in front of the lens) is swung
around the robot until it sees through.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spatial import Camera, look_at
from twin_kit import CV_TO_GL, InputError, qmat, tinv, tmul, warn


@dataclass(frozen=True)
class View:
    """A camera placement: eye and target points, the image's up direction, horizontal field of view."""

    eye: tuple[float, float, float]
    target: tuple[float, float, float]
    up: tuple[float, float, float] = (0.0, 0.0, 1.0)
    fov_deg: float = 60.0


@dataclass(frozen=True)
class Rig:
    """One robot's cameras: `front` in the base frame, the mounted camera in its link's frame (or, with
    `mount_fixed`, in the base frame: the G1's head sits on a fixed pelvis)."""

    front: View
    mount_name: str
    mount: View
    mount_fixed: bool = False


RIGS = {
    # the front camera frames the objects' start patch (PROFILES["franka"]): a 4 cm cube spans ~5 px at 96 px
    "franka": Rig(front=View((1.05, 0.0, 0.72), (0.47, 0.0, 0.02), fov_deg=45.0),
                  mount_name="wrist", mount=View((0.10, 0.0, -0.03), (0.0, 0.0, 0.20), (1.0, 0.0, 0.0), 75.0)),
    "so101": Rig(front=View((0.55, 0.0, 0.38), (0.12, 0.0, 0.08), fov_deg=65.0),
                 mount_name="wrist", mount=View((0.0, 0.07, 0.0), (0.0, 0.0, -0.16), (0.0, 1.0, 0.0), 75.0)),
    "g1_upper": Rig(front=View((1.35, -0.22, 1.25), (0.30, -0.22, 0.95), fov_deg=55.0),
                    mount_name="head", mount=View((0.10, 0.0, 1.28), (0.35, -0.22, 0.92), fov_deg=70.0),
                    mount_fixed=True),
}


def rig_of(robot: str) -> Rig:
    """The camera rig of a task robot (its registry name, e.g. g1_upper)."""
    if robot not in RIGS:
        raise InputError(f"robot {robot!r} has no recording cameras (robots: {', '.join(RIGS)})")
    return RIGS[robot]


@dataclass
class RecordCamera:
    """One recorded camera over all worlds: its name, sensors and intrinsics."""

    name: str
    sensors: object          # sim.Sensors
    camera: Camera           # the camera at the home pose (world 0)
    mounted: bool
    body_pose: np.ndarray | None = None   # mounted: (7,) camera pose in its body's frame, OpenGL camera axes

    @property
    def K(self) -> np.ndarray:
        return self.camera.K

    def pose_gl(self) -> np.ndarray:
        """(7,) camera-to-world transform at the home pose, OpenGL camera axes (x right, y up, looking along -z),
        as MuJoCo's and Newton's cameras take it."""
        from scipy.spatial.transform import Rotation

        R = self.camera.R.T @ CV_TO_GL
        return np.concatenate([self.camera.center, Rotation.from_matrix(R).as_quat()])

    def world_to_cam(self) -> np.ndarray:
        """(views, 4, 4) OpenCV world-to-camera matrices of every world's camera now."""
        xf = self.sensors.camera_transforms()
        R = qmat(xf[:, 3:]) @ CV_TO_GL                   # camera-to-world rotation, OpenCV axes
        out = np.zeros((len(xf), 4, 4))
        out[:, :3, :3] = np.swapaxes(R, 1, 2)
        out[:, :3, 3] = -np.einsum("nji,nj->ni", R, xf[:, :3])
        out[:, 3, 3] = 1.0
        return out


def _camera(name: str, eye, target, up, fov_deg: float, size: int) -> Camera:
    R, t = look_at(np.asarray(eye, float), np.asarray(target, float), up=np.asarray(up, float))
    f = 0.5 * size / np.tan(np.radians(fov_deg) / 2)
    return Camera(name, size, size, f, f, (size - 1) / 2, (size - 1) / 2, R, t)


def base_frame(env) -> tuple[np.ndarray, np.ndarray]:
    """(origin, rotation) of the robot's frame: base x y on the support surface, turned by its yaw."""
    x, y, z, yaw = env.base
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([x, y, z]), np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _blocked(mesh, eye: np.ndarray, target: np.ndarray) -> bool:
    """Whether the scan's surface (a trimesh, or None) lies between target and eye."""
    if mesh is None:
        return False
    d = eye - target
    dist = float(np.linalg.norm(d))
    hits, _, _ = mesh.ray.intersects_location(target[None] + 0.02 * d[None] / dist, (d / dist)[None])
    return bool(len(hits) and np.min(np.linalg.norm(hits - target, axis=1)) < dist)


PROBE_SIZE = 48      # px: the splat render that checks a front camera's line of sight
SPLAT_REACH = 0.8    # the splats' depth at the view's centre must reach this fraction of the way to the target


def _splats_block(splats, eye: np.ndarray, target: np.ndarray, view: View) -> bool:
    """Whether the splats hide the target from `eye`: a floater or a surface the mesh lacks (poorly observed
    corners of a scan grow them) stops the view's centre short of SPLAT_REACH of the distance to the target."""
    if splats is None:
        return False
    probe = _camera("probe", eye, target, view.up, view.fov_deg, PROBE_SIZE)
    depth = splats.render_camera(probe).depth[0, ..., 0]
    q = PROBE_SIZE // 4
    return float(depth[q:-q, q:-q].median()) < SPLAT_REACH * float(np.linalg.norm(eye - target))


def front_view(env, view: View, splats=None) -> tuple[np.ndarray, np.ndarray]:
    """World eye and target of the front camera: the rig's view, swung about the base axis (and raised) when
    the scan blocks it: its mesh, or its splats (`sim.scene_background`, the appearance the camera records)."""
    o, R = base_frame(env)
    eye0, target = np.asarray(view.eye), o + R @ np.asarray(view.target)
    scene, mesh = env.world.scene, None
    if scene is not None:
        import trimesh

        mesh = trimesh.Trimesh(scene.vertices, scene.faces, process=False)
    for lift in (0.0, 0.3):
        for turn in (0, 25, -25, 50, -50, 75, -75, 100, -100):
            a = np.radians(turn)
            Rz = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
            eye = o + R @ (Rz @ eye0 + [0.0, 0.0, lift])
            if not _blocked(mesh, eye, target) and not _splats_block(splats, eye, target, view):
                return eye, target
    warn("the scan blocks every front camera position tried; recording the default view")
    return o + R @ eye0, target


def mount_pose(world) -> np.ndarray:
    """(7,) world pose (position + quaternion xyzw) of world 0's camera link frame."""
    from sim import body_poses

    r = world.robot
    return tmul(body_poses(world)[0, r.camera_body], r.camera_offset)


def build_cameras(env, names: list[str], size: int) -> list[RecordCamera]:
    """Sensors for the named cameras over every world of the TaskEnv (call with world 0 at its home pose:
    a mounted camera keeps the pose in its link frame that it has then)."""
    from sim import Sensors, scene_background

    rig = rig_of(env.profile.name)
    out = []
    for name in names:
        if name == "front":
            splats = scene_background(env.world)   # probed for the view, then rendered by the camera: loaded once
            eye, target = front_view(env, rig.front, splats)
            cam = _camera(name, eye, target, rig.front.up, rig.front.fov_deg, size)
            out.append(RecordCamera(name, Sensors(env.world, cam, splats=splats if splats is not None else False),
                                    cam, mounted=False))
            continue
        if name != rig.mount_name:
            raise InputError(f"robot {env.profile.name!r} has no {name!r} camera")
        v = rig.mount
        if rig.mount_fixed or env.world.robot.camera_body < 0:
            o, R = base_frame(env)
            cam = _camera(name, o + R @ np.asarray(v.eye), o + R @ np.asarray(v.target), R @ np.asarray(v.up),
                          v.fov_deg, size)
            out.append(RecordCamera(name, Sensors(env.world, cam), cam, mounted=False))
            continue
        from sim import body_poses

        link = mount_pose(env.world)
        Rl, pl = qmat(link[3:]), link[:3]
        cam = _camera(name, pl + Rl @ np.asarray(v.eye), pl + Rl @ np.asarray(v.target), Rl @ np.asarray(v.up),
                      v.fov_deg, size)
        rc = RecordCamera(name, Sensors(env.world, cam, mounted=True), cam, mounted=True)
        rc.body_pose = tmul(tinv(body_poses(env.world)[0, env.world.robot.camera_body]), rc.pose_gl())
        out.append(rc)
    return out

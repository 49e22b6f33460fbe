"""OpenUSD stage of a bundle: Gaussian splats, physics collision mesh and capture cameras (usd-core).

Layout (default prim /World, metersPerUnit 1, upAxis Z):
  /World/Splats        UsdVol.ParticleField3DGaussianSplat (referenced from the binary layer
                       scene_splats.usdc beside the stage by default): positions, orientations (unit quats), linear
                       scales, opacities in [0, 1], SH degree and coefficients as stored in 3DGS PLYs
                       (per particle (d+1)^2 float3 values, band-major: index l*l + l + m, DC first)
  /World/Collision     UsdGeom.Mesh + UsdPhysics.CollisionAPI + MeshCollisionAPI (purpose "guide", so that
                       renderers show the splats while physics uses the mesh)
  /World/PhysicsScene  UsdPhysics.Scene, gravity -Z 9.81 m/s^2
  /World/Cameras/<n>   UsdGeom.Camera per capture frame (USD cameras look down -Z with +Y up)
Dynamic splats (`twin export --time-samples N`): positions, orientations and scales of /World/Splats are
time-sampled at time codes 0 .. N-1 spread over the capture (timeCodesPerSecond makes them play in real time);
opacities and colours are constant. The stage's start and end time codes span the samples.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spatial import Camera

APPROXIMATIONS = ("none", "convexDecomposition", "convexHull", "meshSimplification", "boundingCube",
                  "boundingSphere", "sdf")
APERTURE_MM = 36.0  # horizontal aperture given to every camera; focal length follows from fx / width


@dataclass
class UsdExportOptions:
    """What goes into the stage (see scenes.cli_export.ExportConfig for the CLI help)."""

    approximation: str = "none"  # static environment mesh; "convexDecomposition" for movable objects
    movable: bool = False  # collision mesh gets RigidBodyAPI + MassAPI (a dynamic object, not the environment)
    cameras: bool = True
    collision_visible: bool = False


def _vt_vec3f(a: np.ndarray):
    from pxr import Vt

    return Vt.Vec3fArray.FromNumpy(np.ascontiguousarray(a, dtype=np.float32).reshape(-1, 3))


def _pose_arrays(g) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions, unit quaternions (xyzw, as USD stores them) and linear scales of raw Gaussians."""
    q = g.quats.detach().cpu().double().numpy()
    q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    return (g.means.detach().cpu().double().numpy(), np.ascontiguousarray(q[:, [1, 2, 3, 0]], np.float32),
            g.scales.detach().cpu().double().numpy())


def add_splats(stage, path: str, g, samples: list | None = None) -> object:
    """Define a ParticleField3DGaussianSplat at `path` from raw Gaussians (activations applied here).

    `samples`: [(time code, Gaussians at that time), ...] of the same Gaussians moving; their positions,
    orientations and scales are written as time samples (the default value stays `g`'s).
    """
    from pxr import UsdVol, Vt

    n = len(g)
    means, quats, scales = _pose_arrays(g)
    op = g.opacities.detach().cpu().double().numpy()
    sh = g.sh.detach().cpu().float().numpy()  # (N, K, 3), band-major as in 3DGS
    pf = UsdVol.ParticleField3DGaussianSplat.Define(stage, path)
    pos_attr, rot_attr, scale_attr = pf.CreatePositionsAttr(), pf.CreateOrientationsAttr(), pf.CreateScalesAttr()
    pos_attr.Set(_vt_vec3f(means))
    rot_attr.Set(Vt.QuatfArray.FromNumpy(quats))
    scale_attr.Set(_vt_vec3f(scales))
    boxes = [(means, scales)]
    for code, gt in samples or []:
        m, q, s = _pose_arrays(gt)
        pos_attr.Set(_vt_vec3f(m), float(code))
        rot_attr.Set(Vt.QuatfArray.FromNumpy(q), float(code))
        scale_attr.Set(_vt_vec3f(s), float(code))
        boxes.append((m, s))
    pf.CreateOpacitiesAttr().Set(Vt.FloatArray.FromNumpy(op.astype(np.float32)))
    pf.CreateRadianceSphericalHarmonicsDegreeAttr().Set(int(g.sh_degree))
    pf.CreateRadianceSphericalHarmonicsCoefficientsAttr().Set(_vt_vec3f(sh.reshape(n * sh.shape[1], 3)))
    rgb = np.clip(0.5 + 0.28209479177387814 * sh[:, 0], 0.0, 1.0)
    pf.CreateDisplayColorAttr().Set(_vt_vec3f(rgb))  # for viewers without splat support
    lo, hi = np.zeros(3), np.zeros(3)
    if n:  # the box that holds every Gaussian (3 sigma) at every sampled time
        lo = np.min([(m - 3.0 * s.max(axis=1)[:, None]).min(axis=0) for m, s in boxes], axis=0)
        hi = np.max([(m + 3.0 * s.max(axis=1)[:, None]).max(axis=0) for m, s in boxes], axis=0)
    pf.CreateExtentAttr().Set(_vt_vec3f(np.stack([lo, hi])))
    return pf


def set_time_range(stage, samples: list | None, codes_per_second: float | None) -> None:
    """Start/end time codes spanning `samples` and their rate, so that players loop over the motion."""
    if not samples:
        return
    codes = [float(c) for c, _ in samples]
    stage.SetStartTimeCode(min(codes))
    stage.SetEndTimeCode(max(codes))
    if codes_per_second:
        stage.SetTimeCodesPerSecond(float(codes_per_second))
        stage.SetFramesPerSecond(float(codes_per_second))


def add_collision_mesh(stage, path: str, mesh, opts: UsdExportOptions) -> object:
    """A UsdGeom.Mesh with physics collision (and rigid body when movable), vertex colours when present."""
    from pxr import UsdGeom, UsdPhysics, Vt

    if opts.approximation not in APPROXIMATIONS:
        raise ValueError(f"approximation {opts.approximation!r} not one of {', '.join(APPROXIMATIONS)}")
    v = np.asarray(mesh.vertices, np.float64)
    f = np.asarray(mesh.faces, np.int32)
    m = UsdGeom.Mesh.Define(stage, path)
    m.CreatePointsAttr().Set(_vt_vec3f(v))
    m.CreateFaceVertexCountsAttr().Set(Vt.IntArray.FromNumpy(np.full(len(f), 3, np.int32)))
    m.CreateFaceVertexIndicesAttr().Set(Vt.IntArray.FromNumpy(f.reshape(-1)))
    m.CreateSubdivisionSchemeAttr().Set(UsdGeom.Tokens.none)
    m.CreateExtentAttr().Set(_vt_vec3f(np.stack([v.min(axis=0), v.max(axis=0)])))
    colors = getattr(mesh.visual, "vertex_colors", None) if mesh.visual.kind == "vertex" else None
    if colors is not None and len(colors) == len(v):
        pv = UsdGeom.PrimvarsAPI(m).CreatePrimvar("displayColor", _sdf("Color3fArray"), UsdGeom.Tokens.vertex)
        pv.Set(_vt_vec3f(np.asarray(colors)[:, :3] / 255.0))
    if not opts.collision_visible:
        m.CreatePurposeAttr().Set(UsdGeom.Tokens.guide)
    prim = m.GetPrim()
    UsdPhysics.CollisionAPI.Apply(prim).CreateCollisionEnabledAttr().Set(True)
    UsdPhysics.MeshCollisionAPI.Apply(prim).CreateApproximationAttr().Set(opts.approximation)
    if opts.movable:
        UsdPhysics.RigidBodyAPI.Apply(prim).CreateRigidBodyEnabledAttr().Set(True)
        UsdPhysics.MassAPI.Apply(prim)  # mass from collision volume and the default density
    return m


def _sdf(name: str):
    from pxr import Sdf

    return getattr(Sdf.ValueTypeNames, name)


def usd_camera_transform(cam: Camera) -> np.ndarray:
    """Camera-to-world 4x4 of the USD camera (x right, y up, looking down -z) for an OpenCV camera."""
    c2w = np.asarray(cam.cam_to_world, np.float64)
    return c2w @ np.diag([1.0, -1.0, -1.0, 1.0])


def add_camera(stage, path: str, cam: Camera, near: float = 0.01, far: float = 1000.0) -> object:
    """A UsdGeom.Camera matching an OpenCV pinhole (apertures in mm, principal point as aperture offsets)."""
    from pxr import Gf, UsdGeom

    px = APERTURE_MM / cam.width  # mm per pixel horizontally
    c = UsdGeom.Camera.Define(stage, path)
    c.CreateProjectionAttr().Set(UsdGeom.Tokens.perspective)
    c.CreateFocalLengthAttr().Set(float(cam.fx * px))
    c.CreateHorizontalApertureAttr().Set(float(APERTURE_MM))
    py = cam.fx * px / cam.fy  # mm per pixel vertically, so that fy maps to the same focal length
    c.CreateVerticalApertureAttr().Set(float(cam.height * py))
    # Twin pixel centres are integers, so the image centre is at (W-1)/2, (H-1)/2; USD's +y is image-up.
    c.CreateHorizontalApertureOffsetAttr().Set(float(((cam.width - 1) / 2 - cam.cx) * px))
    c.CreateVerticalApertureOffsetAttr().Set(float((cam.cy - (cam.height - 1) / 2) * py))
    c.CreateClippingRangeAttr().Set(Gf.Vec2f(near, far))
    M = usd_camera_transform(cam)
    c.AddTransformOp().Set(Gf.Matrix4d(M.T.tolist()))  # USD matrices are row-vector (transposed)
    return c


def _new_stage(path: str | Path, doc: str):
    from pxr import Usd, UsdGeom

    stage = Usd.Stage.CreateNew(str(path))
    UsdGeom.SetStageMetersPerUnit(stage, 1.0)
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.z)
    stage.SetMetadata("comment", doc)
    return stage


def write_splats_layer(path: str | Path, gaussians, samples: list | None = None,
                       codes_per_second: float | None = None) -> None:
    """A binary (usdc) layer holding only /Splats, for stages whose splats would make a huge text file."""
    stage = _new_stage(path, "Twin Gaussian splats")
    pf = add_splats(stage, "/Splats", gaussians, samples)
    stage.SetDefaultPrim(pf.GetPrim())
    set_time_range(stage, samples, codes_per_second)
    stage.GetRootLayer().Save()


def build_stage(path: str | Path, gaussians=None, mesh=None, cameras: list[Camera] | None = None,
                opts: UsdExportOptions | None = None, doc: str = "Twin scene", splats_layer: str | None = None,
                samples: list | None = None, codes_per_second: float | None = None):
    """Create and save a stage at `path` (any USD extension usd-core writes); returns the Usd.Stage.

    With `splats_layer` (a path relative to `path`'s folder, written beforehand by write_splats_layer) the
    Splats prim references that binary layer instead of holding the arrays inline. `samples` and
    `codes_per_second`: time-sampled dynamic splats (see add_splats, set_time_range).
    """
    from pxr import Gf, Tf, UsdGeom, UsdPhysics

    opts = opts or UsdExportOptions()
    stage = _new_stage(path, doc)
    world = UsdGeom.Xform.Define(stage, "/World")
    stage.SetDefaultPrim(world.GetPrim())
    set_time_range(stage, samples, codes_per_second)
    if splats_layer is not None:
        stage.DefinePrim("/World/Splats").GetReferences().AddReference(f"./{splats_layer}")
    elif gaussians is not None:
        add_splats(stage, "/World/Splats", gaussians, samples)
    if mesh is not None:
        add_collision_mesh(stage, "/World/Collision", mesh, opts)
        scene = UsdPhysics.Scene.Define(stage, "/World/PhysicsScene")
        scene.CreateGravityDirectionAttr().Set(Gf.Vec3f(0.0, 0.0, -1.0))
        scene.CreateGravityMagnitudeAttr().Set(9.81)
    if opts.cameras and cameras:
        UsdGeom.Scope.Define(stage, "/World/Cameras")
        used: set[str] = set()
        for i, cam in enumerate(cameras):
            name = Tf.MakeValidIdentifier(cam.name or "camera")
            name = name if name not in used else f"{name}_{i}"
            used.add(name)
            add_camera(stage, f"/World/Cameras/{name}", cam)
    stage.GetRootLayer().Save()
    return stage


def _atomic(dest: Path, write) -> Path:
    """Run write(tmp) on a fresh temporary sibling of `dest` (same extension), then rename it over `dest`."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.stem}.", suffix=dest.suffix, dir=dest.parent)
    os.close(fd)
    os.unlink(tmp)  # usd-core refuses to CreateNew over an existing file
    try:
        write(tmp)
        if dest.exists():
            dest.unlink()  # may be a hard link into a live bundle: never write through it
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def write_stage_atomic(dest: str | Path, gaussians=None, binary_splats: bool = True, **kw) -> list[Path]:
    """Write the stage at `dest` (and its binary splat layer <stem>_splats.usdc beside it); returns the files.

    Each file is written under a temporary name and renamed; the splat layer goes first, so a stage file
    never references a missing layer. `samples=` / `codes_per_second=` (in kw) time-sample the splats.
    """
    dest = Path(dest)
    files = []
    layer = None
    if gaussians is not None and binary_splats:
        layer = f"{dest.stem}_splats.usdc"
        timing = {k: kw[k] for k in ("samples", "codes_per_second") if k in kw}
        files.append(_atomic(dest.parent / layer, lambda tmp: write_splats_layer(tmp, gaussians, **timing)))
    files.insert(0, _atomic(dest, lambda tmp: build_stage(tmp, gaussians=gaussians, splats_layer=layer, **kw)))
    return files


def package_usdz(usd_path: str | Path, dest: str | Path) -> Path:
    """Package a stage (and the layers it references) as .usdz, written to a temporary name then renamed."""
    from pxr import Sdf, UsdUtils

    def write(tmp: str) -> None:
        if not UsdUtils.CreateNewUsdzPackage(Sdf.AssetPath(str(usd_path)), tmp):
            raise RuntimeError(f"usd-core could not package {usd_path} as usdz")

    return _atomic(Path(dest), write)

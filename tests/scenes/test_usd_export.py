"""`twin export`: the USD stage read back with usd-core (schemas, arrays, physics, cameras), and the other formats."""
from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch
from support.small_bundle import make_bundle

from spatial.bundle import read_bundle
from twin_kit.errors import InputError


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from scenes.export.formats import export_bundle

    root = tmp_path_factory.mktemp("usd")
    bundle = make_bundle(root / "small", n=300, sh_degree=2)
    out = root / "out"
    written = export_bundle(bundle, {"usd", "usdz", "ply", "glb", "colmap", "nerfstudio"}, out=out)
    return bundle, out, written


def _open(path):
    from pxr import Usd

    stage = Usd.Stage.Open(str(path))
    assert stage is not None
    return stage


def test_stage_metadata_and_splat_schema(exported):
    from pxr import UsdGeom, UsdVol

    from scenes.splats.gaussians import read_splats_ply

    bundle, out, _ = exported
    stage = _open(out / "scene.usda")
    assert UsdGeom.GetStageMetersPerUnit(stage) == 1.0
    assert UsdGeom.GetStageUpAxis(stage) == UsdGeom.Tokens.z
    assert stage.GetDefaultPrim().GetPath() == "/World"
    prim = stage.GetPrimAtPath("/World/Splats")
    assert prim.GetTypeName() == "ParticleField3DGaussianSplat" and prim.IsA(UsdVol.ParticleField3DGaussianSplat)
    for api in ("ParticleFieldPositionAttributeAPI", "ParticleFieldOrientationAttributeAPI",
                "ParticleFieldScaleAttributeAPI", "ParticleFieldOpacityAttributeAPI",
                "ParticleFieldKernelGaussianEllipsoidAPI", "ParticleFieldSphericalHarmonicsAttributeAPI"):
        assert api in prim.GetAppliedSchemas()
    pf = UsdVol.ParticleField3DGaussianSplat(prim)
    g = read_splats_ply(bundle / "splats.ply")
    n = len(g)
    pos = np.asarray(pf.GetPositionsAttr().Get())
    quats = pf.GetOrientationsAttr().Get()
    q = np.array([[x.GetReal(), *x.GetImaginary()] for x in quats])
    scales = np.asarray(pf.GetScalesAttr().Get())
    op = np.asarray(pf.GetOpacitiesAttr().Get())
    deg = pf.GetRadianceSphericalHarmonicsDegreeAttr().Get()
    sh = np.asarray(pf.GetRadianceSphericalHarmonicsCoefficientsAttr().Get())
    assert pos.shape == (n, 3) and q.shape == (n, 4) and scales.shape == (n, 3) and op.shape == (n,)
    assert deg == 2 and sh.shape == (n * 9, 3)
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-6)
    q_ref = torch.nn.functional.normalize(g.quats, dim=1).numpy()
    np.testing.assert_allclose(np.abs((q * q_ref).sum(axis=1)), 1.0, atol=1e-5)  # same rotation
    np.testing.assert_allclose(pos, g.means.numpy(), atol=1e-6)
    np.testing.assert_allclose(scales, g.scales.numpy(), rtol=1e-5)  # linear, not log
    np.testing.assert_allclose(op, g.opacities.numpy(), atol=1e-6)  # activated, in [0, 1]
    assert (op >= 0).all() and (op <= 1).all() and (scales > 0).all()
    # per particle, (deg+1)^2 contiguous float3 coefficients, DC first, then the 3DGS band order
    np.testing.assert_allclose(sh.reshape(n, 9, 3), g.sh.numpy(), atol=1e-6)
    ext = np.asarray(pf.GetExtentAttr().Get())
    assert (ext[0] <= pos.min(axis=0)).all() and (ext[1] >= pos.max(axis=0)).all()


def test_collision_mesh_physics_apis(exported, tmp_path):
    from pxr import UsdGeom, UsdPhysics

    from scenes.export.formats import export_bundle
    from scenes.export.usd import UsdExportOptions

    _, out, _ = exported
    stage = _open(out / "scene.usda")
    prim = stage.GetPrimAtPath("/World/Collision")
    assert prim.IsA(UsdGeom.Mesh)
    assert prim.HasAPI(UsdPhysics.CollisionAPI) and prim.HasAPI(UsdPhysics.MeshCollisionAPI)
    assert UsdPhysics.MeshCollisionAPI(prim).GetApproximationAttr().Get() == "none"  # static environment
    assert not prim.HasAPI(UsdPhysics.RigidBodyAPI)
    mesh = UsdGeom.Mesh(prim)
    assert len(mesh.GetPointsAttr().Get()) == 8 and list(mesh.GetFaceVertexCountsAttr().Get()) == [3] * 12
    assert mesh.GetPurposeAttr().Get() == UsdGeom.Tokens.guide
    scene = UsdPhysics.Scene(stage.GetPrimAtPath("/World/PhysicsScene"))
    assert tuple(scene.GetGravityDirectionAttr().Get()) == (0, 0, -1)
    # a movable object: convex decomposition and a rigid body
    b2 = make_bundle(tmp_path / "obj", n=50)
    export_bundle(b2, {"usd"}, out=tmp_path / "o2",
                  usd_opts=UsdExportOptions(approximation="convexDecomposition", movable=True))
    stage2 = _open(tmp_path / "o2" / "scene.usda")  # keep the stage alive while its prims are used
    p2 = stage2.GetPrimAtPath("/World/Collision")
    assert UsdPhysics.MeshCollisionAPI(p2).GetApproximationAttr().Get() == "convexDecomposition"
    assert p2.HasAPI(UsdPhysics.RigidBodyAPI) and p2.HasAPI(UsdPhysics.MassAPI)


def test_cameras_project_like_opencv(exported):
    from pxr import Gf, Usd, UsdGeom

    bundle, out, _ = exported
    cams = read_bundle(bundle).cameras
    stage = _open(out / "scene.usda")
    pts = np.random.default_rng(1).uniform(-0.5, 0.5, (20, 3))
    for cam in cams:
        ucam = UsdGeom.Camera(stage.GetPrimAtPath(f"/World/Cameras/{cam.name}"))
        assert ucam
        fr = ucam.GetCamera(Usd.TimeCode.Default()).frustum
        M = np.array(fr.ComputeViewMatrix()) @ np.array(fr.ComputeProjectionMatrix())  # row vectors
        h = np.hstack([pts, np.ones((len(pts), 1))]) @ M
        ndc = h[:, :2] / h[:, 3:4]
        u = (ndc[:, 0] + 1) / 2 * cam.width - 0.5  # Twin pixel centres are integers
        v = (1 - ndc[:, 1]) / 2 * cam.height - 0.5
        pc = pts @ cam.R.T + cam.t
        uv = pc[:, :2] / pc[:, 2:3] * [cam.fx, cam.fy] + [cam.cx, cam.cy]
        np.testing.assert_allclose(np.stack([u, v], 1), uv, atol=1e-3)
        assert isinstance(fr, Gf.Frustum)


def test_usdz_and_other_formats(exported):
    import pycolmap
    import trimesh
    from pxr import UsdVol

    bundle, out, written = exported
    assert set(written) >= {"usd", "usdz", "ply", "glb", "colmap", "nerfstudio"}
    names = zipfile.ZipFile(out / "scene.usdz").namelist()
    assert names[0] == "scene.usda" and "scene_splats.usdc" in names
    z = _open(out / "scene.usdz")
    assert z.GetPrimAtPath("/World/Splats").IsA(UsdVol.ParticleField3DGaussianSplat)
    assert (out / "splats.ply").read_bytes() == (bundle / "splats.ply").read_bytes()
    glb = trimesh.load(out / "collision.glb", force="mesh")
    assert len(glb.faces) == 12 and glb.visual.kind == "vertex"
    rec = pycolmap.Reconstruction(str(out / "colmap" / "sparse" / "0"))
    assert rec.num_reg_images() == 4 and rec.num_points3D() == 300
    tj = json.loads((out / "transforms.json").read_text())
    assert len(tj["frames"]) == 4
    assert all((out / f["file_path"]).exists() for f in tj["frames"])


def test_export_into_bundle_and_bad_inputs(tmp_path, capsys):
    from pxr import Usd

    from scenes.export.formats import export_bundle
    from twin_cli.main import main

    b = make_bundle(tmp_path / "b", n=50)
    assert main(["export", str(b), "--usd", "--nerfstudio"]) == 0
    man = read_bundle(b).manifest
    assert {"scene.usda", "scene_splats.usdc", "transforms.json"} <= set(man["files"])
    assert man["exports"]["usd"] == "scene.usda"
    # no splats: the stage holds the collision mesh and cameras, with a warning; --ply is refused
    ns = make_bundle(tmp_path / "ns", splats=False)
    capsys.readouterr()
    export_bundle(ns, {"usd"})
    assert "no splats.ply" in " ".join(capsys.readouterr().err.split())  # rich wraps long lines
    st = Usd.Stage.Open(str(ns / "scene.usda"))
    assert not st.GetPrimAtPath("/World/Splats") and st.GetPrimAtPath("/World/Collision")
    assert main(["export", str(ns), "--ply", "--out", str(tmp_path / "x")]) == 2
    # a damaged splat file: a clear one-line error, exit 2, nothing written
    data = (b / "splats.ply").read_bytes()
    (b / "splats.ply").unlink()
    (b / "splats.ply").write_bytes(data[: len(data) // 3])
    capsys.readouterr()
    assert main(["export", str(b), "--usd", "--out", str(tmp_path / "dmg")]) == 2
    assert "damaged" in capsys.readouterr().err
    assert not (tmp_path / "dmg" / "scene.usda").exists()
    with pytest.raises(InputError):
        export_bundle(b, set())

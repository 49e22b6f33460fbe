"""`twin export`'s scene options: write a bundle's scene as USD/USDZ, splat PLY, GLB, COLMAP and nerfstudio files.

The verb is registered by policies (policies/export/config.py), which adds `--task` on top of this config."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from twin_kit import opt, validate_config


@dataclass
class ExportConfig:
    """Options of `twin export`."""

    bundle: Path = opt(help="scene bundle directory to export", positional=True)
    usd: bool = opt(False, "write scene.usda: splats (ParticleField3DGaussianSplat), physics collision mesh, "
                           "cameras (the default when no format is chosen)")
    usdz: bool = opt(False, "also package the stage as scene.usdz")
    ply: bool = opt(False, "copy the splats in the standard 3DGS PLY layout (with --out)")
    glb: bool = opt(False, "write the collision mesh as collision.glb (vertex colours kept)")
    colmap: bool = opt(False, "write colmap/sparse/0 (cameras, poses, fused points)")
    nerfstudio: bool = opt(False, "write nerfstudio transforms.json")
    out: Path | None = opt(None, "directory to write into (default: add the exports to the bundle itself)")
    approximation: str = opt("auto", "physics collision approximation of the mesh: auto = none for a static "
                                     "environment, convexDecomposition with --movable",
                             choices=("auto", "none", "convexDecomposition", "convexHull", "meshSimplification",
                                      "boundingCube", "boundingSphere", "sdf"))
    movable: bool = opt(False, "the mesh is a movable object: add RigidBodyAPI + MassAPI")
    cameras: bool = opt(True, "include the capture cameras as UsdGeom.Camera prims")
    time_samples: int = opt(0, "moving scenes: put the dynamic splats (dynamic/) in the USD stage, every "
                               "Gaussian's position, orientation and scale sampled this many times over the "
                               "capture (0 = the static splats.ply)", low=0, high=10_000)

    def __post_init__(self):
        validate_config(self)


def run_export(cfg: ExportConfig, json_out: bool = False) -> int:
    from scenes.export.formats import check_export_target, export_bundle
    from scenes.export.usd import UsdExportOptions
    from twin_kit import emit_json, info

    check_export_target(cfg.bundle, cfg.out)

    formats = {f for f in ("usd", "usdz", "ply", "glb", "colmap", "nerfstudio") if getattr(cfg, f)} or {"usd"}
    approx = cfg.approximation
    if approx == "auto":
        approx = "convexDecomposition" if cfg.movable else "none"
    opts = UsdExportOptions(approximation=approx, movable=cfg.movable, cameras=cfg.cameras)
    if cfg.time_samples and not {"usd", "usdz"} & formats:
        formats.add("usd")
    written = export_bundle(cfg.bundle, formats, out=cfg.out, usd_opts=opts, time_samples=cfg.time_samples)
    for fmt, path in written.items():
        info(f"{fmt}: {path}")
    if json_out:
        emit_json({"written": written})
    return 0


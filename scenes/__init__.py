"""scenes: 3D Gaussian splats, rendering, USD export and the browser viewer (geometry-to-scene).

Stages: `splats/` (Gaussians, initialisation, densification, training; `dynamic/`: 4D Gaussians) -> `rendering/`
(rasterize over gsplat, Warp and a PyTorch oracle; camera paths; video) -> `viewer/` (viser) and `export/` (USD
and other formats).
Public API below (loaded on first use): other packages, benches and examples import only these names.
"""
from twin_kit import lazy_exports

_API = {
    **dict.fromkeys(["Gaussians", "SH_C0", "read_splats_ply", "write_splats_ply"], "splats.gaussians"),
    "gaussians_from_points": "splats.seed_points",
    **dict.fromkeys(["DynamicSplats", "load_dynamic"], "dynamic.model"),
    **dict.fromkeys(["rasterize", "RenderOutput"], "rendering.rasterize"),
    "rasterize_reference": "rendering.rasterize",
    **dict.fromkeys(["SplatCells", "build_cells", "visible_cells", "visible_indices"], "rendering.culling"),
    **dict.fromkeys(["raster_K", "camera_tensors", "path_cameras", "orbit_cameras"], "rendering.camera_paths"),
    "write_video": "rendering.render_video",
    **dict.fromkeys(["ViewerOptions", "check_port_free", "fly_to", "run_in_thread", "start_viewer"],
                    "viewer.server"),
    **dict.fromkeys(["canvas_image", "chromium_page", "dismiss_notices", "wait_for_scene"], "viewer.snapshot"),
    **dict.fromkeys(["ViewConfig", "run_view"], "viewer.cli"),
    **dict.fromkeys(["UsdExportOptions", "write_stage_atomic", "write_splats_layer", "add_camera"], "export.usd"),
    **dict.fromkeys(["ExportConfig", "run_export"], "export.cli"),
    "export_bundle": "export.formats",
    "keyframe_from_client": "viewer._paths",
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _API)
